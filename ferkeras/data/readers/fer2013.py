"""FER2013 (Goodfellow et al., ICML 2013 representation-learning challenge).

On disk (the Kaggle release)::

    input/fer2013/fer2013.csv     header "emotion,pixels,Usage"

``pixels`` is 2304 space-separated grey levels (a 48x48 face, row-major);
``Usage`` is ``Training`` (split ``"train"``), ``PublicTest`` (``"val"``) or
``PrivateTest`` (``"test"``); ``emotion`` is 0 Angry, 1 Disgust, 2 Fear,
3 Happy, 4 Sad, 5 Surprise, 6 Neutral.  Records carry the face as PNG bytes in
``image_bytes`` (lossless, so the pixels round-trip exactly).  A pixel string
that is not 2304 integers in 0..255 is ``"corrupt image"``; a row holding a byte
that is not UTF-8 is ``"corrupt annotation"``, one whose ``Usage`` is none of
the three ``"malformed row"`` (both counted by every split, since their split is
unknown).  An empty file, or one without the three columns, is an error naming
the file.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple

import numpy as np

from ferkeras.data.readers.base import (
    CORRUPT_ANNOTATION, CORRUPT_IMAGE, INVALID_LABEL, MALFORMED_ROW, NAN_VALUE, Reader, open_csv, undecodable)
from ferkeras.data.schema import FaceRecord

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER2013_SIZE = 48
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def pixels_to_png(text: str) -> Tuple[Optional[bytes], Optional[str]]:
    """PNG bytes of a FER2013 pixel string, or (None, "corrupt image")."""
    import cv2

    try:
        values = np.array(text.split(), np.float64)
    except ValueError:
        return None, CORRUPT_IMAGE
    if (values.size != FER2013_SIZE * FER2013_SIZE or not np.all(np.isfinite(values))
            or values.min() < 0 or values.max() > 255 or not np.all(values == np.round(values))):
        return None, CORRUPT_IMAGE
    ok, png = cv2.imencode(".png", values.astype(np.uint8).reshape(FER2013_SIZE, FER2013_SIZE))
    return (png.tobytes(), None) if ok else (None, CORRUPT_IMAGE)


def open_fer2013_csv(path, dataset: str = "fer2013"):
    """``(file, csv.DictReader)`` over fer2013.csv, checking its header (see :func:`~.base.open_csv`)."""
    return open_csv(path, ("emotion", "pixels", "Usage"), dataset)


def usage_problem(row, split: str, where: str) -> Tuple[bool, Optional[Tuple[str, str]]]:
    """Whether a FER2013-style row (with a ``Usage`` column) concerns ``split``, and its skip (reason, where)
    when it cannot be read: a byte that is not UTF-8 or an unknown ``Usage`` (counted by every split)."""
    usage = (row.get("Usage") or "").strip()
    bad = undecodable(row)
    if usage in USAGE.values():
        if usage != USAGE[split]:
            return False, None
        return True, ((CORRUPT_ANNOTATION, f"{where} ({bad})") if bad else None)
    if bad:
        return True, (CORRUPT_ANNOTATION, f"{where} ({bad})")
    return True, (MALFORMED_ROW, f"{where} (Usage {usage!r} is none of {sorted(USAGE.values())})")


class Fer2013Reader(Reader):
    """Reads fer2013.csv; images are PNG-encoded 48x48 grayscale bytes.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"``, ``"val"``, ``"test"``; ``verify`` is unused, pixels are always checked).
    """

    name = "fer2013"
    classes = FER2013_CLASSES
    split_names = tuple(USAGE)
    layout = "  fer2013.csv   (columns emotion,pixels,Usage)"

    def __init__(self, root, split: str = "train", verify: str = "header"):
        super().__init__(root, split, verify)
        self.csv_path = self.require("fer2013.csv")

    def _read(self) -> Iterator[FaceRecord]:
        f, reader = open_fer2013_csv(self.csv_path)
        with f:
            for row in reader:
                where = f"fer2013.csv:{reader.line_num}"
                mine, problem = usage_problem(row, self.split, where)
                if problem:
                    self.skips.skip(*problem)
                if problem or not mine:
                    continue
                try:
                    label = float(row["emotion"])
                except (TypeError, ValueError):
                    self.skips.skip(INVALID_LABEL, where)
                    continue
                if math.isnan(label):
                    self.skips.skip(NAN_VALUE, where)
                    continue
                if not label.is_integer() or not 0 <= label < len(FER2013_CLASSES):
                    self.skips.skip(INVALID_LABEL, where)
                    continue
                png, problem = pixels_to_png(row["pixels"] or "")
                if problem:
                    self.skips.skip(problem, where)
                    continue
                yield FaceRecord(image_bytes=png, expression=int(label), dataset=self.name)
