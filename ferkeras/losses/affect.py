"""Valence-arousal regression loss L_AV and its parts (RMSE, PCC and CCC losses on the batch).

Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022 (Sec. 4.2,
"Evaluation metrics", an unnumbered equation) define

    L_AV = L_RMSE + (L_PCC + L_CCC) / 2,     L_C(/P)CC = 1 - (C(/P)CC_a + C(/P)CC_v) / 2,

with the correlations computed on the mini-batch.  SSL-FER (Shu, Gu, Yang, Lo, "Revisiting Self-Supervised
Contrastive Learning for Facial Expression Recognition", BMVC 2022, Sec. 4.3) fine-tunes its valence-arousal head with
the CCC loss alone; :func:`ccc_loss` serves both.

Conventions shared by every function here:

* ``y_true``, ``y_pred``: ``(B, K)`` (for ferkeras' VA heads ``K = 2``: column 0 valence, column 1 arousal) or
  ``(B,)`` for one column.  Each column is a separate target; the losses average the per-column terms.
* A NaN in ``y_true`` means "no label" (:mod:`ferkeras.data.schema`) and is masked per column: the column's
  statistics use only its labelled rows.  A column with no labelled row in the batch is left out of the average;
  a batch with no label at all gives loss 0 with zero gradient.  A column with a single labelled row has zero
  variance: its PCC and CCC are 0 (their loss terms 1, with zero gradient).
* ``sample_weight`` (``(B,)``, non-negative) is a frequency weight in the batch moments.
* Moments are population (ddof 0) moments, as in the CCC definition Shu et al. use (Lin 1989).
* ``epsilon`` (default :data:`EPSILON` = 1e-8) is a floor, never added to anything: a PCC denominator
  ``std_t * std_p`` or a CCC denominator ``var_t + var_p + (m_t - m_p)^2`` at or below it counts as zero variance
  and gives PCC / CCC 0 with zero gradient.  Above the floor the statistics are the textbook ones exactly, so an
  untrained regressor whose predictions barely vary (standard deviation 1e-6) still gets its true PCC and CCC.
  RMSE is ``sqrt(MSE)`` with gradient 0 at MSE = 0 (its gradient elsewhere is bounded by ``1 / sqrt(n)``).

L_RMSE is the mean of the per-column RMSEs, mirroring the per-column average of L_PCC and L_CCC; the paper does not
spell it out.  The authors' published code does not train on RMSE at all: its regression term is
``MSE_v + MSE_a`` (two mean squared errors, summed).  ``AffectLoss(rmse_weight=0, mse_weight=2)`` (L_MSE is the
mean of the per-column MSEs) gives that term; :data:`AUTHORS_MSE` names the setting.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from ferkeras.losses.reduction import scale_for_replicas

EPSILON = 1e-8
"""The floor under which a PCC / CCC denominator counts as zero variance (module docstring)."""

AUTHORS_MSE = dict(rmse_weight=0.0, mse_weight=2.0)
"""``AffectLoss(**AUTHORS_MSE)``: the authors' code's regression term MSE_v + MSE_a in place of the paper's L_RMSE
(PCC and CCC terms as in the paper)."""

def _prepare(y_true, y_pred, sample_weight):
    """Columns ``(B, K)`` in a float dtype (>= float32), NaN labels and zero weights masked; weights ``(B, K)``."""
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = "float64" if y_pred.dtype == "float64" else "float32"
    y_pred = ops.cast(y_pred, dtype)
    y_true = ops.cast(ops.convert_to_tensor(y_true), dtype)
    if tuple(y_true.shape) != tuple(y_pred.shape) and None not in tuple(y_true.shape) + tuple(y_pred.shape):
        raise ValueError(f"affect loss: y_true shape {tuple(y_true.shape)} and y_pred shape "
                         f"{tuple(y_pred.shape)} differ")
    if len(y_pred.shape) == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    elif len(y_pred.shape) != 2:
        raise ValueError(f"affect loss: expected (B,) or (B, K) [valence, arousal] tensors, got shape "
                         f"{tuple(y_pred.shape)}")
    w = ops.cast(ops.isfinite(y_true), dtype)
    if sample_weight is not None:
        sw = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
        w = w * ops.reshape(sw, (-1, 1))
    keep = w > 0
    return ops.where(keep, y_true, 0.0), ops.where(keep, y_pred, 0.0), w


def _guarded_ratio(numerator, denominator, floor):
    """``numerator / denominator`` where ``denominator > floor``, else 0 with zero gradient (no NaN through the
    unselected branch)."""
    ok = denominator > floor
    return ops.where(ok, numerator / ops.where(ok, denominator, 1.0), 0.0)


def _column_terms(y_true, y_pred, sample_weight, epsilon):
    """Per-column ``mse``, ``rmse``, ``pcc``, ``ccc`` (each ``(K,)``) and the column weights (1 if labelled)."""
    t, p, w = _prepare(y_true, y_pred, sample_weight)
    n = ops.sum(w, axis=0)
    has_labels = n > 0
    safe_n = ops.where(has_labels, n, 1.0)
    m_t = ops.sum(w * t, axis=0) / safe_n
    m_p = ops.sum(w * p, axis=0) / safe_n
    # Corrected two-pass moments: re-centre by the mean residual, so that the rounding error of m (float32, mean
    # 0.1 with spread 1e-6) does not inflate a tiny variance.
    r_t = ops.sum(w * (t - m_t), axis=0) / safe_n
    r_p = ops.sum(w * (p - m_p), axis=0) / safe_n
    d_t, d_p = (t - m_t) - r_t, (p - m_p) - r_p
    mean_gap = (m_t - m_p) + (r_t - r_p)
    var_t = ops.sum(w * d_t * d_t, axis=0) / safe_n
    var_p = ops.sum(w * d_p * d_p, axis=0) / safe_n
    cov = ops.sum(w * d_t * d_p, axis=0) / safe_n
    mse = ops.sum(w * ops.square(p - t), axis=0) / safe_n
    positive = mse > 0
    # std_t * std_p > epsilon  <=>  var_t * var_p > epsilon^2 (no square root of zero on the gradient path)
    var_product = var_t * var_p
    pcc_ok = var_product > epsilon * epsilon
    pcc = ops.where(pcc_ok, cov / ops.sqrt(ops.where(pcc_ok, var_product, 1.0)), 0.0)
    terms = {
        "mse": mse,
        "rmse": ops.where(positive, ops.sqrt(ops.where(positive, mse, 1.0)), 0.0),
        "pcc": pcc,
        "ccc": _guarded_ratio(2.0 * cov, var_t + var_p + ops.square(mean_gap), epsilon),
    }
    return terms, ops.cast(has_labels, t.dtype)


def _column_mean(values, column_weight):
    return ops.sum(values * column_weight) / ops.maximum(ops.sum(column_weight), 1.0)


def rmse_loss(y_true, y_pred, sample_weight=None, epsilon=EPSILON):
    """L_RMSE of Kim & Song Sec. 4.2: mean over columns of the batch RMSE ``sqrt(mean((yhat - y)^2) + eps)``."""
    terms, col_w = _column_terms(y_true, y_pred, sample_weight, epsilon)
    return _column_mean(terms["rmse"], col_w)


def pcc_loss(y_true, y_pred, sample_weight=None, epsilon=EPSILON):
    """L_PCC = 1 - (PCC_a + PCC_v) / 2 of Kim & Song (ECCV 2022) Sec. 4.2, PCC computed on the batch per column."""
    terms, col_w = _column_terms(y_true, y_pred, sample_weight, epsilon)
    return _column_mean(1.0 - terms["pcc"], col_w)


def ccc_loss(y_true, y_pred, sample_weight=None, epsilon=EPSILON):
    """L_CCC = 1 - (CCC_a + CCC_v) / 2 of Kim & Song Sec. 4.2 (the CCC loss of Shu et al. Sec. 4.3), on the batch."""
    terms, col_w = _column_terms(y_true, y_pred, sample_weight, epsilon)
    return _column_mean(1.0 - terms["ccc"], col_w)


def mse_loss(y_true, y_pred, sample_weight=None, epsilon=EPSILON):
    """L_MSE: mean over columns of the batch MSE ``mean((yhat - y)^2)`` (the authors' code sums the two columns'
    MSEs, i.e. ``2 L_MSE``; module docstring)."""
    terms, col_w = _column_terms(y_true, y_pred, sample_weight, epsilon)
    return _column_mean(terms["mse"], col_w)


def affect_loss(y_true, y_pred, sample_weight=None, rmse_weight=1.0, pcc_weight=0.5, ccc_weight=0.5,
                epsilon=EPSILON, *, mse_weight=0.0):
    """L_AV = rmse_weight L_RMSE + pcc_weight L_PCC + ccc_weight L_CCC (+ mse_weight L_MSE); defaults 1, 1/2, 1/2
    (and 0): Kim & Song Sec. 4.2.  ``rmse_weight=0, mse_weight=2`` is the authors' code (:data:`AUTHORS_MSE`)."""
    terms, col_w = _column_terms(y_true, y_pred, sample_weight, epsilon)
    return (rmse_weight * _column_mean(terms["rmse"], col_w)
            + mse_weight * _column_mean(terms["mse"], col_w)
            + pcc_weight * _column_mean(1.0 - terms["pcc"], col_w)
            + ccc_weight * _column_mean(1.0 - terms["ccc"], col_w))


