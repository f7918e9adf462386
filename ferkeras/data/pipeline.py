"""tf.data input pipelines over face records, TFRecord shards or in-memory arrays.

Every pipeline here yields the element of :mod:`ferkeras.data.elements`, whatever the source:
``(images, targets)`` with float32 RGB images in [0, 1] and the targets ``"va"`` (NaN where the dataset has
no label), ``"expression"`` (-1 where missing) and, on request, the keys of :data:`EXTRA_KEYS`; so losses and
metrics mask missing labels with ``is_finite`` / ``>= 0``.

Per element, all in-graph (no ``py_function``): read the file (or take the
bytes), decode JPEG/PNG/BMP/GIF to 3-channel RGB (grayscale is replicated),
cut a square face crop around the record's box widened by ``margin`` on each
side (pixels outside the image are black; no box = the whole image, padded to
a square), resize with antialiasing to ``image_size``.  Landmarks follow the
same map.  An image that fails to decode (corrupt file that slipped past the
reader), and one whose face is smaller than :data:`MIN_FACE_SIZE` pixels
(the part of the box inside the image; the whole image without a box), is
dropped and counted in the :class:`PipelineStats` passed as ``stats``, with
the first file names (:meth:`PipelineStats.report` logs them;
:class:`ferkeras.callbacks.PipelineDropLogger` reports them every epoch); the
epoch goes on.
Then shuffle (seeded, reshuffled every epoch), batch, optional
:class:`~ferkeras.augment.spatial.FaceAugment` on the batch, prefetch.  The image
operations live in :mod:`ferkeras.data.image_ops`, the shared tail in
:mod:`ferkeras.data.elements`; this module re-exports both for older imports.

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
import os
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from ferkeras.data.elements import (AUTOTUNE, EXTRA_KEYS, REJECT_KEY, PipelineStats, check_extras, finish_pipeline,
                                    make_element, shuffled)
from ferkeras.data.image_ops import MIN_FACE_SIZE, crop_and_resize_face, decode_image, face_too_small, square_crop_box
from ferkeras.data.schema import MISSING_INT, NUM_LANDMARKS, FaceRecord, records_to_columns
from ferkeras.data.tfrecord import tfrecord_dataset
from ferkeras.face.defaults import FACE_MARGIN


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Built-in synthetic faces (:func:`ferkeras.data.synthetic.synthetic_arrays`) as a pipeline source."""

    num: int = 1024
    size: int = 112
    seed: int = 0
    num_identities: int = 50
    first_identity: int = 0


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

def from_records(records: Sequence[FaceRecord], *, image_size: int = 112, batch_size: int = 32,
                 margin: float = FACE_MARGIN, augment=None, shuffle: bool = False, seed: Optional[int] = None,
                 extras: Sequence[str] = (), deterministic: bool = True, drop_remainder: bool = False,
                 num_parallel_calls=AUTOTUNE, stats: Optional[PipelineStats] = None) -> tf.data.Dataset:
    """FaceRecords (paths and/or encoded bytes) -> batched pipeline; see the module doc for the element."""
    records = list(records)
    if not records:
        raise ValueError("from_records: no records (did the reader skip everything? see its skip summary)")
    extras = check_extras(extras)
    cols = records_to_columns(records)
    # tf.constant on the Python objects keeps bytes exact (NumPy's fixed-width bytes would strip trailing NULs).
    table = {k: tf.constant(v.tolist(), tf.string) if v.dtype == object else v for k, v in cols.items()}
    ds = tf.data.Dataset.from_tensor_slices(table)
    ds = shuffled(ds, len(records), shuffle, seed)

    def load(r):
        data = tf.cond(tf.strings.length(r["image_path"]) > 0,
                       lambda: tf.io.read_file(r["image_path"]), lambda: r["image_bytes"])
        image = decode_image(data)
        shape = tf.shape(image)
        box = square_crop_box(r["box"], shape[0], shape[1], margin)
        face, landmarks = crop_and_resize_face(image, box, image_size,
                                               r["landmarks"] if "landmarks" in extras else None)
        return dict(make_element(face, landmarks, r, extras),
                    **{REJECT_KEY: face_too_small(r["box"], shape[0], shape[1])})

    def name(r):
        return tf.where(tf.strings.length(r["image_path"]) > 0, r["image_path"], "<encoded bytes>")

    return finish_pipeline(ds, load, batch_size=batch_size, augment=augment, deterministic=deterministic,
                           drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls, stats=stats,
                           name=name)


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
    extras = check_extras(extras)

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
    ds = shuffled(tf.data.Dataset.from_tensor_slices(table), n, shuffle, seed)
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0

    def load(r):
        image = tf.cast(r["image"], tf.float32) * scale
        lm = r.get("landmarks")
        if image_size != src:
            image = tf.clip_by_value(tf.image.resize(image, [image_size, image_size], antialias=True), 0.0, 1.0)
            if lm is not None:
                lm = (lm + 0.5) * (image_size / src) - 0.5
        return make_element(image, lm, r, extras)

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
                  augment=None, shuffle: Optional[bool] = None, seed: Optional[int] = None, margin: float = FACE_MARGIN,
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
      stats: a :class:`PipelineStats` counting the images dropped as undecodable or smaller than
        :data:`MIN_FACE_SIZE`, with the first names (raw records and shards).
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
        return tfrecord_dataset(source, stats=stats, shuffle_buffer=shuffle_buffer, **common)
    records = list(source)
    skips = getattr(source, "skips", None)
    if skips is not None:
        skips.report()
    if common["drop_remainder"] and 0 < len(records) < batch_size:
        raise ValueError(f"only {len(records)} records for batches of {batch_size} with drop_remainder "
                         f"(training=True): every epoch would be empty; lower batch_size")
    return from_records(records, margin=margin, stats=stats, **common)


__all__ = ("AUTOTUNE", "EXTRA_KEYS", "MIN_FACE_SIZE", "PipelineStats", "SyntheticSpec", "build_dataset",
           "crop_and_resize_face", "decode_image", "finish_pipeline", "from_arrays", "from_records", "from_synthetic",
           "square_crop_box")
