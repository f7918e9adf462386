"""tf.data input pipelines over face records, TFRecord shards or in-memory arrays.

Every pipeline here yields the same element, whatever the source::

    images   float32 (B, S, S, 3), RGB, values in [0, 1]
    targets  dict:
        "va"          float32 (B, 2)  valence, arousal in [-1, 1]; NaN where the dataset has no label
        "expression"  int32   (B,)    class index into the source's ``classes``; -1 where missing
        and, on request (``extras=``):
        "landmarks"   float32 (B, 68, 2) dlib order, x, y in pixels of the output image; NaN if absent
        "identity", "video", "dataset"  string (B,);  "frame" int32 (B,) (-1 if absent);
        "timestamp"   float32 (B,) (NaN if absent)

so losses and metrics mask missing labels with ``is_finite`` / ``>= 0``.

Per element, all in-graph (no ``py_function``): read the file (or take the
bytes), decode JPEG/PNG/BMP/GIF to 3-channel RGB (grayscale is replicated),
cut a square face crop around the record's box widened by ``margin`` on each
side (pixels outside the image are black; no box = the whole image, padded to
a square), resize with antialiasing to ``image_size``.  Landmarks follow the
same map.  An image that fails to decode (corrupt file that slipped past the
reader) is dropped (TensorFlow logs each one; :meth:`PipelineStats.report`
warns with the count) and counted in :class:`PipelineStats`; the epoch goes on.  Then shuffle (seeded, reshuffled every epoch), batch, optional
:class:`~ferkeras.augment.spatial.FaceAugment` on the batch, prefetch.

Order of work: the shuffle runs on the record table (paths and labels) before
decoding, so the whole dataset is shuffled at no memory cost; decoding runs in
parallel (``num_parallel_calls``).  With ``deterministic=True`` (the default)
element order is preserved by the parallel map and
the augmentation runs sequentially, so two runs with the same seed give the
same batches; each epoch still differs from the previous one.

:func:`build_dataset` is the one entry point binaries call; it accepts a
reader, a list of :class:`~ferkeras.data.schema.FaceRecord`, a TFRecord glob /
folder (see :mod:`ferkeras.data.tfrecord`) or a :class:`SyntheticSpec`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable, Dict, Iterable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from ferkeras.data.schema import MISSING_INT, NUM_LANDMARKS, FaceRecord, records_to_columns

logger = logging.getLogger("ferkeras.data.pipeline")

AUTOTUNE = tf.data.AUTOTUNE
EXTRA_KEYS = ("landmarks", "identity", "video", "frame", "timestamp", "dataset")
# Largest intermediate crop side relative to the output before the antialiased resize; bounds the work per image.
_MAX_INTERMEDIATE = 4


class PipelineStats:
    """Counts images a pipeline tried to decode and those that decoded, across all epochs.

    ``dropped`` (= attempted - decoded) is exact once an epoch has been consumed
    completely; while iterating, prefetching makes ``attempted`` run ahead.
    """

    def __init__(self, name: str = "pipeline"):
        self.name = name
        self.attempted = tf.Variable(0, dtype=tf.int64, trainable=False, name="attempted")
        self.decoded = tf.Variable(0, dtype=tf.int64, trainable=False, name="decoded")

    @property
    def dropped(self) -> int:
        return int(self.attempted.numpy() - self.decoded.numpy())

    def summary(self) -> str:
        return (f"{self.name}: {int(self.decoded.numpy())} images decoded, "
                f"{self.dropped} dropped as undecodable")

    def report(self) -> None:
        (logger.warning if self.dropped else logger.info)(self.summary())


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Built-in synthetic faces (:func:`ferkeras.data.synthetic.synthetic_arrays`) as a pipeline source."""

    num: int = 1024
    size: int = 112
    seed: int = 0
    num_identities: int = 50
    first_identity: int = 0


# ---------------------------------------------------------------------------------------------
# Per-element graph functions
# ---------------------------------------------------------------------------------------------

