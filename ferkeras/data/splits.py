"""Dataset split policy: which faces train a model, which select its checkpoint and which measure it.

Built-in synthetic faces (:mod:`ferkeras.data.synthetic`): an identity's appearance depends only on its index,
so the three splits are disjoint index ranges (:func:`synthetic_identity_ranges`)::

    train       identities 0 .. T-1                           (T = ``train_identities``)
    validation  the next SYNTHETIC_VAL_IDENTITIES  identities  (checkpoint selection)
    test        the next SYNTHETIC_TEST_IDENTITIES identities  (never seen in training or selection)

and each split draws its faces with its own seed (``seed``, ``seed + 1``, ``seed + 2``).

Real datasets (:mod:`ferkeras.data.readers`): the model trains on the ``"train"`` split and is evaluated on
:data:`EVAL_SPLITS` of the dataset (the split the dataset's authors hold out; their test labels are not public
for AffectNet and Aff-Wild2, so those evaluate on the validation split).  AFEW-VA has no official split: the
reader assigns subject-independent cross-validation folds and ``fold`` picks the one held out.  The held-out
split serves as both ``val`` and ``test``; a caller must then not select checkpoints on ``val``.

Prepared TFRecord shards (``tools/prepare_dataset.py``): :func:`shard_data` reads ``train/`` and the held-out
``test/`` and/or ``val/`` sub-folders of one folder, by the same rules (:func:`shard_split_dirs`).

:func:`synthetic_data`, :func:`real_data` and :func:`shard_data` return the three pipelines as a :class:`DataSplits`.
Nothing heavy is imported at module level (TensorFlow is imported when a pipeline is built).
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from typing import Dict, Optional, Sequence, Tuple

logger = logging.getLogger("ferkeras.data.splits")

READER_NAMES: Dict[str, str] = {name: name for name in ("affectnet", "afew_va", "aff_wild", "aff_wild2", "raf_db",
                                                         "fer2013", "ferplus", "voxceleb1")}
"""Dataset name -> :func:`ferkeras.data.readers.make_reader` name: one name per dataset, the reader's (the binaries'
``--dataset``, tools/make_synthetic.py, tools/prepare_dataset.py and ``input/<name>/`` all use it); the old
spellings (``affwild2``, ``rafdb`` ...) are aliases, see :func:`dataset_name`."""
EVAL_SPLITS: Dict[str, str] = {"affectnet": "val", "afew_va": "test", "aff_wild": "test", "aff_wild2": "val",
                               "raf_db": "test", "fer2013": "test", "ferplus": "test", "voxceleb1": "all"}
"""The split each dataset is evaluated on (AFEW-VA: the held-out ``fold``), by the names of :data:`READER_NAMES`.
VoxCeleb1 has no labels and no split (self-supervised pre-training only): its "all" is every clip."""
SYNTHETIC_VAL_IDENTITIES = 15
"""Synthetic identities of the validation split (after the training identities)."""
SYNTHETIC_TEST_IDENTITIES = 25
"""Synthetic identities of the test split (after the validation identities)."""
SPLITS = ("train", "val", "test")

DataSplits = collections.namedtuple("DataSplits", "train val test classes num_train")
DataSplits.__doc__ = """Pipelines of ``(images, {"va", "expression"})`` batches.

