"""Eye and mouth regions from dlib's 68 landmarks, in TensorFlow (usable inside tf.data and inside models).

MaskFN (Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition",
BMVC 2022, Sec. 3.4, step 1) crops "the region of eyes x^e and mouth x^m" from the landmarks of every face. This
module computes those crops in-graph: :func:`region_boxes` gives one padded square box per region and
:func:`crop_regions` cuts and resizes them with ``tf.image.crop_and_resize``.

Regions (dlib point indices, see :data:`REGION_POINTS`):

* ``"eyes"``: both eyes and both brows, points 17-26 and 36-47 (the eyes + brows area SSL-FER's FaceSwap also
  treats as one expressive region);
* ``"mouth"``: points 48-67;
* ``"eyes_only"``: points 36-47 without the brows (the box of the NumPy :func:`ferkeras.face.crop_eyes`).

Box geometry (the same as the NumPy :func:`ferkeras.face.points_box`): points use the pixel-centre convention of
:mod:`ferkeras.face.align` (pixel ``(row i, column j)`` is the point ``x = j, y = i``). The points of a region
cover ``max - min + 1`` pixels along each axis; the box is the square, centred on the points' bounding box, whose
side in pixels is the longer of the two extents times ``1 + 2 * margin``. Returned boxes are normalised the way
``tf.image.crop_and_resize`` reads them, ``[y0, x0, y1, x1]`` with ``y = row / (H - 1)`` and ``x = col / (W - 1)``
and the corners at the centres of the first and the last pixel the square covers. Parts of a box outside the
image are filled with 0 by :func:`crop_regions`.

A face whose landmarks for a requested region are not all finite (no landmarks: NaN in the record schema) gets
the whole image as box for every region and ``valid = False``.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import tensorflow as tf

NUM_LANDMARKS = 68

REGION_POINTS = {
    "eyes": tuple(range(17, 27)) + tuple(range(36, 48)),
    "mouth": tuple(range(48, 68)),
    "eyes_only": tuple(range(36, 48)),
}
"""dlib 68-point indices of each named region."""

DEFAULT_REGIONS = ("eyes", "mouth")
DEFAULT_MARGIN = 0.15
DEFAULT_CROP_SIZE = 64


def _check_regions(regions: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(regions, str):
        regions = (regions,)
    regions = tuple(regions)
    if not regions:
        raise ValueError("regions must name at least one region")
    unknown = [r for r in regions if r not in REGION_POINTS]
    if unknown:
        raise ValueError(f"unknown region(s) {unknown}; choose from {tuple(REGION_POINTS)}")
    return regions


def _check_margin(margin: float) -> float:
    margin = float(margin)
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    return margin


def _as_batched_landmarks(landmarks):
    landmarks = tf.cast(tf.convert_to_tensor(landmarks), tf.float32)
    rank = landmarks.shape.rank
    if rank not in (2, 3) or landmarks.shape[-2:].as_list() != [NUM_LANDMARKS, 2]:
        raise ValueError(
            f"landmarks must be (68, 2) or (B, 68, 2) dlib points (x, y), got shape {landmarks.shape}"
        )
    return (landmarks[None] if rank == 2 else landmarks), rank == 2


def _image_hw(image_size) -> Tuple[tf.Tensor, tf.Tensor]:
    size = tf.convert_to_tensor(image_size)
    size = tf.cast(size, tf.float32)
    if size.shape.rank == 0:
        return size, size
    if size.shape.rank != 1 or size.shape[0] not in (2, 3, None):
        raise ValueError(f"image_size must be a side, (height, width) or (height, width, channels); got {image_size!r}")
    return size[0], size[1]


def region_boxes(landmarks, image_size, regions: Sequence[str] = DEFAULT_REGIONS,
                 margin: float = DEFAULT_MARGIN) -> Tuple[tf.Tensor, tf.Tensor]:
    """Padded square boxes around landmark regions, normalised for ``tf.image.crop_and_resize``.

    Args:
        landmarks: ``(B, 68, 2)`` (or one face, ``(68, 2)``) float dlib points ``(x, y)`` in pixels; NaN = none.
        image_size: the images' size: one side, ``(height, width)`` or an image shape ``(H, W, C)``; a tensor is
            fine (e.g. ``tf.shape(images)[1:3]``).
        regions: names from :data:`REGION_POINTS`, in the order wanted along the region axis.
        margin: the square's side is the longer extent of the region's points times ``1 + 2 * margin``.

    Returns:
        ``(boxes, valid)``: float32 ``(B, R, 4)`` boxes ``[y0, x0, y1, x1]`` (see the module docstring for the
        convention) and bool ``(B,)``, False where a requested region has a non-finite landmark (whose boxes are
        then ``[0, 0, 1, 1]``, the whole image). Unbatched landmarks give ``(R, 4)`` and a scalar.
    """
    regions = _check_regions(regions)
    margin = _check_margin(margin)
    points, unbatched = _as_batched_landmarks(landmarks)
    height, width = _image_hw(image_size)
    boxes, valids = [], []
    for region in regions:
        pts = tf.gather(points, REGION_POINTS[region], axis=1)  # (B, n, 2)
        finite = tf.reduce_all(tf.math.is_finite(pts), axis=[1, 2])  # (B,)
        safe = tf.where(tf.math.is_finite(pts), pts, tf.zeros_like(pts))
        lo = tf.reduce_min(safe, axis=1)  # (B, 2) x, y
        hi = tf.reduce_max(safe, axis=1)
        centre = (lo + hi) / 2.0
        side = tf.reduce_max(hi - lo + 1.0, axis=1) * (1.0 + 2.0 * margin)  # (B,) pixels covered
        half = (side - 1.0) / 2.0  # centre of the first / last covered pixel
        x0, y0 = centre[:, 0] - half, centre[:, 1] - half
        x1, y1 = centre[:, 0] + half, centre[:, 1] + half
        # crop_and_resize maps 0 and 1 to the first and last pixel centres: divide by (size - 1) (1 for 1 pixel).
        hn, wn = tf.maximum(height - 1.0, 1.0), tf.maximum(width - 1.0, 1.0)
        box = tf.stack([y0 / hn, x0 / wn, y1 / hn, x1 / wn], axis=-1)
        boxes.append(box)
        valids.append(finite)
    valid = tf.reduce_all(tf.stack(valids, axis=1), axis=1)
    boxes = tf.stack(boxes, axis=1)  # (B, R, 4)
    whole = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32)
    boxes = tf.where(valid[:, None, None], boxes, tf.broadcast_to(whole, tf.shape(boxes)))
    if unbatched:
        return boxes[0], valid[0]
    return boxes, valid


def crop_regions(images, landmarks, size: Union[int, Tuple[int, int]] = DEFAULT_CROP_SIZE,
                 regions: Sequence[str] = DEFAULT_REGIONS, margin: float = DEFAULT_MARGIN,
                 method: str = "bilinear") -> Tuple[tf.Tensor, tf.Tensor]:
    """Eye / mouth crops of every face, ``tf.image.crop_and_resize`` of the :func:`region_boxes`.

    Args:
        images: ``(B, H, W, C)`` images (or one ``(H, W, C)`` image with ``(68, 2)`` landmarks), any real dtype.
        landmarks: ``(B, 68, 2)`` dlib points in the images' pixels (NaN = no landmarks).
        size: side (or ``(height, width)``) of every crop; 64 in SSL-FER's MaskFN.
        regions, margin: see :func:`region_boxes`.
        method: ``"bilinear"`` or ``"nearest"`` (``tf.image.crop_and_resize``).

    Returns:
        ``(crops, valid)``: float32 ``(B, R, size, size, C)`` in the images' value scale (pixels outside the image
        are 0; a face without landmarks gets the whole image resized) and bool ``(B,)``. Unbatched input gives
        ``(R, size, size, C)`` and a scalar.
    """
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be a positive side or (height, width), got {size!r}")
    images = tf.convert_to_tensor(images)
    if images.shape.rank not in (3, 4):
        raise ValueError(f"images must be (H, W, C) or (B, H, W, C), got shape {images.shape}")
    unbatched = images.shape.rank == 3
    if unbatched:
        images = images[None]
        landmarks = tf.convert_to_tensor(landmarks)[None]
    boxes, valid = region_boxes(landmarks, tf.shape(images)[1:3], regions=regions, margin=margin)
    batch, n_regions = tf.shape(boxes)[0], tf.shape(boxes)[1]
    box_indices = tf.repeat(tf.range(batch), n_regions)
    crops = tf.image.crop_and_resize(
        tf.cast(images, tf.float32), tf.reshape(boxes, [-1, 4]), box_indices, size, method=method,
        extrapolation_value=0.0,
    )
    channels = images.shape[-1] if images.shape[-1] is not None else tf.shape(images)[-1]
    crops = tf.reshape(crops, tf.stack([batch, n_regions, size[0], size[1], channels]))
    if images.shape[-1] is not None:
        crops = tf.ensure_shape(crops, [None, len(_check_regions(regions)), size[0], size[1], images.shape[-1]])
    if unbatched:
        return crops[0], valid[0]
    return crops, valid
