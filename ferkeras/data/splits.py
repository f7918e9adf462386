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

:func:`synthetic_data` and :func:`real_data` return the three pipelines as a :class:`DataSplits`.  Nothing heavy is imported at module level (TensorFlow is imported when a pipeline is built).
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from typing import Dict, Optional, Sequence, Tuple

logger = logging.getLogger("ferkeras.data.splits")

READER_NAMES: Dict[str, str] = {"affectnet": "affectnet", "afew_va": "afew_va", "affwild": "aff_wild",
                                "affwild2": "aff_wild2", "rafdb": "raf_db", "fer2013": "fer2013",
                                "ferplus": "ferplus", "voxceleb1": "voxceleb1"}
"""Dataset name (as the experiment binaries' ``--dataset`` spell it) -> :func:`ferkeras.data.readers.make_reader`
name."""
EVAL_SPLITS: Dict[str, str] = {"affectnet": "val", "afew_va": "test", "affwild": "test", "affwild2": "val",
                               "rafdb": "test", "fer2013": "test", "ferplus": "test", "voxceleb1": "all"}
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
                   batch_size: int, seed: int = 0, augment=None) -> DataSplits:
    """Train / validation / test pipelines of synthetic faces with disjoint identities (test: never seen).

    Args:
      num_train, num_val, num_test: faces per split.
      train_identities: identities of the training split (the others follow, see
        :func:`synthetic_identity_ranges`).
      image_size: square side of the faces.  batch_size: batch size of every pipeline.
      seed: drawing seed (per split, see :func:`synthetic_split_seeds`) and the training shuffle seed.
      augment: a batch augmentation (e.g. :class:`~ferkeras.augment.spatial.FaceAugment`), training only.
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
            batch_size=batch_size, shuffle=training, seed=seed, drop_remainder=training,
            augment=augment if training else None)
    return DataSplits(out["train"], out["val"], out["test"], EXPRESSIONS, num_train)


def reader_options(dataset: str, *, fold: int = 0, task: str = "both") -> Dict:
    """The reader keyword arguments the split policy sets for ``dataset`` (a key of :data:`READER_NAMES`):
    AFEW-VA's held-out ``fold``; Aff-Wild2's annotation set for ``task`` ("va", "expression" or "both")."""
    if dataset not in READER_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(READER_NAMES)}")
    if dataset == "afew_va":
        return {"fold": fold}
    if dataset == "affwild2":
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
    return reader.records(), tuple(getattr(reader, "classes", ()) or ()) or None


def real_data(dataset: str, data_root: str, *, image_size: int, batch_size: int, seed: int = 0, fold: int = 0,
              task: str = "both", augment=None) -> DataSplits:
    """Train and held-out pipelines of a dataset read by :mod:`ferkeras.data.readers`.

    Args:
      dataset: a key of :data:`READER_NAMES`.  data_root: the dataset's folder.
      image_size, batch_size: of every pipeline.  seed: the training shuffle seed.
      fold: AFEW-VA's held-out cross-validation fold.  task: selects Aff-Wild2's annotation set.
      augment: a batch augmentation, training only.
    Returns:
      a :class:`DataSplits` whose ``val`` and ``test`` are both the held-out split (:data:`EVAL_SPLITS`).
    """
    from ferkeras.data import pipeline

    options = reader_options(dataset, fold=fold, task=task)
    name = READER_NAMES[dataset]
    train_records, classes = read_split(name, data_root, "train", **options)
    test_records, _ = read_split(name, data_root, EVAL_SPLITS[dataset], **options)
    common = dict(image_size=image_size, batch_size=batch_size, seed=seed)
    train = pipeline.build_dataset(train_records, training=True, augment=augment, **common)
    test = pipeline.build_dataset(test_records, training=False, **common)
    return DataSplits(train, test, test, classes, len(train_records))


__all__ = ("EVAL_SPLITS", "READER_NAMES", "SPLITS", "SYNTHETIC_TEST_IDENTITIES", "SYNTHETIC_VAL_IDENTITIES",
           "DataSplits", "read_split", "reader_options", "real_data", "synthetic_data", "synthetic_faces",
           "synthetic_identity_ranges", "synthetic_split_arrays", "synthetic_split_seeds")