``val`` is ``test`` on real datasets (see :func:`real_data`); ``classes`` the expression names (or None) and
``num_train`` the number of training faces."""


def synthetic_identity_ranges(train_identities: int) -> Dict[str, Tuple[int, int]]:
    """The disjoint synthetic identities of each split: ``{"train" | "val" | "test": (first index, count)}``."""
    if train_identities < 1:
        raise ValueError(f"train_identities must be >= 1, got {train_identities}")
    first_val = train_identities
    first_test = first_val + SYNTHETIC_VAL_IDENTITIES
    return {"train": (0, train_identities), "val": (first_val, SYNTHETIC_VAL_IDENTITIES),
            "test": (first_test, SYNTHETIC_TEST_IDENTITIES)}


def synthetic_split_seeds(seed: int) -> Dict[str, int]:
    """The seed each synthetic split draws its faces with: ``seed``, ``seed + 1``, ``seed + 2``."""
    return {"train": seed, "val": seed + 1, "test": seed + 2}


@functools.lru_cache(maxsize=6)
def synthetic_faces(n: int, size: int, seed: int, num_identities: int, first_identity: int) -> Dict:
    """:func:`ferkeras.data.synthetic.synthetic_arrays`, remembered: a script that trains several models in one
    process on the same faces draws them once.  The arrays are shared between calls: treat them as read-only."""
    from ferkeras.data.synthetic import synthetic_arrays

    start = time.perf_counter()
    a = synthetic_arrays(n, size=size, seed=seed, num_identities=num_identities, first_identity=first_identity)
    logger.info("synthetic faces: %d of identities %d..%d in %.1f s", n, first_identity,
                first_identity + num_identities - 1, time.perf_counter() - start)
    return a


def synthetic_split_arrays(split: str, num: int, *, train_identities: int, image_size: int,
                           seed: int = 0) -> Dict:
    """The synthetic faces of one split (``"train"``, ``"val"`` or ``"test"``) as arrays (see
    :func:`ferkeras.data.synthetic.synthetic_arrays`), of that split's identities and seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    first, count = synthetic_identity_ranges(train_identities)[split]
    return synthetic_faces(num, image_size, synthetic_split_seeds(seed)[split], count, first)


def synthetic_data(*, num_train: int, num_val: int, num_test: int, train_identities: int, image_size: int,
                   batch_size: int, seed: int = 0, augment=None, extras: Sequence[str] = ()) -> DataSplits:
    """Train / validation / test pipelines of synthetic faces with disjoint identities (test: never seen).

    Args:
      num_train, num_val, num_test: faces per split.
      train_identities: identities of the training split (the others follow, see
        :func:`synthetic_identity_ranges`).
      image_size: square side of the faces.  batch_size: batch size of every pipeline.
      seed: drawing seed (per split, see :func:`synthetic_split_seeds`) and the training shuffle seed.
      augment: a batch augmentation (e.g. :class:`~ferkeras.augment.spatial.FaceAugment`), training only.
      extras: further target keys (:data:`ferkeras.data.elements.EXTRA_KEYS`: "identity", "landmarks" ...).
    Returns:
      a :class:`DataSplits`; the training pipeline shuffles and drops the last partial batch.
    """
    from ferkeras.data import pipeline
    from ferkeras.data.schema import EXPRESSIONS

    out = {}
    for split, n in (("train", num_train), ("val", num_val), ("test", num_test)):
        a = synthetic_split_arrays(split, n, train_identities=train_identities, image_size=image_size, seed=seed)
        training = split == "train"
        out[split] = pipeline.from_arrays(
            a["images"], a["valence"], a["arousal"], a["expression"], dataset="synthetic",
            landmarks=a["landmarks"], identity=a["identity"], extras=extras,
            batch_size=batch_size, shuffle=training, seed=seed, drop_remainder=training,
            augment=augment if training else None)
    return DataSplits(out["train"], out["val"], out["test"], EXPRESSIONS, num_train)


def dataset_name(name: str) -> str:
    """The one name of dataset ``name``: ``"synthetic"`` or a key of :data:`READER_NAMES`, given as itself or an
    alias (any case, with or without ``_`` / ``-``: ``affwild2``, ``rafdb``, ``RAF-DB`` ...; see
    :func:`ferkeras.data.readers.canonical_name`).  ValueError naming ``name`` otherwise."""
    from ferkeras.data.readers import canonical_name

    if str(name).strip().lower() == "synthetic":
        return "synthetic"
    return canonical_name(name)


def reader_options(dataset: str, *, fold: int = 0, task: str = "both") -> Dict:
    """The reader keyword arguments the split policy sets for ``dataset`` (a key of :data:`READER_NAMES` or an
    alias): AFEW-VA's held-out ``fold``; Aff-Wild2's annotation set for ``task`` ("va", "expression" or "both")."""
    dataset = dataset_name(dataset)
    if dataset not in READER_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(READER_NAMES)}")
    if dataset == "afew_va":
        return {"fold": fold}
    if dataset == "aff_wild2":
        tasks = {"va": "va", "expression": "expr", "both": "both"}
        if task not in tasks:
            raise ValueError(f"task must be one of {sorted(tasks)}, got {task!r}")
        return {"task": tasks[task]}
    return {}


