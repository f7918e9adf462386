"""Dataset readers: one class per dataset, each reading the dataset's real on-disk format.

Every reader yields :class:`~ferkeras.data.schema.FaceRecord` and counts the rows
it skips (see :mod:`ferkeras.data.readers.base`).  Build one by name::

    reader = make_reader("affectnet", "input/affectnet", split="train", num_classes=7)
    for record in reader: ...
    print(reader.skips.summary())

A dataset has one name everywhere: its reader's :attr:`~ferkeras.data.readers.base.Reader.name` (the key of
:data:`READERS`, the reader's module and the ``input/<name>/`` folder): ``affectnet``, ``afew_va``, ``aff_wild``,
``aff_wild2``, ``raf_db``, ``fer2013``, ``ferplus``, ``voxceleb1``.  :func:`canonical_name` also accepts the same
name in any case and with or without ``_`` / ``-`` separators (the aliases ``affwild``, ``affwild2``, ``rafdb``,
``afewva``, ``RAF-DB``, ``Aff-Wild2`` ...), so every tool takes the name any other prints.

``input/README.md`` documents where each dataset goes and what files it needs.
"""

from __future__ import annotations

import inspect
import os
from typing import Dict, Type

from ferkeras.data.readers.aff_wild import AffWildReader
from ferkeras.data.readers.aff_wild2 import AffWild2Reader
from ferkeras.data.readers.affectnet import AffectNetReader
from ferkeras.data.readers.afew_va import AfewVaReader, assign_folds
from ferkeras.data.readers.base import Reader, check_image_file
from ferkeras.data.readers.fer2013 import Fer2013Reader
from ferkeras.data.readers.ferplus import FerPlusReader, vote_label
from ferkeras.data.readers.raf_db import RafDbReader
from ferkeras.data.readers.voxceleb1 import VoxCeleb1Reader

READERS: Dict[str, Type[Reader]] = {
    cls.name: cls
    for cls in (AffectNetReader, AfewVaReader, AffWild2Reader, AffWildReader, RafDbReader,
                Fer2013Reader, FerPlusReader, VoxCeleb1Reader)
}

_COMPACT = {reader_name.replace("_", ""): reader_name for reader_name in READERS}
DATASET_ALIASES: Dict[str, str] = {compact: reader_name for compact, reader_name in _COMPACT.items()
                                   if compact != reader_name}
"""The old spellings without separators (``affwild``, ``affwild2``, ``rafdb``, ``afewva``) -> the dataset's name;
:func:`canonical_name` also ignores case and ``-``."""


def canonical_name(name: str) -> str:
    """The dataset name (a key of :data:`READERS`) that ``name`` spells: the name itself, or an alias that differs
    only in case and ``_`` / ``-`` separators (``rafdb``, ``RAF-DB`` -> ``raf_db``; ``affwild2`` -> ``aff_wild2``).
    ValueError naming ``name`` and the known names otherwise."""
    key = str(name).strip().lower()
    if key in READERS:
        return key
    compact = key.replace("_", "").replace("-", "")
    if compact in _COMPACT:
        return _COMPACT[compact]
    aliases = ", ".join(f"{alias}={target}" for alias, target in sorted(DATASET_ALIASES.items()))
    raise ValueError(f"unknown dataset '{name}'; known datasets: {', '.join(sorted(READERS))} (also accepted: "
                     f"{aliases}, any case, '-' for '_')")


def make_reader(name: str, root: str | os.PathLike, split: str = "train", **options) -> Reader:
    """The reader registered as ``name`` (or an alias of it, see :func:`canonical_name`), reading ``split`` of
    the dataset under ``root``.

    ``options`` are the reader's own keyword arguments (e.g. ``num_classes`` for
    AffectNet, ``fold`` for AFEW-VA, ``task`` for Aff-Wild2, ``verify`` for all).
    """
    name = canonical_name(name)
    accepted = [p for p in inspect.signature(READERS[name]).parameters if p not in ("root", "split")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"reader '{name}' has no option {unknown}; its options are {accepted}")
    return READERS[name](root, split=split, **options)


__all__ = ["DATASET_ALIASES", "READERS", "canonical_name", "make_reader", "Reader", "check_image_file",
           "assign_folds", "vote_label",
           "AffectNetReader", "AfewVaReader", "AffWild2Reader", "AffWildReader", "RafDbReader",
           "Fer2013Reader", "FerPlusReader", "VoxCeleb1Reader"]
