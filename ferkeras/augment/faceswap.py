"""FaceSwap: paste one face's expression region onto another person's face (a positive view for contrastive FER).

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition",
BMVC 2022, Sec. 3.2.2 ("FaceSwap"): given a positive ``S_emo`` (it shares the anchor's expression) and an image
``S_id`` of another person drawn from the training set, extract both faces' 68 landmarks, align the two with colour
correction and a "topology transformation" from the landmarks, and replace the region within the landmarks in
``S_id`` with ``S_emo``.  The result - ``S_id``'s head, hair, skin and background around ``S_emo``'s eyes, brows,
nose and mouth - replaces the positive, so the anchor is pulled towards a face of another identity showing its
expression.  The paper applies it to 50 % of the positives; the authors' code to 80 % (an argument here).

The steps follow the authors' code (described in the project's reference notes):

1. landmarks: dlib's 68 points, given by the caller (cached by the data layer) or detected with dlib's HOG
   detector and shape predictor through :mod:`ferkeras.face`; the code uses a frame only when it holds exactly one
   face;
2. alignment: the least-squares similarity (Procrustes / Umeyama, SVD; :func:`ferkeras.face.similarity_transform`)
   taking ``S_emo``'s eye, brow, nose and mouth points onto ``S_id``'s, and ``cv2.warpAffine`` of ``S_emo`` into
   ``S_id``'s frame;
3. mask: the filled convex hulls of eyes + brows and of nose + mouth, drawn for both faces' points (``S_id``'s own
   and ``S_emo``'s aligned ones, so neither face's features show through the seam), grown and feathered by a
   Gaussian blur;
4. colour correction: the warped ``S_emo`` times ``blur(S_id) / blur(S_emo)``, Gaussian kernel about 0.6 x the
   inter-ocular distance, so the pasted skin takes ``S_id``'s local tone and lighting while keeping ``S_emo``'s
   fine structure;
5. composite: ``S_id (1 - mask) + corrected S_emo mask``.

:func:`face_swap` is the NumPy/OpenCV core (raises :class:`FaceSwapError` with a reason when the landmarks do not
allow a swap); :class:`FaceSwap` is the ``tf.data`` op (``tf.numpy_function`` over a batch or one element, drawn
with a probability, falling back to the unswapped image and counting why in a :class:`FaceSwapCounter`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import cv2
import keras
import numpy as np
import tensorflow as tf

from ferkeras.data.schema import NUM_LANDMARKS
from ferkeras.face.align import BROWS, LEFT_EYE, MOUTH, NOSE, RIGHT_EYE, similarity_transform, transform_points
from ferkeras.face.detection import FaceDetector, LandmarkDetector

logger = logging.getLogger("ferkeras.augment")

_ar = np.arange(NUM_LANDMARKS)
ALIGN_POINTS = np.concatenate([_ar[BROWS], _ar[NOSE], _ar[LEFT_EYE], _ar[RIGHT_EYE], _ar[MOUTH]])
"""dlib indices the alignment fits: brows 17-26, nose 27-35, eyes 36-47, mouth 48-67 (not the jaw)."""
OVERLAY_GROUPS: Tuple[np.ndarray, ...] = (
    np.concatenate([_ar[LEFT_EYE], _ar[RIGHT_EYE], _ar[BROWS]]),  # eyes + brows
    np.concatenate([_ar[NOSE], _ar[MOUTH]]),  # nose + mouth
)
"""Point groups whose convex hulls make the swap mask."""
SWAPPED_POINTS = np.unique(np.concatenate(OVERLAY_GROUPS))
"""dlib indices whose position in the output comes from the expression source (17-67)."""

# Fallback reasons (the keys of FaceSwapCounter.fallbacks).
NO_LANDMARKS = "no landmarks"
NO_FACE = "no face detected"
SEVERAL_FACES = "several faces detected"
DEGENERATE = "degenerate landmarks"
EMPTY_MASK = "mask outside the image"


class FaceSwapError(ValueError):
    """Raised by :func:`face_swap` when the landmarks do not allow a swap; ``reason`` is one of the fallback keys."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class SwapResult(NamedTuple):
    """What :func:`face_swap` returns.

    image: the composite, same shape and dtype as the identity image;
    landmarks: float32 (68, 2) of the composite: the identity's jaw (0-16), the aligned expression source's
      brows, nose, eyes and mouth (17-67);
    mask: float32 (H, W) in [0, 1], the weight of the expression source in each pixel;
    transform: float32 (2, 3) similarity from expression-source pixels to identity pixels.
    """

    image: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray
    transform: np.ndarray


