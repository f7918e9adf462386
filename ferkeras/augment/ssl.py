"""SSL-FER's spatial augmentation as named, parametrised steps that run inside ``tf.data``.

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Sec. 4.1 ("Data augmentation"): landmark-based masking (eyes or mouth), resizing (128, 128), random crop
(112, 112), horizontal flipping, Gaussian blurring, colour jittering and random grayscale; the authors' code uses
blur kernel 3 with p 0.5, ColorJitter(0.4, 0.4, 0.4, 0.2) with p 0.8 and grayscale with p 0.2 (the project's
reference notes).  :func:`sslfer_steps` builds that stack; every step is a class of its own, so a stack can be
changed step by step (``stack.replace("crop", RandomCrop(56))``, ``stack.without("mask")``).

A step is called as ``step(images, landmarks=None, context=None) -> (images, landmarks)`` on a batch of float32
images ``(B, H, W, 3)`` in [0, 1] and, optionally, their 68 dlib landmarks ``(B, 68, 2)`` in pixels (NaN where
unknown).  Geometric steps move the landmarks with the pixels, so a later landmark-based step still finds the
eyes; ``context`` is the whole batch dict when a step runs under :class:`ferkeras.augment.views.MultiViewAugment`
(steps that need a second image read it there).  A :class:`Compose` is itself a step and also fits the
``augment=`` argument of the ``ferkeras.data`` pipelines (``augment(images, landmarks)``).

Which Keras 3 preprocessing layers are used, and why not the others (each checked against its definition):

* ``keras.layers.Resizing`` (bilinear), ``keras.layers.RandomFlip("horizontal")`` (per image, p = 1/2; the
  step reads the layer's flip flags to mirror the landmarks) and ``keras.layers.RandomGrayscale(factor=p)`` (per
  image, ITU-R 601 luma in all three channels) do what the paper's steps do and are used.
* ``keras.layers.RandomCrop`` crops every image of a batch at ONE offset, so in a batched pipeline all views of a
  batch would share the crop; :class:`RandomCrop` draws an offset per image.
* ``keras.layers.RandomGaussianBlur`` draws one (anisotropic: x and y separately) sigma per batch and pads with
  zeros, darkening the border; ``keras.layers.RandomColorJitter`` has additive brightness, per-channel contrast,
  a saturation scale where 0.5 is the identity, and no apply probability - torchvision's
  ColorJitter(0.4, 0.4, 0.4, 0.2) with p 0.8 cannot be expressed with it.  :class:`GaussianBlur` and
  :class:`ColorJitter` run :func:`ferkeras.augment.spatial.gaussian_blur` /
  :func:`~ferkeras.augment.spatial.color_jitter`
  instead (the same code as :class:`~ferkeras.augment.spatial.FaceAugment`: one implementation).

Randomness comes from ``keras.random.SeedGenerator`` s (one per step, seeded from the step's ``seed``): a seeded
stack mapped sequentially is reproducible while every call draws new augmentations.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from ferkeras.augment.spatial import PRESETS, color_jitter, flip_landmarks, gaussian_blur
from ferkeras.face.regions import REGION_POINTS, region_boxes


def _as_images(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank != 4:
        raise ValueError(f"augmentation steps take a batch (B, H, W, C) of images, got shape {images.shape}")
    return images


def _as_landmarks(landmarks) -> Optional[tf.Tensor]:
    return None if landmarks is None else tf.convert_to_tensor(landmarks, tf.float32)


def _check_p(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return p


class Step:
    """A named augmentation step: ``step(images, landmarks=None, context=None) -> (images, landmarks)``."""

    name = "step"

    def __call__(self, images, landmarks=None, context=None):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MaskRegion(Step):
    """Landmark-based masking: with probability ``p`` one region (drawn uniformly from ``regions``) is filled.

    The region is the padded square box of :func:`ferkeras.face.regions.region_boxes` around the region's
    landmarks (``"eyes"``: eyes and brows; ``"mouth"``; ``"eyes_only"``), filled with ``fill``.  Images whose
    landmarks for the drawn region are not finite are left as they are and counted in :attr:`skipped_no_landmarks`
    (a ``tf.Variable``, readable after an epoch).  The paper names the step ("landmark-based masking (eyes or
    mouth)") without a probability; 0.5 is this library's default.
    """

    name = "mask"

    def __init__(self, regions: Sequence[str] = ("eyes", "mouth"), p: float = 0.5, margin: float = 0.15,
                 fill: float = 0.0, seed: Optional[int] = None):
        regions = (regions,) if isinstance(regions, str) else tuple(regions)
        unknown = [r for r in regions if r not in REGION_POINTS]
        if not regions or unknown:
            raise ValueError(f"regions must name regions of {tuple(REGION_POINTS)}, got {regions}")
        self.regions, self.p, self.margin, self.fill, self.seed = regions, _check_p("p", p), float(margin), \
            float(fill), seed
        self._seeds = keras.random.SeedGenerator(seed)
        self.skipped_no_landmarks = tf.Variable(0, dtype=tf.int64, trainable=False, name="mask_no_landmarks")

    def get_config(self):
        return dict(regions=self.regions, p=self.p, margin=self.margin, fill=self.fill, seed=self.seed)

    def __call__(self, images, landmarks=None, context=None):
        images = _as_images(images)
        if landmarks is None:
            raise ValueError("MaskRegion needs the images' landmarks (B, 68, 2); none were given")
        landmarks = _as_landmarks(landmarks)
        n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
        boxes, _ = region_boxes(landmarks, tf.shape(images)[1:3], regions=self.regions, margin=self.margin)
        valid = tf.stack([tf.reduce_all(tf.math.is_finite(tf.gather(landmarks, REGION_POINTS[r], axis=1)),
                                        axis=[1, 2]) for r in self.regions], axis=1)      # (B, R)
        apply = keras.random.uniform((n,), 0.0, 1.0, seed=self._seeds) < self.p
        pick = tf.cast(keras.random.uniform((n,), 0.0, float(len(self.regions)), seed=self._seeds), tf.int32)
        pick = tf.minimum(pick, len(self.regions) - 1)
        box = tf.gather(boxes, pick, axis=1, batch_dims=1)                                # (B, 4)
        ok = tf.gather(valid, pick, axis=1, batch_dims=1)
        self.skipped_no_landmarks.assign_add(tf.reduce_sum(tf.cast(apply & ~ok, tf.int64)))
        apply = apply & ok
        # Pixels whose centres lie in the box: [y0 (H-1) - 1/2, y1 (H-1) + 1/2) along each axis.
        hf, wf = tf.cast(h - 1, tf.float32), tf.cast(w - 1, tf.float32)
        rows = tf.cast(tf.range(h), tf.float32)[None, :]
        cols = tf.cast(tf.range(w), tf.float32)[None, :]
        in_rows = (rows >= box[:, 0:1] * hf - 0.5) & (rows < box[:, 2:3] * hf + 0.5)       # (B, H)
        in_cols = (cols >= box[:, 1:2] * wf - 0.5) & (cols < box[:, 3:4] * wf + 0.5)       # (B, W)
        inside = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
        return tf.where(inside[..., None], tf.cast(self.fill, images.dtype), images), landmarks


class Resize(Step):
    """Resizes every image to ``size`` x ``size`` (``keras.layers.Resizing``, bilinear); landmarks scale along.

    With half-pixel centres, output pixel ``j`` samples input ``(j + 1/2) / s - 1/2`` (``s`` = output / input
    size), so a landmark at ``x`` goes to ``(x + 1/2) s - 1/2``.
    """

    name = "resize"

    def __init__(self, size: int = 128, antialias: bool = True):
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self.antialias = int(size), bool(antialias)
        self._layer = keras.layers.Resizing(self.size, self.size, interpolation="bilinear", antialias=antialias)

    def get_config(self):
        return dict(size=self.size, antialias=self.antialias)

    def __call__(self, images, landmarks=None, context=None):
        images = _as_images(images)
        landmarks = _as_landmarks(landmarks)
        if landmarks is not None:
            hw = tf.cast(tf.shape(images)[1:3], tf.float32)
            scale = tf.stack([self.size / hw[1], self.size / hw[0]])                      # x, y
            landmarks = (landmarks + 0.5) * scale - 0.5
        return self._layer(images), landmarks


class RandomCrop(Step):
    """A ``size`` x ``size`` window at a random offset drawn per image (uniform over all whole-pixel offsets).

    Pixels are copied exactly; landmarks shift by the offset.  (``keras.layers.RandomCrop`` uses one offset for
    the whole batch.)  Images smaller than ``size`` are refused.
    """

    name = "crop"

    def __init__(self, size: int = 112, seed: Optional[int] = None):
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self.seed = int(size), seed
        self._seeds = keras.random.SeedGenerator(seed)

    def get_config(self):
        return dict(size=self.size, seed=self.seed)

    def __call__(self, images, landmarks=None, context=None):
        images = _as_images(images)
        landmarks = _as_landmarks(landmarks)
        n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
        tf.debugging.assert_greater_equal(tf.minimum(h, w), self.size,
                                          message=f"RandomCrop({self.size}) got images smaller than the crop")
        oy = tf.cast(tf.floor(keras.random.uniform((n,), 0.0, 1.0, seed=self._seeds)
                              * tf.cast(h - self.size + 1, tf.float32)), tf.int32)
        ox = tf.cast(tf.floor(keras.random.uniform((n,), 0.0, 1.0, seed=self._seeds)
                              * tf.cast(w - self.size + 1, tf.float32)), tf.int32)
        oy, ox = tf.minimum(oy, h - self.size), tf.minimum(ox, w - self.size)
        idx = tf.range(self.size)
        rows = oy[:, None] + idx[None, :]                                                   # (B, size)
        cols = ox[:, None] + idx[None, :]
        out = tf.gather(images, rows, axis=1, batch_dims=1)
        out = tf.gather(out, cols, axis=2, batch_dims=1)
        out = tf.ensure_shape(out, [None, self.size, self.size, images.shape[-1]])
        if landmarks is not None:
            landmarks = landmarks - tf.cast(tf.stack([ox, oy], -1), tf.float32)[:, None, :]
        return out, landmarks


class RandomFlip(Step):
    """Horizontal mirror with probability 1/2 per image (``keras.layers.RandomFlip("horizontal")``).

    Landmarks of a mirrored image go to ``W - 1 - x`` and are relabelled (:func:`ferkeras.augment.spatial.
    flip_landmarks`), so point 36 stays the outer corner of the eye on the image's left.
    """

    name = "flip"

    def __init__(self, seed: Optional[int] = None):
        self.seed = seed
        self._layer = keras.layers.RandomFlip("horizontal", seed=seed)

    def get_config(self):
        return dict(seed=self.seed)

    def __call__(self, images, landmarks=None, context=None):
        images = _as_images(images)
        landmarks = _as_landmarks(landmarks)
        transformation = self._layer.get_random_transformation(images, training=True)
        out = self._layer.transform_images(images, transformation, training=True)
        if landmarks is not None:
            flips = tf.reshape(transformation["flips"], [-1])
            landmarks = tf.where(flips[:, None, None], flip_landmarks(landmarks, tf.shape(images)[2]), landmarks)
        return out, landmarks


class GaussianBlur(Step):
    """Gaussian blur with probability ``p`` per image, kernel ``kernel`` taps, sigma drawn per image in ``sigma``.

    torchvision's GaussianBlur (isotropic, reflected borders); runs :func:`ferkeras.augment.spatial.gaussian_blur`.
    """

    name = "blur"

    def __init__(self, kernel: int = 3, sigma: Tuple[float, float] = (0.1, 2.0), p: float = 0.5,
                 seed: Optional[int] = None):
        if int(kernel) < 1 or int(kernel) % 2 != 1:
            raise ValueError(f"kernel must be a positive odd size, got {kernel}")
        if not 0 < sigma[0] <= sigma[1]:
            raise ValueError(f"sigma must satisfy 0 < min <= max, got {sigma}")
        self.kernel, self.sigma, self.p, self.seed = int(kernel), tuple(map(float, sigma)), _check_p("p", p), seed
        self._seeds = keras.random.SeedGenerator(seed)

    def get_config(self):
        return dict(kernel=self.kernel, sigma=self.sigma, p=self.p, seed=self.seed)

    def __call__(self, images, landmarks=None, context=None):
        return gaussian_blur(_as_images(images), self.p, self.kernel, self.sigma, self._seeds), landmarks


class ColorJitter(Step):
    """torchvision's ColorJitter(brightness, contrast, saturation, hue) applied with probability ``p`` per image.

    Runs :func:`ferkeras.augment.spatial.color_jitter` (its docstring gives the definitions).
    """

    name = "jitter"

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.2,
                 p: float = 0.8, seed: Optional[int] = None):
        if min(brightness, contrast, saturation) < 0 or not 0 <= hue <= 0.5:
            raise ValueError(f"need brightness, contrast, saturation >= 0 and hue in [0, 0.5], got "
                             f"{(brightness, contrast, saturation, hue)}")
        self.brightness, self.contrast, self.saturation, self.hue = map(float, (brightness, contrast, saturation,
                                                                               hue))
        self.p, self.seed = _check_p("p", p), seed
        self._seeds = keras.random.SeedGenerator(seed)

    def get_config(self):
        return dict(brightness=self.brightness, contrast=self.contrast, saturation=self.saturation, hue=self.hue,
                    p=self.p, seed=self.seed)

    def __call__(self, images, landmarks=None, context=None):
        out = color_jitter(_as_images(images), self.brightness, self.contrast, self.saturation, self.hue, self.p,
                           self._seeds)
        return out, landmarks


class RandomGrayscale(Step):
    """Grey (ITU-R 601 luma in all three channels) with probability ``p`` per image.

    ``keras.layers.RandomGrayscale(factor=p)`` (tf.image's luma weights 0.2989, 0.587, 0.114, torchvision's too).
    """

    name = "grayscale"

    def __init__(self, p: float = 0.2, seed: Optional[int] = None):
        self.p, self.seed = _check_p("p", p), seed
        self._layer = keras.layers.RandomGrayscale(factor=self.p, seed=seed)

    def get_config(self):
        return dict(p=self.p, seed=self.seed)

    def __call__(self, images, landmarks=None, context=None):
        return self._layer(_as_images(images), training=True), landmarks


class ImageOnly(Step):
    """Adapts an image-only callable (e.g. a Keras preprocessing layer) to a step.

    ``geometric=True`` says the callable moves pixels: landmarks are dropped after it (None), so a later
    landmark-based step fails loudly instead of using stale points.
    """

    def __init__(self, fn, name: Optional[str] = None, geometric: bool = True):
        self.fn, self.geometric = fn, bool(geometric)
        self.name = name or getattr(fn, "name", None) or type(fn).__name__

    def get_config(self):
        return dict(fn=self.fn, name=self.name, geometric=self.geometric)

    def __call__(self, images, landmarks=None, context=None):
        if isinstance(self.fn, keras.layers.Layer):
            out = self.fn(images, training=True)
        else:
            out = self.fn(images)
        return out, (None if self.geometric else landmarks)


def as_step(step) -> Step:
    """``step`` when it is a :class:`Step`; a callable (a Keras layer ...) wrapped in :class:`ImageOnly`."""
    if isinstance(step, Step):
        return step
    if callable(step):
        return ImageOnly(step)
    raise TypeError(f"an augmentation step must be a Step or a callable, got {step!r}")


class Compose(Step):
    """Steps run in order; itself a step.  Steps are looked up by name: ``stack["crop"]``.

    ``stack(images, landmarks=None, context=None) -> (images, landmarks)``; the images must be float32 in [0, 1]
    (they are clipped to [0, 1] at the end).
    """

    name = "compose"

    def __init__(self, steps: Iterable, name: Optional[str] = None):
        self.steps: List[Step] = [as_step(s) for s in steps]
        names = [s.name for s in self.steps]
        duplicates = sorted({x for x in names if names.count(x) > 1})
        if duplicates:
            raise ValueError(f"step names must be unique in a Compose, repeated: {duplicates}")
        if name is not None:
            self.name = name

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def __getitem__(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step named {name!r}; steps: {self.names}")

    def __contains__(self, name) -> bool:
        return name in self.names

    def replace(self, name: str, step) -> "Compose":
        """A new stack with the step called ``name`` replaced (the other steps are shared, not copied)."""
        self[name]  # raises KeyError naming the steps when absent
        return Compose([as_step(step) if s.name == name else s for s in self.steps], name=self.name)

    def without(self, *names: str) -> "Compose":
        """A new stack without the named steps."""
        for name in names:
            self[name]
        return Compose([s for s in self.steps if s.name not in names], name=self.name)

    def get_config(self):
        return dict(steps=self.steps)

    def __call__(self, images, landmarks=None, context=None):
        images = tf.convert_to_tensor(images, tf.float32)
        landmarks = _as_landmarks(landmarks)
        for step in self.steps:
            images, landmarks = step(images, landmarks, context)
        return tf.clip_by_value(images, 0.0, 1.0), landmarks


def sslfer_steps(resize: Optional[int] = 128, crop: Optional[int] = 112, mask: bool = True,
                 mask_p: float = 0.5, mask_regions: Sequence[str] = ("eyes", "mouth"), mask_margin: float = 0.15,
                 blur_sigma: Tuple[float, float] = (0.1, 2.0), seed: Optional[int] = None,
                 **photometric: float) -> Compose:
    """SSL-FER's spatial augmentation (Shu et al., BMVC 2022, Sec. 4.1) as a :class:`Compose`.

    Steps, named and in the paper's order: ``mask`` (eyes or mouth), ``resize`` (``resize`` px), ``crop``
    (``crop`` px), ``flip``, ``blur`` (kernel 3, p 0.5), ``jitter`` (0.4, 0.4, 0.4, 0.2; p 0.8), ``grayscale``
    (p 0.2).  The photometric numbers come from :data:`ferkeras.augment.spatial.PRESETS` ``["sslfer"]``;
    ``photometric`` overrides them by the preset's keys (``brightness``, ``contrast``, ``saturation``, ``hue``,
    ``jitter_p``, ``grayscale_p``, ``blur_p``, ``blur_kernel``).

    Args:
      resize, crop: sizes (None leaves a step out; smoke runs use small sizes).
      mask: include the landmark masking (it needs landmarks), with probability ``mask_p`` over ``mask_regions``.
      seed: seeds the steps (step k gets ``seed + k``); None draws from Keras' global seed.
    """
    settings = {k: v for k, v in PRESETS["sslfer"].items() if k not in ("crop_scale",)}
    settings.setdefault("blur_kernel", 3)
    unknown = sorted(set(photometric) - set(settings))
    if unknown:
        raise ValueError(f"unknown photometric settings {unknown}; choose from {sorted(settings)}")
    settings.update(photometric)
    if resize is not None and crop is not None and crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")

    def sub(k):
        return None if seed is None else int(seed) + k

    steps: List[Step] = []
    if mask:
        steps.append(MaskRegion(mask_regions, p=mask_p, margin=mask_margin, seed=sub(0)))
    if resize is not None:
        steps.append(Resize(resize))
    if crop is not None:
        steps.append(RandomCrop(crop, seed=sub(1)))
    steps += [
        RandomFlip(seed=sub(2)),
        GaussianBlur(settings["blur_kernel"], blur_sigma, p=settings["blur_p"], seed=sub(3)),
        ColorJitter(settings["brightness"], settings["contrast"], settings["saturation"], settings["hue"],
                    p=settings["jitter_p"], seed=sub(4)),
        RandomGrayscale(settings["grayscale_p"], seed=sub(5)),
    ]
    return Compose(steps, name="sslfer")


__all__ = ["ColorJitter", "Compose", "GaussianBlur", "ImageOnly", "MaskRegion", "RandomCrop", "RandomFlip",
           "RandomGrayscale", "Resize", "Step", "as_step", "sslfer_steps"]
