"""Activation maps of valence-arousal models: the AVCE "neural activation map", Grad-CAM and Score-CAM, and overlays.

AVCE (Kim & Song, ECCV 2022, seed 000, Sec. 4.4, Figs. 5-6) shows the class activation map (CAM) of Zhou et al.
("Learning Deep Features for Discriminative Localization", CVPR 2016, ref. [58] of the paper), "computed from the
feature maps and the weight matrices of the last layer of R (or H)", averaging the valence and the arousal maps.

Zhou et al.'s CAM needs a linear map from globally pooled features to the output, ``y_o = sum_k w_ok p_k``, where
``p = mean_ij F_ij`` pools the last feature map ``F`` (h x w x K); then ``CAM_o(i, j) = sum_k w_ok F_ij,k`` and
``mean_ij CAM_o = y_o``. In AVCE the pooled features pass through more than one layer before the output: C's
FC + ReLU to ``z``, then R (FC, ReLU, FC) or H (on the attentive view ``Sp(z)``: FC, ReLU, FC, 0.5 tanh). Every one
of those is piecewise linear, so :func:`neural_activation_map` **linearises the whole path at the image's own pooled
features**: the ReLU gates (and the sparsemax support) are fixed at their values for ``p``, which leaves

    w_o = W_c diag(g_c) W_1 diag(g_1) W_2[:, o]                  (head="regressor": E -> C -> R)
    w_o = W_c diag(g_c) J_Sp W_h1 diag(g_h) W_h2[:, o]           (head="head":      E -> C -> Sp -> H, before tanh)

with ``W_c`` C's FC kernel (K x 32), ``g_c = 1[p W_c + b_c > 0]``, ``W_1, W_2`` (``W_h1, W_h2``) the FC kernels of R
(H), ``g_1`` (``g_h``) their hidden ReLU gates, and ``J_Sp = diag(s) - s s^T / |S|`` the sparsemax Jacobian on its
support ``S`` (folded inference-mode BatchNorm, when the heads have it, is a diagonal scaling in the same chain).
``w_o`` is exactly the gradient ``d y_o / d p`` at ``p`` (the path is linear around ``p``), which is how it is
computed here; for ``head="regressor"`` with no ReLU cut-off ``w_o`` is just the product of R's and C's weights,
i.e. Zhou et al.'s "last-layer weights" mapped back to the ``K`` feature channels. Then, per image,

    CAM_o(i, j) = sum_k w_ok F_ij,k,    sum_ij CAM_o / (h w) = y_o - (bias terms),    map = (CAM_v + CAM_a) / 2,

upsampled bilinearly to the image and min-max normalised to [0, 1]. H's final ``0.5 tanh`` is left out (it is
monotone: like CAM on pre-softmax logits), so the two outputs are weighted alike. When ``Sp(z)`` has a single
non-zero entry (``|S| = 1``, common once ``z`` has one dominant unit) ``J_Sp = 0``: H's output does not depend on the
features around that image, and its map is all zeros, honestly so.

For this architecture (global average pooling before the first FC) the map is Grad-CAM's before its ReLU, up to a
positive factor: Grad-CAM weights channel ``k`` by ``mean_ij dy/dF_ij,k = w_ok / (h w)``. :func:`keras_vis_map` runs
Grad-CAM and Score-CAM through tf-keras-vis 0.8.7 (with score functions on the valence and the arousal output, maps
averaged) as independent implementations.

Models: anything with ``encoder`` (image -> (B, h, w, K) feature map), ``compressor`` (starting with global average
pooling) and ``regressor`` sub-models, and ``head`` for ``head="head"``, e.g. :class:`ferkeras.models.avce.AVCEModel`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Dict, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from ferkeras.ops.feature_transforms import sparsemax

logger = logging.getLogger("ferkeras.viz.cam")

HEADS = ("regressor", "head")
"""Which last layers :func:`neural_activation_map` maps back: AVCE's R or H."""
METHODS = ("cam", "cam_head", "gradcam", "scorecam")
"""Maps :func:`activation_maps` can compute: CAM through R, CAM through H, Grad-CAM, Score-CAM (tf-keras-vis)."""
METHOD_TITLES = {"cam": "CAM (R)", "cam_head": "CAM (H)", "gradcam": "Grad-CAM", "scorecam": "Score-CAM"}


def _check_images(images):
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"activation maps: images must be (B, H, W, 3) floats in [0, 1], got shape {images.shape}")
    return images


