"""Streaming expression-classification metrics on a confusion matrix.

Overall accuracy and average accuracy (mean per-class recall; Cho et al., "RMFER: Semi-supervised Contrastive
Learning for Facial Expression Recognition with Reaction Mashup Video", 2024, Sec. 5.1), macro-F1 (Eqs. 4-5 of Xue,
Sun & Yang, "Exploring Expression-related Self-supervised Learning and Spatial Reserve Pooling for Affective
Behaviour Analysis", CVPRW 2023; Sec. 4.3 of Shu, Gu, Yang & Lo, "Revisiting Self-Supervised Contrastive Learning
for Facial Expression Recognition", BMVC 2022) and the confusion matrix itself.  The definitions (which classes
enter each average, NaN for an empty set) are those of :mod:`ferkeras.metrics.numpy_ref`.

Inputs: ``y_true`` integer class ids ``(B,)`` / ``(B, 1)`` with ``MISSING_INT`` (-1) for "no label", or one-hot /
soft labels ``(B, C)`` (argmax; an all-zero row means "no label"); ``y_pred`` ``(B, C)`` probabilities or logits
(argmax).  ``sample_weight`` ``(B,)`` is a frequency weight.  Class ids outside ``[0, C)`` other than -1 raise an
``InvalidArgumentError`` naming the metric.

All four keep one float64 ``(C, C)`` count matrix (rows = true class, columns = predicted class), summed across
replicas under ``tf.distribute`` by Keras' ``SUM`` aggregation.  ``keras.metrics.F1Score(average="macro")`` is
not used: it wants one-hot labels without masking, and counts a class that is neither labelled nor predicted as
F1 = 0, which lowers the score of a set where a class is absent (``tests/test_metrics.py`` checks the difference).
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from ferkeras.data.schema import MISSING_INT


class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates the confusion matrix; subclasses reduce it in :meth:`result`."""

    base_name = ""

    def __init__(self, num_classes: int, name: Optional[str] = None, dtype=None):
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"{type(self).__name__}: num_classes must be an integer >= 2, got {num_classes!r}")
        super().__init__(name=name or self.base_name, dtype=dtype)
        self.num_classes = int(num_classes)
        self.matrix = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros",
                                        dtype="float64", aggregation="sum", name="confusion_matrix")

    def _labels(self, y_true):
        """Integer labels ``(B,)`` and a float64 validity weight ``(B,)``."""
        y_true = tf.convert_to_tensor(y_true)
        c = self.num_classes
        if y_true.shape.rank == 2 and y_true.shape[-1] == c:
            labels = tf.argmax(y_true, axis=-1, output_type=tf.int32)
            valid = tf.reduce_sum(tf.cast(y_true, tf.float64), axis=-1) > 0
            return labels, tf.cast(valid, tf.float64)
        if y_true.shape.rank is not None and not (y_true.shape.rank == 1 or
                                                  (y_true.shape.rank == 2 and y_true.shape[-1] == 1)):
            raise ValueError(f"{self.name}: y_true must be (B,) class ids or (B, {c}) one-hot, got shape "
                             f"{y_true.shape}")
        labels = tf.reshape(tf.cast(y_true, tf.int32), (-1,))
        valid = labels != MISSING_INT
        checked = tf.where(valid, labels, 0)
        with tf.control_dependencies([
            tf.debugging.assert_non_negative(checked, message=f"{self.name}: negative class id other than "
                                                                f"{MISSING_INT} in y_true"),
            tf.debugging.assert_less(checked, c, message=f"{self.name}: class id >= num_classes={c} in y_true"),
        ]):
            return tf.identity(checked), tf.cast(valid, tf.float64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.convert_to_tensor(y_pred)
        if y_pred.shape.rank is not None and (y_pred.shape.rank != 2 or y_pred.shape[-1] != self.num_classes):
            raise ValueError(f"{self.name}: y_pred must be (B, {self.num_classes}) scores, got shape "
                             f"{y_pred.shape}")
        labels, w = self._labels(y_true)
        if sample_weight is not None:
            w = w * tf.reshape(tf.cast(sample_weight, tf.float64), (-1,))
        pred = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        true_1h = tf.one_hot(labels, self.num_classes, dtype=tf.float64) * w[:, None]
        pred_1h = tf.one_hot(pred, self.num_classes, dtype=tf.float64)
        self.matrix.assign_add(tf.matmul(true_1h, pred_1h, transpose_a=True))

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config


def _nan_if_empty(has_data, value):
    return tf.where(has_data, value, tf.constant(float("nan"), tf.float64))


@keras.saving.register_keras_serializable(package="ferkeras")
class ConfusionMatrix(_ConfusionMetric):
    """The ``(C, C)`` confusion matrix (rows = true class, columns = predicted), weighted counts.

    Its result is a matrix, not a scalar: read it after ``model.evaluate`` (``model.get_metrics_result()``) or use
    the metric standalone; scalar-only loggers (the TensorBoard callback) cannot write it.
    """

    base_name = "confusion_matrix"

    def result(self):
        return tf.cast(self.matrix, self.dtype)


@keras.saving.register_keras_serializable(package="ferkeras")
class OverallAccuracy(_ConfusionMetric):
    """Fraction of labelled samples classified correctly (NaN with no labelled sample).

    Its name ``accuracy`` is overall accuracy's one name in ferkeras: ``expression_accuracy`` in result.json and
    ``{prefix}accuracy`` in the logs of :class:`ferkeras.callbacks.ExpressionEvaluation` and ``LinearProbe``.
    """

    base_name = "accuracy"

    def result(self):
        m = tf.convert_to_tensor(self.matrix)
        total = tf.reduce_sum(m)
        return tf.cast(_nan_if_empty(total > 0, tf.linalg.trace(m) / tf.maximum(total, 1.0)), self.dtype)


@keras.saving.register_keras_serializable(package="ferkeras")
class AverageAccuracy(_ConfusionMetric):
    """Mean per-class recall over the classes present in ``y_true`` (mean of the row-normalised diagonal)."""

    base_name = "average_accuracy"

    def result(self):
        m = tf.convert_to_tensor(self.matrix)
        support = tf.reduce_sum(m, axis=1)
        present = tf.cast(support > 0, tf.float64)
        recall = tf.linalg.diag_part(m) / tf.maximum(support, 1e-300)
        n_present = tf.reduce_sum(present)
        value = tf.reduce_sum(recall * present) / tf.maximum(n_present, 1.0)
        return tf.cast(_nan_if_empty(n_present > 0, value), self.dtype)


@keras.saving.register_keras_serializable(package="ferkeras")
class MacroF1(_ConfusionMetric):
    """Mean of ``F1_c = 2 TP / (2 TP + FP + FN)`` over the classes labelled or predicted at least once."""

    base_name = "macro_f1"

    def result(self):
        m = tf.convert_to_tensor(self.matrix)
        denom = tf.reduce_sum(m, axis=0) + tf.reduce_sum(m, axis=1)
        present = tf.cast(denom > 0, tf.float64)
        f1 = 2.0 * tf.linalg.diag_part(m) / tf.maximum(denom, 1e-300)
        n_present = tf.reduce_sum(present)
        value = tf.reduce_sum(f1 * present) / tf.maximum(n_present, 1.0)
        return tf.cast(_nan_if_empty(n_present > 0, value), self.dtype)
