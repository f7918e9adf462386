"""Generic activation maps of image models: Grad-CAM and Score-CAM through tf-keras-vis, and heat-map overlays.

:func:`keras_vis_map` runs Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017) or Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
Convolutional Neural Networks", CVPR Workshops 2020) through tf-keras-vis 0.8.7 on any functional Keras model from
images to a ``(B, K)`` output, with one score function per chosen output column and the maps averaged.
:func:`encoder_saliency` does the same for a pre-trained encoder without a class head (the score explained is the
projection of the features onto the image's own features, or a given head's predicted-class output: SSL-FER's
Figure 6, Shu et al., BMVC 2022, Sec. 4.5). :func:`overlay`, :func:`overlay_grid` and :func:`save_png` draw any
``[0, 1]`` maps over the images.

The class activation map of AVCE's regressor R and projection head H (Kim & Song, "Emotion-aware Multi-view
Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sec. 4.4) and AVCE's figure of all four maps live in
:mod:`ferkeras.methods.avce.cam`; the names this module used to hold for them (``neural_activation_map``,
``linear_cam``, ``inference_model``, ``activation_maps``, ``activation_grid``, ``METHODS``, ``METHOD_TITLES``,
``HEADS``) were moved to ``ferkeras.methods.avce.cam``; kept so old imports work (resolved on first use).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from typing import Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("ferkeras.viz.cam")

KERAS_VIS_METHODS = ("gradcam", "scorecam")
"""Maps :func:`keras_vis_map` computes: Grad-CAM and Score-CAM (tf-keras-vis)."""
KERAS_VIS_TITLES = {"gradcam": "Grad-CAM", "scorecam": "Score-CAM"}
"""Default column titles of :func:`overlay_grid`."""

_MOVED_TO_AVCE = ("HEADS", "METHODS", "METHOD_TITLES", "linear_cam", "neural_activation_map", "inference_model",
                  "activation_maps", "activation_grid")


def __getattr__(name):
    """The AVCE names this module held before they moved to :mod:`ferkeras.methods.avce.cam`."""
    if name in _MOVED_TO_AVCE:
        return getattr(importlib.import_module("ferkeras.methods.avce.cam"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_images(images) -> tf.Tensor:
    """``images`` as a float32 tensor, checked to be ``(B, H, W, 3)`` (floats in [0, 1] by convention)."""
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"activation maps: images must be (B, H, W, 3) floats in [0, 1], got shape {images.shape}")
    return images


def even_batch(images) -> tf.Tensor:
    """``images`` with its last image repeated once when the batch is odd, so every Grad-CAM gradient runs on an even
    batch; the caller keeps the first ``B`` maps.

    TensorFlow 2.20 / 2.21's oneDNN kernels on AVX-512 CPUs abort the process in the filter gradient of a 1x1,
    stride-2 convolution with fewer than 16 input channels and an odd batch (ResNet-18 thinner than width 16 has
    such a shortcut); Grad-CAM's tape runs the model in inference mode, where every image's map depends on that image
    alone, so the repeated image changes none of the others.  An empty batch is returned unchanged.
    """
    images = tf.convert_to_tensor(images)
    if int(images.shape[0]) % 2:
        images = tf.concat([images, images[-1:]], axis=0)
    return images


def resize_and_normalise(maps, size, normalize: bool = True) -> np.ndarray:
    """(B, h, w) maps -> (B, H, W) bilinear, then per-image min-max to [0, 1] (a constant map becomes 0)."""
    maps = tf.image.resize(tf.convert_to_tensor(maps, tf.float32)[..., None], size, method="bilinear")[..., 0]
    if not normalize:
        return maps.numpy()
    lo = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    span = tf.reduce_max(maps, axis=(1, 2), keepdims=True) - lo
    return tf.math.divide_no_nan(maps - lo, span).numpy()


@contextlib.contextmanager
def _quiet():
    """Silences tf-keras-vis' Keras 3 chatter: Score-CAM's predict progress bars and the input-structure warning."""
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            yield
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


def keras_vis_map(model, images, method: str = "gradcam", max_n: Optional[int] = 16,
                  layer_name: str = "features", outputs: Sequence[int] = (0, 1)) -> np.ndarray:
    """Grad-CAM or Score-CAM through tf-keras-vis 0.8.7, averaging the maps of the chosen output columns.

    Args:
        model: a functional Keras model from images to ``(B, K)`` outputs that has the feature-map layer
            ``layer_name`` among its own (top-level) layers, as tf-keras-vis needs. For a model made of sub-models,
            build a flat one first (for AVCE: :func:`ferkeras.methods.avce.cam.inference_model`).
        images: (B, H, W, 3) floats in [0, 1].
        method: ``"gradcam"`` or ``"scorecam"``.
        max_n: Score-CAM's ``max_N`` (channels with the largest activations it tries; ``None`` = all of them).
        layer_name: the layer whose feature map is weighted.
        outputs: output columns, one score function each (default: valence and arousal of a ``(B, 2)`` head).

    Returns:
        float32 array (B, H, W) in [0, 1]: each output's map normalised by tf-keras-vis, the maps averaged, and the
        mean min-max normalised again.  Grad-CAM runs on an even batch (an odd one gets its last image repeated and
        that map dropped, see :func:`even_batch`), which avoids TensorFlow's oneDNN abort on AVX-512 CPUs.
    """
    with warnings.catch_warnings():  # tf-keras-vis 0.8.7 imports a deprecated scipy.ndimage path
        warnings.simplefilter("ignore", DeprecationWarning)
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.scorecam import Scorecam

    if method not in KERAS_VIS_METHODS:
        raise ValueError(f"keras_vis_map: method must be 'gradcam' or 'scorecam', got {method!r}")
    images = check_images(images)
    try:
        layer = model.get_layer(layer_name)  # the layer object: by name tf-keras-vis would also search sub-models
    except ValueError as err:
        raise ValueError(f"keras_vis_map: model {model.name!r} has no top-level layer {layer_name!r}; pass a flat "
                         "functional model (for AVCE: ferkeras.methods.avce.cam.inference_model(model))") from err
    n, size = int(images.shape[0]), tuple(images.shape[1:3])
    maps = []
    with _quiet():
        for o in outputs:
            score = lambda out, o=o: out[:, o]  # noqa: E731
            if method == "gradcam":
                cam = Gradcam(model, clone=False)(score, even_batch(images), penultimate_layer=layer,
                                                  seek_penultimate_conv_layer=False)
            else:
                cam = Scorecam(model, clone=False)(score, images, penultimate_layer=layer,
                                                   seek_penultimate_conv_layer=False, max_N=max_n)
            maps.append(np.asarray(cam, np.float32).reshape((-1,) + size)[:n])
    mean = np.mean(maps, axis=0)
    lo, hi = mean.min(axis=(1, 2), keepdims=True), mean.max(axis=(1, 2), keepdims=True)
    return np.where(hi > lo, (mean - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)


ENCODER_SCORES = ("self", "head")
"""Scores :func:`encoder_saliency` explains for an encoder without a class head of its own."""


def feature_map_layer(model, min_side: int = 4) -> str:
    """The name of the feature map Grad-CAM weights: the last top-level layer of ``model`` whose 4-D output
    ``(B, h, w, C)`` has the coarsest resolution that is still at least ``min_side`` x ``min_side`` - for the ferkeras
    ResNets at 112 px or more, the last block's output before global pooling; on smaller inputs, where that map is
    1 x 1 or 2 x 2 and would give a constant map, the output of the last stage that still has ``min_side`` - else
    (every map smaller, or sizes unknown) the last 4-D layer."""
    maps = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):  # a layer with several outputs
            continue
        if len(shape) == 4:
            maps.append((layer.name, shape[1], shape[2]))
    if not maps:
        raise ValueError(f"model {model.name!r} has no top-level layer with a (B, h, w, C) feature map; pass a flat "
                         "functional encoder (e.g. ferkeras.models.backbones.make_backbone)")
    sized = [(name, h * w) for name, h, w in maps if h is not None and w is not None and min(h, w) >= min_side]
    if not sized or any(h is None or w is None for _, h, w in maps):
        return maps[-1][0]
    coarsest = min(area for _, area in sized)
    return [name for name, area in sized if area == coarsest][-1]


def encoder_saliency(encoder, images, score: str = "self", head=None, method: str = "gradcam",
                     layer_name: Optional[str] = None, max_n: Optional[int] = 16,
                     batch_size: int = 32) -> np.ndarray:
    """Grad-CAM (or Score-CAM) of a pre-trained encoder that has no class head of its own, through tf-keras-vis.

    Grad-CAM (Selvaraju et al., ICCV 2017) weights the channels of a feature map by the spatial mean of a score's
    gradient; a self-supervised encoder needs a score to explain, chosen here by ``score``:

    * ``"self"``: the projection of the features onto the image's own feature direction, ``<f(x'), f(x) / |f(x)|>``
      with ``f(x)`` computed first and held fixed - the regions whose activations make up the image's
      representation. (The cosine similarity itself would give nothing: at ``x' = x`` it is at its maximum 1 and
      its gradient is zero.) For a globally average-pooled ResNet the channel weights are ``f(x)``'s components, so
      the map is ``ReLU(sum_k f_k(x) A_k)``.
    * ``"head"``: ``head``'s output for the class it predicts for the image (e.g. a linear probe's logit of the
      predicted expression) - the classic Grad-CAM of a classifier built on the frozen features.

    Args:
        encoder: a flat functional Keras model from images ``(B, H, W, 3)`` in [0, 1] to features ``(B, F)``
            (:func:`ferkeras.models.backbones.make_backbone`, the ``encoder`` of a pre-training model, or
            :func:`ferkeras.downstream.load_encoder`'s result).
        images: ``(B, H, W, 3)`` floats in [0, 1].
        score: ``"self"`` or ``"head"``.
        head: a Keras model ``(B, F) -> (B, C)`` (needed for ``score="head"``).
        method: ``"gradcam"`` or ``"scorecam"`` (``max_n`` channels).
        layer_name: the feature-map layer (default :func:`feature_map_layer`: the last 4-D layer of at least
            4 x 4).
        batch_size: images per tf-keras-vis call (Grad-CAM pads an odd call to an even batch and drops the extra
            map, see :func:`even_batch`: TensorFlow's oneDNN abort on AVX-512 CPUs).

    Returns:
        float32 ``(B, H, W)`` maps, each min-max normalised to [0, 1] (a constant map is 0).
    """
    with warnings.catch_warnings():  # tf-keras-vis 0.8.7 imports a deprecated scipy.ndimage path
        warnings.simplefilter("ignore", DeprecationWarning)
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.scorecam import Scorecam

    if method not in KERAS_VIS_METHODS:
        raise ValueError(f"encoder_saliency: method must be 'gradcam' or 'scorecam', got {method!r}")
    if score not in ENCODER_SCORES:
        raise ValueError(f"encoder_saliency: score must be one of {ENCODER_SCORES}, got {score!r}")
    if score == "head" and head is None:
        raise ValueError("encoder_saliency: score='head' needs the head model (B, F) -> (B, C)")
    images = check_images(images)
    if len(encoder.outputs) != 1 or len(encoder.outputs[0].shape) != 2:
        raise ValueError(f"encoder_saliency: encoder {encoder.name!r} must output pooled features (B, F), got "
                         f"{[tuple(o.shape) for o in encoder.outputs]}")
    layer_name = layer_name or feature_map_layer(encoder)
    try:
        layer = encoder.get_layer(layer_name)
    except ValueError as err:
        raise ValueError(f"encoder_saliency: encoder {encoder.name!r} has no top-level layer {layer_name!r}") from err
    model = encoder if score == "self" else keras.Model(encoder.inputs, head(encoder.outputs[0]),
                                                        name=f"{encoder.name}_with_head")
    maps = []
    with _quiet():
        for start in range(0, int(images.shape[0]), int(batch_size)):
            chunk = images[start:start + batch_size]
            n = int(chunk.shape[0])
            if method == "gradcam":
                chunk = even_batch(chunk)
            out = np.asarray(model(chunk, training=False), np.float32)
            if score == "self":
                target = tf.constant(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12))

                def score_fn(output, target=target):
                    return tf.reduce_sum(tf.cast(output, tf.float32) * target, axis=-1)
            else:
                classes = tf.constant(np.argmax(out, axis=1).astype(np.int32))

                def score_fn(output, classes=classes):
                    return tf.gather(tf.cast(output, tf.float32), classes, axis=1, batch_dims=1)
            if method == "gradcam":
                cam = Gradcam(model, clone=False)(score_fn, chunk, penultimate_layer=layer,
                                                  seek_penultimate_conv_layer=False)
            else:
                cam = Scorecam(model, clone=False)(score_fn, chunk, penultimate_layer=layer,
                                                   seek_penultimate_conv_layer=False, max_N=max_n)
            maps.append(np.asarray(cam, np.float32).reshape(chunk.shape[:3])[:n])
    maps = np.concatenate(maps, 0)
    lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    return np.where(hi > lo, (maps - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)


def overlay(image, heat, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blends a [0, 1] heat map (H, W) over an RGB image (H, W, 3) in [0, 1] with a matplotlib colormap.

    Returns float32 (H, W, 3) in [0, 1]: ``(1 - alpha) image + alpha colormap(heat)``.
    """
    from matplotlib import colormaps

    image = np.asarray(image, np.float32)
    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if image.shape[:2] != heat.shape:
        raise ValueError(f"overlay: heat map {heat.shape} does not match image {image.shape[:2]}")
    colour = colormaps[cmap](heat)[..., :3].astype(np.float32)
    return (1.0 - alpha) * image + alpha * colour


def overlay_grid(images, maps: Mapping[str, np.ndarray], alpha: float = 0.45, cmap: str = "jet",
                 cell_inches: float = 1.6, titles: Optional[Mapping[str, str]] = None,
                 row_labels: Optional[Sequence[str]] = None, title: str = "") -> np.ndarray:
    """A figure grid: one row per image, columns "input" then one overlay per map, as an RGB uint8 array.

    Args:
        images: (B, H, W, 3) floats in [0, 1].
        maps: map name -> (B, H, W) maps in [0, 1], in column order.
        alpha, cmap: see :func:`overlay`.
        cell_inches: size of one cell of the figure.
        titles: map name -> column title (default :data:`KERAS_VIS_TITLES`); a name without one is its own title.
        row_labels: one label per image, written left of its row (e.g. the expression); title: a figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    titles = KERAS_VIS_TITLES if titles is None else titles
    images = np.asarray(images, np.float32)
    rows, cols = images.shape[0], 1 + len(maps)
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"overlay_grid: {len(row_labels)} row labels for {rows} images")
    fig = Figure(figsize=(cell_inches * cols + (0.4 if row_labels is not None else 0.0),
                          cell_inches * rows + 0.3 + (0.3 if title else 0.0)), dpi=100)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    column_titles = ["input"] + [titles.get(name, name) for name in maps]
    for r in range(rows):
        panels = [images[r]] + [overlay(images[r], m[r], alpha, cmap) for m in maps.values()]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(np.clip(panel, 0.0, 1.0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_titles[c], fontsize=9)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[r]), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
        fig.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / fig.get_figheight()))  # room for the title
    else:
        fig.tight_layout(pad=0.3)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(path, grid: np.ndarray) -> str:
    """Writes an RGB uint8 array (e.g. from :func:`overlay_grid`) as PNG; returns the path."""
    from matplotlib import image as mpimg

    path = str(path)
    mpimg.imsave(path, np.asarray(grid, np.uint8))
    return path