def _pre_tanh_head(model):
    """H up to its last FC (``fc2``), i.e. without the final ``0.5 tanh``."""
    head = model.head
    try:
        last_fc = head.get_layer("fc2")
    except ValueError as err:
        raise ValueError(f"head={head.name!r} has no layer 'fc2' (the last FC of AVCE's H)") from err
    return keras.Model(head.input, last_fc.output, name=f"{head.name}_pre_tanh")


def linear_cam(model, images, head: str = "regressor"):
    """Per-output linearised CAMs at the feature-map resolution (module docstring).

    Args:
        model: an AVCE-like model (``encoder``, ``compressor``, ``regressor``, ``head``).
        images: (B, H, W, 3) floats in [0, 1].
        head: ``"regressor"`` (E -> C -> R) or ``"head"`` (E -> C -> Sp -> H, before its tanh).

    Returns:
        ``(cams, outputs, weights)``: cams (B, h, w, 2) [valence, arousal] maps, outputs (B, 2) the linearised path's
        outputs at the images, weights (B, K, 2) the effective channel weights ``w_o`` of each image.
    """
    if head not in HEADS:
        raise ValueError(f"linear_cam: head must be one of {HEADS}, got {head!r}")
    images = _check_images(images)
    features = tf.cast(model.encoder(images, training=False), tf.float32)
    if features.shape.rank != 4:
        raise ValueError(f"linear_cam: the encoder must return a (B, h, w, K) feature map, got {features.shape}")
    last = model.regressor if head == "regressor" else _pre_tanh_head(model)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        z = model.compressor(features, training=False)
        if head == "head":
            z = sparsemax(z)
        outputs = tf.cast(last(z, training=False), tf.float32)
        per_output = [tf.reduce_sum(outputs[:, o]) for o in range(outputs.shape[-1])]
    # d y_o / d p_k = sum_ij d y_o / d F_ij,k because p = mean_ij F_ij (C starts with global average pooling);
    # images are independent in inference mode, so the batch-summed output gives every image's own gradient.
    weights = tf.stack([tf.reduce_sum(tape.gradient(y, features), axis=(1, 2)) for y in per_output], axis=-1)
    del tape
    cams = tf.einsum("bhwk,bko->bhwo", features, weights)
    return cams, outputs, weights


def _resize_and_normalise(maps, size, normalize: bool):
    """(B, h, w) -> (B, H, W) bilinear, then per-image min-max to [0, 1] (a constant map becomes 0)."""
    maps = tf.image.resize(tf.convert_to_tensor(maps, tf.float32)[..., None], size, method="bilinear")[..., 0]
    if not normalize:
        return maps.numpy()
    lo = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    span = tf.reduce_max(maps, axis=(1, 2), keepdims=True) - lo
    return tf.math.divide_no_nan(maps - lo, span).numpy()


def neural_activation_map(model, images, head: str = "regressor", normalize: bool = True) -> np.ndarray:
    """AVCE's neural activation map (seed 000, Sec. 4.4): mean of the valence and arousal CAMs of R or H.

    Args:
        model: an AVCE-like model (see the module docstring).
        images: (B, H, W, 3) floats in [0, 1].
        head: ``"regressor"`` (R) or ``"head"`` (H on the attentive view Sp(z)).
        normalize: min-max normalise each map to [0, 1] (else the signed map, in output units per position).

    Returns:
        float32 array (B, H, W) at the image resolution.
    """
    cams, _, _ = linear_cam(model, images, head)
    images = _check_images(images)
    return _resize_and_normalise(tf.reduce_mean(cams, axis=-1), images.shape[1:3], normalize)


