"""Balanced softmax cross-entropy for long-tailed classification (Ren et al., NeurIPS 2020).

Ren, Yu, Ma, Zhao, Yi, Li, "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020, Eq. 4: with
``n_c`` training samples of class ``c`` and the class prior ``pi_c = n_c / sum_c' n_c'``,

    loss(y, z) = -log( pi_y e^{z_y} / sum_c pi_c e^{z_c} ) = cross_entropy(y, softmax(z + log pi)),

i.e. ordinary cross-entropy on the logits shifted by the log prior. Training this way makes the plain
``softmax(z)`` an estimate of the class posterior under a BALANCED label distribution, so at test time the raw
logits ``z`` are used (no shift). Shu, Gu, Yang, Lo ("Revisiting Self-Supervised Contrastive Learning for Facial
Expression Recognition", BMVC 2022, Sec. 4.3) train their expression probes with it on imbalanced AffectNet.

Conventions:

* Labels are sparse class indices, ``(B,)`` or ``(B, 1)``; a negative label (``-1``: unknown expression in the
  record schema) is ignored: its loss is 0, it has no gradient, and it does not count in the mean.
* A class with count 0 (absent from the training set) would get ``log pi = -inf``; its count is floored at
  ``min_count`` (default 1: as if it had been seen once), so the shift stays finite and a stray label of that
  class gives a large but finite loss.
* Arithmetic is float32 whatever the logits' dtype (mixed precision).
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops


def check_class_counts(class_counts, min_count=1.0):
    """Validated float64 ``(C,)`` counts floored at ``min_count``; raises ``ValueError`` naming the bad value."""
    counts = np.asarray(class_counts, np.float64)
    if counts.ndim != 1 or counts.size < 1:
        raise ValueError(f"class_counts must be a 1-D list of per-class counts, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"class_counts must be finite and >= 0, got {counts.tolist()}")
    min_count = float(min_count)
    if not min_count > 0:
        raise ValueError(f"min_count must be > 0 (a zero count would give log prior -inf), got {min_count!r}")
    return np.maximum(counts, min_count)


def log_class_prior(class_counts, min_count=1.0):
    """float32 ``(C,)`` ``log(n_c / sum n)`` with the counts floored at ``min_count`` (see the module docstring)."""
    counts = check_class_counts(class_counts, min_count)
    return np.log(counts / counts.sum()).astype(np.float32)


def balanced_softmax_cross_entropy(labels, logits, class_counts, min_count=1.0):
    """Per-sample balanced softmax cross-entropy (Ren et al., NeurIPS 2020, Eq. 4).

    Args:
        labels: int ``(B,)`` or ``(B, 1)`` class indices; negative = ignored.
        logits: ``(B, C)``.
        class_counts: ``C`` training-set counts per class.
        min_count: floor of the counts (> 0).

    Returns:
        float32 ``(B,)``: ``logsumexp(z + log pi) - (z_y + log pi_y)``, 0 for ignored labels.
    """
    log_prior = log_class_prior(class_counts, min_count)
    logits = ops.cast(logits, "float32")
    if logits.shape[-1] is not None and logits.shape[-1] != len(log_prior):
        raise ValueError(
            f"logits have {logits.shape[-1]} classes but class_counts has {len(log_prior)} entries")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    valid = labels >= 0
    safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
    shifted = logits + ops.convert_to_tensor(log_prior)
    picked = ops.take_along_axis(shifted, ops.expand_dims(safe_labels, 1), axis=1)[:, 0]
    loss = ops.logsumexp(shifted, axis=1) - picked
    return ops.where(valid, loss, ops.zeros_like(loss))


@keras.saving.register_keras_serializable(package="ferkeras")
class BalancedSoftmaxLoss(keras.losses.Loss):
    """Keras loss: balanced softmax cross-entropy (:func:`balanced_softmax_cross_entropy`) on sparse labels.

    ``loss(y_true, logits)`` with ``y_true`` int class indices (negative = ignored). The default reduction,
    ``"mean_with_sample_weight"``, is the mean over the labelled samples (weighted by ``sample_weight`` when given;
    0 when no sample is labelled); with ``"sum_over_batch_size"`` the sum is divided by the whole batch size,
    ignored samples included. Like every Keras loss, a mean-type reduction is divided by the replicas in sync
    under a ``tf.distribute`` strategy.

    Args:
        class_counts: per-class training-set counts (e.g. ``np.bincount(labels, minlength=C)``).
        min_count: floor of the counts (zero-count classes; see the module docstring).
    """

    def __init__(self, class_counts, min_count=1.0, reduction="mean_with_sample_weight",
                 name="balanced_softmax_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        check_class_counts(class_counts, min_count)
        self.class_counts = [float(c) for c in np.asarray(class_counts, np.float64).reshape(-1)]
        self.min_count = float(min_count)

    @property
    def num_classes(self):
        return len(self.class_counts)

    def __call__(self, y_true, y_pred, sample_weight=None):
        labels = ops.reshape(ops.convert_to_tensor(y_true), (-1,))
        weights = ops.cast(labels >= 0, "float32")
        if sample_weight is not None:
            weights = weights * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        return super().__call__(y_true, y_pred, sample_weight=weights)

    def call(self, y_true, y_pred):
        return balanced_softmax_cross_entropy(y_true, y_pred, self.class_counts, self.min_count)

    def get_config(self):
        config = super().get_config()
        config.update({"class_counts": list(self.class_counts), "min_count": self.min_count})
        return config
