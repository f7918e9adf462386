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
