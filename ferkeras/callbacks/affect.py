"""AffectEvaluation: valence-arousal RMSE, SAGR, PCC and CCC over a whole validation set after each epoch."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from ferkeras.callbacks.common import EpochEvaluation, EvalData, Key, collect
from ferkeras.training.evaluation import affect_scores

AFFECT_METRICS = ("rmse", "sagr", "pcc", "ccc")


def affect_metrics(y_true, y_pred, owner: str = "affect_metrics") -> Dict[str, float]:
    """Whole-set valence-arousal metrics with the names the callbacks log.

    ``y_true``/``y_pred``: ``(N, 2)`` (column 0 valence, 1 arousal; NaN labels are left out).  Returns
    ``{valence,arousal}_{rmse,sagr,pcc,ccc}`` and, for the mean of the two axes, plain ``rmse, sagr, pcc, ccc``
    (the NumPy references of :mod:`ferkeras.metrics.numpy_ref`, via :func:`ferkeras.training.affect_scores`).
    """
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    for name, value in (("labels", y_true), ("predictions", y_pred)):
        if value.ndim != 2 or value.shape[1] != 2:
            raise ValueError(f"{owner}: valence-arousal {name} must be (N, 2), got shape {value.shape}; choose "
                             f"the (B, 2) output / labels with output= / label_key=")
    scores = affect_scores({"va": y_true}, {"va": y_pred})
    results = {}
    for metric in AFFECT_METRICS:
        for axis in ("valence", "arousal"):
            results[f"{axis}_{metric}"] = scores[f"{axis}_{metric}"]
        results[metric] = scores[f"mean_{metric}"]
    return results


class AffectEvaluation(EpochEvaluation):
    """Valence-arousal metrics of the model over a whole validation set, every ``every_n_epochs`` epochs.

    After epochs ``n, 2n, ...`` the model predicts every batch of ``dataset``; RMSE, SAGR, PCC and CCC are then
    computed once over all predictions (:func:`affect_metrics`: the NumPy references, not per-batch averages,
    which differ for PCC and CCC).  The epoch ``logs`` receive ``{prefix}ccc`` (mean of valence and arousal),
    ``{prefix}valence_ccc``, ``{prefix}arousal_ccc`` and the same for ``rmse``, ``sagr``, ``pcc``, so
    ``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger`` or :class:`BestCheckpoint` placed **after** this callback
    in the ``callbacks`` list can use them (Keras runs callbacks in list order).  With ``log_dir`` they are also
    TensorBoard scalars (step = epoch number from 1).

    Args:
        dataset: validation data, see :class:`ferkeras.callbacks.common.EvalData` (batches of ``(images, labels)``
            with labels ``(B, 2)`` or a dict holding them, e.g. ``{"va": ..., "expression": ...}``).
        every_n_epochs: evaluate after epochs ``n, 2n, ...``.
        output: which model output is valence-arousal (``None``: the single output, or ``"va"`` of a dict;
            a dict key / output name / list index otherwise).  It must be ``(B, 2)``.
        prefix: prepended to every log key and TensorBoard tag.
        log_dir: TensorBoard folder (``None`` = no summaries).
        label_key: which labels (default ``output`` if the label dict has it, else ``"va"``).
        steps: batches per evaluation (``None`` = the whole dataset).
        batch_size: batch size when ``dataset`` is an ``(images, labels)`` tuple of arrays.

    Example::

        val = ferkeras.data.pipeline.build_dataset(val_source, batch_size=64)
        model.fit(train, epochs=30, callbacks=[
            AffectEvaluation(val, log_dir="runs/tb"),
            keras.callbacks.EarlyStopping("val_ccc", mode="max", patience=5),
            BestCheckpoint("runs/best.keras", monitor="val_ccc")])
    """

    def __init__(self, dataset, every_n_epochs: int = 1, output: Key = None, prefix: str = "val_",
                 log_dir: Optional[str] = None, label_key: Key = None, steps: Optional[int] = None,
                 batch_size: int = 32):
        super().__init__(every_n_epochs, prefix, log_dir)
        self.data = EvalData(dataset, batch_size, steps, owner="AffectEvaluation")
        self.output = output
        self.label_key = label_key

    def evaluate(self, step: int) -> Dict[str, float]:
        y_true, y_pred = collect(self.model, self.data, self.output, self.label_key, "va", self.model_output_names)
        return affect_metrics(y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1),
                              owner="AffectEvaluation")
