"""FER2013 (Goodfellow et al., ICML 2013 representation-learning challenge).

On disk (the Kaggle release)::

    input/fer2013/fer2013.csv     header "emotion,pixels,Usage"

``pixels`` is 2304 space-separated grey levels (a 48x48 face, row-major);
``Usage`` is ``Training`` (split ``"train"``), ``PublicTest`` (``"val"``) or
``PrivateTest`` (``"test"``); ``emotion`` is 0 Angry, 1 Disgust, 2 Fear,
3 Happy, 4 Sad, 5 Surprise, 6 Neutral.  Records carry the face as PNG bytes in
``image_bytes`` (lossless, so the pixels round-trip exactly).  A pixel string
that is not 2304 integers in 0..255 is ``"corrupt image"``.
"""

from __future__ import annotations

import csv
import math
from typing import Iterator, Optional, Tuple

import numpy as np

from ferkeras.data.readers.base import CORRUPT_IMAGE, INVALID_LABEL, NAN_VALUE, Reader
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


def open_fer2013_csv(path):
    """A csv.DictReader over fer2013.csv, checking its header."""
    f = open(path, newline="")
    reader = csv.DictReader(f)
    missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
    if missing:
        f.close()
        raise ValueError(f"'{path}' lacks columns {sorted(missing)}; header is {reader.fieldnames}")
    return f, reader


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
            for line, row in enumerate(reader, start=2):
                if (row["Usage"] or "").strip() != USAGE[self.split]:
                    continue
                where = f"fer2013.csv:{line}"
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
