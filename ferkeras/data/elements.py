"""The element every ferkeras input pipeline yields, and the tail all sources share.

Whatever the source (raw image files, TFRecord shards, in-memory arrays), a pipeline yields::

    images   float32 (B, S, S, 3), RGB, values in [0, 1]
    targets  dict:
        "va"          float32 (B, 2)  valence, arousal in [-1, 1]; NaN where the dataset has no label
        "expression"  int32   (B,)    class index into the source's ``classes``; -1 where missing
        and, on request (``extras=``, keys of :data:`EXTRA_KEYS`):
        "landmarks"   float32 (B, 68, 2) dlib order, x, y in pixels of the output image; NaN if absent
        "identity", "video", "dataset"  string (B,);  "frame" int32 (B,) (-1 if absent);
        "timestamp"   float32 (B,) (NaN if absent)

A source maps each raw element to a per-example dict with :func:`make_element` and hands the
dataset to :func:`finish_pipeline`, which drops (and counts, in a :class:`PipelineStats`)
elements that fail to load, batches, applies the optional batch augmentation, splits each
batch into ``(images, targets)`` and prefetches.  :func:`shuffled` is the seeded shuffle
every source uses, :func:`check_extras` validates the ``extras`` argument.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, Optional, Sequence

import tensorflow as tf

from ferkeras.data.schema import NUM_LANDMARKS

logger = logging.getLogger("ferkeras.data.pipeline")

AUTOTUNE = tf.data.AUTOTUNE
EXTRA_KEYS = ("landmarks", "identity", "video", "frame", "timestamp", "dataset")
"""Target keys a pipeline emits on request, besides ``"va"`` and ``"expression"``."""


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


def check_extras(extras: Iterable[str]) -> tuple:
    """``extras`` as a tuple; a ``ValueError`` naming any key that is not in :data:`EXTRA_KEYS`."""
    extras = tuple(extras)
    unknown = [k for k in extras if k not in EXTRA_KEYS]
    if unknown:
        raise ValueError(f"unknown extras {unknown}; choose from {EXTRA_KEYS}")
    return extras


def targets_from(fields: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The ``"va"`` (valence, arousal) and ``"expression"`` targets of one example's label fields."""
    return {"va": tf.stack([tf.cast(fields["valence"], tf.float32), tf.cast(fields["arousal"], tf.float32)], -1),
            "expression": tf.cast(fields["expression"], tf.int32)}


def make_element(image, landmarks, fields, extras: Sequence[str]) -> Dict[str, tf.Tensor]:
    """The per-example (pre-batch) dict :func:`finish_pipeline` consumes.

    Args:
      image: the float32 (S, S, 3) face crop in [0, 1].
      landmarks: (68, 2) in pixels of ``image`` (read only when ``"landmarks"`` is in ``extras``).
      fields: mapping with ``valence``, ``arousal``, ``expression`` and every key of ``extras``.
      extras: keys of :data:`EXTRA_KEYS` to carry along (already checked by :func:`check_extras`).
    """
    out = {"image": image, **targets_from(fields)}
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


def shuffled(ds: tf.data.Dataset, buffer: int, shuffle: bool, seed: Optional[int]) -> tf.data.Dataset:
    """Seeded shuffle with a fresh order every epoch (the same sequence of orders for the same seed).

    Returns ``ds`` unchanged when ``shuffle`` is False.
    """
    if not shuffle:
        return ds
    return ds.shuffle(max(1, int(buffer)), seed=seed, reshuffle_each_iteration=True)


def counted_map(ds: tf.data.Dataset, load: Callable, stats: Optional[PipelineStats] = None, *,
                num_parallel_calls=AUTOTUNE, deterministic: bool = True, skip_errors: bool = True) -> tf.data.Dataset:
    """``ds.map(load)`` in parallel with elements whose ``load`` raises dropped (with a warning) when ``skip_errors``,
    and counted: ``stats.attempted`` before the map, ``stats.decoded`` after it, so ``stats.dropped`` is what failed.
    Works for elements that are tensors, tuples or dicts."""
    def counter(variable):
        def count(*x):
            variable.assign_add(1)
            return x[0] if len(x) == 1 else x
        return count

    if stats is not None:
        ds = ds.map(counter(stats.attempted))
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    if skip_errors:
        ds = ds.ignore_errors(log_warning=True)
    if stats is not None:
        ds = ds.map(counter(stats.decoded))
    return ds


def finish_pipeline(ds: tf.data.Dataset, load: Callable, *, batch_size: int, augment=None,
                    deterministic: bool = True, drop_remainder: bool = False,
                    num_parallel_calls=AUTOTUNE, stats: Optional[PipelineStats] = None) -> tf.data.Dataset:
    """Maps ``load`` (raw element -> per-example dict of :func:`make_element`) in parallel and finishes the pipeline.

    Elements whose ``load`` raises (undecodable image, unreadable file) are dropped with a warning and
    counted in ``stats``.  Then: batch, optional ``augment(images, landmarks)`` on the batch (run
    sequentially when ``deterministic``, so seeded draws happen in a reproducible order), split into
    ``(images, targets)``, prefetch.  Used by every source so that all produce the same element spec.
    """
    ds = counted_map(ds, load, stats, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
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


__all__ = ("AUTOTUNE", "EXTRA_KEYS", "PipelineStats", "check_extras", "finish_pipeline", "make_element", "shuffled",
           "targets_from")
