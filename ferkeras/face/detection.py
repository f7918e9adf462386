"""Face detection (dlib HOG / dlib CNN / OpenCV Haar) and dlib's 68-point landmarks.

Conventions shared by all of :mod:`ferkeras.face`:

* images are ``uint8`` arrays, RGB ``(H, W, 3)`` or grayscale ``(H, W)``; an
  alpha channel is dropped;
* a box is ``float32 (4,)`` ``x0, y0, x1, y1`` in pixels with ``x1, y1``
  exclusive (width = ``x1 - x0``), the layout of :class:`ferkeras.data.schema.FaceRecord`.
  Boxes are the detector's own and may reach past the image border (a face cut
  by the border); pass ``clip=True`` to clip them;
* landmarks are ``float32 (68, 2)`` ``x, y`` in dlib's 68-point order
  (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).

dlib objects cannot be pickled and dlib's detectors keep scratch buffers, so
:class:`FaceDetector` and :class:`LandmarkDetector` hold only their settings and
build the dlib / OpenCV objects lazily: detectors once per thread, the shape
predictor (100 MB, read-only while predicting) once per process.  Instances can
therefore be handed to ``multiprocessing`` workers (they pickle as their
settings) and shared by threads.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Callable, List, NamedTuple, Optional, Tuple

import cv2
import dlib
import numpy as np

from ferkeras.data.schema import NUM_LANDMARKS
from ferkeras.face import models
from ferkeras.face.defaults import DETECTOR_METHOD, DETECTOR_UPSAMPLE

logger = logging.getLogger("ferkeras.face")

METHODS = ("hog", "cnn", "haar", "auto")
SORT_KEYS = ("size", "score", "none")
DEFAULT_HAAR_CASCADE = "haarcascade_frontalface_default.xml"


class Detections(NamedTuple):
    """Faces found in one image: ``boxes`` float32 (N, 4) x0, y0, x1, y1 and ``scores`` float32 (N,)."""

    boxes: np.ndarray
    scores: np.ndarray


def as_image(image: np.ndarray) -> np.ndarray:
    """Checks an image and returns it as a C-contiguous uint8 (H, W) or (H, W, 3) array.

    An alpha channel (H, W, 4) is dropped and (H, W, 1) becomes (H, W).
    Raises ValueError naming the shape or dtype at fault.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"face tools take uint8 images, got dtype {image.dtype} "
            "(convert with np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats)"
        )
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or min(image.shape[:2]) == 0:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(image)


def _to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _rect_to_box(rect) -> List[float]:
    # dlib rectangles are inclusive on the right and bottom.
    return [rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1]