def inference_model(model) -> keras.Model:
    """A flat functional model image -> (B, 2) through E -> C -> R, whose encoder layers (the last one named
    ``"features"`` in :mod:`ferkeras.models.backbones`) are top-level layers, as tf-keras-vis needs."""
    encoder = model.encoder
    return keras.Model(encoder.input, model.regressor(model.compressor(encoder.output)), name="cam_inference")


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
                  layer_name: str = "features") -> np.ndarray:
    """Grad-CAM or Score-CAM of E -> C -> R through tf-keras-vis 0.8.7, averaging the valence and arousal maps.

    Args:
        model: an AVCE-like model.
        images: (B, H, W, 3) floats in [0, 1].
        method: ``"gradcam"`` (Selvaraju et al., ICCV 2017) or ``"scorecam"`` (Wang et al., CVPRW 2020).
        max_n: Score-CAM's ``max_N`` (channels with the largest activations it tries; ``None`` = all of them).
        layer_name: the encoder's last feature-map layer.

    Returns:
        float32 array (B, H, W) in [0, 1]: each output's map normalised by tf-keras-vis, the two averaged, and the
        mean min-max normalised again (as :func:`neural_activation_map`).
    """
    with warnings.catch_warnings():  # tf-keras-vis 0.8.7 imports a deprecated scipy.ndimage path
        warnings.simplefilter("ignore", DeprecationWarning)
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.scorecam import Scorecam

    if method not in ("gradcam", "scorecam"):
        raise ValueError(f"keras_vis_map: method must be 'gradcam' or 'scorecam', got {method!r}")
    images = _check_images(images)
    flat = inference_model(model)
    try:
        layer = flat.get_layer(layer_name)  # the layer object: by name tf-keras-vis would also search sub-models
    except ValueError as err:
        raise ValueError(f"keras_vis_map: the encoder has no layer {layer_name!r}") from err
    maps = []
    with _quiet():
        for o in range(2):  # valence, arousal
            score = lambda outputs, o=o: outputs[:, o]  # noqa: E731
            if method == "gradcam":
                cam = Gradcam(flat, clone=False)(score, images, penultimate_layer=layer,
                                                 seek_penultimate_conv_layer=False)
            else:
                cam = Scorecam(flat, clone=False)(score, images, penultimate_layer=layer,
                                                  seek_penultimate_conv_layer=False, max_N=max_n)
            maps.append(np.asarray(cam, np.float32).reshape(images.shape[:3]))
    mean = np.mean(maps, axis=0)
    lo, hi = mean.min(axis=(1, 2), keepdims=True), mean.max(axis=(1, 2), keepdims=True)
    return np.where(hi > lo, (mean - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)


def activation_maps(model, images, methods: Sequence[str] = METHODS, max_n: Optional[int] = 16
                    ) -> Dict[str, np.ndarray]:
    """The maps named in ``methods`` (see :data:`METHODS`), each (B, H, W) in [0, 1]."""
    out = {}
    for method in methods:
        if method == "cam":
            out[method] = neural_activation_map(model, images, "regressor")
        elif method == "cam_head":
            out[method] = neural_activation_map(model, images, "head")
        elif method in ("gradcam", "scorecam"):
            out[method] = keras_vis_map(model, images, method, max_n=max_n)
        else:
            raise ValueError(f"activation_maps: unknown method {method!r}; expected some of {METHODS}")
    return out


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
                 cell_inches: float = 1.6) -> np.ndarray:
    """A figure grid: one row per image, columns "input" then one overlay per map, as an RGB uint8 array.

    Args:
        images: (B, H, W, 3) floats in [0, 1].
        maps: column title (or a :data:`METHODS` name) -> (B, H, W) maps in [0, 1], in column order.
        alpha, cmap: see :func:`overlay`.
        cell_inches: size of one cell of the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = np.asarray(images, np.float32)
    rows, cols = images.shape[0], 1 + len(maps)
    fig = Figure(figsize=(cell_inches * cols, cell_inches * rows + 0.3), dpi=100)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    titles = ["input"] + [METHOD_TITLES.get(name, name) for name in maps]
    for r in range(rows):
        panels = [images[r]] + [overlay(images[r], m[r], alpha, cmap) for m in maps.values()]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(np.clip(panel, 0.0, 1.0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    fig.tight_layout(pad=0.3)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(path, grid: np.ndarray) -> str:
    """Writes an RGB uint8 array (e.g. from :func:`overlay_grid`) as PNG; returns the path."""
    from matplotlib import image as mpimg

    path = str(path)
    mpimg.imsave(path, np.asarray(grid, np.uint8))
    return path


def activation_grid(model, images, methods: Sequence[str] = METHODS, max_n: Optional[int] = 16,
                    path=None, **overlay_kwargs) -> np.ndarray:
    """:func:`activation_maps` drawn by :func:`overlay_grid` (input, CAM R, CAM H, Grad-CAM, Score-CAM by default);
    also saved as PNG when ``path`` is given. Returns the RGB uint8 grid."""
    images = np.asarray(_check_images(images))
    grid = overlay_grid(images, activation_maps(model, images, methods, max_n=max_n), **overlay_kwargs)
    if path is not None:
        save_png(path, grid)
        logger.info("activation maps written to %s", path)
    return grid