def read_split(reader_name: str, root: str, split: str, **options) -> Tuple[Sequence, Optional[Tuple[str, ...]]]:
    """A reader's records and class names (or None), read once per process and remembered (a training stream
    rebuilt on a resume reads nothing again); logs the reader's skip summary.  The records are shared between
    calls: treat them as read-only."""
    return _read_cached(reader_name, root, split, tuple(sorted(options.items())))


@functools.lru_cache(maxsize=4)
def _read_cached(name, root, split, options):
    from ferkeras.data.readers import make_reader

    reader = make_reader(name, root, split=split, **dict(options))
    records = reader.records()
    _READER_SKIPS[split] = reader.skips.as_dict()
    return records, tuple(getattr(reader, "classes", ()) or ()) or None


_READER_SKIPS: Dict[str, dict] = {}


def reader_skips() -> Dict[str, dict]:
    """What the readers of this process skipped, per split read last (``{"train": SkipCounter.as_dict(), ...}``;
    :meth:`ferkeras.data.schema.SkipCounter.as_dict`), for a run's result.json."""
    return {split: dict(counts) for split, counts in _READER_SKIPS.items()}


def real_data(dataset: str, data_root: str, *, image_size: int, batch_size: int, seed: int = 0, fold: int = 0,
              task: str = "both", augment=None, stats: Optional[Dict] = None) -> DataSplits:
    """Train and held-out pipelines of a dataset read by :mod:`ferkeras.data.readers`.

    Args:
      dataset: a key of :data:`READER_NAMES` or an alias (:func:`dataset_name`).  data_root: the dataset's folder.
      image_size, batch_size: of every pipeline.  seed: the training shuffle seed.
      fold: AFEW-VA's held-out cross-validation fold.  task: selects Aff-Wild2's annotation set.
      augment: a batch augmentation, training only.
      stats: optional ``{"train": PipelineStats, "test": PipelineStats}``
        (:class:`ferkeras.data.elements.PipelineStats`) counting the images each pipeline drops, with names.
    Returns:
      a :class:`DataSplits` whose ``val`` and ``test`` are both the held-out split (:data:`EVAL_SPLITS`).
    """
    from ferkeras.data import pipeline

    dataset = dataset_name(dataset)
    options = reader_options(dataset, fold=fold, task=task)
    name = READER_NAMES[dataset]
    train_records, classes = read_split(name, data_root, "train", **options)
    test_records, _ = read_split(name, data_root, EVAL_SPLITS[dataset], **options)
    common = dict(image_size=image_size, batch_size=batch_size, seed=seed)
    stats = stats or {}
    train = pipeline.build_dataset(train_records, training=True, augment=augment, stats=stats.get("train"), **common)
    test = pipeline.build_dataset(test_records, training=False, stats=stats.get("test"), **common)
    return DataSplits(train, test, test, classes, len(train_records))


SHARD_SPLITS = ("train", "val", "test")
"""The sub-folders of a shards folder (:func:`shard_split_dirs`), each written by ``tools/prepare_dataset.py``."""


def shard_split_dirs(shards_dir: str, dataset: Optional[str] = None) -> Dict[str, str]:
    """The per-split shard folders of ``shards_dir``: ``{"train", "val", "test"}`` -> folder.

    ``shards_dir/train`` is required.  The held-out faces are ``shards_dir/test`` and ``shards_dir/val``: with both,
    ``val`` selects the checkpoint and ``test`` measures the model (as the synthetic splits); with one of them (or
    ``shards_dir/<EVAL_SPLITS[dataset]>``), it serves as both ``val`` and ``test`` (as a real dataset's held-out
    split), and a caller must not select checkpoints on it.  FileNotFoundError naming the folder otherwise."""
    import os

    if not os.path.isdir(shards_dir):
        raise FileNotFoundError(f"shards folder {shards_dir!r} does not exist")
    found = {split: os.path.join(shards_dir, split) for split in SHARD_SPLITS
             if os.path.isdir(os.path.join(shards_dir, split))}
    if dataset in EVAL_SPLITS and EVAL_SPLITS[dataset] not in found:
        alias = os.path.join(shards_dir, EVAL_SPLITS[dataset])
        if os.path.isdir(alias):
            found["test"] = alias
    if "train" not in found:
        raise FileNotFoundError(f"shards folder {shards_dir!r} has no train/ sub-folder (write it with "
                                f"tools/prepare_dataset.py --split=train --out={os.path.join(shards_dir, 'train')})")
    if "val" not in found and "test" not in found:
        raise FileNotFoundError(f"shards folder {shards_dir!r} has no held-out sub-folder: give it test/ (or val/, "
                                "or both: val/ then selects the checkpoint and test/ measures the model)")
    found.setdefault("val", found.get("test"))
    found.setdefault("test", found["val"])
    return found


