"""Plain NumPy versions of the ferkeras metrics, for whole arrays.

These are the definitions the streaming Keras metrics in :mod:`ferkeras.metrics` must reproduce over any batching,
and what evaluation code uses once it holds all predictions of a set.  Everything is computed in float64.

Regression (valence-arousal)
    ``y_true`` and ``y_pred`` are ``(N,)`` (one target) or ``(N, K)``; for the VA heads of ferkeras ``K = 2`` with
    column 0 valence and column 1 arousal.  A NaN in ``y_true`` means "no label" (see
    :mod:`ferkeras.data.schema`) and removes that entry, column by column.  For 2-D input, ``index`` picks a
    column and ``index=None`` returns the mean of the per-column values.  The moments are population moments
    (ddof 0), as in Lin's CCC (Lin 1989; the CCC of SSL-FER [2], Sec. 4.3, and of AVCE [1], Sec. 4.2).

    * ``rmse = sqrt(mean((yhat - y)^2))``
    * ``sagr = mean(sign(yhat) == sign(y))`` with ``sign(0) = 0`` (sign agreement, AVCE [1], Sec. 4.2)
    * ``pcc = cov(y, yhat) / sqrt(var(y) var(yhat))``; **0** when either column is constant (see below)
    * ``ccc = 2 cov(y, yhat) / (var(y) + var(yhat) + (mean(y) - mean(yhat))^2)``; **1** in the degenerate case
      where the denominator vanishes (both columns constant and equal: prediction equals label everywhere)

    A column counts as constant when its standard deviation is at most ``CONSTANT_RTOL * (1 + |mean|)``, far
    below float32 resolution of the inputs, so round-off of a constant column's moments never yields a spurious
    correlation.  An empty set (no labelled entry) gives NaN for every regression metric.

Classification (expression)
    ``y_true`` holds integer class ids ``(N,)`` where ``MISSING_INT`` (-1) means "no label"; ``y_pred`` is either
    integer class ids ``(N,)`` or scores ``(N, C)`` (probabilities or logits, reduced by argmax).  The confusion
    matrix has true classes in rows and predicted classes in columns.

    * ``accuracy``: overall accuracy, the fraction of labelled samples predicted right
    * ``average_accuracy``: mean per-class recall over the classes present in ``y_true`` (RMFER [4], Sec. 5.1:
      "the average of the diagonal values of the confusion matrix")
    * ``macro_f1``: mean of ``F1_c = 2 TP / (2 TP + FP + FN)`` over the classes present in ``y_true`` or
      ``y_pred`` (Eqs. 4-5 of [3]; a class neither labelled nor predicted has no defined F1 and is left out,
      as scikit-learn's ``f1_score(average="macro")`` does; with every class present this is exactly Eq. 4)

    Accuracy, average accuracy and macro-F1 of an empty set are NaN.

References (full list with the project's choices: docs/papers.md)
    [1] Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022.
    [2] Shu, Gu, Yang & Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition",
        BMVC 2022.
    [3] Xue, Sun & Yang, "Exploring Expression-related Self-supervised Learning and Spatial Reserve Pooling for
        Affective Behaviour Analysis", CVPRW 2023.
    [4] Cho et al., "RMFER: Semi-supervised Contrastive Learning for Facial Expression Recognition with Reaction
        Mashup Video", 2024.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ferkeras.data.schema import MISSING_INT

CONSTANT_RTOL = 1e-8
"""A column whose std is <= CONSTANT_RTOL * (1 + |mean|) is treated as constant (PCC 0, CCC degenerate case 1)."""


# ----------------------------------------------------------------------------------------------------------------
# Regression
# ----------------------------------------------------------------------------------------------------------------


def _as_columns(y_true, y_pred):
    """Returns float64 ``(N, K)`` arrays and whether the input was 1-D; checks the shapes agree."""
    t = np.asarray(y_true, np.float64)
    p = np.asarray(y_pred, np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} and y_pred shape {p.shape} differ")
    if t.ndim not in (1, 2):
        raise ValueError(f"expected (N,) or (N, K) arrays, got shape {t.shape}")
    return (t[:, None], p[:, None], True) if t.ndim == 1 else (t, p, False)


def _per_column(fn, y_true, y_pred, index):
    t, p, one_d = _as_columns(y_true, y_pred)
    if one_d:
        if index not in (None, 0):
            raise ValueError(f"index={index} given for 1-D input")
        index = 0
    if index is not None:
        if not 0 <= index < t.shape[1]:
            raise ValueError(f"index={index} out of range for {t.shape[1]} columns")
        cols = [index]
    else:
        cols = range(t.shape[1])
    values = []
    for k in cols:
        valid = np.isfinite(t[:, k])
        values.append(fn(t[valid, k], p[valid, k]))
    return float(np.mean(values))


def moments_to_pcc(mean_t, mean_p, var_t, var_p, cov):
    """PCC from population moments, 0 for a constant column (see the module docstring)."""
    const_t = var_t <= (CONSTANT_RTOL * (1.0 + np.abs(mean_t))) ** 2
    const_p = var_p <= (CONSTANT_RTOL * (1.0 + np.abs(mean_p))) ** 2
    if const_t or const_p:
        return 0.0
    return float(np.clip(cov / np.sqrt(var_t * var_p), -1.0, 1.0))


def moments_to_ccc(mean_t, mean_p, var_t, var_p, cov):
    """Lin's CCC from population moments, 1 when the denominator vanishes (see the module docstring)."""
    denom = var_t + var_p + (mean_t - mean_p) ** 2
    if denom <= (CONSTANT_RTOL * (1.0 + np.abs(mean_t) + np.abs(mean_p))) ** 2:
        return 1.0
    return float(np.clip(2.0 * cov / denom, -1.0, 1.0))


