"""Image encoders (backbones) shared by every ferkeras method.

All backbones are functional ``keras.Model`` objects built from stock Keras
layers (plus :class:`~ferkeras.models.layers.CaffePreprocessing`), channels
last, and take **RGB pixels as floats in [0, 1]** (what every
:mod:`ferkeras.data.pipeline` yields) - each one normalises its input inside
the model, so pipelines never need to know which backbone follows and an
exported model is fed the pipeline's images.  Their last layer is a float32
``linear`` activation, so features are float32 even under a ``mixed_float16``
policy.

* ``resnet18``: ResNet-18 (He et al. 2016), BasicBlock [2, 2, 2, 2], from scratch;
  ``8 * width`` features (512 at the standard width 64); inputs from 32 x 32.
* ``alexnet``: the AVCE encoder (Kim & Song, ECCV 2022), AlexNet's conv
  stack 64-192-384-256-256, from scratch; 256 features; inputs from 63 x 63.
* ``resnet50``: ``keras.applications.ResNet50``; 2048 features; inputs from 32 x 32.
* ``efficientnetb2``: ``keras.applications.EfficientNetB2``; 1408 features; inputs from 32 x 32.

``pooling=None`` returns the last feature map (B, h, w, C); ``"avg"`` / ``"max"``
return a pooled (B, C) vector.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras
from keras import layers

from ferkeras.models.layers import CaffePreprocessing

BACKBONES = ("resnet18", "alexnet", "resnet50", "efficientnetb2")
POOLINGS = (None, "avg", "max")

# Block counts and channels (at the standard width 64) of ResNet-18's four stages (He et al., CVPR 2016, Table 1).
RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET18_WIDTHS = (64, 128, 256, 512)


def _check_input_shape(input_shape: Sequence[int], min_size: int, name: str) -> Tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{name}: input_shape must be (height, width, 3) channels-last RGB, got {shape!r}")
    h, w, _ = shape
    for side in (h, w):
        if side is not None and side < min_size:
            raise ValueError(f"{name}: input side {side} is below the smallest size {min_size} (input_shape={shape!r})")
    return shape


def _check_pooling(pooling: Optional[str], name: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"{name}: pooling must be one of {POOLINGS}, got {pooling!r}")


def _finish(inputs, x, pooling: Optional[str], name: str) -> keras.Model:
    """Optional global pooling, then a float32 cast layer, as a named functional model."""
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    x = layers.Activation("linear", dtype="float32", name="features")(x)
    return keras.Model(inputs, x, name=name)


def _basic_block(x, filters: int, stride: int, name: str):
    """ResNet BasicBlock: two 3x3 conv-BN layers plus an identity (or 1x1 projection) shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_down_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_down_bn")(shortcut)
    if stride != 1:
        # torch-style symmetric padding of 1, so the strided conv samples the same pixels as the reference ResNet.
        y = layers.ZeroPadding2D(1, name=f"{name}_pad1")(x)
        y = layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=f"{name}_conv1")(y)
    else:
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet18(input_shape=(224, 224, 3), pooling: Optional[str] = None, width: int = 64,
             name: str = "resnet18") -> keras.Model:
    """ResNet-18 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), no classifier top.

    Stem 7x7/2 conv + 3x3/2 max-pool, four stages of two BasicBlocks with
    ``width * (1, 2, 4, 8)`` channels (64-128-256-512 at the default width),
    stride 2 at the start of stages 2-4: the feature map is 1/32 of the input.
    ``width`` < 64 gives a thinner network for CPU-sized experiments; the
    default has 11,176,512 trainable parameters (torchvision's ``resnet18``
    without its ``fc``).  Pixels in [0, 1] are mapped to [-1, 1] inside.

    Keep ``width >= 16`` for training on AVX-512 CPUs: below it the first
    downsampling shortcut (1x1, stride 2) reads fewer than 16 channels, and
    TensorFlow 2.20 / 2.21's oneDNN kernels abort the process in that conv's
    filter gradient whenever the batch is odd (a batch of 1, 3, a last partial
    batch).  The network itself is unchanged; ferkeras's defaults and
    ``--smoke`` settings use width >= 16, and
    ``TF_ENABLE_ONEDNN_OPTS=0`` (or ``ONEDNN_MAX_CPU_ISA=AVX2``) lifts the
    limit (README, "Troubleshooting").
    """
    shape = _check_input_shape(input_shape, min_input_size("resnet18"), name)
    _check_pooling(pooling, name)
    if int(width) < 1:
        raise ValueError(f"{name}: width must be a positive channel count, got {width!r}")
    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = layers.ZeroPadding2D(3, name="stem_pad")(x)
    x = layers.Conv2D(width, 7, strides=2, use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=1e-5, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, (blocks, channels) in enumerate(zip(RESNET18_BLOCKS, RESNET18_WIDTHS), start=1):
        for block in range(blocks):
            stride = 2 if (stage > 1 and block == 0) else 1
            x = _basic_block(x, int(width) * channels // 64, stride, name=f"stage{stage}_block{block + 1}")
    return _finish(inputs, x, pooling, name)


def min_input_size(name: str) -> int:
    """The smallest square input side backbone ``name`` (one of :data:`BACKBONES`) accepts: 32 for the ResNets and
    EfficientNet-B2 (their feature map is 1/32 of the input), 63 for :func:`alexnet` (the smallest side at which
    its last max-pool still has an output).  The builders refuse smaller inputs with a ValueError."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    return _alexnet_min_size() if name == "alexnet" else 32


def _alexnet_min_size() -> int:
    """Smallest square input for which every layer of :func:`alexnet` still has a non-empty output."""

    def out_side(side):
        side = (side + 4 - 11) // 4 + 1  # conv1 11x11/4, padding 2
        for _ in range(3):  # three 3x3/2 max-pools; stride-1 convs keep the size
            if side < 3:
                return 0
            side = (side - 3) // 2 + 1
        return side

    side = 11
    while out_side(side) < 1:
        side += 1
    return side


def alexnet(input_shape=(224, 224, 3), pooling: Optional[str] = None, name: str = "alexnet") -> keras.Model:
    """The AVCE encoder E: AlexNet's convolutional stack, trained from scratch.

    Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial
    Emotion Recognition", ECCV 2022 (Sec. 4.1 "parameter-reduced
    AlexNet"; channels 64-192-384-256-256 as in the authors' code, see
    docs/papers.md): conv 11x11/4 (pad 2) -> max-pool 3/2 -> conv 5x5
    -> max-pool 3/2 -> three 3x3 convs -> max-pool 3/2, ReLU after every conv.
    A 224 input gives a 6x6x256 map. AVCE's compressor C averages it to 256 values (the paper, Sec. 3.2); the
    authors' code flattens its 9216 values instead (``AVCEModel(compressor="flatten")``).
    Pixels in [0, 1] are mapped to [-1, 1] inside.
    """
    shape = _check_input_shape(input_shape, min_input_size("alexnet"), name)
    _check_pooling(pooling, name)
    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = layers.ZeroPadding2D(2, name="conv1_pad")(x)
    x = layers.Conv2D(64, 11, strides=4, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(192, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    return _finish(inputs, x, pooling, name)


def resnet50(input_shape=(224, 224, 3), pooling: Optional[str] = None, weights: Optional[str] = None,
             name: str = "resnet50") -> keras.Model:
    """``keras.applications.ResNet50`` without top, with its Caffe-style preprocessing of [0, 1] pixels inside.

    ``weights``: ``None`` (random init, the SSL-FER setting), ``"imagenet"``
    (downloads Keras' weights) or a path to a weights file.
    """
    shape = _check_input_shape(input_shape, min_input_size("resnet50"), name)
    _check_pooling(pooling, name)
    inputs = keras.Input(shape, name="image")
    x = CaffePreprocessing(name="caffe_preprocessing")(inputs)
    app = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=x, pooling=None)
    return _finish(inputs, app.output, pooling, name)


def efficientnetb2(input_shape=(260, 260, 3), pooling: Optional[str] = None, weights: Optional[str] = None,
                   name: str = "efficientnetb2") -> keras.Model:
    """``keras.applications.EfficientNetB2`` without top (RMFER's backbone); scales [0, 1] pixels to the [0, 255]
    the Keras model expects.

    ``weights``: ``None`` (random init), ``"imagenet"`` or a path to a weights file.
    """
    shape = _check_input_shape(input_shape, min_input_size("efficientnetb2"), name)
    _check_pooling(pooling, name)
    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(255.0, name="to_255")(inputs)
    app = keras.applications.EfficientNetB2(include_top=False, weights=weights, input_tensor=x, pooling=None)
    return _finish(inputs, app.output, pooling, name)


def make_backbone(name: str, input_shape=(224, 224, 3), pooling: Optional[str] = "avg",
                  weights: Optional[str] = None, width: int = 64) -> keras.Model:
    """Builds backbone ``name`` (one of :data:`BACKBONES`).

    ``weights`` is accepted by the ``keras.applications`` backbones only
    (``None``, ``"imagenet"`` or a weights-file path); the from-scratch
    backbones take a trained weights file through ``model.load_weights``.
    ``width`` is ResNet-18's stem width (64 = the standard network).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    if name in ("resnet18", "alexnet") and weights is not None:
        raise ValueError(f"backbone {name!r} is trained from scratch and has no weights={weights!r} to load; "
                         "load a trained weights file with model.load_weights instead")
    if name != "resnet18" and width != 64:
        raise ValueError(f"width={width!r} only applies to resnet18, not to backbone {name!r}")
    if name == "resnet18":
        return resnet18(input_shape, pooling=pooling, width=width)
    if name == "alexnet":
        return alexnet(input_shape, pooling=pooling)
    if name == "resnet50":
        return resnet50(input_shape, pooling=pooling, weights=weights)
    return efficientnetb2(input_shape, pooling=pooling, weights=weights)
