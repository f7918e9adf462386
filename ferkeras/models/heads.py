"""Task heads: small functional sub-models that map a pooled feature vector to predictions.

Both heads end in a float32 layer, so their outputs stay float32 under a
``mixed_float16`` policy (losses and metrics then see full precision).
"""

from __future__ import annotations

import numbers

import keras
from keras import layers

VA_ACTIVATIONS = ("tanh", "linear")


def va_regressor(feature_dim: int, hidden: int = 256, activation: str = "tanh", batch_norm: bool = False,
                 dropout: float = 0.0, name: str = "va_regressor") -> keras.Model:
    """Valence-arousal regressor: features (B, feature_dim) -> (B, 2), column 0 valence, column 1 arousal.

    FC ``feature_dim -> hidden``, ReLU, FC ``hidden -> 2`` - the shape of AVCE's
    regressor R (Kim & Song, ECCV 2022, appendix; docs/papers.md), with the paper's optional batch normalisation after the hidden FC
    (``batch_norm``; the authors' code has none). ``hidden=0`` gives a single FC.

    ``activation="tanh"`` (the default) bounds predictions to (-1, 1), the
    range every ferkeras reader rescales valence and arousal to, so no
    prediction can fall outside the label space and RMSE cannot be inflated by
    unbounded outliers early in training; ``"linear"`` reproduces AVCE's
    unbounded R.
    """
    if activation not in VA_ACTIVATIONS:
        raise ValueError(f"{name}: activation must be one of {VA_ACTIVATIONS}, got {activation!r}")
    inputs = keras.Input((int(feature_dim),), name="features")
    x = inputs
    if hidden:
        x = layers.Dense(int(hidden), use_bias=not batch_norm, name="fc1")(x)
        if batch_norm:
            x = layers.BatchNormalization(name="bn1")(x)
        x = layers.ReLU(name="relu1")(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout")(x)
    x = layers.Dense(2, name="fc_out")(x)
    outputs = layers.Activation(activation, dtype="float32", name="va")(x)
    return keras.Model(inputs, outputs, name=name)


def expression_classifier(feature_dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0,
                          name: str = "expression_classifier") -> keras.Model:
    """Expression classifier: features (B, feature_dim) -> float32 logits (B, num_classes).

    A single FC by default (the linear classifier of the supervised baselines);
    ``hidden`` > 0 inserts FC + ReLU, ``dropout`` applies before the last FC.
    Logits, not probabilities: pair it with a ``from_logits=True`` loss.
    """
    if int(num_classes) < 2:
        raise ValueError(f"{name}: num_classes must be at least 2, got {num_classes!r}")
    inputs = keras.Input((int(feature_dim),), name="features")
    x = inputs
    if hidden:
        x = layers.Dense(int(hidden), activation="relu", name="fc1")(x)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout")(x)
    x = layers.Dense(int(num_classes), name="fc_out")(x)
    outputs = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)



def _widths(values, what: str, name: str) -> tuple:
    """A sequence of positive layer widths as a tuple of ints (a single int is one width)."""
    given = values
    if not isinstance(values, (list, tuple)):
        values = (values,)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v == int(v) and v >= 1 for v in values):
        raise ValueError(f"{name}: {what} must be positive integer widths, got {given!r}")
    return tuple(int(v) for v in values)


def projection_head(feature_dim: int, hidden=(2048,), output_dim: int = 128, batch_norm: bool = False,
                    name: str = "projection_head") -> keras.Model:
    """SimCLR projection head g: pooled features (B, feature_dim) -> float32 projections (B, output_dim).

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020, Sec. 2.1: ``z = W2 ReLU(W1 h)``; the contrastive loss is computed on ``z`` and the encoder output ``h``
    is the representation kept after pre-training.  Defaults: FC ``feature_dim -> 2048``, ReLU, FC ``2048 -> 128``.
    SSL-FER (Shu, Gu, Yang, Lo, BMVC 2022, Sec. 4.1: "two MLP layers ... 128 feature dimension") on ResNet-50 is
    ``projection_head(2048, hidden=(2048,), output_dim=128)``; RMFER's head H (Cho et al. 2024, Sec. 4.1) is
    ``projection_head(1408, hidden=(1408,), output_dim=1408)``.

    ``hidden``: widths of the FC + (BN) + ReLU layers before the last FC (``()`` gives one linear FC);
    ``batch_norm``: batch normalisation after each hidden FC (as in SimCLR v2 and BYOL; SSL-FER has none).
    The last FC has no activation (the losses normalise ``z`` themselves).
    """
    hidden = _widths(hidden, "hidden", name) if hidden else ()
    (output_dim,) = _widths(output_dim, "output_dim", name)
    inputs = keras.Input((int(feature_dim),), name="features")
    x = inputs
    for i, width in enumerate(hidden, start=1):
        x = layers.Dense(width, use_bias=not batch_norm, name=f"fc{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    x = layers.Dense(output_dim, name="fc_out")(x)
    outputs = layers.Activation("linear", dtype="float32", name="projection")(x)
    return keras.Model(inputs, outputs, name=name)


MLP_ACTIVATIONS = ("linear", "tanh")


def mlp_head(feature_dim: int, num_outputs: int, hidden=(1024, 512), dropout: float = 0.5,
             activation: str = "linear", name: str = "mlp_head") -> keras.Model:
    """The downstream MLP head of SSL-FER: features (B, feature_dim) -> float32 outputs (B, num_outputs).

    Shu, Gu, Yang, Lo, BMVC 2022, Sec. 4.1 "Downstream evaluation": the encoder, frozen or fine-tuned, "with three
    MLP layers on top" - FC ``feature_dim -> 1024``, ReLU, dropout, FC ``1024 -> 512``, ReLU, dropout, FC
    ``512 -> num_outputs`` (2048 -> 1024 -> 512 -> C on ResNet-50; dropout 0.5 as the authors' code, docs/papers.md).
    ``hidden=()`` gives a single FC, the classic linear probe.

    ``activation``: ``"linear"`` (default; expression logits for a ``from_logits`` / balanced softmax loss) or
    ``"tanh"`` (valence-arousal in the readers' [-1, 1] range).
    """
    hidden = _widths(hidden, "hidden", name) if hidden else ()
    (num_outputs,) = _widths(num_outputs, "num_outputs", name)
    if activation not in MLP_ACTIVATIONS:
        raise ValueError(f"{name}: activation must be one of {MLP_ACTIVATIONS}, got {activation!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    inputs = keras.Input((int(feature_dim),), name="features")
    x = inputs
    for i, width in enumerate(hidden, start=1):
        x = layers.Dense(width, activation="relu", name=f"fc{i}")(x)
        if dropout:
            x = layers.Dropout(float(dropout), name=f"dropout{i}")(x)
    x = layers.Dense(num_outputs, name="fc_out")(x)
    outputs = layers.Activation(activation, dtype="float32", name="outputs")(x)
    return keras.Model(inputs, outputs, name=name)
