"""AVCE's activation maps: the class activation map (CAM) of the regressor R and of the projection head H.

Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022, Sec. 4.4
(Figs. 5-6), show the CAM of Zhou et al. ("Learning Deep Features for Discriminative Localization", CVPR 2016,
ref. [58] of the paper), "computed from the feature maps and the weight matrices of the last layer of R (or H)",
averaging the valence and the arousal maps.

Zhou et al.'s CAM needs a linear map from globally pooled features to the output, ``y_o = sum_k w_ok p_k``, where
``p = mean_ij F_ij`` pools the last feature map ``F`` (h x w x K); then ``CAM_o(i, j) = sum_k w_ok F_ij,k`` and
``mean_ij CAM_o = y_o``. In AVCE the pooled features pass through more than one layer before the output: C's
FC + ReLU to ``z``, then R (FC, ReLU, FC) or H (on the attentive view ``Sp(z)``, Eq. 6: FC, ReLU, FC, 0.5 tanh). Every
one of those is piecewise linear, so :func:`neural_activation_map` **linearises the whole path at the image's own
pooled features**: the ReLU gates (and the sparsemax support) are fixed at their values for ``p``, which leaves

    w_o = W_c diag(g_c) W_1 diag(g_1) W_2[:, o]                  (head="regressor": E -> C -> R)
    w_o = W_c diag(g_c) J_Sp W_h1 diag(g_h) W_h2[:, o]           (head="head":      E -> C -> Sp -> H, before tanh)

with ``W_c`` C's FC kernel (K x 32), ``g_c = 1[p W_c + b_c > 0]``, ``W_1, W_2`` (``W_h1, W_h2``) the FC kernels of R
(H), ``g_1`` (``g_h``) their hidden ReLU gates, and ``J_Sp = diag(s) - s s^T / |S|`` the sparsemax Jacobian on its
support ``S`` (folded inference-mode BatchNorm, when the heads have it, is a diagonal scaling in the same chain).
``w_o`` is exactly the gradient ``d y_o / d p`` at ``p`` (the path is linear around ``p``), which is how it is
computed here; for ``head="regressor"`` with no ReLU cut-off ``w_o`` is just the product of R's and C's weights,
i.e. Zhou et al.'s "last-layer weights" mapped back to the ``K`` feature channels. Then, per image,

    CAM_o(i, j) = sum_k w_ok F_ij,k,    sum_ij CAM_o / (h w) = y_o - (bias terms),    map = (CAM_v + CAM_a) / 2,

upsampled bilinearly to the image and min-max normalised to [0, 1]. With the authors' compressor
(``AVCEModel(compressor="flatten")``: 6 x 6 adaptive pooling and flatten instead of global pooling) the weights
differ per position: ``CAM_o(i, j) = h w sum_k F_ij,k d y_o / d F_ij,k``, which is the formula above when C pools
globally (then ``d y_o / d F_ij,k = w_ok / (h w)`` everywhere) and, the path being piecewise linear, still sums to
``h w (y_o - bias terms)``. H's final ``0.5 tanh`` is left out (it is
monotone: like CAM on pre-softmax logits), so the two outputs are weighted alike. When ``Sp(z)`` has a single
non-zero entry (``|S| = 1``, common once ``z`` has one dominant unit) ``J_Sp = 0``: H's output does not depend on the
features around that image, and its map is all zeros, honestly so.

For this architecture (global average pooling before the first FC) the map is Grad-CAM's before its ReLU, up to a
positive factor: Grad-CAM weights channel ``k`` by ``mean_ij dy/dF_ij,k = w_ok / (h w)``. :func:`keras_vis_map` runs
the generic Grad-CAM and Score-CAM of :mod:`ferkeras.viz.cam` (tf-keras-vis) on the inference path E -> C -> R as
independent implementations, and :func:`activation_grid` draws all four maps side by side.

Models: anything with ``encoder`` (image -> (B, h, w, K) feature map), ``compressor`` (starting with global average
pooling, or average pooling to a grid and flatten) and ``regressor`` sub-models, and ``head`` for ``head="head"``, e.g. :class:`ferkeras.methods.avce.AVCEModel`.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from ferkeras.ops.sparsemax import sparsemax
from ferkeras.viz import cam as generic_cam

logger = logging.getLogger("ferkeras.methods.avce.cam")

HEADS = ("regressor", "head")
"""Which last layers :func:`neural_activation_map` maps back: AVCE's R or H."""
METHODS = ("cam", "cam_head", "gradcam", "scorecam")
"""Maps :func:`activation_maps` can compute: CAM through R, CAM through H, Grad-CAM, Score-CAM (tf-keras-vis)."""
METHOD_TITLES = {"cam": "CAM (R)", "cam_head": "CAM (H)", **generic_cam.KERAS_VIS_TITLES}
"""Column titles of :func:`activation_grid`."""


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
        outputs at the images, weights (B, K, 2) the effective channel weights ``w_o`` of each image (summed over
        the positions: for a flattening compressor the maps use the per-position weights).
    """
    if head not in HEADS:
        raise ValueError(f"linear_cam: head must be one of {HEADS}, got {head!r}")
    images = generic_cam.check_images(images)
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
    # Images are independent in inference mode, so the batch-summed output gives every image's own gradient.
    # Global pooling: d y_o / d F_ij,k = w_ok / (h w) at every position, and d y_o / d p_k = sum_ij of it.
    grads = tf.stack([tape.gradient(y, features) for y in per_output], axis=-1)  # (B, h, w, K, O)
    del tape
    weights = tf.reduce_sum(grads, axis=(1, 2))
    hw = float(features.shape[1] * features.shape[2])
    cams = hw * tf.einsum("bhwk,bhwko->bhwo", features, grads)
    return cams, outputs, weights


def neural_activation_map(model, images, head: str = "regressor", normalize: bool = True) -> np.ndarray:
    """AVCE's neural activation map (Kim & Song, Sec. 4.4): mean of the valence and arousal CAMs of R or H.

    Args:
        model: an AVCE-like model (see the module docstring).
        images: (B, H, W, 3) floats in [0, 1].
        head: ``"regressor"`` (R) or ``"head"`` (H on the attentive view Sp(z)).
        normalize: min-max normalise each map to [0, 1] (else the signed map, in output units per position).

    Returns:
        float32 array (B, H, W) at the image resolution.
    """
    cams, _, _ = linear_cam(model, images, head)
    images = generic_cam.check_images(images)
    return generic_cam.resize_and_normalise(tf.reduce_mean(cams, axis=-1), images.shape[1:3], normalize)


def inference_model(model) -> keras.Model:
    """A flat functional model image -> (B, 2) through E -> C -> R, whose encoder layers (the last one named
    ``"features"`` in :mod:`ferkeras.models.backbones`) are top-level layers, as tf-keras-vis needs."""
    encoder = model.encoder
    return keras.Model(encoder.input, model.regressor(model.compressor(encoder.output)), name="cam_inference")


def keras_vis_map(model, images, method: str = "gradcam", max_n: Optional[int] = 16,
                  layer_name: str = "features") -> np.ndarray:
    """Grad-CAM or Score-CAM of AVCE's E -> C -> R (:func:`ferkeras.viz.cam.keras_vis_map` on
    :func:`inference_model`), averaging the valence and arousal maps; (B, H, W) float32 in [0, 1]."""
    if method not in generic_cam.KERAS_VIS_METHODS:
        raise ValueError(f"keras_vis_map: method must be 'gradcam' or 'scorecam', got {method!r}")
    flat = inference_model(model)
    if layer_name not in {layer.name for layer in flat.layers}:
        raise ValueError(f"keras_vis_map: the encoder has no layer {layer_name!r}")
    return generic_cam.keras_vis_map(flat, images, method, max_n=max_n, layer_name=layer_name, outputs=(0, 1))


def activation_maps(model, images, methods: Sequence[str] = METHODS, max_n: Optional[int] = 16
                    ) -> Dict[str, np.ndarray]:
    """The maps named in ``methods`` (see :data:`METHODS`), each (B, H, W) in [0, 1]."""
    out = {}
    for method in methods:
        if method == "cam":
            out[method] = neural_activation_map(model, images, "regressor")
        elif method == "cam_head":
            out[method] = neural_activation_map(model, images, "head")
        elif method in generic_cam.KERAS_VIS_METHODS:
            out[method] = keras_vis_map(model, images, method, max_n=max_n)
        else:
            raise ValueError(f"activation_maps: unknown method {method!r}; expected some of {METHODS}")
    return out


def activation_grid(model, images, methods: Sequence[str] = METHODS, max_n: Optional[int] = 16,
                    path=None, **overlay_kwargs) -> np.ndarray:
    """:func:`activation_maps` drawn by :func:`ferkeras.viz.cam.overlay_grid` (input, CAM R, CAM H, Grad-CAM,
    Score-CAM by default); also saved as PNG when ``path`` is given. Returns the RGB uint8 grid."""
    images = np.asarray(generic_cam.check_images(images))
    overlay_kwargs.setdefault("titles", METHOD_TITLES)
    grid = generic_cam.overlay_grid(images, activation_maps(model, images, methods, max_n=max_n), **overlay_kwargs)
    if path is not None:
        generic_cam.save_png(path, grid)
        logger.info("activation maps written to %s", path)
    return grid
