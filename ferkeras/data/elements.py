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
dataset to :func:`finish_pipeline`, which drops (and counts, in a :class:`PipelineStats`, with the
first names) elements that fail to load or whose face is smaller than :data:`MIN_FACE_SIZE`, batches,
applies the optional batch augmentation, splits each batch into ``(images, targets)`` and prefetches.
:func:`shuffled` is the seeded shuffle every source uses, :func:`check_extras` validates the ``extras`` argument.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import tensorflow as tf

from ferkeras.data.image_ops import MIN_FACE_SIZE
from ferkeras.data.schema import NUM_LANDMARKS

logger = logging.getLogger("ferkeras.data.pipeline")

AUTOTUNE = tf.data.AUTOTUNE
EXTRA_KEYS = ("landmarks", "identity", "video", "frame", "timestamp", "dataset")
"""Target keys a pipeline emits on request, besides ``"va"`` and ``"expression"``."""


UNDECODABLE = "undecodable image"
FACE_TOO_SMALL = f"face smaller than {MIN_FACE_SIZE} px"
DROP_REASONS = (UNDECODABLE, FACE_TOO_SMALL)
"""Why a pipeline drops an element: its ``load`` raised (undecodable or unreadable file), or the face is smaller
than :data:`MIN_FACE_SIZE`."""
REJECT_KEY = "_rejected"
"""Optional key of a ``load`` result dict (:func:`counted_map`): a bool scalar, True to drop the element as
:data:`FACE_TOO_SMALL`; removed from the element."""
MAX_DROPPED_NAMES = 10
"""How many dropped elements' names a :class:`PipelineStats` keeps (the first ones)."""


try:  # the class tf.Variable builds outside any strategy; constructed directly, no strategy's creator intercepts it
    from tensorflow.python.ops.resource_variable_ops import ResourceVariable as _LocalVariable
except ImportError:  # pragma: no cover - a TensorFlow that moved it: plain tf.Variable (create stats outside scopes)
    _LocalVariable = tf.Variable

NAME_RING = 1024
"""How many recent element names a :class:`PipelineStats` holds while their elements are being loaded (more than
any parallel map keeps in flight)."""


