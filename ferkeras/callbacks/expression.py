"""ExpressionEvaluation: macro-F1, average and overall accuracy over a whole validation set after each epoch, and
the confusion matrix as an image.

Overall accuracy is called ``accuracy`` everywhere in ferkeras: the streaming metric
:class:`ferkeras.metrics.OverallAccuracy`, ``expression_accuracy`` in result.json, and the log key
``{prefix}accuracy`` of :class:`ExpressionEvaluation` and :class:`ferkeras.callbacks.LinearProbe`.  The callbacks'
former key ``{prefix}overall_accuracy`` is still written as a deprecated alias (a ``FutureWarning`` says so);
``expression_metrics(...)["overall_accuracy"]`` still works, with the same warning.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from ferkeras.callbacks.common import EpochEvaluation, EvalData, Key, collect
from ferkeras.data.schema import MISSING_INT
from ferkeras.training.evaluation import affect_scores, class_names_to_ids

ACCURACY = "accuracy"
"""The one name of overall accuracy (the fraction of labelled samples classified right)."""
DEPRECATED_ACCURACY = "overall_accuracy"
"""Its former name in the callbacks' logs and :func:`expression_metrics`; a deprecated alias."""


def _deprecation_message(prefix: str = "") -> str:
    return (f"the overall accuracy is now logged as {prefix + ACCURACY!r} (the name of "
            f"ferkeras.metrics.OverallAccuracy and of expression_accuracy in result.json); "
            f"{prefix + DEPRECATED_ACCURACY!r} is a deprecated alias that will be removed: use "
            f"{prefix + ACCURACY!r} (e.g. in EarlyStopping / BestCheckpoint monitor=)")


class ExpressionMetrics(dict):
    """The dict :func:`expression_metrics` returns; reading the deprecated key ``"overall_accuracy"`` warns."""

    def __getitem__(self, key):
        if key == DEPRECATED_ACCURACY:
            warnings.warn(_deprecation_message(), FutureWarning, stacklevel=2)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key == DEPRECATED_ACCURACY and key in self:
            warnings.warn(_deprecation_message(), FutureWarning, stacklevel=2)
        return super().get(key, default)


def class_ids(labels, num_classes: int, owner: str = "class_ids",
              class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """``(N,)`` int64 class ids from ids ``(N,)`` / ``(N, 1)``, one-hot ``(N, C)`` labels (all-zero row -> -1), or
    class names (``str`` / ``bytes``, e.g. from a ``tf.string`` tensor) mapped through ``class_names``
    (:func:`ferkeras.training.evaluation.class_names_to_ids`; an empty name is -1)."""
    labels = class_names_to_ids(labels, class_names, owner)
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


def expression_metrics(labels, scores, num_classes: Optional[int] = None, owner: str = "expression_metrics",
                       class_names: Optional[Sequence[str]] = None):
    """Whole-set classification metrics with the names the callbacks log, and the confusion matrix.

    ``labels``: class ids (-1 = no label), one-hot, or class names (``str`` / ``bytes``) mapped through
    ``class_names``; ``scores``: ``(N, C)`` logits or probabilities, ``C = num_classes`` (default
    ``len(class_names)``).  Returns ``({"macro_f1", "average_accuracy", "accuracy"}, (C, C) counts, rows true)``
    from the NumPy references (:func:`ferkeras.training.affect_scores`); the dict also answers the deprecated key
    ``"overall_accuracy"`` (same value, with a ``FutureWarning``).  A class count that does not match the scores
    raises a ValueError naming ``class_names`` (or ``num_classes``).
    """
    if num_classes is None:
        if not class_names:
            raise ValueError(f"{owner}: give num_classes or class_names")
        num_classes = len(class_names)
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"{owner}: expression scores must be (N, C), got shape {scores.shape}; choose the "
                         f"classification output with output=")
    if scores.shape[1] != num_classes:
        given = (f"class_names has {num_classes} names {list(class_names)}" if class_names
                 else f"num_classes={num_classes}")
        raise ValueError(f"{owner}: the expression scores have {scores.shape[1]} classes (shape {scores.shape}) but "
                         f"{given}; give the model's class names, one per score column in the order of its scores "
                         f"(if this is not the classification output, choose that one with output=)")
    ids = class_ids(labels, num_classes, owner, class_names)
    result = affect_scores({"expression": ids}, {"expression": scores}, num_classes=num_classes)
    metrics = ExpressionMetrics(macro_f1=result["expression_macro_f1"],
                                average_accuracy=result["expression_average_accuracy"])
    metrics[ACCURACY] = metrics[DEPRECATED_ACCURACY] = result["expression_accuracy"]
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
    ``{prefix}accuracy`` (overall accuracy; see :mod:`ferkeras.metrics.numpy_ref`), written into the epoch ``logs``
    (so callbacks after this one see them) and, with ``log_dir``, as TensorBoard scalars.  ``{prefix}accuracy``
    replaces a Keras ``val_accuracy`` of the same name already in the logs (the same quantity over this whole set;
    a warning says so once; pass another ``prefix=`` to keep both).  The former key ``{prefix}overall_accuracy``
    is still written, as a deprecated alias (``FutureWarning``).  The confusion matrix is drawn
    (:func:`confusion_figure`) and written as the TensorBoard image ``{prefix}confusion_matrix`` and, with
    ``out_dir``, as ``out_dir/{prefix}confusion_matrix_epoch{NNNN}.png``.  Steps and file numbers are epoch
    numbers counted from 1.  ``last_confusion`` holds the latest matrix.

    Args:
        dataset: validation data, see :class:`ferkeras.callbacks.common.EvalData` (labels: class ids, -1 for none,
            one-hot, or class names as ``str`` / ``bytes`` (e.g. a ``tf.string`` tensor; "" for none) mapped
            through ``class_names``; or a dict holding them, e.g. ``{"va": ..., "expression": ...}``).
        class_names: the ``C`` class names, in the order of the model's scores (a ValueError names them when the
            model's scores have another number of classes).
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

    Outside ``fit`` (a held-out set after training, or a model trained elsewhere), hand it the model and call
    the epoch hook yourself::

        evaluation = ExpressionEvaluation(test, names, prefix="test_", out_dir="runs/confusion")
        evaluation.set_model(model)
        logs = {}
        evaluation.on_epoch_end(0, logs)   # logs["test_accuracy"], ...; last_confusion; the PNG of "epoch 1"
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
        self._warned_alias = False

    def evaluate(self, step: int) -> Dict[str, float]:
        labels, scores = collect(self.model, self.data, self.output, self.label_key, "expression",
                                 self.model_output_names)
        metrics, matrix = expression_metrics(labels, scores.reshape(len(scores), -1), len(self.class_names),
                                             owner="ExpressionEvaluation", class_names=self.class_names)
        if not self._warned_alias:
            self._warned_alias = True
            warnings.warn(f"ExpressionEvaluation: {_deprecation_message(self.prefix)}", FutureWarning, stacklevel=2)
        self.last_confusion = matrix
        if self.log_dir is not None or self.out_dir is not None:
            title = (f"epoch {step}: macro-F1 {metrics['macro_f1']:.3f}, avg. acc. {metrics['average_accuracy']:.3f}"
                     f", acc. {metrics[ACCURACY]:.3f} (N={int(matrix.sum())})")
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
