"""Result figures: valence-arousal scatter plots and training curves, written as PNG files.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot,
no global state), so these functions work under any matplotlib backend and in
threads.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.ticker import MaxNLocator

logger = logging.getLogger("ferkeras.viz")

AXIS_NAMES = ("valence", "arousal")


def _finite_rows(y_true: np.ndarray, y_pred: np.ndarray):
    y_true = np.asarray(y_true, np.float64).reshape(-1, 2)
    y_pred = np.asarray(y_pred, np.float64).reshape(-1, 2)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    keep = np.all(np.isfinite(y_true), axis=1) & np.all(np.isfinite(y_pred), axis=1)
    return y_true[keep], y_pred[keep]


def plot_va_scatter(y_true, y_pred, path: str, scores: Optional[Mapping[str, float]] = None,
                    title: str = "", max_points: int = 4000, seed: int = 0) -> str:
    """Predicted vs true valence and arousal, plus the 2-D valence-arousal plane; saves a PNG at ``path``.

    ``y_true``/``y_pred``: (N, 2) arrays, column 0 valence, column 1 arousal;
    rows with a non-finite value are left out.  ``scores`` (optional) maps
    names such as ``"valence_ccc"`` to values printed in each panel's corner.
    At most ``max_points`` randomly chosen points are drawn (all of them enter
    the caller's metrics; the cap only keeps the file readable).
    """
    y_true, y_pred = _finite_rows(y_true, y_pred)
    n = len(y_true)
    if n > max_points:
        idx = np.random.default_rng(seed).choice(n, max_points, replace=False)
        y_true, y_pred = y_true[idx], y_pred[idx]
    scores = dict(scores or {})
    fig = Figure(figsize=(15, 5), dpi=100)
    axes = fig.subplots(1, 3)
    for k, name in enumerate(AXIS_NAMES):
        ax = axes[k]
        ax.scatter(y_true[:, k], y_pred[:, k], s=6, alpha=0.4, color=f"C{k}", edgecolors="none")
        ax.plot([-1, 1], [-1, 1], color="0.3", lw=1, ls="--", label="perfect prediction")
        ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal",
               xlabel=f"true {name}", ylabel=f"predicted {name}", title=f"{name} (N={n})")
        ax.grid(alpha=0.3)
        text = "\n".join(f"{metric.upper()} {scores[f'{name}_{metric}']:.3f}"
                         for metric in ("ccc", "pcc", "rmse", "sagr") if f"{name}_{metric}" in scores)
        if text:
            ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", ha="left", family="monospace",
                    bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[2]
    ax.scatter(y_true[:, 0], y_true[:, 1], s=6, alpha=0.35, color="0.4", edgecolors="none", label="true")
    ax.scatter(y_pred[:, 0], y_pred[:, 1], s=6, alpha=0.35, color="C3", edgecolors="none", label="predicted")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.6", lw=0.8, ls=":"))
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", xlabel="valence", ylabel="arousal",
           title="valence-arousal plane")
    ax.legend(loc="lower right", fontsize=8, markerscale=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str, title: str = "") -> str:
    """One panel per quantity in a Keras history (``loss``, ``va_loss``, ...), training and ``val_`` curves together.

    ``history`` maps names to per-epoch values (``History.history`` or the
    columns of a CSVLogger file); an ``epoch`` entry, if present, is the x axis.
    Non-numeric and learning-rate columns are skipped.  Saves a PNG at ``path``.
    """
    hist = {k: np.asarray(v, np.float64) for k, v in history.items() if len(v)}
    epochs = hist.pop("epoch", None)
    names = sorted({k[4:] if k.startswith("val_") else k for k in hist} - {"learning_rate", "lr"})
    if not names:
        raise ValueError("plot_training_curves: the history has no metric columns")
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig = Figure(figsize=(5 * cols, 3.6 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, names):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if key in hist:
                values = hist[key]
                x = (epochs[: len(values)] + 1) if epochs is not None else np.arange(1, len(values) + 1)
                ax.plot(x, values, style, marker="o", ms=3, label="validation" if key.startswith("val_") else "train")
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    logger.info("wrote %s", path)
    return path
