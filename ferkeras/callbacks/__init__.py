"""Keras callbacks for training scripts, ferkeras's or a user's own ``model.fit`` (one class per module).

* :class:`AffectEvaluation` (``affect``): valence-arousal RMSE, SAGR, PCC, CCC over a whole validation set.
* :class:`ExpressionEvaluation` (``expression``): macro-F1, average and overall accuracy, confusion-matrix image.
* :class:`BestCheckpoint` (``checkpoint``): saves the model when a monitored log value improves; best value in JSON.
* :class:`LinearProbe` (``probe``): closed-form ridge probe on frozen features, for self-supervised training.
* :class:`ActivationMapLogger` (``activation_maps``): activation-map overlays of fixed faces (AVCE).
* :class:`PipelineDropLogger` (``pipeline_drops``): images the input pipelines dropped (undecodable, face too
  small) each epoch, with the first file names.

The evaluation callbacks write their values into the epoch ``logs``; Keras calls callbacks in list order, so a
callback that reads them (``BestCheckpoint``, ``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``) must come after
the one that writes them.  Outputs and labels are chosen as described in :mod:`ferkeras.callbacks.common`.
"""

from ferkeras.callbacks.activation_maps import ActivationMapLogger
from ferkeras.callbacks.affect import AffectEvaluation, affect_metrics
from ferkeras.callbacks.checkpoint import BestCheckpoint
from ferkeras.callbacks.expression import ExpressionEvaluation, confusion_figure, expression_metrics
from ferkeras.callbacks.pipeline_drops import PipelineDropLogger
from ferkeras.callbacks.probe import LinearProbe, RidgeProbe

__all__ = [
    "ActivationMapLogger",
    "AffectEvaluation",
    "BestCheckpoint",
    "ExpressionEvaluation",
    "LinearProbe",
    "PipelineDropLogger",
    "RidgeProbe",
    "affect_metrics",
    "confusion_figure",
    "expression_metrics",
]
