"""Face alignment and crops from boxes and dlib's 68 landmarks.

Point coordinates follow the pixel-centre convention of dlib and
``cv2.warpAffine``: pixel ``(row i, column j)`` is the point ``x = j, y = i``.
A transform is a 2x3 float32 matrix ``M`` mapping a source point ``p`` to
``M[:, :2] @ p + M[:, 2]`` in the output image.

"Left" and "right" eye mean the eye on the left / right side of the image for an
upright, unmirrored face (dlib points 36-41 and 42-47 respectively).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import cv2
import numpy as np

from ferkeras.data.schema import NUM_LANDMARKS
from ferkeras.face.defaults import ALIGN_MARGIN, FACE_MARGIN
from ferkeras.face.detection import as_image

# dlib 68-point groups.
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
EYES = slice(36, 48)
MOUTH = slice(48, 68)
MOUTH_CORNERS = (48, 54)

# Canonical face: the unit square [0, 1]^2 spans the face (brows to chin, jaw to
# jaw) of a frontal face.  Placed from the proportions of real frontal faces: the
# mouth-corner midpoint lies about one inter-ocular distance below the eye
# midpoint, brows ~0.4 above, chin ~1.9 below and the jaw ~1.2 to each side.
TEMPLATE_LEFT_EYE = (0.30, 0.32)
TEMPLATE_RIGHT_EYE = (0.70, 0.32)
TEMPLATE_MOUTH = (0.50, 0.72)
ALIGN_POINTS = ("eyes", "eyes_mouth")


class AlignedFace(NamedTuple):
    """An aligned face crop, the 2x3 transform from the source image, and the landmarks in the crop."""

    image: np.ndarray
    transform: np.ndarray
    landmarks: np.ndarray


def _check_landmarks(landmarks) -> np.ndarray:
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected dlib's 68 landmarks of shape (68, 2), got {landmarks.shape}")
    if not np.all(np.isfinite(landmarks)):
        raise ValueError("landmarks contain NaN or inf (a record without landmarks cannot be aligned)")
    return landmarks


def eye_centers(landmarks) -> np.ndarray:
    """float32 (2, 2): the centres (mean of the 6 contour points) of the left and the right eye."""
    landmarks = _check_landmarks(landmarks)
    return np.stack([landmarks[LEFT_EYE].mean(0), landmarks[RIGHT_EYE].mean(0)]).astype(np.float32)


def mouth_center(landmarks) -> np.ndarray:
    """float32 (2,): the midpoint of the two mouth corners (stable when the mouth opens)."""
    landmarks = _check_landmarks(landmarks)
    return landmarks[list(MOUTH_CORNERS)].mean(0).astype(np.float32)


def similarity_transform(src, dst) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking ``src`` to ``dst``.

    Umeyama's closed form (S. Umeyama, "Least-squares estimation of transformation
    parameters between two point patterns", IEEE TPAMI 13(4), 1991, eqs. 40-42):
    with centred point sets and ``Sigma = dst_c^T src_c / n = U D V^T``, the
    rotation is ``R = U S V^T`` with ``S = diag(1, sign(det U det V))`` (never a
    reflection), the scale ``c = tr(D S) / var(src)`` and the translation
    ``t = mean(dst) - c R mean(src)``.

    Args:
      src, dst: (K, 2) corresponding points, K >= 2, ``src`` not all equal.
    Returns:
      float32 (2, 3) ``[c R | t]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c**2).sum(1).mean()
    if var_src <= 1e-12:
        raise ValueError("source points are all the same: no transform is defined")
    u, d, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    s = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(s) @ vt
    scale = (d * s).sum() / var_src
    translation = mu_dst - scale * rotation @ mu_src
    return np.concatenate([scale * rotation, translation[:, None]], axis=1).astype(np.float32)


def transform_points(points, transform) -> np.ndarray:
    """Applies a 2x3 transform to (..., 2) points; returns float32."""
    points = np.asarray(points, np.float64)
    m = np.asarray(transform, np.float64)
    return (points @ m[:, :2].T + m[:, 2]).astype(np.float32)


def template_points(size: int, margin: float, points: str = "eyes_mouth") -> np.ndarray:
    """The canonical eye (and mouth) positions in an aligned crop of ``size`` pixels.

    ``margin`` widens the view by that fraction of the canonical face on each side:
    canonical ``u`` lands at ``(u + margin) / (1 + 2 margin) * size``.
    """
    if points not in ALIGN_POINTS:
        raise ValueError(f"points must be one of {ALIGN_POINTS}, got {points!r}")
    canon = [TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE] + ([TEMPLATE_MOUTH] if points == "eyes_mouth" else [])
    return ((np.asarray(canon, np.float64) + margin) / (1 + 2 * margin) * size).astype(np.float32)


_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}


def align_face(
    image: np.ndarray,
    landmarks,
    size: int = 112,
    margin: float = ALIGN_MARGIN,
    points: str = "eyes_mouth",
    border: str = "constant",
) -> AlignedFace:
    """Warps a face to the canonical template with a similarity transform.

    Args:
      image: uint8 RGB (H, W, 3) or grayscale (H, W).
      landmarks: dlib's 68 points (68, 2) in ``image``.
      size: side of the square output.
      margin: extra view around the canonical face, as a fraction of it on each side; the default
        :data:`ferkeras.face.defaults.ALIGN_MARGIN` (0.25) keeps forehead and chin (0.1 cut the chin and
        lost a third-party FER model one posed photo in four: see :mod:`ferkeras.face.defaults`).  The
        training pipelines and video inference do not align: they cut the square around the detector box
        (:func:`crop_face` with :data:`~ferkeras.face.defaults.FACE_MARGIN`).
      points: ``"eyes"``: the two eye centres go exactly to their template positions;
        ``"eyes_mouth"``: least-squares fit of the eye centres and the mouth-corner
        midpoint (steadier scale when the head tilts forward or back).
      border: ``"constant"`` (black), ``"replicate"`` or ``"reflect"`` outside the image.

    Returns:
      :class:`AlignedFace` ``(image (size, size[, 3]) uint8, transform float32 (2, 3),
      landmarks float32 (68, 2) in the crop)``.
    """
    image = as_image(image)
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {tuple(_BORDERS)}, got {border!r}")
    if int(size) < 1 or margin < 0:
        raise ValueError(f"need size >= 1 and margin >= 0, got size={size}, margin={margin}")
    size = int(size)
    src = eye_centers(landmarks)
    if points == "eyes_mouth":
        src = np.concatenate([src, mouth_center(landmarks)[None]], 0)
    transform = similarity_transform(src, template_points(size, margin, points))
    crop = cv2.warpAffine(
        image, transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=_BORDERS[border], borderValue=0
    )
    return AlignedFace(crop, transform, transform_points(landmarks, transform))


def square_box(box, margin: float = 0.0) -> np.ndarray:
    """The square box, float32 (4,), centred on ``box`` whose side is its longer side times (1 + 2 margin)."""
    x0, y0, x1, y1 = np.asarray(box, np.float64).reshape(4)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"box must be finite with x1 > x0 and y1 > y0, got {[x0, y0, x1, y1]}")
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def points_box(points, margin: float = 0.0) -> np.ndarray:
    """The padded square box, float32 (4,), around (K, 2) points (their bounding box made square, plus margin).

    Pixel-centre points span ``[min, max]``; the box spans ``[min, max + 1)`` so a
    single-pixel feature still has a one-pixel box.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(points)) or len(points) == 0:
        raise ValueError("points must be a non-empty set of finite (x, y) coordinates")
    lo, hi = points.min(0), points.max(0) + 1
    return square_box([lo[0], lo[1], hi[0], hi[1]], margin)


