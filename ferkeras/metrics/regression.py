"""Streaming valence-arousal metrics: RMSE, SAGR, PCC and CCC.

The metrics of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022,
Sec. 4.2, and of Shu, Gu, Yang & Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression
Recognition", BMVC 2022, Sec. 4.3.

Inputs are ``(B, 2)`` tensors, **column 0 valence, column 1 arousal** (the ``"va"`` output of ferkeras models).
A NaN in ``y_true`` means "no label" (:mod:`ferkeras.data.schema`) and removes that entry, column by column.
``sample_weight`` (``(B,)``, ``(B, 1)`` or ``(B, 2)``, non-negative) acts as a frequency weight: weight 2 counts a
sample twice, weight 0 drops it.  ``index`` selects the reported value: 0 valence, 1 arousal, ``None`` the mean of
the two.  The definitions, the constant-column rules and the NaN result of an empty set are those of
:mod:`ferkeras.metrics.numpy_ref`; every metric returns the **whole-set** value however the data is batched.

State and precision
    RMSE and SAGR keep additive float64 sums (count, sum of squared errors, agreements), free of cancellation and
    independent of the batching up to float64 rounding; Keras' usual ``SUM`` aggregation adds them across replicas
    under ``tf.distribute``.

    PCC and CCC keep, per column, float64 count ``n``, means ``m_t, m_p`` and centred co-moments
    ``M_tt, M_pp, M_tp`` (sums of products of deviations from the mean).  A batch's moments are computed two-pass
    around the batch mean and merged with Chan et al.'s parallel update
    (``delta = m_b - m_a``, ``M = M_a + M_b + delta_t delta_p n_a n_b / n``), so no raw sums of squares are ever
    differenced: values like ``1e3 + small noise`` keep full precision.  Under ``tf.distribute`` each replica's
    batch moments are first combined across replicas with two ``all_reduce`` calls (sums of counts and weighted
    means, then of centred co-moments), so every replica holds the same whole-set state; the variables use
    ``ONLY_FIRST_REPLICA`` aggregation to read it.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from ferkeras.metrics.numpy_ref import CONSTANT_RTOL

_COLUMN_SUFFIX = {0: "_v", 1: "_a", None: ""}
NUM_AFFECT_COLUMNS = 2


def _check_index(index, cls_name):
    if index not in (0, 1, None):
        raise ValueError(f"{cls_name}: index must be 0 (valence), 1 (arousal) or None (mean), got {index!r}")
    return None if index is None else int(index)


def prepare_affect_batch(y_true, y_pred, sample_weight=None, name="metric"):
    """Returns float64 ``(t, p, w)``, each ``(B, 2)``; ``w`` is 0 where the label is NaN or the weight is 0.

    Masked entries of ``t`` and ``p`` are set to 0 so that a NaN prediction next to a missing label cannot leak
    into sums through ``0 * NaN``.
    """
    t = tf.cast(tf.convert_to_tensor(y_true), tf.float64)
    p = tf.cast(tf.convert_to_tensor(y_pred), tf.float64)
    for what, x in (("y_true", t), ("y_pred", p)):
        if x.shape.rank is not None and (x.shape.rank != 2 or x.shape[-1] not in (None, NUM_AFFECT_COLUMNS)):
            raise ValueError(f"{name}: {what} must be (B, 2) [valence, arousal], got shape {x.shape}")
    t = tf.reshape(t, (-1, NUM_AFFECT_COLUMNS))
    p = tf.reshape(p, (-1, NUM_AFFECT_COLUMNS))
    labelled = tf.math.is_finite(t)
    w = tf.cast(labelled, tf.float64)
    if sample_weight is not None:
        sw = tf.cast(tf.convert_to_tensor(sample_weight), tf.float64)
        if sw.shape.rank == 1:
            sw = sw[:, None]
        w = w * sw
    keep = w > 0
    return tf.where(keep, t, 0.0), tf.where(keep, p, 0.0), w


def _select(values, index):
    """Per-column ``(2,)`` values -> the reported scalar."""
    return tf.reduce_mean(values) if index is None else values[index]


class _AffectMetric(keras.metrics.Metric):
    """Common ``index``/name/config handling of the VA metrics."""

    base_name = ""

    def __init__(self, index: Optional[int] = None, name: Optional[str] = None, dtype=None):
        self.index = _check_index(index, type(self).__name__)
        super().__init__(name=name or self.base_name + _COLUMN_SUFFIX[self.index], dtype=dtype)

    def _column_variable(self, name, aggregation="sum"):
        return self.add_variable(shape=(NUM_AFFECT_COLUMNS,), initializer="zeros", dtype="float64",
                                 aggregation=aggregation, name=name)

    def get_config(self):
        config = super().get_config()
        config["index"] = self.index
        return config


@keras.saving.register_keras_serializable(package="ferkeras")
class RMSE(_AffectMetric):
    """Root mean squared error over the whole set; default names ``rmse_v``, ``rmse_a``, ``rmse`` (mean)."""

    base_name = "rmse"

    def __init__(self, index: Optional[int] = None, name: Optional[str] = None, dtype=None):
        super().__init__(index=index, name=name, dtype=dtype)
        self.count = self._column_variable("count")
        self.sse = self._column_variable("sum_squared_error")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p, w = prepare_affect_batch(y_true, y_pred, sample_weight, self.name)
        self.count.assign_add(tf.reduce_sum(w, axis=0))
        self.sse.assign_add(tf.reduce_sum(w * tf.square(p - t), axis=0))

    def result(self):
        count = tf.convert_to_tensor(self.count)
        per_column = tf.where(count > 0, tf.sqrt(self.sse / tf.maximum(count, 1e-300)), float("nan"))
        return tf.cast(_select(per_column, self.index), self.dtype)


@keras.saving.register_keras_serializable(package="ferkeras")
class SAGR(_AffectMetric):
    """Sign agreement ``mean(sign(y_pred) == sign(y_true))``, ``sign(0) = 0``; names ``sagr_v``/``sagr_a``/``sagr``."""

    base_name = "sagr"

    def __init__(self, index: Optional[int] = None, name: Optional[str] = None, dtype=None):
        super().__init__(index=index, name=name, dtype=dtype)
        self.count = self._column_variable("count")
        self.agree = self._column_variable("agreements")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p, w = prepare_affect_batch(y_true, y_pred, sample_weight, self.name)
        same = tf.cast(tf.equal(tf.sign(t), tf.sign(p)), tf.float64)
        self.count.assign_add(tf.reduce_sum(w, axis=0))
        self.agree.assign_add(tf.reduce_sum(w * same, axis=0))

    def result(self):
        count = tf.convert_to_tensor(self.count)
        per_column = tf.where(count > 0, self.agree / tf.maximum(count, 1e-300), float("nan"))
        return tf.cast(_select(per_column, self.index), self.dtype)


def _safe_div(a, b):
    return tf.where(b > 0, a / tf.where(b > 0, b, 1.0), 0.0)


def batch_moments(t, p, w):
    """Weighted per-column ``(n, m_t, m_p, M_tt, M_pp, M_tp)`` of one batch (two-pass around the batch mean)."""
    n = tf.reduce_sum(w, axis=0)
    m_t = _safe_div(tf.reduce_sum(w * t, axis=0), n)
    m_p = _safe_div(tf.reduce_sum(w * p, axis=0), n)
    d_t, d_p = t - m_t, p - m_p
    return (n, m_t, m_p, tf.reduce_sum(w * d_t * d_t, axis=0), tf.reduce_sum(w * d_p * d_p, axis=0),
            tf.reduce_sum(w * d_t * d_p, axis=0))


def combine_across_replicas(moments):
    """All-reduces one batch's moments over the replicas in sync (identity outside ``tf.distribute``).

    Exact parallel combination: the pooled mean from the summed ``n * m``, then each replica's centred co-moments
    plus its ``n_r (m_r - m)(m_r - m)`` shift term, summed.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return moments
    n_r, mt_r, mp_r, mtt_r, mpp_r, mtp_r = moments
    n, st, sp = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [n_r, n_r * mt_r, n_r * mp_r])
    m_t, m_p = _safe_div(st, n), _safe_div(sp, n)
    dt, dp = mt_r - m_t, mp_r - m_p
    mtt, mpp, mtp = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                   [mtt_r + n_r * dt * dt, mpp_r + n_r * dp * dp, mtp_r + n_r * dt * dp])
    return n, m_t, m_p, mtt, mpp, mtp


