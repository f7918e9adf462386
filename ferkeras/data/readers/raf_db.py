"""RAF-DB basic emotion subset (Li, Deng & Du, 2017).

On disk (the ``basic`` folder of the release)::

    input/raf_db/
      EmoLabel/list_patition_label.txt        lines "train_00001.jpg 5" / "test_0001.jpg 1"
      Image/aligned/train_00001_aligned.jpg   100x100 aligned faces (default)
      Image/original/train_00001.jpg          with aligned=False
      Annotation/boundingbox/train_00001_boundingbox.txt   optional with aligned=False: "x0 y0 x1 y1"

(the label file name really is spelled "patition").  Labels 1..7 are Surprise,
Fear, Disgust, Happiness, Sadness, Anger, Neutral; records carry ``label - 1``
as the index into :data:`RAF_DB_CLASSES`.  The split is the file-name prefix
(``train_`` / ``test_``).  RAF-DB gives 5 and 37 landmarks, not dlib's 68, so
records have NaN landmarks; aligned crops have no box (the crop is the face).

A line is skipped as ``"corrupt annotation"`` when it holds a byte that is not
UTF-8, ``"malformed row"`` when it is not two fields or its name starts with
neither ``train_`` nor ``test_`` (such lines are counted by both splits),
``"invalid label"`` when the label is not an integer 1..7.  An empty label file
is an error naming it.  With
``aligned=False`` a bounding-box file that is present but is not four finite
numbers skips its face as ``"bad box"`` (a face without a box file has none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ferkeras.data.readers.base import (
    BAD_BOX, CORRUPT_ANNOTATION, INVALID_LABEL, MALFORMED_ROW, NAN_VALUE, Reader, open_annotation, undecodable)
from ferkeras.data.schema import FaceRecord

RAF_DB_CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")


class RafDbReader(Reader):
    """Reads RAF-DB basic expression labels with the aligned (or original) images.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"``, ``"test"``).
        aligned: read ``Image/aligned`` (default) or ``Image/original`` plus boxes.
    """

    name = "raf_db"
    classes = RAF_DB_CLASSES
    split_names = ("train", "test")
    layout = (
        "  EmoLabel/list_patition_label.txt  (lines '<split>_<id>.jpg <label 1-7>')\n"
        "  Image/aligned/<split>_<id>_aligned.jpg   (or Image/original/<split>_<id>.jpg with aligned=False)")

    def __init__(self, root, split: str = "train", aligned: bool = True, verify: str = "header"):
        super().__init__(root, split, verify)
        self.aligned = aligned
        self.label_path = self.require("EmoLabel", "list_patition_label.txt")
        self.image_dir = self.require("Image", "aligned" if aligned else "original")

    def _read(self) -> Iterator[FaceRecord]:
        prefixes = tuple(f"{split}_" for split in self.split_names)
        empty = True
        with open_annotation(self.label_path) as f:
            for line_no, line in enumerate(f, start=1):
                parts = line.split()
                if not parts:
                    continue
                empty = False
                if parts[0].startswith(prefixes) and not parts[0].startswith(f"{self.split}_"):
                    continue  # the other split's line
                where = f"{self.label_path.name}:{line_no}"
                bad = undecodable(line)
                if bad:
                    self.skips.skip(CORRUPT_ANNOTATION, f"{where} ({bad})")
                    continue
                if not parts[0].startswith(prefixes):
                    self.skips.skip(MALFORMED_ROW, f"{where} (no split prefix)")
                    continue
                record = self._parse(parts, where)
                if record is not None:
                    yield record
        if empty:
            raise ValueError(f"raf_db: '{self.label_path}' is empty; expected lines '<split>_<id>.jpg <label 1-7>'")

    def _parse(self, parts, where: str) -> Optional[FaceRecord]:
        if len(parts) != 2:
            self.skips.skip(MALFORMED_ROW, where)
            return None
        name, label_text = parts
        try:
            label = float(label_text)
        except ValueError:
            self.skips.skip(INVALID_LABEL, where)
            return None
        if np.isnan(label):
            self.skips.skip(NAN_VALUE, where)
            return None
        if not label.is_integer() or not 1 <= label <= len(RAF_DB_CLASSES):
            self.skips.skip(INVALID_LABEL, where)
            return None
        stem = Path(name).stem
        image_path = self.image_dir / (f"{stem}_aligned.jpg" if self.aligned else name)
        problem = self.image_problem(image_path)
        if problem:
            self.skips.skip(problem, str(image_path))
            return None
        record = FaceRecord(image_path=str(image_path), expression=int(label) - 1, dataset=self.name)
        if not self.aligned:
            box_path = self.root / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
            if box_path.is_file():
                try:  # a file that is not UTF-8 raises UnicodeDecodeError, a ValueError
                    values = np.array(box_path.read_text(encoding="utf-8").split()[:4], np.float64)
                except ValueError:
                    values = np.zeros(0)
                if values.size != 4 or not np.all(np.isfinite(values)):
                    self.skips.skip(BAD_BOX, str(box_path))
                    return None
                record.box = values
        return record
