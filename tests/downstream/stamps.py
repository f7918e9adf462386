"""Encoders with KNOWN content for the downstream tests (not library code).

A label is written into a face image as the grey level of a small corner patch (:func:`stamp`);
:func:`code_reader` is a plain functional Keras model (crop, average, fixed Dense / ReLU layers) whose features are
that label -- one-hot-like "hat" features for a class code, the grey level itself for a continuous value -- and
nothing else.  :func:`blind_encoder` is a randomly initialised conv net that never sees the corner patches.  On the
same stamped faces, a downstream evaluation must then find the label in the first encoder's features and (almost)
not in the second's.
"""

import keras
import numpy as np
from keras import layers

PATCH = 4
CORNERS = ("top_left", "top_right")


def _corner_slice(corner, size):
    if corner == "top_left":
        return slice(0, PATCH), slice(0, PATCH)
    if corner == "top_right":
        return slice(0, PATCH), slice(size - PATCH, size)
    raise ValueError(corner)


def stamp(images, values, corner):
    """Copies ``images`` (N, S, S, 3) float in [0, 1] with the corner patch set to grey ``values`` (N,) in [0, 1]."""
    out = np.array(images, np.float32, copy=True)
    rows, cols = _corner_slice(corner, out.shape[1])
    out[:, rows, cols, :] = np.asarray(values, np.float32)[:, None, None, None]
    return out


def class_grey(codes, levels):
    """Grey level of class code ``c`` of ``levels`` classes: the centre of its bin, ``(c + 0.5) / levels``."""
    return (np.asarray(codes, np.float64) + 0.5) / levels


def code_reader(size, corner, levels=None, name="code_reader"):
    """Features of the ``corner`` patch: its grey level g (levels=None: 1 feature), or for ``levels`` classes the hat
    features ``relu(1 - |levels g - c - 0.5|)``, c = 0 .. levels - 1 (1 for the stamped class, 0 for the others)."""
    rows, cols = _corner_slice(corner, size)
    image = keras.Input((size, size, 3), name="image")
    x = layers.Cropping2D(((rows.start, size - rows.stop), (cols.start, size - cols.stop)), name="patch")(image)
    x = layers.GlobalAveragePooling2D(name="mean_rgb")(x)
    grey = layers.Dense(1, name="grey", trainable=False)
    x = grey(x)
    grey.set_weights([np.full((3, 1), 1 / 3, np.float32), np.zeros(1, np.float32)])
    if levels:
        centres = np.arange(levels) + 0.5
        split = layers.Dense(2 * levels, name="distance", trainable=False)
        x = layers.ReLU()(split(x))  # relu(L g - c'), relu(c' - L g): their sum is |L g - c'|
        split.set_weights([np.concatenate([np.full(levels, levels), np.full(levels, -levels)])[None, :].astype(
            np.float32), np.concatenate([-centres, centres]).astype(np.float32)])
        hat = layers.Dense(levels, name="hat", trainable=False)
        x = layers.ReLU()(hat(x))
        hat.set_weights([-np.concatenate([np.eye(levels), np.eye(levels)]).astype(np.float32),
                         np.ones(levels, np.float32)])
    return keras.Model(image, x, name=name)


def blind_encoder(size, width=16, seed=0, name="blind_encoder"):
    """A randomly initialised conv encoder of the face below the corner patches (their rows are cropped away)."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 3), name="image")
    x = layers.Cropping2D(((2 * PATCH, 0), (0, 0)))(image)
    x = layers.Conv2D(width, 3, strides=2, activation="relu")(x)
    x = layers.Conv2D(width, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, x, name=name)
