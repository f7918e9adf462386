"""AffectNet (Mollahosseini et al., 2017): the manually annotated part.

On disk (as distributed)::

    input/affectnet/
      Manually_Annotated_file_lists/training.csv      split "train"
      Manually_Annotated_file_lists/validation.csv    split "val"
      Manually_Annotated_Images/<subDirectory_filePath>

Each CSV has the header ``subDirectory_filePath,face_x,face_y,face_width,
face_height,facial_landmarks,expression,valence,arousal``; ``facial_landmarks``
is 136 numbers ``x0;y0;x1;y1;...`` (68 points, image pixels); ``expression`` is
0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt,
8 None, 9 Uncertain, 10 No-Face; valence and arousal lie in [-1, 1] with -2
meaning "not annotated".

What the reader does with a row:

* box = (face_x, face_y, face_x + face_width, face_y + face_height);
* an empty landmark field gives NaN landmarks; a count other than 136 is skipped
  as ``"bad landmarks"``;
* expression 0..6 (``num_classes=7``) or 0..7 (``num_classes=8``) is kept with
  its own index; contempt with ``num_classes=7`` is skipped as
  ``"excluded class"``; 8, 9, 10 (and anything else) as ``"invalid label"`` -
  unless ``keep_va_only=True`` and the row has valid valence/arousal, in which
  case it is kept with ``expression = MISSING_INT`` (for VA training);
* valence/arousal of -2 become NaN (the row is kept for its expression); other
  values outside [-1, 1] are ``"invalid label"``; a NaN anywhere is ``"nan value"``;
* a row holding a byte that is not UTF-8 is ``"corrupt annotation"``, a number
  that does not parse ``"malformed row"``.

An empty CSV, or one without the columns above, is an error naming the file.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ferkeras.data.readers.base import (
    CORRUPT_ANNOTATION, INVALID_LABEL, MALFORMED_ROW, NAN_VALUE, Reader, open_csv, parse_float, parse_landmarks,
    undecodable, va_problem)
from ferkeras.data.schema import MISSING_INT, FaceRecord

AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
AFFECTNET_VA_INVALID = -2.0
EXCLUDED_CLASS = "excluded class"

_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
            "facial_landmarks", "expression", "valence", "arousal")
_FILES = {"train": "training.csv", "val": "validation.csv"}


class AffectNetReader(Reader):
    """Reads AffectNet's manually annotated CSV lists and images.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"``, ``"val"``).
        num_classes: 7 (contempt dropped) or 8.
        keep_va_only: keep rows without a usable expression when they carry valid VA.
    """

    name = "affectnet"
    split_names = ("train", "val")
    layout = (
        "  Manually_Annotated_file_lists/training.csv   (split 'train')\n"
        "  Manually_Annotated_file_lists/validation.csv (split 'val')\n"
        "  Manually_Annotated_Images/<subDirectory_filePath from the CSV>")

    def __init__(self, root, split: str = "train", num_classes: int = 8, keep_va_only: bool = False,
                 verify: str = "header"):
        super().__init__(root, split, verify)
        if num_classes not in (7, 8):
            raise ValueError(f"affectnet: num_classes must be 7 or 8, got {num_classes}")
        self.num_classes = num_classes
        self.classes = AFFECTNET_CLASSES[:num_classes]
        self.keep_va_only = keep_va_only
        self.csv_path = self.require("Manually_Annotated_file_lists", _FILES[split])
        self.image_dir = self.require("Manually_Annotated_Images")

    def _read(self) -> Iterator[FaceRecord]:
        f, reader = open_csv(self.csv_path, _COLUMNS, self.name)
        with f:
            for row in reader:
                where = f"{self.csv_path.name}:{reader.line_num}"
                bad = undecodable(row)
                if bad:
                    self.skips.skip(CORRUPT_ANNOTATION, f"{where} ({bad})")
                    continue
                record = self._parse(row, where)
                if record is not None:
                    yield record

    def _parse(self, row, where: str):
        try:
            x, y, w, h = (parse_float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
            valence, arousal = parse_float(row["valence"]), parse_float(row["arousal"])
            expr_value = parse_float(row["expression"])
            lm_text = (row["facial_landmarks"] or "").strip()
            lm_values = np.array(lm_text.strip(";").split(";"), np.float64) if lm_text else None
        except (TypeError, ValueError):
            self.skips.skip(MALFORMED_ROW, where)
            return None
        if any(math.isnan(v) for v in (x, y, w, h, valence, arousal, expr_value)):
            self.skips.skip(NAN_VALUE, where)
            return None
        landmarks = None
        if lm_values is not None:
            landmarks, problem = parse_landmarks(lm_values)
            if problem:
                self.skips.skip(problem, where)
                return None

        if valence == AFFECTNET_VA_INVALID or arousal == AFFECTNET_VA_INVALID:
            valence = arousal = float("nan")
            va_reason = INVALID_LABEL
        else:
            va_reason = va_problem(valence, arousal)
            if va_reason:  # out of range and not the documented sentinel: a broken row
                self.skips.skip(va_reason, where)
                return None

        expression = int(expr_value) if expr_value.is_integer() else -1
        if 0 <= expression < self.num_classes:
            expr_reason = None
        else:
            expr_reason = EXCLUDED_CLASS if expression == 7 else INVALID_LABEL
            if self.keep_va_only and va_reason is None:
                expression, expr_reason = MISSING_INT, None
        if expr_reason:
            self.skips.skip(expr_reason, where)
            return None

        image_path = self.image_dir / row["subDirectory_filePath"].strip()
        problem = self.image_problem(image_path)
        if problem:
            self.skips.skip(problem, str(image_path))
            return None
        record = FaceRecord(image_path=str(image_path), box=(x, y, x + w, y + h), valence=valence,
                            arousal=arousal, expression=expression, dataset=self.name)
        if landmarks is not None:
            record.landmarks = landmarks
        return record
