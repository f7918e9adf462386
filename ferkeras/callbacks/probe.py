"""LinearProbe: a linear read-out of frozen features, refit after epochs of self-supervised training, and the
closed-form ridge regression it uses (:class:`RidgeProbe`)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Union

import keras
import numpy as np

from ferkeras.callbacks.affect import affect_metrics
from ferkeras.callbacks.common import EpochEvaluation, EvalData, Key, collect
from ferkeras.callbacks.expression import class_ids, expression_metrics
from ferkeras.data.schema import MISSING_INT

TASKS = ("expression", "va")


@dataclasses.dataclass
class RidgeProbe:
    """An affine map ``y = ((x - mean) / scale) @ weights + bias`` fitted by ridge regression in closed form.

    :meth:`fit` standardises each feature with the training set's mean and standard deviation (a constant feature
    keeps scale 1), then for each target column solves::

        min_{W, b}  (1/n) sum_i ||z_i W + b - y_i||^2 + ridge ||W||^2      (b not penalised)

    over the ``n`` rows whose target is finite (NaN = no label): with centred ``Z`` and ``Y``,
    ``W = (Z^T Z / n + ridge I)^-1 Z^T Y / n`` (or the equal ``Z^T (Z Z^T / n + ridge I)^-1 Y / n`` when ``n`` is
    smaller than the feature count) and ``b = mean(y) - mean(z) W``.  For classification the targets are one-hot
    rows and the class is the argmax of the outputs (a least-squares linear classifier).
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(cls, features, targets, ridge: float = 1e-3) -> "RidgeProbe":
        x = np.asarray(features, np.float64)
        y = np.asarray(targets, np.float64)
        y = y[:, None] if y.ndim == 1 else y
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise ValueError(f"RidgeProbe.fit: features must be (N, D) and targets (N,) or (N, K) with the same N, "
                             f"got {x.shape} and {y.shape}")
        if not ridge > 0:
            raise ValueError(f"RidgeProbe.fit: ridge must be > 0, got {ridge!r}")
        if not np.isfinite(x).all():
            raise ValueError("RidgeProbe.fit: the features hold NaN or infinite values")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale <= 1e-12 * (1.0 + np.abs(mean))] = 1.0
        z = (x - mean) / scale
        d, k = z.shape[1], y.shape[1]
        weights, bias = np.zeros((d, k)), np.zeros(k)
        finite = np.isfinite(y)
        groups: Dict[bytes, list] = {}
        for col in range(k):  # target columns with the same labelled rows are solved together
            groups.setdefault(finite[:, col].tobytes(), []).append(col)
        for cols in groups.values():
            rows = finite[:, cols[0]]
            n = int(rows.sum())
            if n == 0:
                raise ValueError(f"RidgeProbe.fit: target column(s) {cols} have no finite value")
            zr, yr = z[rows], y[rows][:, cols]
            z_mean, y_mean = zr.mean(axis=0), yr.mean(axis=0)
            zc, yc = zr - z_mean, yr - y_mean
            if n >= d:
                w = np.linalg.solve(zc.T @ zc / n + ridge * np.eye(d), zc.T @ yc / n)
            else:
                w = zc.T @ np.linalg.solve(zc @ zc.T / n + ridge * np.eye(n), yc / n)
            weights[:, cols] = w
            bias[cols] = y_mean - z_mean @ w
        return cls(mean, scale, weights, bias)

    def predict(self, features) -> np.ndarray:
        """``(N, K)`` outputs for ``(N, D)`` features."""
        x = np.asarray(features, np.float64)
        return ((x - self.mean) / self.scale) @ self.weights + self.bias


def flatten_features(features) -> np.ndarray:
    """``(N, D)`` features: rank-2 as they are, higher rank averaged over the axes between batch and channels
    (global average pooling of a ``(N, H, W, C)`` map)."""
    features = np.asarray(features)
    if features.ndim < 2:
        raise ValueError(f"LinearProbe: encoder features must be (N, D) or (N, ..., C), got shape {features.shape}")
    return features.mean(axis=tuple(range(1, features.ndim - 1))) if features.ndim > 2 else features