def crop_square(image: np.ndarray, box, size: Optional[int] = None, border_value: int = 0):
    """Cuts a square box out of an image, padding with ``border_value`` where it leaves the image.

    The box corners are rounded to whole pixels; the crop is then resized to
    ``size`` (area averaging when shrinking, bilinear when enlarging).

    Returns:
      ``(crop, transform)``: the uint8 crop and the float32 (2, 3) map from image points to crop points.
    """
    image = as_image(image)
    x0, y0, x1, y1 = np.asarray(box, np.float64).reshape(4)
    side = int(round(max(x1 - x0, y1 - y0)))
    if side < 1:
        raise ValueError(f"crop box {[x0, y0, x1, y1]} is smaller than one pixel")
    ix, iy = int(round(x0)), int(round(y0))
    h, w = image.shape[:2]
    out = np.full((side, side) + image.shape[2:], border_value, np.uint8)
    sx0, sy0, sx1, sy1 = max(ix, 0), max(iy, 0), min(ix + side, w), min(iy + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - iy : sy1 - iy, sx0 - ix : sx1 - ix] = image[sy0:sy1, sx0:sx1]
    scale = 1.0
    if size is not None and int(size) != side:
        size = int(size)
        interp = cv2.INTER_AREA if size < side else cv2.INTER_LINEAR
        out = cv2.resize(out, (size, size), interpolation=interp)
        scale = size / side
    # cv2.resize maps crop pixel centre j to source (j + 0.5) / scale - 0.5.
    shift = 0.5 * scale - 0.5
    transform = np.array([[scale, 0, shift - ix * scale], [0, scale, shift - iy * scale]], np.float32)
    return out, transform


def crop_face(image: np.ndarray, box, margin: float = FACE_MARGIN, size: Optional[int] = None) -> np.ndarray:
    """A square crop around a face box, widened by ``margin`` of the box's longer side on each side.

    The default :data:`ferkeras.face.defaults.FACE_MARGIN` is the crop of the training pipelines and of
    inference.  Parts outside the image are black.  ``size`` resizes the crop (None keeps it).
    """
    return crop_square(image, square_box(box, margin), size)[0]


def crop_eyes(image: np.ndarray, landmarks, size: int = 64, margin: float = 0.15) -> np.ndarray:
    """Both eyes (dlib points 36-47) in a padded square crop resized to ``size`` (MaskFN's eye crop, Shu et al.,
    BMVC 2022, Sec. 3.4)."""
    return crop_square(image, points_box(_check_landmarks(landmarks)[EYES], margin), size)[0]


def crop_mouth(image: np.ndarray, landmarks, size: int = 64, margin: float = 0.15) -> np.ndarray:
    """The mouth (dlib points 48-67) in a padded square crop resized to ``size`` (MaskFN's mouth crop, Shu et al.,
    BMVC 2022, Sec. 3.4)."""
    return crop_square(image, points_box(_check_landmarks(landmarks)[MOUTH], margin), size)[0]