def _moments(t, p):
    mt, mp = t.mean(), p.mean()
    dt, dp = t - mt, p - mp
    return mt, mp, np.mean(dt * dt), np.mean(dp * dp), np.mean(dt * dp)


def _rmse(t, p):
    return np.sqrt(np.mean((p - t) ** 2)) if t.size else np.nan


def _sagr(t, p):
    return np.mean(np.sign(t) == np.sign(p)) if t.size else np.nan


def _pcc(t, p):
    return moments_to_pcc(*_moments(t, p)) if t.size else np.nan


def _ccc(t, p):
    return moments_to_ccc(*_moments(t, p)) if t.size else np.nan


def rmse(y_true, y_pred, index: Optional[int] = None) -> float:
    """Root mean squared error over the labelled entries (module docstring for shapes and masking)."""
    return _per_column(_rmse, y_true, y_pred, index)


def sagr(y_true, y_pred, index: Optional[int] = None) -> float:
    """Sign agreement: fraction of labelled entries with ``sign(y_pred) == sign(y_true)``."""
    return _per_column(_sagr, y_true, y_pred, index)


def pcc(y_true, y_pred, index: Optional[int] = None) -> float:
    """Pearson correlation coefficient (population moments; 0 for a constant column)."""
    return _per_column(_pcc, y_true, y_pred, index)


def ccc(y_true, y_pred, index: Optional[int] = None) -> float:
    """Lin's concordance correlation coefficient (population moments)."""
    return _per_column(_ccc, y_true, y_pred, index)


# ----------------------------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------------------------


def _labels(y_true, y_pred, num_classes: Optional[int]):
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1:
        raise ValueError(f"y_true must be (N,) integer class ids, got shape {t.shape}")
    if p.ndim == 2:
        if num_classes is not None and p.shape[1] != num_classes:
            raise ValueError(f"y_pred has {p.shape[1]} scores per sample, num_classes is {num_classes}")
        num_classes = p.shape[1]
        p = np.argmax(p, axis=1)
    elif p.ndim != 1:
        raise ValueError(f"y_pred must be (N,) class ids or (N, C) scores, got shape {p.shape}")
    if p.shape[0] != t.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} samples, y_pred {p.shape[0]}")
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    keep = t != MISSING_INT
    t, p = t[keep], p[keep]
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    bad = (t < 0) | (t >= num_classes) | (p < 0) | (p >= num_classes)
    if bad.any():
        raise ValueError(f"class ids must be in [0, {num_classes}) (or {MISSING_INT} in y_true for no label); "
                         f"got y_true {t[bad][:5]}, y_pred {p[bad][:5]}")
    return t, p, num_classes


def confusion_matrix(y_true, y_pred, num_classes: Optional[int] = None) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = true class, columns = predicted class; -1 labels are skipped.

    ``num_classes`` defaults to the number of scores in ``y_pred`` or else to the largest class id + 1.
    """
    t, p, c = _labels(y_true, y_pred, num_classes)
    m = np.zeros((c, c), np.int64)
    np.add.at(m, (t, p), 1)
    return m


def accuracy_from_confusion(m) -> float:
    m = np.asarray(m, np.float64)
    total = m.sum()
    return float(np.trace(m) / total) if total > 0 else float("nan")


def average_accuracy_from_confusion(m) -> float:
    m = np.asarray(m, np.float64)
    support = m.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(m)[present] / support[present])) if present.any() else float("nan")


def macro_f1_from_confusion(m) -> float:
    m = np.asarray(m, np.float64)
    denom = m.sum(axis=1) + m.sum(axis=0)  # 2 TP + FP + FN
    present = denom > 0
    return float(np.mean(2.0 * np.diag(m)[present] / denom[present])) if present.any() else float("nan")


def accuracy(y_true, y_pred, num_classes: Optional[int] = None) -> float:
    """Overall accuracy over labelled samples."""
    return accuracy_from_confusion(confusion_matrix(y_true, y_pred, num_classes))


def average_accuracy(y_true, y_pred, num_classes: Optional[int] = None) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    return average_accuracy_from_confusion(confusion_matrix(y_true, y_pred, num_classes))


def macro_f1(y_true, y_pred, num_classes: Optional[int] = None) -> float:
    """Mean per-class F1 over the classes present in ``y_true`` or ``y_pred``."""
    return macro_f1_from_confusion(confusion_matrix(y_true, y_pred, num_classes))