def decode_image(data):
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 (H, W, 3) RGB (grayscale and RGBA converted)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def square_crop_box(box, height, width, margin: float):
    """The square region (x0, y0, x1, y1) to cut: ``box`` centred, side = longer side x (1 + 2 margin).

    Same convention as :func:`ferkeras.face.align.square_box` / ``crop_square`` (a region
    ``[x0, x1)`` in pixel indices, so crop pixel j shows source pixel x0 + j at native scale),
    which the shard writer uses.  A box with any NaN (or empty) means "no box": the square
    around the whole image, ``(0, 0, width, height)`` centred - padded, never stretched.
    """
    box = tf.cast(box, tf.float32)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    valid = tf.reduce_all(tf.math.is_finite(box)) & (box[2] > box[0]) & (box[3] > box[1])
    box = tf.where(valid, box, tf.stack([0.0, 0.0, w, h]))
    m = tf.where(valid, margin, 0.0)
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    half = tf.maximum(box[2] - box[0], box[3] - box[1]) * (0.5 + m)
    return tf.stack([cx - half, cy - half, cx + half, cy + half])


def crop_and_resize_face(image, crop_box, size: int, landmarks=None):
    """Cuts the square region ``crop_box`` from a uint8/float image and resizes it to ``size`` x ``size``.

    Two steps: a bilinear resampling of the region at about native resolution (n x n, n capped at
    4 x ``size``) with ``tf.image.crop_and_resize`` (black outside the image), then an antialiased
    ``tf.image.resize`` to ``size`` - a direct bilinear crop would alias when the face is much larger
    than the output.  Output pixel centres sample source x = x0 + (j + 0.5) side / S - 0.5, so
    landmarks map as o = (p - x0 + 0.5) S / side - 0.5.  Returns float32 [0, 1] (size, size, 3) and
    the mapped landmarks (or None).
    """
    image = tf.convert_to_tensor(image)
    scale01 = 1.0 / 255.0 if image.dtype == tf.uint8 else 1.0
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    x0, y0 = crop_box[0], crop_box[1]
    side = tf.maximum(crop_box[2] - crop_box[0], 1e-3)
    n = tf.clip_by_value(tf.round(side), float(size), float(_MAX_INTERMEDIATE * size))
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