@keras.saving.register_keras_serializable(package="ferkeras")
class AffectLoss(keras.losses.Loss):
    """Keras loss for L_AV (:func:`affect_loss`, Kim & Song Sec. 4.2) on ``(B, 2)`` [valence, arousal] outputs.

    ``AffectLoss()`` is the paper's L_AV; ``AffectLoss(rmse_weight=0, pcc_weight=0, ccc_weight=1)`` is the CCC loss
    of SSL-FER; ``AffectLoss(**AUTHORS_MSE)`` trains on MSE_v + MSE_a instead of L_RMSE, as AVCE's published code
    does.  The loss is a batch statistic: ``sample_weight`` enters the batch moments as a frequency weight,
    and there is no per-sample reduction (``reduction`` is not a parameter).  Under ``tf.distribute`` each replica
    computes L_AV on its part of the batch, and ``__call__`` divides it by the replicas in sync
    (:func:`ferkeras.losses.reduction.scale_for_replicas`); ``call`` returns it unscaled.
    """

    def __init__(self, rmse_weight=1.0, pcc_weight=0.5, ccc_weight=0.5, epsilon=EPSILON, name="affect_loss",
                 dtype=None, mse_weight=0.0):
        super().__init__(name=name, dtype=dtype)
        for what, value in (("rmse_weight", rmse_weight), ("pcc_weight", pcc_weight), ("ccc_weight", ccc_weight),
                            ("mse_weight", mse_weight)):
            if value < 0:
                raise ValueError(f"AffectLoss {what} must be >= 0, got {value}")
        if epsilon <= 0:
            raise ValueError(f"AffectLoss epsilon must be > 0, got {epsilon}")
        self.rmse_weight = float(rmse_weight)
        self.pcc_weight = float(pcc_weight)
        self.ccc_weight = float(ccc_weight)
        self.mse_weight = float(mse_weight)
        self.epsilon = float(epsilon)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self.name):
            loss = affect_loss(ops.cast(y_true, self.dtype), ops.cast(y_pred, self.dtype), sample_weight,
                               self.rmse_weight, self.pcc_weight, self.ccc_weight, self.epsilon,
                               mse_weight=self.mse_weight)
            return scale_for_replicas(loss)

    def call(self, y_true, y_pred):
        return affect_loss(y_true, y_pred, None, self.rmse_weight, self.pcc_weight, self.ccc_weight, self.epsilon,
                           mse_weight=self.mse_weight)

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype, "rmse_weight": self.rmse_weight,
                  "pcc_weight": self.pcc_weight, "ccc_weight": self.ccc_weight, "mse_weight": self.mse_weight,
                  "epsilon": self.epsilon}
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("reduction", None)
        return cls(**config)
