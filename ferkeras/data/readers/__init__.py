"""Dataset readers: one class per dataset, each reading the dataset's real on-disk format.

Every reader yields :class:`~ferkeras.data.schema.FaceRecord` and counts the rows
it skips (see :mod:`ferkeras.data.readers.base`).  Build one by name::

    reader = make_reader("affectnet", "input/affectnet", split="train", num_classes=7)
    for record in reader: ...
    print(reader.skips.summary())

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


def make_reader(name: str, root: str | os.PathLike, split: str = "train", **options) -> Reader:
    """The reader registered as ``name``, reading ``split`` of the dataset under ``root``.

    ``options`` are the reader's own keyword arguments (e.g. ``num_classes`` for
    AffectNet, ``fold`` for AFEW-VA, ``task`` for Aff-Wild2, ``verify`` for all).
    """
    if name not in READERS:
        raise ValueError(f"unknown dataset reader '{name}'; known readers: {sorted(READERS)}")
    accepted = [p for p in inspect.signature(READERS[name]).parameters if p not in ("root", "split")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"reader '{name}' has no option {unknown}; its options are {accepted}")
    return READERS[name](root, split=split, **options)


__all__ = ["READERS", "make_reader", "Reader", "check_image_file", "assign_folds", "vote_label",
           "AffectNetReader", "AfewVaReader", "AffWild2Reader", "AffWildReader", "RafDbReader",
           "Fer2013Reader", "FerPlusReader", "VoxCeleb1Reader"]
