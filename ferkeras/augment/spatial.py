"""In-graph spatial and photometric augmentation of face batches, landmarks kept consistent.

:class:`FaceAugment` runs inside ``tf.data`` on batched float images in [0, 1]
(``(B, S, S, 3)``) and, optionally, their 68 dlib landmarks in pixel
coordinates of those images (``(B, 68, 2)``, NaN where absent).  It covers the
augmentations the four papers list (their settings and sources: docs/papers.md):

* geometry - random resized crop (area ``crop_scale``, aspect ``crop_ratio``;
  "resize 256, random crop 224" is ``crop_scale=((224/256)**2,)*2``), rotation
  up to ``max_rotation`` degrees and horizontal flip - composed into ONE affine
  map per image, so the image is resampled once
  (``tf.raw_ops.ImageProjectiveTransformV3``) and landmarks go through the
  same map exactly; a flip also permutes landmark indices
  (:data:`DLIB_FLIP_PERMUTATION`), so point 36 stays the outer corner of the
  eye on the image's left;
* colour jitter with torchvision's definitions (brightness multiplies,
  contrast and saturation blend with the grey mean / grey image, hue rotates
  the HSV hue by up to ``hue`` turns), applied as a whole with probability
  ``jitter_p``; grayscale with probability ``grayscale_p``
  (``keras.layers.RandomGrayscale``); Gaussian blur with probability ``blur_p``
  and sigma drawn per image.

Why the jitter and blur are not Keras layers: Keras 3.15 ships
``RandomColorJitter``/``RandomBrightness``/``RandomSaturation``/``RandomHue``/
``RandomGaussianBlur`` and they do run inside tf.data on the TF backend, but
their parameters mean something else than the papers' (torchvision) settings -
brightness is additive, saturation 0.5 is the identity, blur has no apply
probability, and jitter has no apply probability - so the papers' numbers
(e.g. ColorJitter(0.4, 0.4, 0.4, 0.2) with p = 0.8) could not be expressed.
``RandomGrayscale(factor=p)`` matches exactly and is used.  ``RandomFlip``,
``RandomCrop``, ``RandomRotation`` cannot move keypoints, hence the own affine.

Randomness comes from a ``keras.random.SeedGenerator`` (and the grayscale
layer's own); the pipeline maps this callable sequentially when
``deterministic=True``, which makes a seeded run reproducible while every epoch
still draws new augmentations.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

# For each dlib 68-point index, the index of the point it becomes after a horizontal mirror.
DLIB_FLIP_PERMUTATION = np.array(
    list(range(16, -1, -1))                       # jaw 0..16
    + list(range(26, 16, -1))                     # brows 17..21 <-> 26..22
    + [27, 28, 29, 30]                            # nose bridge
    + [35, 34, 33, 32, 31]                        # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes 36..41 <-> 42..47
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],            # inner lips
    dtype=np.int32)


# Paper settings (docs/papers.md); FaceAugment.preset(name) and ferkeras.augment.ssl read them from here.
PRESETS = {
    "none": dict(flip=False),
    "avce": dict(crop_scale=((224 / 256) ** 2,) * 2, brightness=0.4, contrast=0.4, saturation=0.4),
    "sslfer": dict(crop_scale=((112 / 128) ** 2,) * 2, blur_p=0.5, brightness=0.4, contrast=0.4,
                   saturation=0.4, hue=0.2, jitter_p=0.8, grayscale_p=0.2),
    "srp": dict(crop_scale=(0.6, 1.0), crop_ratio=(3 / 4, 4 / 3), max_rotation=6.0),
    "rmfer": dict(brightness=0.4, contrast=0.4, saturation=0.4, jitter_p=1 / 3, grayscale_p=1 / 3),
}


def flip_landmarks(landmarks, width):
    """Mirrors 68 dlib landmarks (..., 68, 2) of an image ``width`` pixels wide (x -> width-1-x, relabel)."""
    landmarks = tf.convert_to_tensor(landmarks, tf.float32)
    mirrored = tf.stack([tf.cast(width, tf.float32) - 1.0 - landmarks[..., 0], landmarks[..., 1]], axis=-1)
    return tf.gather(mirrored, DLIB_FLIP_PERMUTATION, axis=-2)


def _grey(images):
    """ITU-R 601 luma, the weights torchvision and tf.image use, keeping a channel axis."""
    return tf.reduce_sum(images * tf.constant([0.299, 0.587, 0.114], images.dtype), axis=-1, keepdims=True)


def _per_image(values):
    return tf.reshape(values, [-1, 1, 1, 1])


def color_jitter(images, brightness: float, contrast: float, saturation: float, hue: float, p: float, seed):
    """torchvision's ColorJitter (fixed order: brightness, contrast, saturation, hue), applied with probability p.

    Per image, with probability ``p``: brightness multiplies by a factor drawn in ``[max(0, 1-b), 1+b]``;
    contrast blends with the mean grey level, ``x f + mean(grey(x)) (1 - f)``; saturation blends with the grey
    image, ``x f + grey(x) (1 - f)`` (ITU-R 601 luma); hue rotates the HSV hue by a shift drawn in
    ``[-hue, hue]`` turns; each result is clipped to [0, 1].  An image the jitter skips gets the neutral factors
    (1, 1, 1, hue shift 0) rather than a select between two full batches, which saves a pass over the pixels.

    Args:
      images: (B, H, W, 3) float32 in [0, 1].
      brightness, contrast, saturation: strengths >= 0 (0 = off); hue: in [0, 0.5] (0 = off).
      p: probability of jittering an image.
      seed: a ``keras.random.SeedGenerator``.
    """
    n = tf.shape(images)[0]
    apply = keras.random.uniform((n,), 0.0, 1.0, seed=seed) < p

    def factor(strength):
        drawn = keras.random.uniform((n,), max(0.0, 1 - strength), 1 + strength, seed=seed)
        return _per_image(tf.where(apply, drawn, 1.0))

    out = images
    if brightness > 0:
        out = tf.clip_by_value(out * factor(brightness), 0.0, 1.0)
    if contrast > 0:
        f = factor(contrast)
        mean = _grey(tf.reduce_mean(out, axis=[1, 2], keepdims=True))  # grey of the mean = mean of grey
        out = tf.clip_by_value(out * f + mean * (1 - f), 0.0, 1.0)
    if saturation > 0:
        f = factor(saturation)
        out = tf.clip_by_value(out * f + _grey(out) * (1 - f), 0.0, 1.0)
    if hue > 0:
        hsv = tf.image.rgb_to_hsv(out)
        shift = _per_image(tf.where(apply, keras.random.uniform((n,), -hue, hue, seed=seed), 0.0))
        h = tf.math.floormod(hsv[..., :1] + shift, 1.0)
        out = tf.image.hsv_to_rgb(tf.concat([h, hsv[..., 1:]], axis=-1))
    return out


def gaussian_blur(images, p: float, kernel: int, sigma: Tuple[float, float], seed):
    """Separable Gaussian blur (torchvision's GaussianBlur), applied to each image with probability ``p``.

    Each blurred image gets its own isotropic sigma drawn uniformly in ``sigma``; the ``kernel`` (odd) taps are
    ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1, borders reflected.  Skipped images get sigma ~ 0 (an identity
    kernel).  ``seed`` is a ``keras.random.SeedGenerator``.
    """
    n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    apply = keras.random.uniform((n,), 0.0, 1.0, seed=seed) < p
    sigma = tf.where(apply, keras.random.uniform((n,), sigma[0], sigma[1], seed=seed), 1e-3)
    r = kernel // 2
    x = tf.range(-r, r + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (x[None, :] / sigma[:, None]) ** 2)
    k = k / tf.reduce_sum(k, axis=1, keepdims=True)                       # (B, K)
    k = tf.repeat(k, 3, axis=0)                                           # (B*3, K) one per channel
    # Fold the batch into channels so each image gets its own separable kernel.
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, n * 3])
    pad = tf.pad(folded, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
    kx = tf.transpose(k)[None, :, :, None]                                # (1, K, C, 1)
    ky = tf.transpose(k)[:, None, :, None]                                # (K, 1, C, 1)
    out = tf.nn.depthwise_conv2d(pad, kx, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, ky, [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(out, [h, w, n, 3]), [2, 0, 1, 3])


class FaceAugment:
    """Random face augmentation for batched images in [0, 1] and their landmarks.

    Args:
      crop_scale: (min, max) fraction of the image area a random resized crop keeps; (1, 1) = none.
      crop_ratio: (min, max) aspect ratio (w/h) of that crop, drawn log-uniformly.
      max_rotation: rotation drawn uniformly in +-max_rotation degrees.
      flip: mirror horizontally with probability 1/2.
      brightness, contrast, saturation, hue: torchvision ColorJitter strengths (factors drawn in
        [max(0, 1-s), 1+s], hue shift in [-hue, hue] turns, hue <= 0.5).
      jitter_p: probability of applying the colour jitter to an image.
      grayscale_p: probability of turning an image grey (3 equal channels).
      blur_p: probability of a Gaussian blur; blur_kernel odd size, blur_sigma (min, max).
      fill_mode: how pixels mapped from outside the image are filled ("reflect", "constant", "nearest").
      seed: integer seed; None draws from Keras' global seed.
    """

    def __init__(self, crop_scale: Tuple[float, float] = (1.0, 1.0), crop_ratio: Tuple[float, float] = (1.0, 1.0),
                 max_rotation: float = 0.0, flip: bool = True, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0, jitter_p: float = 1.0, grayscale_p: float = 0.0,
                 blur_p: float = 0.0, blur_kernel: int = 3, blur_sigma: Tuple[float, float] = (0.1, 2.0),
                 fill_mode: str = "reflect", seed: Optional[int] = None):
        if not (0 < crop_scale[0] <= crop_scale[1] <= 1):
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
        if not (0 < crop_ratio[0] <= crop_ratio[1]):
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, got {crop_ratio}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        if blur_kernel % 2 != 1:
            raise ValueError(f"blur_kernel must be odd, got {blur_kernel}")
        if fill_mode not in ("reflect", "constant", "nearest", "wrap"):
            raise ValueError(f"unknown fill_mode {fill_mode!r}")
        self.crop_scale, self.crop_ratio = tuple(map(float, crop_scale)), tuple(map(float, crop_ratio))
        self.max_rotation, self.flip = float(max_rotation), bool(flip)
        self.brightness, self.contrast, self.saturation, self.hue = map(float, (brightness, contrast, saturation, hue))
        self.jitter_p, self.grayscale_p, self.blur_p = float(jitter_p), float(grayscale_p), float(blur_p)
        self.blur_kernel, self.blur_sigma = int(blur_kernel), tuple(map(float, blur_sigma))
        self.fill_mode = fill_mode
        self.seed = seed
        self._seeds = keras.random.SeedGenerator(seed)
        self._grayscale = (keras.layers.RandomGrayscale(factor=self.grayscale_p, seed=seed)
                           if self.grayscale_p > 0 else None)

    # ---- presets matching the papers' settings (docs/papers.md) ----
    @classmethod
    def preset(cls, name: str, seed: Optional[int] = None) -> "FaceAugment":
        """Named settings: "avce" (resize 256 / crop 224, jitter, flip), "sslfer" (128 -> 112 crop, flip, blur,
        jitter 0.4/0.4/0.4/0.2 p 0.8, grey p 0.2), "srp" (rotation 6 deg, resized crop 0.6-1, flip),
        "rmfer" (flip, jitter, grey - the paper draws one of them; here each with its own probability), "none".

        "sslfer" is the same-size form of SSL-FER's spatial augmentation for supervised pipelines (a crop of
        112/128 of the side, resized back, equals "resize 128, random crop 112" in one resampling); the named-step
        form with the landmark masking and explicit sizes is :func:`ferkeras.augment.ssl.sslfer_steps`, which
        takes its photometric numbers from this same table and runs the same jitter / blur / grey code."""
        if name not in PRESETS:
            raise ValueError(f"unknown augmentation preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(seed=seed, **PRESETS[name])

    def _uniform(self, n, low, high):
        return keras.random.uniform((n,), low, high, seed=self._seeds)

    # ---- geometry ----
    def _affine(self, n, size):
        """Per-image 2x2 matrix M and offset t with input_xy = M (output_xy - c) + t, plus the flip flags."""
        s = tf.cast(size, tf.float32)
        area = self._uniform(n, self.crop_scale[0], self.crop_scale[1])
        log_ratio = self._uniform(n, math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]))
        ratio = tf.exp(log_ratio)
        sx = tf.minimum(tf.sqrt(area * ratio), 1.0)
        sy = tf.minimum(tf.sqrt(area / ratio), 1.0)
        centre = (s - 1.0) / 2.0
        tx = centre + self._uniform(n, -1.0, 1.0) * (1.0 - sx) * s / 2.0
        ty = centre + self._uniform(n, -1.0, 1.0) * (1.0 - sy) * s / 2.0
        theta = self._uniform(n, -self.max_rotation, self.max_rotation) * (math.pi / 180.0)
        if self.flip:
            flipped = self._uniform(n, 0.0, 1.0) < 0.5
        else:
            flipped = tf.zeros((n,), tf.bool)
        f = tf.where(flipped, -1.0, 1.0)
        cos, sin = tf.cos(theta), tf.sin(theta)
        # M = R(theta) @ diag(sx, sy) @ diag(f, 1)
        m = tf.stack([tf.stack([cos * sx * f, -sin * sy], -1), tf.stack([sin * sx * f, cos * sy], -1)], -2)
        return m, tf.stack([tx, ty], -1), centre, flipped

    def _geometry(self, images, landmarks):
        n, size = tf.shape(images)[0], tf.shape(images)[1]
        m, t, c, flipped = self._affine(n, size)
        offset = t - c * tf.reduce_sum(m, axis=-1)           # t - M @ (c, c)
        transforms = tf.stack([m[:, 0, 0], m[:, 0, 1], offset[:, 0], m[:, 1, 0], m[:, 1, 1], offset[:, 1],
                               tf.zeros_like(offset[:, 0]), tf.zeros_like(offset[:, 0])], axis=-1)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode=self.fill_mode.upper())
        if landmarks is not None:
            # output = M^-1 (input - t) + c, then relabel mirrored points.
            inv = tf.linalg.inv(m)
            out = tf.einsum("bij,bkj->bki", inv, landmarks - t[:, None, :]) + c
            landmarks = tf.where(flipped[:, None, None], tf.gather(out, DLIB_FLIP_PERMUTATION, axis=1), out)
        return images, landmarks

    # ---- photometric (one implementation: the module functions, shared with ferkeras.augment.ssl) ----
    def _jitter(self, images):
        return color_jitter(images, self.brightness, self.contrast, self.saturation, self.hue, self.jitter_p,
                            self._seeds)

    def _blur(self, images):
        return gaussian_blur(images, self.blur_p, self.blur_kernel, self.blur_sigma, self._seeds)

    @property
    def has_geometry(self) -> bool:
        return self.flip or self.max_rotation > 0 or self.crop_scale != (1.0, 1.0) or self.crop_ratio != (1.0, 1.0)

    def __call__(self, images, landmarks=None):
        """Augments ``images`` (B, S, S, 3) float32 in [0, 1]; returns (images, landmarks or None)."""
        images = tf.convert_to_tensor(images, tf.float32)
        if landmarks is not None:
            landmarks = tf.convert_to_tensor(landmarks, tf.float32)
        if self.has_geometry:
            images, landmarks = self._geometry(images, landmarks)
        if max(self.brightness, self.contrast, self.saturation, self.hue) > 0 and self.jitter_p > 0:
            images = self._jitter(images)
        if self._grayscale is not None:
            images = self._grayscale(images, training=True)
        if self.blur_p > 0:
            images = self._blur(images)
        return tf.clip_by_value(images, 0.0, 1.0), landmarks

    def __repr__(self):
        keys = ("crop_scale", "crop_ratio", "max_rotation", "flip", "brightness", "contrast", "saturation", "hue",
                "jitter_p", "grayscale_p", "blur_p", "seed")
        return "FaceAugment(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"


__all__: Sequence[str] = ("DLIB_FLIP_PERMUTATION", "PRESETS", "FaceAugment", "color_jitter", "flip_landmarks",
                          "gaussian_blur")
