"""ExpressionEvaluation: macro-F1, average and overall accuracy over a whole validation set after each epoch, and
the confusion matrix as an image."""

from __future__ import annotations

import io
import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from ferkeras.callbacks.common import EpochEvaluation, EvalData, Key, collect
from ferkeras.data.schema import MISSING_INT
from ferkeras.training.evaluation import affect_scores


def class_ids(labels, num_classes: int, owner: str = "class_ids") -> np.ndarray:
    """``(N,)`` int64 class ids from ids ``(N,)`` / ``(N, 1)`` or one-hot ``(N, C)`` labels (all-zero row -> -1)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        ids = np.argmax(labels, axis=1).astype(np.int64)
        ids[~np.any(labels != 0, axis=1)] = MISSING_INT
        return ids
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{owner}: expression labels must be (N,) class ids or (N, {num_classes}) one-hot, "
                         f"got shape {labels.shape}; choose them with label_key=")
    return labels.astype(np.int64)


def expression_metrics(labels, scores, num_classes: int, owner: str = "expression_metrics"):
    """Whole-set classification metrics with the names the callbacks log, and the confusion matrix.

    ``labels``: class ids (-1 = no label) or one-hot; ``scores``: ``(N, num_classes)`` logits or probabilities.
    Returns ``({"macro_f1", "average_accuracy", "overall_accuracy"}, (C, C) counts, rows true)`` from the NumPy
    references (:func:`ferkeras.training.affect_scores`).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise ValueError(f"{owner}: expression scores must be (N, {num_classes}) for {num_classes} classes, got "
                         f"shape {scores.shape}; choose the classification output with output=")
    result = affect_scores({"expression": class_ids(labels, num_classes, owner)}, {"expression": scores},
                           num_classes=num_classes)
    metrics = {"macro_f1": result["expression_macro_f1"],
               "average_accuracy": result["expression_average_accuracy"],
               "overall_accuracy": result["expression_accuracy"]}
    return metrics, np.asarray(result["expression_confusion"], np.int64)


def confusion_figure(matrix, class_names: Sequence[str], title: str = "") -> Figure:
    """The confusion matrix (rows true, columns predicted): cells coloured by row-normalised rate (recall on the
    diagonal), each annotated with its count and rate."""
    m = np.asarray(matrix, np.int64)
    c = len(class_names)
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = 1.6 + 0.62 * c
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    support = m.sum(axis=1)
    for i in range(c):
        for j in range(c):
            rate = f"{rates[i, j]:.2f}" if support[i] else "-"  # no sample of true class i
            ax.text(j, i, f"{m[i, j]}\n{rate}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.55 else "black")
    ax.set_xticks(range(c), class_names, rotation=45, ha="right")
    ax.set_yticks(range(c), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class ExpressionEvaluation(EpochEvaluation):
    """Expression-classification metrics over a whole validation set, and its confusion matrix, every
    ``every_n_epochs`` epochs.

    The model predicts every batch of ``dataset``; the confusion matrix of all predictions (argmax of the scores;
    labels -1 left out) gives ``{prefix}macro_f1``, ``{prefix}average_accuracy`` (mean per-class recall) and
    ``{prefix}overall_accuracy`` (see :mod:`ferkeras.metrics.numpy_ref`), written into the epoch ``logs`` (so
    callbacks after this one see them) and, with ``log_dir``, as TensorBoard scalars.  The confusion matrix is drawn
    (:func:`confusion_figure`) and written as the TensorBoard image ``{prefix}confusion_matrix`` and, with
    ``out_dir``, as ``out_dir/{prefix}confusion_matrix_epoch{NNNN}.png``.  Steps and file numbers are epoch
    numbers counted from 1.  ``last_confusion`` holds the latest matrix.

    Args:
        dataset: validation data, see :class:`ferkeras.callbacks.common.EvalData` (labels: class ids, -1 for none,
            or one-hot; or a dict holding them, e.g. ``{"va": ..., "expression": ...}``).
        class_names: the ``C`` class names, in the order of the model's scores.
        every_n_epochs: evaluate after epochs ``n, 2n, ...``.
        output: which model output holds the ``(B, C)`` scores (``None``: the single output, or ``"expression"``
            of a dict; a dict key / output name / list index otherwise).
        prefix: prepended to every log key, TensorBoard tag and PNG name.
        log_dir: TensorBoard folder (``None`` = no summaries).
        out_dir: folder for the confusion-matrix PNG files (``None`` = none).
        label_key: which labels (default ``output`` if the label dict has it, else ``"expression"``).
        steps: batches per evaluation (``None`` = the whole dataset).
        batch_size: batch size when ``dataset`` is an ``(images, labels)`` tuple of arrays.

    Example::

        names = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]
        model.fit(train, epochs=30, callbacks=[
            ExpressionEvaluation(val, names, log_dir="runs/tb", out_dir="runs/confusion"),
            BestCheckpoint("runs/best.keras", monitor="val_macro_f1")])
    """

    def __init__(self, dataset, class_names: Sequence[str], every_n_epochs: int = 1, output: Key = None,
                 prefix: str = "val_", log_dir: Optional[str] = None, out_dir: Optional[str] = None,
                 label_key: Key = None, steps: Optional[int] = None, batch_size: int = 32):
        super().__init__(every_n_epochs, prefix, log_dir)
        self.class_names = [str(name) for name in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f"ExpressionEvaluation: class_names needs at least 2 classes, got {class_names!r}")
        self.data = EvalData(dataset, batch_size, steps, owner="ExpressionEvaluation")
        self.output = output
        self.label_key = label_key
        self.out_dir = out_dir
        self.last_confusion: Optional[np.ndarray] = None
        self.last_png: Optional[str] = None

    def evaluate(self, step: int) -> Dict[str, float]:
        labels, scores = collect(self.model, self.data, self.output, self.label_key, "expression",
                                 self.model_output_names)
        metrics, matrix = expression_metrics(labels, scores.reshape(len(scores), -1), len(self.class_names),
                                             owner="ExpressionEvaluation")
        self.last_confusion = matrix
        if self.log_dir is not None or self.out_dir is not None:
            title = (f"epoch {step}: macro-F1 {metrics['macro_f1']:.3f}, avg. acc. {metrics['average_accuracy']:.3f}"
                     f", acc. {metrics['overall_accuracy']:.3f} (N={int(matrix.sum())})")
            png = figure_png(confusion_figure(matrix, self.class_names, title))
            if self.out_dir is not None:
                os.makedirs(self.out_dir, exist_ok=True)
                self.last_png = os.path.join(self.out_dir, f"{self.prefix}confusion_matrix_epoch{step:04d}.png")
                with open(self.last_png, "wb") as f:
                    f.write(png)
            writer = self.writer()
            if writer is not None:
                with writer.as_default():
                    tf.summary.image(f"{self.prefix}confusion_matrix", tf.io.decode_png(png, channels=3)[None],
                                     step=step, description="rows: true class, columns: predicted class")
        return metrics
