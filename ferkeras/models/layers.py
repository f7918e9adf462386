"""Small Keras layers the ferkeras backbones need and Keras does not ship."""

from __future__ import annotations

import keras
from keras import ops

# Per-channel means (in B, G, R order) that Caffe-style ImageNet ResNets subtract.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="ferkeras")
class CaffePreprocessing(keras.layers.Layer):
    """RGB pixels ``x`` -> ``scale * x`` in BGR order with the ImageNet channel means subtracted.

    With the default ``scale=255`` it takes ferkeras' [0, 1] images and does
    what ``keras.applications.resnet50.preprocess_input`` does to [0, 255]
    images outside a model; as a layer it keeps an exported model
    self-contained and ImageNet weights usable.
    """

    def __init__(self, scale=255.0, mean=CAFFE_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.mean = tuple(float(m) for m in mean)
        if len(self.mean) != 3:
            raise ValueError(f"CaffePreprocessing needs 3 channel means, got {mean!r}")

    def call(self, inputs):
        bgr = ops.flip(inputs, axis=-1) * ops.cast(self.scale, inputs.dtype)
        return bgr - ops.cast(ops.convert_to_tensor(self.mean), bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "mean": list(self.mean)})
        return config


def adaptive_pool_matrix(size: int, out: int):
    """The ``(out, size)`` averaging matrix of PyTorch's ``AdaptiveAvgPool``: output cell ``i`` averages the inputs
    ``floor(i size / out) .. ceil((i + 1) size / out) - 1``, so a map smaller than the grid has its cells repeated."""
    import numpy as np

    matrix = np.zeros((out, size), "float32")
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@keras.saving.register_keras_serializable(package="ferkeras")
class AdaptiveAveragePooling(keras.layers.Layer):
    """Average pooling of a ``(B, h, w, C)`` map to a fixed ``(out_h, out_w)`` grid, bins as PyTorch's
    ``AdaptiveAvgPool2d`` (:func:`adaptive_pool_matrix`), for ANY ``h, w`` (also smaller than the grid, which
    ``keras.layers.AdaptiveAveragePooling2D`` 3.15 refuses). AVCE's published compressor pools to 6 x 6 with it.
    Needs static ``h, w``."""

    def __init__(self, output_size=(6, 6), **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(s) for s in output_size)
        if len(self.output_size) != 2 or min(self.output_size) < 1:
            raise ValueError(f"AdaptiveAveragePooling: output_size must be two positive ints, got {output_size!r}")

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None:
            raise ValueError(f"AdaptiveAveragePooling needs a static spatial shape, got {tuple(input_shape)}")
        self._rows = adaptive_pool_matrix(int(h), self.output_size[0])
        self._cols = adaptive_pool_matrix(int(w), self.output_size[1])

    def call(self, inputs):
        rows = ops.cast(ops.convert_to_tensor(self._rows), inputs.dtype)
        cols = ops.cast(ops.convert_to_tensor(self._cols), inputs.dtype)
        return ops.einsum("ih,bhwc,jw->bijc", rows, inputs, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({"output_size": list(self.output_size)})
        return config