def shards_have_own_validation(shards_dir: str, dataset: Optional[str] = None) -> bool:
    """Whether ``shards_dir`` holds a validation split of its own (``val/`` besides ``test/``), so checkpoints may
    be selected on it (see :func:`shard_split_dirs`)."""
    dirs = shard_split_dirs(shards_dir, dataset)
    return dirs["val"] != dirs["test"]


def worker_shard_files(files: Sequence[str], num_workers: int, worker_index: int, folder: str = "") -> list:
    """The shard files worker ``worker_index`` of ``num_workers`` reads: ``files[worker_index::num_workers]``
    (every file goes to exactly one worker; with the files of ``tools/prepare_dataset.py``, of nearly equal size,
    the workers get nearly equal shares).  ValueError naming ``folder`` and both counts when there are fewer files
    than workers (a worker would read nothing)."""
    files = list(files)
    if num_workers < 1 or not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}) for {num_workers} workers, got {worker_index}")
    if len(files) < num_workers:
        raise ValueError(f"training shards {folder or files!r}: {len(files)} shard file(s) for {num_workers} workers; "
                         "each worker reads its own files, so there must be at least one per worker: prepare the "
                         "training split again with more files (tools/prepare_dataset.py --shards=N, N >= "
                         f"{num_workers})")
    return files[worker_index::num_workers]


def shard_data(shards_dir: str, *, image_size: int, batch_size: int, seed: int = 0, augment=None,
               dataset: Optional[str] = None, num_workers: int = 1, worker_index: int = 0,
               stats: Optional[Dict] = None) -> DataSplits:
    """Train / validation / test pipelines read from prepared TFRecord shards (``tools/prepare_dataset.py``,
    :func:`ferkeras.data.tfrecord.prepare`) in the per-split sub-folders of ``shards_dir``
    (:func:`shard_split_dirs`).

    Args:
      shards_dir: folder with ``train/`` and ``test/`` and/or ``val/`` shard folders.
      image_size, batch_size: of every pipeline (``batch_size`` is the global batch under tf.distribute).
      seed: the training shuffle seed (shard order, interleave, example buffer).
      augment: a batch augmentation, training only.
      dataset: the dataset name the shards hold (lets ``shards_dir/<EVAL_SPLITS[dataset]>`` be the held-out folder).
      num_workers, worker_index: the worker processes of a multi-worker run and this worker's place among them
        (0 the chief).  Above 1 worker, the TRAINING shards are split across the workers by file: this worker
        reads only :func:`worker_shard_files` (``files[worker_index::num_workers]``; ValueError with fewer files
        than workers), and the pipeline is set to ``AutoShardPolicy.OFF`` (done here, not by tf.data's FILE
        rewrite, which cannot walk through the ``ignore_errors`` step that skips and counts undecodable images).
        Its batches still have ``batch_size`` faces: under MultiWorkerMirroredStrategy Keras treats that as the
        global batch and each worker trains on the next ``batch_size / num_workers`` faces of its own stream per
        step (one of its batches lasts ``num_workers`` steps), so a global batch has ``batch_size`` faces, ``1 /
        num_workers`` of them from each worker's files; a resumed run skips ``start_step * batch_size //
        num_workers`` faces of each worker's stream (``experiments/common.py`` ``training_stream``).  The faces
        of a step therefore differ from a single-process run's.  The held-out pipelines are read whole by every
        worker and split by data (``AutoShardPolicy.DATA``: each keeps its slice of each batch), so an evaluation
        goes over the held-out set once.
    Returns:
      a :class:`DataSplits`: ``classes`` from the training shards' ``summary.json`` (None when it names none),
      ``num_train`` the examples written there.
    """
    import tensorflow as tf

    from ferkeras.data import pipeline, tfrecord

    dirs = shard_split_dirs(shards_dir, dataset)
    summary = tfrecord.read_summary(dirs["train"])
    train_files = tfrecord.shard_files(dirs["train"])
    common = dict(image_size=image_size, batch_size=batch_size, seed=seed)
    stats = stats or {}  # optional {"train" | "val" | "test": PipelineStats}, as in real_data
    if num_workers > 1:  # this worker's files only (see num_workers above)
        own_files = worker_shard_files(train_files, num_workers, worker_index, dirs["train"])
        share = int(summary.get("records_written", 0)) // num_workers  # drop_remainder: guard an empty epoch
        if 0 < share < batch_size:
            raise ValueError(f"training shards {dirs['train']!r}: about {share} examples per worker for "
                             f"{num_workers} workers, fewer than one batch of {batch_size}")
        logger.info("shards %s: worker %d of %d reads %d of the training shard files: %s", dirs["train"],
                    worker_index, num_workers, len(own_files), ", ".join(own_files))
        train = tfrecord.tfrecord_dataset(own_files, augment=augment, shuffle=True, drop_remainder=True,
                                          stats=stats.get("train"), **common)
        train = train.with_options(_shard_options(tf.data.experimental.AutoShardPolicy.OFF))
    else:
        train = pipeline.build_dataset(dirs["train"], training=True, augment=augment, stats=stats.get("train"),
                                       **common)
    held_out = {split: pipeline.build_dataset(dirs[split], training=False, stats=stats.get(split), **common)
                for split in ("val", "test")}
    if dirs["val"] == dirs["test"]:
        held_out["val"] = held_out["test"]
    if num_workers > 1:  # explicit: the AUTO policy would try FILE first (see num_workers above)
        data_policy = _shard_options(tf.data.experimental.AutoShardPolicy.DATA)
        held_out = {k: v.with_options(data_policy) for k, v in held_out.items()}
    classes = tuple(summary.get("classes") or ()) or None
    logger.info("shards %s: %d training examples in %d files; held-out %s", shards_dir,
                summary.get("records_written", 0), len(train_files),
                dirs["test"] if dirs["val"] == dirs["test"] else f"{dirs['val']} (validation), {dirs['test']} (test)")
    return DataSplits(train, held_out["val"], held_out["test"], classes, int(summary.get("records_written", 0)))