def _targets_from(fields: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return {"va": tf.stack([tf.cast(fields["valence"], tf.float32), tf.cast(fields["arousal"], tf.float32)], -1),
            "expression": tf.cast(fields["expression"], tf.int32)}


def _element(image, landmarks, fields, extras: Sequence[str]):
    """Assembles the per-example (pre-batch) dict the shared tail consumes."""
    out = {"image": image, **_targets_from(fields)}
    for key in extras:
        if key == "landmarks":
            out[key] = tf.reshape(tf.cast(landmarks, tf.float32), [NUM_LANDMARKS, 2])
        elif key == "frame":
            out[key] = tf.cast(fields[key], tf.int32)
        elif key == "timestamp":
            out[key] = tf.cast(fields[key], tf.float32)
        else:
            out[key] = tf.cast(fields[key], tf.string)
    return out


def _check_extras(extras: Iterable[str]) -> tuple:
    extras = tuple(extras)
    unknown = [k for k in extras if k not in EXTRA_KEYS]
    if unknown:
        raise ValueError(f"unknown extras {unknown}; choose from {EXTRA_KEYS}")
    return extras


# ---------------------------------------------------------------------------------------------
# Shared tail: drop undecodable, batch, augment, split into (images, targets), prefetch
# ---------------------------------------------------------------------------------------------

def finish_pipeline(ds: tf.data.Dataset, load: Callable, *, batch_size: int, augment=None,
                    deterministic: bool = True, drop_remainder: bool = False,
                    num_parallel_calls=AUTOTUNE, stats: Optional[PipelineStats] = None) -> tf.data.Dataset:
    """Maps ``load`` (raw element -> per-example dict from :func:`_element`) in parallel and finishes the pipeline.

    Elements whose ``load`` raises (undecodable image, unreadable file) are dropped with a warning and
    counted in ``stats``.  Used by every source so that all produce the same element spec.
    """
    if stats is not None:
        def count_attempt(x):
            stats.attempted.assign_add(1)
            return x
        ds = ds.map(count_attempt)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    ds = ds.ignore_errors(log_warning=True)
    if stats is not None:
        def count_decoded(x):
            stats.decoded.assign_add(1)
            return x
        ds = ds.map(count_decoded)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def split(batch):
        images = batch.pop("image")
        if augment is not None:
            images, landmarks = augment(images, batch.get("landmarks"))
            if landmarks is not None:
                batch["landmarks"] = landmarks
        return images, batch

    if deterministic and augment is not None:
        ds = ds.map(split)  # sequential: seeded random draws happen in a reproducible order
    else:
        ds = ds.map(split, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return ds.prefetch(AUTOTUNE)


def _shuffled(ds: tf.data.Dataset, buffer: int, shuffle: bool, seed: Optional[int]):
    """Seeded shuffle with a fresh order every epoch (the same sequence of orders for the same seed)."""
    if not shuffle:
        return ds
    return ds.shuffle(max(1, int(buffer)), seed=seed, reshuffle_each_iteration=True)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

def from_records(records: Sequence[FaceRecord], *, image_size: int = 112, batch_size: int = 32,
                 margin: float = 0.2, augment=None, shuffle: bool = False, seed: Optional[int] = None,
                 extras: Sequence[str] = (), deterministic: bool = True, drop_remainder: bool = False,
                 num_parallel_calls=AUTOTUNE, stats: Optional[PipelineStats] = None) -> tf.data.Dataset:
    """FaceRecords (paths and/or encoded bytes) -> batched pipeline; see the module doc for the element."""
    records = list(records)
    if not records:
        raise ValueError("from_records: no records (did the reader skip everything? see its skip summary)")
    extras = _check_extras(extras)
    cols = records_to_columns(records)
    # tf.constant on the Python objects keeps bytes exact (NumPy's fixed-width bytes would strip trailing NULs).
    table = {k: tf.constant(v.tolist(), tf.string) if v.dtype == object else v for k, v in cols.items()}
    ds = tf.data.Dataset.from_tensor_slices(table)
    ds = _shuffled(ds, len(records), shuffle, seed)

    def load(r):
        data = tf.cond(tf.strings.length(r["image_path"]) > 0,
                       lambda: tf.io.read_file(r["image_path"]), lambda: r["image_bytes"])
        image = decode_image(data)
        shape = tf.shape(image)
        box = square_crop_box(r["box"], shape[0], shape[1], margin)
        face, landmarks = crop_and_resize_face(image, box, image_size,
                                               r["landmarks"] if "landmarks" in extras else None)
        return _element(face, landmarks, r, extras)

    return finish_pipeline(ds, load, batch_size=batch_size, augment=augment, deterministic=deterministic,
                           drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls, stats=stats)


def from_arrays(images, valence=None, arousal=None, expression=None, *, landmarks=None, identity=None,
                video=None, frame=None, timestamp=None, dataset: str = "arrays", image_size: Optional[int] = None,
                batch_size: int = 32, augment=None, shuffle: bool = False, seed: Optional[int] = None,
                extras: Sequence[str] = (), deterministic: bool = True, drop_remainder: bool = False,
                num_parallel_calls=AUTOTUNE) -> tf.data.Dataset:
    """In-memory face crops uint8 (N, H, W, 3) (or float in [0, 1]) -> the same element as :func:`from_records`.

    Missing label arrays are filled with the schema's sentinels; ``landmarks`` are in pixels of
    ``images`` and are rescaled with them when ``image_size`` differs from the array size.  Meant for
    sets that fit in memory (the synthetic faces): shuffling buffers the whole array once more.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"from_arrays: images must be (N, S, S, 3), got {images.shape}")
    n, src = images.shape[0], images.shape[1]
    image_size = image_size or src
    extras = _check_extras(extras)

    def column(values, fill, dtype):
        if values is None:
            return np.full((n,), fill, dtype)
        values = np.asarray(values, dtype)
        if values.shape[0] != n:
            raise ValueError(f"from_arrays: got {values.shape[0]} labels for {n} images")
        return values

    table = {"image": images,
             "valence": column(valence, np.nan, np.float32), "arousal": column(arousal, np.nan, np.float32),
             "expression": column(expression, MISSING_INT, np.int32),
             "landmarks": (np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32) if landmarks is None
                           else np.asarray(landmarks, np.float32).reshape(n, NUM_LANDMARKS, 2)),
             "identity": column(identity, "", object).astype(str), "video": column(video, "", object).astype(str),
             "frame": column(frame, MISSING_INT, np.int32), "timestamp": column(timestamp, np.nan, np.float32),
             "dataset": np.full((n,), dataset)}
    table = {k: v for k, v in table.items() if k in ("image", "valence", "arousal", "expression") or k in extras}
    ds = _shuffled(tf.data.Dataset.from_tensor_slices(table), n, shuffle, seed)
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0

    def load(r):
        image = tf.cast(r["image"], tf.float32) * scale
        lm = r.get("landmarks")
        if image_size != src:
            image = tf.clip_by_value(tf.image.resize(image, [image_size, image_size], antialias=True), 0.0, 1.0)
            if lm is not None:
                lm = (lm + 0.5) * (image_size / src) - 0.5
        return _element(image, lm, r, extras)

    return finish_pipeline(ds, load, batch_size=batch_size, augment=augment, deterministic=deterministic,
                           drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls)


def from_synthetic(spec: SyntheticSpec, **options) -> tf.data.Dataset:
    """Built-in synthetic faces -> pipeline (expression, valence, arousal, landmarks, identity all exact)."""
    from ferkeras.data.synthetic import synthetic_arrays  # imported late: the generator is optional here

    arrays = synthetic_arrays(spec.num, size=spec.size, seed=spec.seed, num_identities=spec.num_identities,
                              first_identity=spec.first_identity)
    return from_arrays(arrays["images"], arrays["valence"], arrays["arousal"], arrays["expression"],
                       landmarks=arrays["landmarks"], identity=arrays["identity"], dataset="synthetic", **options)


Source = Union[Iterable[FaceRecord], str, os.PathLike, SyntheticSpec]


def build_dataset(source: Source, *, image_size: int = 112, batch_size: int = 32, training: bool = False,
                  augment=None, shuffle: Optional[bool] = None, seed: Optional[int] = None, margin: float = 0.2,
                  extras: Sequence[str] = (), deterministic: bool = True, drop_remainder: bool = False,
                  num_parallel_calls=AUTOTUNE, stats: Optional[PipelineStats] = None,
                  shuffle_buffer: int = 4096) -> tf.data.Dataset:
    """The one pipeline constructor binaries call.

    Args:
      source: a reader (anything iterable over FaceRecord with ``.skips``), a list of FaceRecord,
        a TFRecord glob or a folder of shards written by :func:`ferkeras.data.tfrecord.write_shards`,
        or a :class:`SyntheticSpec`.
      image_size: output side S.
      training: shuffles by default, and drops the last partial batch.
      augment: a :class:`~ferkeras.augment.spatial.FaceAugment` (applied only if given; pass it for training).
      shuffle: overrides ``training`` for shuffling.  seed: shuffle seed.
      margin: face box widening on each side, as a fraction of the box's longer side (raw records only;
        shards store crops that already have their margin).
      extras: additional target keys to emit, from :data:`EXTRA_KEYS`.
      deterministic: keep element order, and seeded shuffling/augmentation reproducible; False lets
        tf.data hand out whichever element is ready first (a little faster).
      stats: a :class:`PipelineStats` to count undecodable images (raw records and shards).
      shuffle_buffer: shuffle buffer of serialized examples for TFRecord sources.
    Returns:
      ``tf.data.Dataset`` of ``(images, targets)`` as described in the module doc.  Not repeated.
    """
    shuffle = training if shuffle is None else shuffle
    common = dict(image_size=image_size, batch_size=batch_size, augment=augment, shuffle=shuffle, seed=seed,
                  extras=extras, deterministic=deterministic, drop_remainder=drop_remainder or training,
                  num_parallel_calls=num_parallel_calls)
    if isinstance(source, SyntheticSpec):
        return from_synthetic(source, **common)
    if isinstance(source, (str, os.PathLike)):
        from ferkeras.data.tfrecord import tfrecord_dataset

        return tfrecord_dataset(source, stats=stats, shuffle_buffer=shuffle_buffer, **common)
    records = list(source)
    skips = getattr(source, "skips", None)
    if skips is not None:
        skips.report()
    if common["drop_remainder"] and 0 < len(records) < batch_size:
        raise ValueError(f"only {len(records)} records for batches of {batch_size} with drop_remainder "
                         f"(training=True): every epoch would be empty; lower batch_size")
    return from_records(records, margin=margin, stats=stats, **common)


__all__ = ("AUTOTUNE", "EXTRA_KEYS", "PipelineStats", "SyntheticSpec", "build_dataset", "crop_and_resize_face",
           "decode_image", "finish_pipeline", "from_arrays", "from_records", "from_synthetic", "square_crop_box")