class LinearProbe(EpochEvaluation):
    """Linear-probe evaluation of a representation while it trains (self-supervised models).

    After epochs ``n, 2n, ...``: ``encoder`` embeds every batch of ``train_dataset`` and ``val_dataset`` (frozen:
    inference mode, no gradient; features of rank > 2 are global-average-pooled), a :class:`RidgeProbe` is fitted
    in closed form on the training features and scored on the validation features.  The closed form (rather than
    a Keras ``Dense`` trained for some epochs) makes the probe deterministic, free of its own learning rate and
    epoch count, and cheap next to the feature extraction; the penalty ``ridge`` applies to standardised features.

    * ``task="expression"``: a least-squares classifier on one-hot targets (labels -1 skipped);
      logs ``{prefix}macro_f1``, ``{prefix}average_accuracy``, ``{prefix}overall_accuracy``.
    * ``task="va"``: valence-arousal regression (NaN labels skipped); logs ``{prefix}ccc`` (mean of the axes),
      ``{prefix}valence_ccc``, ... and ``rmse``, ``sagr``, ``pcc`` like :class:`AffectEvaluation`.

    Values go into the epoch ``logs`` (callbacks later in the list see them, e.g. :class:`BestCheckpoint` with
    ``monitor="probe_macro_f1"``) and, with ``log_dir``, to TensorBoard (step = epoch number from 1).
    ``last_probe`` holds the latest fitted :class:`RidgeProbe`.  The whole training set is embedded at each
    evaluation: give a subset (``train_steps``) or a large ``every_n_epochs`` for big sets.

    Args:
        encoder: a Keras model or a callable mapping an input batch to features (tensor, or a dict / list from which
            ``output`` picks one); ``None`` = the model being trained.
        train_dataset, val_dataset: data as in :class:`ferkeras.callbacks.common.EvalData`, labels as the task needs.
        task: ``"expression"`` or ``"va"``.
        num_classes: classes of the expression task (default: from one-hot labels, else largest label id + 1).
        every_n_epochs: evaluate after epochs ``n, 2n, ...``.
        ridge: the L2 penalty of :meth:`RidgeProbe.fit`.
        prefix: prepended to every log key and TensorBoard tag.
        log_dir: TensorBoard folder (``None`` = no summaries).
        output: which encoder output holds the features, if it returns several.
        label_key: which labels (default ``"expression"`` or ``"va"`` of a label dict).
        train_steps, val_steps: batches read from each dataset (``None`` = all).
        batch_size: batch size for ``(inputs, labels)`` array tuples.

    Example::

        encoder = keras.Model(ssl_model.input, ssl_model.get_layer("embedding").output)
        ssl_model.fit(unlabelled, epochs=100, callbacks=[
            LinearProbe(encoder, probe_train, probe_val, task="expression", num_classes=8, every_n_epochs=5,
                        log_dir="runs/tb"),
            BestCheckpoint("runs/best_encoder.keras", monitor="probe_macro_f1")])
    """

    def __init__(self, encoder: Optional[Union[keras.Model, Callable]], train_dataset, val_dataset,
                 task: str = "expression", num_classes: Optional[int] = None, every_n_epochs: int = 1,
                 ridge: float = 1e-3, prefix: str = "probe_", log_dir: Optional[str] = None, output: Key = None,
                 label_key: Key = None, train_steps: Optional[int] = None, val_steps: Optional[int] = None,
                 batch_size: int = 32):
        super().__init__(every_n_epochs, prefix, log_dir)
        if task not in TASKS:
            raise ValueError(f"LinearProbe: task must be one of {TASKS}, got {task!r}")
        if encoder is not None and not callable(encoder):
            raise TypeError(f"LinearProbe: encoder must be a Keras model or a callable, got {type(encoder).__name__}")
        if num_classes is not None and int(num_classes) < 2:
            raise ValueError(f"LinearProbe: num_classes must be >= 2, got {num_classes!r}")
        if not ridge > 0:
            raise ValueError(f"LinearProbe: ridge must be > 0, got {ridge!r}")
        self.encoder = encoder
        self.train_data = EvalData(train_dataset, batch_size, train_steps, owner="LinearProbe (train_dataset)")
        self.val_data = EvalData(val_dataset, batch_size, val_steps, owner="LinearProbe (val_dataset)")
        self.task = task
        self.num_classes = None if num_classes is None else int(num_classes)
        self.ridge = float(ridge)
        self.output = output
        self.label_key = label_key
        self.last_probe: Optional[RidgeProbe] = None

    def _features(self, data: EvalData):
        encoder = self.model if self.encoder is None else self.encoder
        labels, feats = collect(encoder, data, self.output, self.label_key, None,
                                names=getattr(encoder, "output_names", None), default_label=self.task,
                                label_like_output=False)
        return labels, flatten_features(feats)

    def _num_classes(self, train_labels, val_labels) -> int:
        if self.num_classes is not None:
            return self.num_classes
        if train_labels.ndim == 2 and train_labels.shape[1] > 1:
            return train_labels.shape[1]
        ids = np.concatenate([np.ravel(train_labels), np.ravel(val_labels)]).astype(np.int64)
        num = int(ids.max(initial=MISSING_INT)) + 1
        if num < 2:
            raise ValueError(f"LinearProbe: cannot infer num_classes from the labels (largest id {num - 1}); "
                             f"pass num_classes=")
        return num

    def evaluate(self, step: int) -> Dict[str, float]:
        train_labels, train_x = self._features(self.train_data)
        val_labels, val_x = self._features(self.val_data)
        if self.task == "va":
            self.last_probe = RidgeProbe.fit(train_x, train_labels.reshape(len(train_labels), -1), self.ridge)
            return affect_metrics(val_labels.reshape(len(val_labels), -1), self.last_probe.predict(val_x),
                                  owner="LinearProbe")
        classes = self._num_classes(train_labels, val_labels)
        ids = class_ids(train_labels, classes, owner="LinearProbe")
        if ((ids < MISSING_INT) | (ids >= classes)).any():
            raise ValueError(f"LinearProbe: training labels must be class ids in [0, {classes}) or {MISSING_INT}, "
                             f"got {np.unique(ids[(ids < MISSING_INT) | (ids >= classes)])[:5]}")
        targets = np.full((len(ids), classes), np.nan)
        labelled = ids != MISSING_INT
        targets[labelled] = np.eye(classes)[ids[labelled]]
        self.last_probe = RidgeProbe.fit(train_x, targets, self.ridge)
        metrics, _ = expression_metrics(val_labels, self.last_probe.predict(val_x), classes, owner="LinearProbe")
        return metrics