class PipelineStats:
    """Counts, in TensorFlow variables updated inside the pipeline, the elements a pipeline loaded, kept and dropped
    (by reason, :data:`DROP_REASONS`), and keeps the names (file paths) of the first :data:`MAX_DROPPED_NAMES`
    dropped ones, across all passes.

    All state is graph-side (``tf.Variable``; no ``py_function``), so counting works in graph mode, in repeated and
    distributed datasets, at the cost of a few small sequential maps per element (see :func:`counted_map`).  With a
    ``deterministic`` pipeline (the default) the counts are exact for every element the consumer has received and
    every dropped element is named (up to ``max_names``); with ``deterministic=False`` ``attempted`` runs ahead by
    the elements in flight and only faces too small are named.  One live iterator per object.
    ``attempted`` and ``decoded`` (the kept elements) are variables; :attr:`dropped`, :attr:`counts`,
    :meth:`first_dropped` and :meth:`as_dict` read them.
    """

    def __init__(self, name: str = "pipeline", max_names: int = MAX_DROPPED_NAMES):
        self.name = name
        self.max_names = int(max_names)

        def variable(value, dtype, label):
            # Plain resource variables even inside a tf.distribute strategy's scope: the dataset functions update
            # them with scatter ops, which mirrored variables do not support (and the counts are per process).
            return _LocalVariable(value, dtype=dtype, trainable=False, name=label)

        self.attempted = variable(0, tf.int64, "attempted")
        self.decoded = variable(0, tf.int64, "decoded")
        self.too_small = variable(0, tf.int64, "too_small")
        self.names = variable([""] * self.max_names, tf.string, "dropped_names")
        self.name_reasons = variable([0] * self.max_names, tf.int32, "dropped_name_reasons")
        self.num_named = variable(0, tf.int64, "num_named")
        # names of the elements being loaded, by index in the pass (slot i % NAME_RING), and the pass's length so far
        self._ring_names = variable([""] * NAME_RING, tf.string, "ring_names")
        self._ring_index = variable([-1] * NAME_RING, tf.int64, "ring_index")
        self._pass_length = variable(0, tf.int64, "pass_length")
        self._last = variable(-1, tf.int64, "last_index")  # the index of the last element that arrived this pass

    @property
    def dropped(self) -> int:
        return int(self.attempted.numpy() - self.decoded.numpy())

    @property
    def counts(self) -> Dict[str, int]:
        """Dropped elements by reason (:data:`DROP_REASONS`)."""
        too_small = int(self.too_small.numpy())
        return {UNDECODABLE: self.dropped - too_small, FACE_TOO_SMALL: too_small}

    def first_dropped(self) -> List[str]:
        """``"name (reason)"`` of the first dropped elements (up to ``max_names``, each once), in the order they were
        met."""
        n = min(int(self.num_named.numpy()), self.max_names)
        names, reasons = self.names.numpy()[:n], self.name_reasons.numpy()[:n]
        found = [f"{name.decode(errors='replace') or '<unnamed>'} ({DROP_REASONS[int(r)]})"
                 for name, r in zip(names, reasons)]
        return list(dict.fromkeys(found))  # a later pass over the same data meets the same ones again

    def as_dict(self) -> Dict:
        """The counts and first names as plain Python values (for result.json)."""
        return {"attempted": int(self.attempted.numpy()), "kept": int(self.decoded.numpy()),
                "dropped": self.dropped, "dropped_by_reason": self.counts, "first_dropped": self.first_dropped()}

    def summary(self) -> str:
        dropped = self.dropped
        text = f"{self.name}: {int(self.decoded.numpy())} images kept, {dropped} dropped"
        if dropped:
            reasons = ", ".join(f"{c} {r}" for r, c in self.counts.items() if c)
            text += f" ({reasons})"
            first = self.first_dropped()
            if first:
                text += f"; first: {', '.join(first)}"
        return text

    def report(self) -> None:
        (logger.warning if self.dropped else logger.info)(self.summary())

    # --- in-graph updates (called inside the dataset functions of counted_map) ---

    def _remember(self, index, name):
        """Pre-load, sequential: the name of element ``index`` of this pass."""
        slot = tf.reshape(index % NAME_RING, [1, 1])
        with tf.control_dependencies([self._ring_names.scatter_nd_update(slot, tf.reshape(name, [1])),
                                      self._ring_index.scatter_nd_update(slot, tf.reshape(index, [1]))]):
            return self._pass_length.assign(index + 1)

    def _name_range(self, first, stop, reason: int):
        """Records the names of elements ``first .. stop - 1`` of this pass as dropped for ``reason``, while fewer
        than ``max_names`` are recorded (a name no longer in the ring is recorded as unnamed)."""
        free = tf.maximum(tf.cast(self.max_names, tf.int64) - self.num_named, 0)
        count = tf.maximum(tf.minimum(stop - first, free), 0)
        indices = tf.range(first, first + count)
        slots = indices % NAME_RING
        held = tf.equal(tf.gather(self._ring_index, slots), indices)
        names = tf.where(held, tf.gather(self._ring_names, slots), "")
        at = tf.reshape(self.num_named + tf.range(count), [-1, 1])
        with tf.control_dependencies([self.names.scatter_nd_update(at, names),
                                      self.name_reasons.scatter_nd_update(at, tf.fill([count], reason))]):
            return self.num_named.assign_add(count)

    def _count(self, index, reason, ordered: bool):
        """Post-load, sequential: element ``index`` of this pass arrived (``reason`` -1 = kept, else an index of
        :data:`DROP_REASONS`; -2 = the end-of-pass marker, whose ``index`` is the pass's length).  When
        ``ordered``, the indices skipped since the previous arrival were dropped as undecodable.  Returns whether
        to keep the element."""
        is_element = reason > -2
        small = tf.equal(reason, DROP_REASONS.index(FACE_TOO_SMALL))
        last = self._last.read_value()
        previous = tf.where(index > last, last, -1)  # an index at or below the last one: a new pass began
        gap = tf.maximum(index - previous - 1, 0) if ordered else tf.constant(0, tf.int64)

        def rare():  # drops to name, or the end of the pass
            skipped = [self._name_range(previous + 1, index, DROP_REASONS.index(UNDECODABLE))] if ordered else []
            with tf.control_dependencies(skipped):
                named = tf.cond(small, lambda: self._name_range(index, index + 1, DROP_REASONS.index(FACE_TOO_SMALL)),
                                lambda: tf.identity(self.num_named))
            with tf.control_dependencies([named]):
                return self._pass_length.assign(tf.where(is_element, self._pass_length, 0))

        ops = [tf.cond((gap > 0) | small | ~is_element, rare, lambda: tf.identity(self._pass_length)),
               self.decoded.assign_add(tf.cast(tf.equal(reason, -1), tf.int64)),
               self.too_small.assign_add(tf.cast(small, tf.int64)),
               self._last.assign(tf.where(is_element, index, -1))]
        if ordered:
            ops.append(self.attempted.assign_add(gap + tf.cast(is_element, tf.int64)))
        with tf.control_dependencies(ops):
            return tf.equal(reason, -1)


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


def _unpacked(fn: Callable) -> Callable:
    """``fn`` of one structure, as a ``Dataset.map`` function (which receives a tuple element as separate args)."""
    return lambda *x: fn(x[0] if len(x) == 1 else x)


def _placeholder(spec):
    """A value of ``spec``'s structure and dtypes (zero-sized where a dimension is unknown): a dropped element's
    stand-in until the count, never yielded."""
    def zeros(s):
        if not isinstance(s, tf.TensorSpec):
            raise TypeError(f"counted_map: elements must be (nests of) dense tensors, got {s}")
        shape = [] if s.shape.rank is None else [0 if d is None else d for d in s.shape.as_list()]
        return tf.zeros(shape, s.dtype)
    return tf.nest.map_structure(zeros, spec)