def shard_records(folder: str) -> list:
    """Every example of the shards in ``folder`` as :class:`ferkeras.data.schema.FaceRecord` (``image_bytes`` the
    stored JPEG crop; box and landmarks in crop pixels; labels, identity, video, frame, timestamp), in their order:
    how the video pipelines (:class:`ferkeras.data.video_views.TrackTable`) read prepared shards with their cached
    landmarks.  Holds the crops in memory."""
    import numpy as np
    import tensorflow as tf

    from ferkeras.data import tfrecord
    from ferkeras.data.schema import FaceRecord

    records = []
    for serialized in tf.data.TFRecordDataset(tfrecord.shard_files(folder)):
        f = {k: v.numpy() for k, v in tfrecord.parse_example(serialized).items()}
        text = {k: f[k].decode() for k in ("meta/identity", "meta/video", "meta/dataset", "meta/source")}
        records.append(FaceRecord(image_bytes=f["image/encoded"], box=np.asarray(f["face/box"], np.float32),
                                  landmarks=np.asarray(f["face/landmarks"], np.float32),
                                  valence=float(f["label/valence"]), arousal=float(f["label/arousal"]),
                                  expression=int(f["label/expression"]), identity=text["meta/identity"],
                                  video=text["meta/video"], frame=int(f["meta/frame"]),
                                  timestamp=float(f["meta/timestamp"]), dataset=text["meta/dataset"]))
    return records


def _shard_options(policy):
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return options


__all__ = ("EVAL_SPLITS", "READER_NAMES", "SPLITS", "SYNTHETIC_TEST_IDENTITIES", "SYNTHETIC_VAL_IDENTITIES",
           "SHARD_SPLITS", "DataSplits", "dataset_name", "read_split", "reader_options", "real_data", "shard_data",
           "shard_records", "shard_split_dirs", "shards_have_own_validation", "synthetic_data", "synthetic_faces",
           "synthetic_identity_ranges", "synthetic_split_arrays", "synthetic_split_seeds", "worker_shard_files")
