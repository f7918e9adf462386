"""Task heads: small functional sub-models that map a pooled feature vector to predictions.

Both heads end in a float32 layer, so their outputs stay float32 under a
``mixed_float16`` policy (losses and metrics then see full precision).
"""

from __future__ import annotations

import keras
from keras import layers

VA_ACTIVATIONS = ("tanh", "linear")


def va_regressor(feature_dim: int, hidden: int = 256, activation: str = "tanh", batch_norm: bool = False,
                 dropout: float = 0.0, name: str = "va_regressor") -> keras.Model:
    """Valence-arousal regressor: features (B, feature_dim) -> (B, 2), column 0 valence, column 1 arousal.

    FC ``feature_dim -> hidden``, ReLU, FC ``hidden -> 2`` - the shape of AVCE's
    regressor R (Kim & Song, ECCV 2022, seed 000, appendix; REFERENCE_NOTES
    "AVCE"), with the paper's optional batch normalisation after the hidden FC
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