def merge_moments(a, b):
    """Chan et al.'s parallel update of ``(n, m_t, m_p, M_tt, M_pp, M_tp)`` for sets ``a`` and ``b``."""
    n_a, mt_a, mp_a, mtt_a, mpp_a, mtp_a = a
    n_b, mt_b, mp_b, mtt_b, mpp_b, mtp_b = b
    n = n_a + n_b
    frac_b = _safe_div(n_b, n)
    d_t, d_p = mt_b - mt_a, mp_b - mp_a
    cross = n_a * frac_b  # n_a n_b / n
    return (n, mt_a + d_t * frac_b, mp_a + d_p * frac_b, mtt_a + mtt_b + d_t * d_t * cross,
            mpp_a + mpp_b + d_p * d_p * cross, mtp_a + mtp_b + d_t * d_p * cross)


class _CorrelationMetric(_AffectMetric):
    """Streaming per-column moments with a stable merge; subclasses map moments to a coefficient."""

    def __init__(self, index: Optional[int] = None, name: Optional[str] = None, dtype=None):
        super().__init__(index=index, name=name, dtype=dtype)
        self.moment_variables = [
            self._column_variable(v, aggregation="only_first_replica")
            for v in ("count", "mean_true", "mean_pred", "m2_true", "m2_pred", "comoment")
        ]

    def update_state(self, y_true, y_pred, sample_weight=None):
        batch = combine_across_replicas(batch_moments(*prepare_affect_batch(y_true, y_pred, sample_weight,
                                                                            self.name)))
        state = [tf.convert_to_tensor(v) for v in self.moment_variables]
        for var, value in zip(self.moment_variables, merge_moments(state, batch)):
            var.assign(value)

    def result(self):
        n, m_t, m_p, mtt, mpp, mtp = [tf.convert_to_tensor(v) for v in self.moment_variables]
        inv_n = _safe_div(tf.ones_like(n), n)
        per_column = self._coefficient(m_t, m_p, mtt * inv_n, mpp * inv_n, mtp * inv_n)
        per_column = tf.where(n > 0, per_column, float("nan"))
        return tf.cast(_select(per_column, self.index), self.dtype)

    @staticmethod
    def _coefficient(mean_t, mean_p, var_t, var_p, cov):
        raise NotImplementedError