def box_to_rect(box) -> "dlib.rectangle":
    """A float x0, y0, x1, y1 box (x1, y1 exclusive) as dlib's inclusive integer rectangle."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x0, y0, x1 - 1, y1 - 1)


def _as_boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim == 1:
        boxes = boxes.reshape(1, -1)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) or (4,), got {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"boxes must be finite, got {boxes[~np.isfinite(boxes).all(1)][:3]}")
    if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
        raise ValueError("every box needs x1 > x0 and y1 > y0")
    return boxes


_thread_local = threading.local()


def _per_thread(key: tuple, factory: Callable[[], object]):
    """The object ``factory`` builds, made once per thread (and process) for each ``key``."""
    cache = getattr(_thread_local, "cache", None)
    if cache is None:
        cache = _thread_local.cache = {}
    if key not in cache:
        cache[key] = factory()
    return cache[key]


class FaceDetector:
    """Finds faces with dlib HOG, dlib CNN (MMOD) or an OpenCV Haar cascade.

    The defaults (HOG, no upsampling) are :data:`ferkeras.face.defaults.DETECTOR_METHOD` and
    :data:`~ferkeras.face.defaults.DETECTOR_UPSAMPLE`, which every tool uses; the measurement behind them is in
    :mod:`ferkeras.face.defaults`.

    Args:
      method: ``"hog"`` (dlib's frontal HOG + linear SVM, the default), ``"cnn"`` (dlib's MMOD
        CNN from face-recognition-models: finds profile and small faces HOG misses, but costs one to two
        orders of magnitude more time on a CPU and gigabytes of memory with upsampling.  Measured on 2 CPU
        cores, per group photo of 3-6 people: about 11 s at upsample 0, and 67 s with 9 GB of memory at
        upsample 1; in a second measurement on such a machine under heavy load, at upsample 0: 30 s for a
        572x562 photo, 42 s for a 1000x667 one and 67 s with a peak of 1.6 GB for a 1524x1036 one, against
        0.4 s and 0.6 s for HOG on the first and the last in the same run), ``"haar"`` (OpenCV's cascade),
        or ``"auto"``: HOG, then Haar when HOG finds nothing (Haar fires on clothes and background more
        often: see :mod:`ferkeras.face.defaults`).
      upsample: how many times the image is doubled in size before detection
        (each doubling finds faces half as small and costs ~4x the time: 4.1x for HOG on the photos of
        :mod:`ferkeras.face.defaults`, where it found no extra face).
      threshold: HOG: dlib's ``adjust_threshold`` on the SVM score (negative finds
        more, less certain faces); CNN: minimum confidence; Haar: minimum
        cascade level weight.  Scores of the three methods are not comparable.
      sort_by: ``"size"`` (largest box first), ``"score"`` (highest first) or ``"none"``.
      min_size: boxes whose shorter side is below this many pixels are dropped.
      max_faces: keep at most this many (after sorting); None keeps all.
      clip: clip boxes to the image.
      cnn_model_path: the MMOD model file; found in face-recognition-models when None.
      haar_cascade: a cascade XML file; OpenCV's ``haarcascade_frontalface_default.xml`` when None.
      haar_scale_factor, haar_min_neighbors: ``cv2.CascadeClassifier.detectMultiScale`` settings.
    """

    def __init__(
        self,
        method: str = DETECTOR_METHOD,
        upsample: int = DETECTOR_UPSAMPLE,
        threshold: float = 0.0,
        sort_by: str = "size",
        min_size: float = 0.0,
        max_faces: Optional[int] = None,
        clip: bool = False,
        cnn_model_path: Optional[str] = None,
        haar_cascade: Optional[str] = None,
        haar_scale_factor: float = 1.1,
        haar_min_neighbors: int = 5,
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if sort_by not in SORT_KEYS:
            raise ValueError(f"sort_by must be one of {SORT_KEYS}, got {sort_by!r}")
        if int(upsample) < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        if max_faces is not None and int(max_faces) < 1:
            raise ValueError(f"max_faces must be >= 1 or None, got {max_faces}")
        self.method = method
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self.sort_by = sort_by
        self.min_size = float(min_size)
        self.max_faces = None if max_faces is None else int(max_faces)
        self.clip = bool(clip)
        self.cnn_model_path = (
            models.find_model_file(models.CNN_FACE_DETECTOR, cnn_model_path) if method == "cnn" else cnn_model_path
        )
        if method in ("haar", "auto"):
            haar_cascade = haar_cascade or os.path.join(cv2.data.haarcascades, DEFAULT_HAAR_CASCADE)
            if not os.path.isfile(haar_cascade):
                raise FileNotFoundError(f"Haar cascade file {haar_cascade!r} does not exist")
        self.haar_cascade = haar_cascade
        self.haar_scale_factor = float(haar_scale_factor)
        self.haar_min_neighbors = int(haar_min_neighbors)

    # The dlib / OpenCV objects live in per-thread caches, never in the instance,
    # so an instance pickles as its settings and threads never share a detector.
    def _hog(self):
        return _per_thread(("hog",), dlib.get_frontal_face_detector)

    def _cnn(self):
        return _per_thread(("cnn", self.cnn_model_path), lambda: dlib.cnn_face_detection_model_v1(self.cnn_model_path))

    def _haar(self):
        return _per_thread(("haar", self.haar_cascade), self._build_haar)

    def _build_haar(self):
        cascade = cv2.CascadeClassifier(self.haar_cascade)
        if cascade.empty():
            raise ValueError(f"OpenCV could not load the Haar cascade {self.haar_cascade!r}")
        return cascade

    def __repr__(self):
        return (
            f"FaceDetector(method={self.method!r}, upsample={self.upsample}, threshold={self.threshold}, "
            f"sort_by={self.sort_by!r})"
        )

    # --- the three detectors -----------------------------------------------------------
    def _detect_hog(self, image):
        rects, scores, _ = self._hog().run(image, self.upsample, self.threshold)
        return [_rect_to_box(r) for r in rects], list(scores)

    def _detect_cnn(self, image):
        found = [d for d in self._cnn()(image, self.upsample) if d.confidence >= self.threshold]
        return [_rect_to_box(d.rect) for d in found], [d.confidence for d in found]

    def _detect_haar(self, image):
        gray = _to_gray(image)
        factor = 2**self.upsample
        if factor > 1:
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        rects, _, weights = self._haar().detectMultiScale3(
            gray, self.haar_scale_factor, self.haar_min_neighbors, outputRejectLevels=True
        )
        boxes, scores = [], []
        for (x, y, w, h), weight in zip(np.reshape(rects, (-1, 4)), np.ravel(weights)):
            if weight >= self.threshold:
                boxes.append([x / factor, y / factor, (x + w) / factor, (y + h) / factor])
                scores.append(float(weight))
        return boxes, scores

    def __call__(self, image: np.ndarray) -> Detections:
        """Detects faces in an RGB or grayscale uint8 image; returns :class:`Detections`."""
        image = as_image(image)
        if self.method == "cnn":
            boxes, scores = self._detect_cnn(image)
        elif self.method == "haar":
            boxes, scores = self._detect_haar(image)
        else:
            boxes, scores = self._detect_hog(image)
            if not boxes and self.method == "auto":
                boxes, scores = self._detect_haar(image)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        if self.clip:
            h, w = image.shape[:2]
            boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores = boxes[keep], scores[keep]
        if self.min_size > 0:
            keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_size
            boxes, scores = boxes[keep], scores[keep]
        if self.sort_by == "size":
            order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        elif self.sort_by == "score":
            order = np.argsort(-scores, kind="stable")
        else:
            order = np.arange(len(boxes))
        order = order[: self.max_faces]
        return Detections(boxes[order], scores[order])

    detect = __call__


@functools.lru_cache(maxsize=4)
def _load_shape_predictor(path: str):
    logger.debug("loading dlib shape predictor %s (pid %d)", path, os.getpid())
    return dlib.shape_predictor(path)


class LandmarkDetector:
    """dlib's 68-point shape predictor, placed in given face boxes.

    Args:
      model_path: the ``shape_predictor_68_face_landmarks.dat`` file; when None it is
        found via ``$FERKERAS_DLIB_MODELS`` or the installed face-recognition-models
        package (a FileNotFoundError lists what was searched and how to fix it).

    The model is loaded on first use, once per process, and shared by threads.
    """

    def __init__(self, model_path: Optional[str] = None):
        self.model_path = models.find_model_file(models.SHAPE_PREDICTOR_68, model_path)

    def __repr__(self):
        return f"LandmarkDetector(model_path={self.model_path!r})"

    def __call__(self, image: np.ndarray, boxes) -> np.ndarray:
        """Returns float32 (N, 68, 2) landmarks for boxes (N, 4) (or (4,)) x0, y0, x1, y1."""
        image = as_image(image)
        boxes = _as_boxes(boxes) if np.size(boxes) else np.zeros((0, 4), np.float32)
        predictor = _load_shape_predictor(self.model_path)
        out = np.empty((len(boxes), NUM_LANDMARKS, 2), np.float32)
        for i, box in enumerate(boxes):
            shape = predictor(image, box_to_rect(box))
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    detect = __call__


_default_lock = threading.Lock()
_defaults: dict = {}


def _default(kind: str):
    """The module's default FaceDetector / LandmarkDetector, made on first use."""
    with _default_lock:
        if kind not in _defaults:
            _defaults[kind] = FaceDetector() if kind == "detector" else LandmarkDetector()
        return _defaults[kind]


def detect_landmarks(image_rgb: np.ndarray, boxes, model_path: Optional[str] = None) -> np.ndarray:
    """68 landmarks, float32 (N, 68, 2), for each box (N, 4) in the image."""
    predictor = LandmarkDetector(model_path) if model_path is not None else _default("landmarks")
    return predictor(image_rgb, boxes)


def detect_faces(
    image_rgb: np.ndarray,
    detector: Optional[FaceDetector] = None,
    landmark_detector: Optional[LandmarkDetector] = None,
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Detects faces and their landmarks: a list of ``(box (4,), landmarks (68, 2))``, largest face first.

    Defaults: ``FaceDetector()`` (:mod:`ferkeras.face.defaults`: HOG, no upsampling) and
    the 68-point predictor of face-recognition-models.
    """
    detector = detector or _default("detector")
    landmark_detector = landmark_detector or _default("landmarks")
    image = as_image(image_rgb)
    boxes, _ = detector(image)
    points = landmark_detector(image, boxes)
    return [(boxes[i], points[i]) for i in range(len(boxes))]
