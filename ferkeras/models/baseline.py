"""The supervised baseline: backbone + valence-arousal regressor and/or expression classifier.

This is the plain supervised model every method in ferkeras is compared with
(and AVCE's L_AV branch on its own).  It is a functional model with dict
outputs ``{"va": (B, 2) float32, "expression": (B, C) float32 logits}``
(only the outputs of the chosen ``task``), trained with

* ``"va"``: :class:`ferkeras.losses.affect.AffectLoss`, L_AV = L_RMSE + (L_PCC + L_CCC) / 2
  (Kim & Song, ECCV 2022, Sec. 4.2, unnumbered), NaN labels masked;
* ``"expression"``: sparse categorical cross-entropy on logits, class ``-1`` (no label) masked
  (``keras.losses.SparseCategoricalCrossentropy(ignore_class=-1)``: the mean over labelled samples, 0 for a
  batch without any label).
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from ferkeras import metrics as fm
from ferkeras.data.schema import MISSING_INT
from ferkeras.losses.affect import AffectLoss
from ferkeras.models.backbones import make_backbone
from ferkeras.models.heads import expression_classifier, va_regressor

TASKS = ("va", "expression", "both")
OUTPUTS = {"va": ("va",), "expression": ("expression",), "both": ("va", "expression")}


def check_task(task: str) -> Sequence[str]:
    """The output names of ``task`` (one of :data:`TASKS`)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    return OUTPUTS[task]


def build_baseline_model(backbone: str = "resnet18", input_shape=(224, 224, 3), task: str = "both",
                         num_classes: int = 8, width: int = 64, weights: Optional[str] = None,
                         va_activation: str = "tanh", va_hidden: int = 256, expression_hidden: int = 0,
                         dropout: float = 0.0, name: str = "baseline") -> keras.Model:
    """Image (B, H, W, 3) RGB in [0, 1] -> dict of the ``task``'s outputs.

    The backbone (``make_backbone(backbone, input_shape, pooling="avg", ...)``)
    and each head are nested functional models named ``backbone.name``,
    ``"va_regressor"`` and ``"expression_classifier"`` (reach them with
    ``model.get_layer``).  ``dropout`` applies before each head's last FC.
    """
    outputs = check_task(task)
    encoder = make_backbone(backbone, input_shape, pooling="avg", weights=weights, width=width)
    feature_dim = int(encoder.output.shape[-1])
    image = keras.Input(tuple(input_shape), name="image")
    features = encoder(image)
    out = {}
    if "va" in outputs:
        head = va_regressor(feature_dim, hidden=va_hidden, activation=va_activation, dropout=dropout)
        out["va"] = head(features)
    if "expression" in outputs:
        head = expression_classifier(feature_dim, num_classes, hidden=expression_hidden, dropout=dropout)
        out["expression"] = head(features)
    return keras.Model(image, out, name=name)


def baseline_losses(task: str, va_weight: float = 1.0, expression_weight: float = 1.0):
    """``(loss, loss_weights)`` dicts for ``model.compile`` of a baseline model of ``task``."""
    losses, weights = {}, {}
    for key in check_task(task):
        if key == "va":
            losses[key] = AffectLoss()
            weights[key] = float(va_weight)
        else:
            losses[key] = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=MISSING_INT)
            weights[key] = float(expression_weight)
    return losses, weights


def baseline_metrics(task: str, num_classes: int = 8):
    """Streaming :mod:`ferkeras.metrics` for each output of ``task`` (a dict for ``model.compile``).

    ``va``: CCC per axis and mean (``ccc_v``, ``ccc_a``, ``ccc``), mean PCC, RMSE and SAGR;
    ``expression``: overall accuracy, average accuracy and macro-F1.
    """
    out = {}
    for key in check_task(task):
        if key == "va":
            out[key] = [fm.CCC(0), fm.CCC(1), fm.CCC(), fm.PCC(), fm.RMSE(), fm.SAGR()]
        else:
            out[key] = [fm.OverallAccuracy(num_classes), fm.AverageAccuracy(num_classes), fm.MacroF1(num_classes)]
    return out


def compile_baseline(model: keras.Model, task: str, learning_rate: float = 1e-3, num_classes: int = 8,
                     optimizer: Optional[keras.optimizers.Optimizer] = None, va_weight: float = 1.0,
                     expression_weight: float = 1.0, jit_compile: bool = False) -> keras.Model:
    """Compiles a baseline model: Adam(``learning_rate``) unless ``optimizer`` is given, losses and metrics of ``task``.

    ``jit_compile`` defaults to False: on CPU, XLA compilation of a ResNet costs minutes and trains no faster.
    """
    losses, weights = baseline_losses(task, va_weight, expression_weight)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate), loss=losses, loss_weights=weights,
                  metrics=baseline_metrics(task, num_classes), jit_compile=jit_compile)
    return model