def _odd(x: float) -> int:
    k = max(int(round(x)), 1)
    return k if k % 2 else k + 1


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres (means of points 36-41 and 42-47)."""
    return float(np.linalg.norm(landmarks[LEFT_EYE].mean(0) - landmarks[RIGHT_EYE].mean(0)))


def _check(landmarks, which: str, min_inter_ocular: float) -> np.ndarray:
    if landmarks is None:
        raise FaceSwapError(NO_LANDMARKS, f"{which} image has no landmarks")
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"{which} landmarks must have shape (68, 2), got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise FaceSwapError(NO_LANDMARKS, f"{which} landmarks contain NaN or inf")
    iod = inter_ocular(lm)
    if iod < min_inter_ocular:
        raise FaceSwapError(DEGENERATE, f"{which} inter-ocular distance {iod:.2f} px < {min_inter_ocular}")
    return lm


def swap_mask(landmarks_sets: Sequence[np.ndarray], shape: Tuple[int, int], feather: int) -> np.ndarray:
    """float32 (H, W) mask: union of the overlay groups' convex hulls for each point set, grown and feathered.

    The hulls are filled with sub-pixel accuracy (OpenCV fixed point); ``feather`` (odd kernel size, 1 = none) blurs
    them once, every pixel the blur touched becomes 1 (the hull grows by about half the kernel), and a second
    blur softens that edge (the recipe of the authors' code), so the mask reaches 1 on the whole hull.
    """
    shift = 4
    mask = np.zeros(shape, np.float32)
    for points in landmarks_sets:
        for group in OVERLAY_GROUPS:
            hull = cv2.convexHull(np.round(points[group] * (1 << shift)).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA, shift=shift)
    if feather > 1:
        mask = (cv2.GaussianBlur(mask, (feather, feather), 0) > 1e-3).astype(np.float32)
        mask = cv2.GaussianBlur(mask, (feather, feather), 0)
    return np.clip(mask, 0.0, 1.0)


def correct_colours(target: np.ndarray, source: np.ndarray, kernel: int) -> np.ndarray:
    """``source x blur(target) / blur(source)`` (float images in [0, 1]; Gaussian blur with an odd ``kernel``).

    Where the blurred source is (almost) black the ratio is undefined; as in the authors' code the divisor gets a
    mid-grey added there instead of dividing by ~0.
    """
    target_blur = cv2.GaussianBlur(target, (kernel, kernel), 0)
    source_blur = cv2.GaussianBlur(source, (kernel, kernel), 0)
    source_blur = source_blur + 0.5 * (source_blur <= 1.0 / 255.0)
    return np.clip(source * target_blur / source_blur, 0.0, 1.0)


def face_swap(
    expression_image: np.ndarray,
    expression_landmarks,
    identity_image: np.ndarray,
    identity_landmarks,
    feather: float = 0.1,
    colour_blur: float = 0.6,
    min_inter_ocular: float = 4.0,
    max_scale: float = 4.0,
) -> SwapResult:
    """Pastes ``expression_image``'s eyes, brows, nose and mouth onto the face in ``identity_image``.

    Shu et al., BMVC 2022, Sec. 3.2.2, steps 2-3 (see the module docstring for the recipe).

    Args:
      expression_image: ``S_emo``, RGB (H1, W1, 3), uint8 or float in [0, 1].
      expression_landmarks: its 68 dlib points (68, 2), x, y in pixels.
      identity_image: ``S_id``, RGB (H2, W2, 3), same dtype as ``expression_image``; the output lives in its frame.
      identity_landmarks: its 68 points.
      feather: mask feathering kernel as a fraction of the identity face's inter-ocular distance (0: a hard edge).
      colour_blur: colour-correction blur kernel as a fraction of the inter-ocular distance (the code's 0.6).
      min_inter_ocular: faces whose eyes are closer than this many pixels are refused (degenerate landmarks).
      max_scale: alignments that scale the expression face by more than this factor (or less than its inverse)
        are refused: the landmarks of one of the faces are not a face.

    Returns:
      :class:`SwapResult`.
    Raises:
      FaceSwapError: landmarks missing (NaN), degenerate, or the mask misses the image; ``.reason`` says which.
      ValueError: wrong shapes or dtypes (a programming error, not a bad face).
    """
    emo = np.asarray(expression_image)
    ident = np.asarray(identity_image)
    if emo.ndim != 3 or emo.shape[2] != 3 or ident.ndim != 3 or ident.shape[2] != 3:
        raise ValueError(f"face_swap takes RGB images (H, W, 3), got {emo.shape} and {ident.shape}")
    if emo.dtype != ident.dtype:
        raise ValueError(f"both images must have one dtype, got {emo.dtype} and {ident.dtype}")
    lm_emo = _check(expression_landmarks, "expression", min_inter_ocular)
    lm_id = _check(identity_landmarks, "identity", min_inter_ocular)
    try:
        transform = similarity_transform(lm_emo[ALIGN_POINTS], lm_id[ALIGN_POINTS])
    except ValueError as err:
        raise FaceSwapError(DEGENERATE, str(err)) from None
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2].astype(np.float64)))))
    if not (1.0 / max_scale <= scale <= max_scale):
        raise FaceSwapError(DEGENERATE, f"alignment scale {scale:.3g} outside [1/{max_scale}, {max_scale}]")
    aligned = transform_points(lm_emo, transform)

    is_uint8 = ident.dtype == np.uint8
    emo_f = emo.astype(np.float32) / 255.0 if is_uint8 else emo.astype(np.float32)
    id_f = ident.astype(np.float32) / 255.0 if is_uint8 else ident.astype(np.float32)
    h, w = id_f.shape[:2]
    iod = inter_ocular(lm_id)
    mask = swap_mask([lm_id, aligned], (h, w), _odd(feather * iod) if feather > 0 else 1)
    if not mask.any():
        raise FaceSwapError(EMPTY_MASK, f"the faces' features lie outside the {w}x{h} identity image")
    # BORDER_REPLICATE: pixels the source does not cover never bring black into the feathered seam.
    warped = cv2.warpAffine(emo_f, transform, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    corrected = correct_colours(id_f, warped, _odd(colour_blur * iod))
    m = mask[..., None]
    out = id_f * (1.0 - m) + corrected * m
    if is_uint8:
        out = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
        out = np.where(m > 0, out, ident)  # exact outside the mask whatever the rounding
    else:
        out = np.where(m > 0, out, id_f).astype(ident.dtype)
    landmarks = lm_id.astype(np.float32)
    landmarks[SWAPPED_POINTS] = aligned[SWAPPED_POINTS]
    return SwapResult(out, landmarks, mask, transform)


class FaceSwapCounter:
    """Counts what a :class:`FaceSwap` did, across calls and threads (readable after an epoch).

    ``drawn``: elements the probability selected; ``swapped``: of those, swapped; ``fallbacks``: the rest, by
    reason (they kept the unswapped image); ``examined``: every element seen.
    """

    def __init__(self, name: str = "faceswap"):
        self.name = name
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.examined = 0
            self.drawn = 0
            self.swapped = 0
            self.fallbacks: Dict[str, int] = collections.Counter()

    def add(self, examined: int = 0, drawn: int = 0, swapped: int = 0, fallbacks: Optional[Dict[str, int]] = None):
        with self._lock:
            self.examined += examined
            self.drawn += drawn
            self.swapped += swapped
            for reason, n in (fallbacks or {}).items():
                self.fallbacks[reason] += n

    @property
    def fallen_back(self) -> int:
        return int(sum(self.fallbacks.values()))

    def as_dict(self) -> Dict[str, int]:
        with self._lock:
            out = {"examined": self.examined, "drawn": self.drawn, "swapped": self.swapped}
            out.update({f"fallback: {k}": int(v) for k, v in sorted(self.fallbacks.items())})
            return out

    def summary(self) -> str:
        lines = [f"{self.name}: {self.examined} images, {self.drawn} drawn for a swap, {self.swapped} swapped, "
                 f"{self.fallen_back} kept unswapped"]
        lines += [f"  {n} x {reason}" for reason, n in sorted(self.fallbacks.items())]
        return "\n".join(lines)

    def report(self) -> None:
        (logger.warning if self.fallen_back else logger.info)(self.summary())

    def __repr__(self):
        return f"FaceSwapCounter({self.as_dict()})"


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


class FaceSwap:
    """FaceSwap as a ``tf.data`` augmentation: swaps ``probability`` of the images, counts what falls back.

    Shu et al., BMVC 2022, Sec. 3.2.2 (the paper applies it to 50 % of the positives, the authors' code to 80 %).

    Call it on a batch ``(B, H, W, 3)`` or one element ``(H, W, 3)`` of float32 images in [0, 1] (or uint8):
    ``swapped, landmarks = faceswap(images, identity_images, landmarks, identity_landmarks)``.  ``images`` are the
    expression sources ``S_emo`` (the positives), ``identity_images`` the faces ``S_id`` of other people; the
    output is in the identity images' frame and size.  Landmarks (``(B, 68, 2)``, NaN where unknown) come from the
    data layer's cache; where they are NaN or None and ``detect`` is on, dlib finds them (HOG detector, exactly one
    face, else a counted fallback).  The returned landmarks describe the returned images, for later
    landmark-based steps: the composite's (:attr:`SwapResult.landmarks`) where swapped; where the draw skipped an
    element or it fell back, the image is the unswapped expression source and its landmarks come back as given.

    Args:
      probability: chance that an element is swapped (0.5 in the paper, 0.8 in the authors' code).
      detect: run dlib where landmarks are missing; when False such elements fall back (counted).
      face_detector, landmark_detector: :class:`ferkeras.face.FaceDetector` / :class:`LandmarkDetector`; defaults
        to dlib HOG with one upsampling (faces down to ~40 px) and the 68-point predictor.
      single_face: with detection, use an image only when it holds exactly one face (the authors' rule);
        False takes the largest face.
      feather, colour_blur, min_inter_ocular, max_scale: see :func:`face_swap`.
      counter: a :class:`FaceSwapCounter` to count into (a new one by default; read it as ``.counter``).
      seed: seeds the per-element draw.

    The op runs in Python (``tf.numpy_function``); map it with ``num_parallel_calls`` to use several cores: the
    alignment, warps and blurs (OpenCV) run in parallel, dlib's detection does not (it holds the GIL), so
    landmarks cached by the data layer are much faster than detection (``tools/bench_faceswap.py``).
    As a step of a :class:`ferkeras.augment.views.MultiViewAugment` stack: ``Paired(FaceSwap(...))``.
    """

    name = "faceswap"

    def __init__(self, probability: float = 0.5, detect: bool = True, face_detector: Optional[FaceDetector] = None,
                 landmark_detector: Optional[LandmarkDetector] = None, single_face: bool = True,
                 feather: float = 0.1, colour_blur: float = 0.6, min_inter_ocular: float = 4.0,
                 max_scale: float = 4.0, counter: Optional[FaceSwapCounter] = None, seed: Optional[int] = None):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if feather < 0 or colour_blur <= 0:
            raise ValueError(f"need feather >= 0 and colour_blur > 0, got {feather}, {colour_blur}")
        self.probability = float(probability)
        self.detect = bool(detect)
        self._face_detector = face_detector
        self._landmark_detector = landmark_detector
        self.single_face = bool(single_face)
        self.swap_kwargs = dict(feather=float(feather), colour_blur=float(colour_blur),
                                min_inter_ocular=float(min_inter_ocular), max_scale=float(max_scale))
        self.counter = counter if counter is not None else FaceSwapCounter()
        self.seed = seed
        self._seeds = keras.random.SeedGenerator(seed)
        self._lock = threading.Lock()
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def __repr__(self):
        return f"FaceSwap(probability={self.probability}, detect={self.detect}, seed={self.seed})"

    # ---- landmarks ----
    @property
    def face_detector(self) -> FaceDetector:
        if self._face_detector is None:
            self._face_detector = FaceDetector("hog", upsample=1)
        return self._face_detector

    @property
    def landmark_detector(self) -> LandmarkDetector:
        if self._landmark_detector is None:
            self._landmark_detector = LandmarkDetector()
        return self._landmark_detector

    def landmarks_of(self, image: np.ndarray, landmarks=None) -> np.ndarray:
        """``landmarks`` when finite, else dlib's (exactly one face unless ``single_face=False``).

        Raises :class:`FaceSwapError` (no landmarks / no face / several faces).
        """
        if landmarks is not None and np.all(np.isfinite(landmarks)):
            return np.asarray(landmarks, np.float32)
        if not self.detect:
            raise FaceSwapError(NO_LANDMARKS, "landmarks are missing and detection is off")
        return self._detection_thread().submit(self._detect, _to_uint8(np.asarray(image))).result()

    def _detect(self, image):
        boxes, _ = self.face_detector(image)
        if len(boxes) == 0:
            raise FaceSwapError(NO_FACE)
        if len(boxes) > 1 and self.single_face:
            raise FaceSwapError(SEVERAL_FACES, f"{len(boxes)} faces")
        return self.landmark_detector(image, boxes[:1])[0]

    def _detection_thread(self) -> concurrent.futures.ThreadPoolExecutor:
        """The one thread dlib runs on.

        ferkeras.face builds a dlib HOG detector once per thread (~1.4 s), and tf.data calls the op from a fresh
        thread pool in every epoch; one long-lived thread builds it once.  dlib holds the GIL while it detects,
        so more threads would not detect faster.
        """
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="faceswap-dlib")
            return self._executor

    # ---- NumPy ----
    def swap_numpy(self, expression_image, identity_image, expression_landmarks=None, identity_landmarks=None):
        """One swap with detection and counting: ``(image, landmarks, swapped)``; never raises for a bad face.

        On a fallback, the expression image and its landmarks (NaN if unknown) come back unchanged.
        """
        results = self._swap_batch(np.asarray(expression_image)[None], np.asarray(identity_image)[None],
                                   None if expression_landmarks is None else np.asarray(expression_landmarks)[None],
                                   None if identity_landmarks is None else np.asarray(identity_landmarks)[None],
                                   np.ones((1,), bool))
        return results[0][0], results[1][0], bool(results[2][0])

    def _swap_batch(self, images, identity_images, landmarks, identity_landmarks, apply):
        n = len(images)
        out = np.array(images, copy=True)
        out_lm = (np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32) if landmarks is None
                  else np.array(landmarks, np.float32, copy=True))
        swapped = np.zeros((n,), bool)
        reasons: Dict[str, int] = collections.Counter()
        for i in np.flatnonzero(apply):
            try:
                lm_e = self.landmarks_of(images[i], None if landmarks is None else landmarks[i])
                lm_i = self.landmarks_of(identity_images[i], None if identity_landmarks is None
                                         else identity_landmarks[i])
                result = face_swap(images[i], lm_e, identity_images[i], lm_i, **self.swap_kwargs)
            except FaceSwapError as err:
                reasons[err.reason] += 1
                continue
            if result.image.shape != out[i].shape:
                raise ValueError(f"identity image {identity_images[i].shape} and expression image "
                                 f"{images[i].shape} must have one size in a batch")
            out[i], out_lm[i], swapped[i] = result.image, result.landmarks, True
        self.counter.add(examined=n, drawn=int(np.sum(apply)), swapped=int(swapped.sum()), fallbacks=reasons)
        return out, out_lm, swapped

    # ---- TensorFlow ----
    def draw(self, n) -> tf.Tensor:
        """(n,) bool: which elements get swapped."""
        return keras.random.uniform((n,), 0.0, 1.0, seed=self._seeds) < self.probability

    def __call__(self, images, identity_images, landmarks=None, identity_landmarks=None, return_swapped=False):
        """Swaps a random ``probability`` of ``images`` with ``identity_images`` (see the class docstring).

        Returns ``(images, landmarks)`` with the input's shape and dtype (landmarks float32, NaN where unknown),
        plus a bool ``swapped`` per element when ``return_swapped``.
        """
        images = tf.convert_to_tensor(images)
        identity_images = tf.convert_to_tensor(identity_images, images.dtype)
        single = images.shape.rank == 3
        if single:
            images, identity_images = images[None], identity_images[None]
            landmarks = None if landmarks is None else tf.convert_to_tensor(landmarks, tf.float32)[None]
            identity_landmarks = (None if identity_landmarks is None
                                  else tf.convert_to_tensor(identity_landmarks, tf.float32)[None])
        if images.shape.rank != 4:
            raise ValueError(f"FaceSwap takes (B, H, W, 3) or (H, W, 3) images, got shape {images.shape}")
        n = tf.shape(images)[0]
        nan = tf.fill(tf.stack([n, NUM_LANDMARKS, 2]), float("nan"))
        lm = nan if landmarks is None else tf.convert_to_tensor(landmarks, tf.float32)
        id_lm = nan if identity_landmarks is None else tf.convert_to_tensor(identity_landmarks, tf.float32)
        apply = self.draw(n)

        def run(im, id_im, l1, l2, ap):
            return self._swap_batch(im, id_im, l1, l2, ap)

        out, out_lm, swapped = tf.numpy_function(run, [images, identity_images, lm, id_lm, apply],
                                                 [images.dtype, tf.float32, tf.bool], name="face_swap")
        out.set_shape(images.shape)
        out_lm.set_shape(images.shape[:1].concatenate([NUM_LANDMARKS, 2]))
        swapped.set_shape(images.shape[:1])
        if single:
            out, out_lm, swapped = out[0], out_lm[0], swapped[0]
        return (out, out_lm, swapped) if return_swapped else (out, out_lm)


__all__ = ["ALIGN_POINTS", "OVERLAY_GROUPS", "SWAPPED_POINTS", "FaceSwap", "FaceSwapCounter", "FaceSwapError",
           "SwapResult", "correct_colours", "face_swap", "inter_ocular", "swap_mask"]