def counted_map(ds: tf.data.Dataset, load: Callable, stats: Optional[PipelineStats] = None, *,
                num_parallel_calls=AUTOTUNE, deterministic: bool = True, skip_errors: bool = True,
                name: Optional[Callable] = None) -> tf.data.Dataset:
    """``ds.map(load)`` in parallel, with the elements ``load`` cannot load dropped and counted, never silently.

    An element is dropped when ``load`` raises (an undecodable or unreadable file; only with ``skip_errors``,
    else the error ends the iteration) or when ``load`` returns a dict whose :data:`REJECT_KEY` is True (a face
    smaller than :data:`MIN_FACE_SIZE`).  With ``stats`` (:class:`PipelineStats`) every element is counted, kept or
    dropped, and the dropped ones are named by ``name(raw element)`` (a tf.string scalar such as the file path):

    * before the parallel map, a sequential scan numbers the elements of the pass and writes each name into a
      small ring of tf.string variables;
    * the parallel ``load`` runs, ``ignore_errors`` drops what raises; an end-of-pass marker follows the last
      element;
    * after it, a sequential filter sees each surviving element's number: in a ``deterministic``
      (order-preserving) pipeline the numbers skipped since the previous one are the dropped elements, counted and
      named from the ring.  Without ``deterministic`` only the totals (counted before the map) and the faces too
      small are named.

    Everything is in-graph (no ``py_function``): it works in repeated, prefetched and distributed datasets, at the
    cost of a sequential scan, filter and map per element (tens of microseconds of CPU, against milliseconds for
    decoding an image).  Works for elements that are tensors, tuples or dicts.
    """
    def loaded(r):
        out = load(*r) if isinstance(r, tuple) else load(r)  # as Dataset.map calls it
        rejected = tf.constant(False)
        if isinstance(out, dict) and REJECT_KEY in out:
            out = dict(out)
            rejected = tf.cast(out.pop(REJECT_KEY), tf.bool)
        return out, tf.where(rejected, DROP_REASONS.index(FACE_TOO_SMALL), -1)

    def kept(out, reason):
        return reason < 0

    def element(out, reason):
        return out

    def finish(ds):
        return ds.ignore_errors(log_warning=True) if skip_errors else ds

    if stats is None:
        ds = finish(ds.map(_unpacked(loaded), num_parallel_calls=num_parallel_calls, deterministic=deterministic))
        return ds.filter(kept).map(element)

    def named(r):
        return tf.constant("") if name is None else tf.reshape(tf.cast(name(r), tf.string), [])

    def remember(index, r):  # a scan: its state, the index in this pass, restarts with every pass
        ops = [stats._remember(index, named(r))] + ([] if deterministic else [stats.attempted.assign_add(1)])
        with tf.control_dependencies(ops):
            return index + 1, (index, r)

    def load_numbered(index, r):
        out, reason = loaded(r)
        return index, out, reason

    spec = ds.map(_unpacked(loaded)).element_spec[0]

    def end_marker(_):
        return stats._pass_length.read_value(), _placeholder(spec), tf.constant(-2)

    def count(index, out, reason):
        return stats._count(index, reason, ordered=deterministic)

    def unwrap(index, out, reason):
        return out

    ds = ds.scan(tf.constant(0, tf.int64), remember)
    ds = finish(ds.map(load_numbered, num_parallel_calls=num_parallel_calls, deterministic=deterministic))
    ds = ds.concatenate(tf.data.Dataset.range(1).map(end_marker))
    return ds.filter(count).map(unwrap)


def finish_pipeline(ds: tf.data.Dataset, load: Callable, *, batch_size: int, augment=None,
                    deterministic: bool = True, drop_remainder: bool = False,
                    num_parallel_calls=AUTOTUNE, stats: Optional[PipelineStats] = None,
                    name: Optional[Callable] = None) -> tf.data.Dataset:
    """Maps ``load`` (raw element -> per-example dict of :func:`make_element`) in parallel and finishes the pipeline.

    Elements whose ``load`` raises (undecodable image, unreadable file) or rejects (:data:`REJECT_KEY`: face
    smaller than :data:`MIN_FACE_SIZE`) are dropped and counted in ``stats`` with their ``name(raw element)``
    (:func:`counted_map`).  Then: batch, optional ``augment(images, landmarks)`` on the batch (run
    sequentially when ``deterministic``, so seeded draws happen in a reproducible order), split into
    ``(images, targets)``, prefetch.  Used by every source so that all produce the same element spec.
    """
    ds = counted_map(ds, load, stats, num_parallel_calls=num_parallel_calls, deterministic=deterministic, name=name)
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


__all__ = ("AUTOTUNE", "DROP_REASONS", "EXTRA_KEYS", "FACE_TOO_SMALL", "MAX_DROPPED_NAMES", "MIN_FACE_SIZE",
           "NAME_RING", "PipelineStats", "REJECT_KEY", "UNDECODABLE", "check_extras", "counted_map", "finish_pipeline",
           "make_element", "shuffled", "targets_from")
