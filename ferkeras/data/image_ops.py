"""In-graph image operations shared by the input pipelines, the exported serving functions and video inference.

All TensorFlow ops (no ``py_function``), so they run inside ``tf.data`` maps and inside SavedModel
signatures alike: decode encoded bytes to RGB, choose the square region around a face box, and cut
and resize that region with antialiasing (mapping landmarks along).
"""

from __future__ import annotations

import tensorflow as tf

MAX_INTERMEDIATE = 4
"""Largest intermediate crop side relative to the output before the antialiased resize; bounds the work per image."""
MIN_FACE_SIZE = 16
"""Smallest face, in source pixels, the pipelines, the shard writer and the exported serving signatures accept: the
part of the face box inside the image (the whole image for a record without a box) must be at least this wide and
this high.  Anything smaller (a 1 x 1 image, a box outside the image) would become a flat, featureless crop: the
pipelines and the shard writer skip such records and count them, serving refuses such an image."""


def decode_image(data):
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 (H, W, 3) RGB (grayscale and RGBA converted)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _box_or_image(box, height, width):
    """``(box, valid)``: ``box`` (x0, y0, x1, y1) as float32, or the whole ``height`` x ``width`` image when it has a
    NaN or is empty ("no box"); ``valid`` says which."""
    box = tf.cast(box, tf.float32)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    valid = tf.reduce_all(tf.math.is_finite(box)) & (box[2] > box[0]) & (box[3] > box[1])
    return tf.where(valid, box, tf.stack([0.0, 0.0, w, h])), valid


def square_crop_box(box, height, width, margin: float):
    """The square region (x0, y0, x1, y1) to cut: ``box`` centred, side = longer side x (1 + 2 margin).

    Same convention as :func:`ferkeras.face.align.square_box` / ``crop_square`` (a region
    ``[x0, x1)`` in pixel indices, so crop pixel j shows source pixel x0 + j at native scale),
    which the shard writer uses.  A box with any NaN (or empty) means "no box": the square
    around the whole image, ``(0, 0, width, height)`` centred - padded, never stretched.
    """
    box, valid = _box_or_image(box, height, width)
    m = tf.where(valid, margin, 0.0)
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    half = tf.maximum(box[2] - box[0], box[3] - box[1]) * (0.5 + m)
    return tf.stack([cx - half, cy - half, cx + half, cy + half])


def visible_face_size(box, height, width):
    """(width, height) in pixels of the part of ``box`` (x0, y0, x1, y1) inside a ``height`` x ``width`` image;
    the whole image when ``box`` has a NaN or is empty ("no box", as in :func:`square_crop_box`).  0 when the box
    lies outside the image."""
    box, _ = _box_or_image(box, height, width)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    visible_w = tf.minimum(box[2], w) - tf.maximum(box[0], 0.0)
    visible_h = tf.minimum(box[3], h) - tf.maximum(box[1], 0.0)
    return tf.maximum(visible_w, 0.0), tf.maximum(visible_h, 0.0)


def face_too_small(box, height, width, min_size: int = MIN_FACE_SIZE):
    """Bool scalar: the visible face (:func:`visible_face_size`) is narrower or lower than ``min_size`` pixels."""
    visible_w, visible_h = visible_face_size(box, height, width)
    return tf.minimum(visible_w, visible_h) < float(min_size)


def crop_and_resize_face(image, crop_box, size: int, landmarks=None):
    """Cuts the square region ``crop_box`` from a uint8/float image and resizes it to ``size`` x ``size``.

    Two steps: a bilinear resampling of the region at about native resolution (n x n, n capped at
    :data:`MAX_INTERMEDIATE` x ``size``) with ``tf.image.crop_and_resize`` (black outside the image), then
    an antialiased ``tf.image.resize`` to ``size`` - a direct bilinear crop would alias when the face is
    much larger than the output.  Output pixel centres sample source x = x0 + (j + 0.5) side / S - 0.5,
    so landmarks map as o = (p - x0 + 0.5) S / side - 0.5.  Returns float32 [0, 1] (size, size, 3) and
    the mapped landmarks (or None).
    """
    image = tf.convert_to_tensor(image)
    scale01 = 1.0 / 255.0 if image.dtype == tf.uint8 else 1.0
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    x0, y0 = crop_box[0], crop_box[1]
    side = tf.maximum(crop_box[2] - crop_box[0], 1e-3)
    n = tf.clip_by_value(tf.round(side), float(size), float(MAX_INTERMEDIATE * size))
    first_x, last_x = x0 + 0.5 * side / n - 0.5, x0 + (n - 0.5) * side / n - 0.5
    first_y, last_y = y0 + 0.5 * side / n - 0.5, y0 + (n - 0.5) * side / n - 0.5
    normalised = tf.stack([first_y / tf.maximum(h - 1.0, 1.0), first_x / tf.maximum(w - 1.0, 1.0),
                           last_y / tf.maximum(h - 1.0, 1.0), last_x / tf.maximum(w - 1.0, 1.0)])
    ni = tf.cast(n, tf.int32)
    crop = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None] * scale01, normalised[None], [0],
                                    tf.stack([ni, ni]), method="bilinear", extrapolation_value=0.0)[0]
    out = tf.clip_by_value(tf.image.resize(crop, [size, size], method="bilinear", antialias=True), 0.0, 1.0)
    if landmarks is None:
        return out, None
    origin = tf.stack([x0, y0])
    return out, (tf.cast(landmarks, tf.float32) - origin + 0.5) * (float(size) / side) - 0.5


__all__ = ("MAX_INTERMEDIATE", "MIN_FACE_SIZE", "crop_and_resize_face", "decode_image", "face_too_small",
           "square_crop_box", "visible_face_size")