def _is_constant(var, mean):
    return var <= tf.square(CONSTANT_RTOL * (1.0 + tf.abs(mean)))


@keras.saving.register_keras_serializable(package="ferkeras")
class PCC(_CorrelationMetric):
    """Whole-set Pearson correlation (0 for a constant column); names ``pcc_v``, ``pcc_a``, ``pcc`` (mean).

    Unlike ``keras.metrics.PearsonCorrelation`` (which averages per-batch values) this is the correlation of the
    whole set, for any batching and under ``tf.distribute``.
    """

    base_name = "pcc"

    @staticmethod
    def _coefficient(mean_t, mean_p, var_t, var_p, cov):
        degenerate = _is_constant(var_t, mean_t) | _is_constant(var_p, mean_p)
        r = cov / tf.sqrt(tf.where(degenerate, tf.ones_like(cov), var_t * var_p))
        return tf.where(degenerate, tf.zeros_like(r), tf.clip_by_value(r, -1.0, 1.0))


@keras.saving.register_keras_serializable(package="ferkeras")
class CCC(_CorrelationMetric):
    """Whole-set concordance correlation ``2 cov / (var_t + var_p + (m_t - m_p)^2)``; names ``ccc_v``/``ccc_a``/``ccc``.

    Population (ddof 0) moments; 1 when the denominator vanishes (prediction equals a constant label).  Unlike
    ``keras.metrics.ConcordanceCorrelation`` this is the CCC of the whole set, not a mean of per-batch values.
    """

    base_name = "ccc"

    @staticmethod
    def _coefficient(mean_t, mean_p, var_t, var_p, cov):
        denom = var_t + var_p + tf.square(mean_t - mean_p)
        degenerate = denom <= tf.square(CONSTANT_RTOL * (1.0 + tf.abs(mean_t) + tf.abs(mean_p)))
        c = 2.0 * cov / tf.where(degenerate, tf.ones_like(denom), denom)
        return tf.where(degenerate, tf.ones_like(c), tf.clip_by_value(c, -1.0, 1.0))
