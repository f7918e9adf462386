"""The contract every dataset reader follows, and the checks they share.

A reader turns one dataset's on-disk files into a stream of
:class:`~ferkeras.data.schema.FaceRecord`.  Bad rows (missing or corrupt image,
sentinel label, wrong landmark count, NaN, a line that is not UTF-8 text) are
skipped and counted in :attr:`Reader.skips`, which also keeps the first
offending file or line of each reason; the counts are logged once when a pass
ends (and the binaries and ``tools/prepare_dataset.py`` report them).  Reading
never crashes on a bad row, and never yields one.

Annotation files are read with :func:`open_annotation`: UTF-8 (a leading byte
order mark is ignored), where a byte that is not UTF-8 does not stop the read
but marks its line, which the reader skips as ``"corrupt annotation"`` (see
:func:`undecodable`).  A file that cannot be used at all (an empty CSV, a CSV
without the required columns) is one clear error naming the file.

Image checks at read time are cheap by default because a dataset may hold
hundreds of thousands of files (``verify="header"``: the file exists, is not
empty and starts with a JPEG or PNG signature).  ``verify="full"`` also decodes
every image with OpenCV (and requires a JPEG's end-of-image marker, since
OpenCV decodes a truncated JPEG without error); ``verify="none"`` checks
nothing (fastest, for trusted copies).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from pathlib import Path
from typing import IO, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ferkeras.data.schema import NUM_LANDMARKS, FaceRecord, SkipCounter

logger = logging.getLogger("ferkeras.data.readers")

# Skip reasons shared by readers (readers may add dataset-specific ones).
MISSING_IMAGE = "missing image"
CORRUPT_IMAGE = "corrupt image"
INVALID_LABEL = "invalid label"
BAD_LANDMARKS = "bad landmarks"
NAN_VALUE = "nan value"
CORRUPT_ANNOTATION = "corrupt annotation"
MALFORMED_ROW = "malformed row"
EMPTY_ANNOTATION = "empty annotation"
BAD_BOX = "bad box"

VERIFY_MODES = ("none", "header", "full")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_EOI = b"\xff\xd9"
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


class Reader:
    """Base class of the dataset readers.

    Subclasses set :attr:`name`, :attr:`classes`, :attr:`layout` (the expected
    on-disk layout, shown when the root is missing) and :attr:`split_names`,
    and implement :meth:`_read`, which yields records and calls
    ``self.skips.skip(reason, where)`` for every bad row.

    Args:
        root: the dataset folder (``input/<name>/`` by convention).
        split: one of :attr:`split_names`.
        verify: ``"header"`` (default), ``"full"`` or ``"none"``; see the module doc.
    """

    name: str = ""
    classes: Tuple[str, ...] = ()
    layout: str = ""
    split_names: Tuple[str, ...] = ("train",)

    def __init__(self, root: str | os.PathLike, split: str = "train", verify: str = "header"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"{self.name}: dataset root '{self.root}' does not exist or is not a folder. "
                f"Expected layout under it:\n{self.layout}")
        if split not in self.split_names:
            raise ValueError(f"{self.name}: unknown split '{split}'; expected one of {self.split_names}")
        if verify not in VERIFY_MODES:
            raise ValueError(f"{self.name}: verify must be one of {VERIFY_MODES}, got '{verify}'")
        self.split = split
        self.verify = verify
        self.skips = SkipCounter(self.name)

    # -- to implement --------------------------------------------------------------------------
    def _read(self) -> Iterator[FaceRecord]:
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[FaceRecord]:
        """Streams the split's good records; each pass starts a fresh :attr:`skips` counter."""
        self.skips = SkipCounter(self.name)
        for record in self._read():
            self.skips.ok()
            yield record
        self.skips.report()

    def records(self) -> List[FaceRecord]:
        """All good records of the split, in file order."""
        return list(iter(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root='{self.root}', split='{self.split}')"

    # -- helpers for subclasses ----------------------------------------------------------------
    def require(self, *parts: str) -> Path:
        """Path of a file or folder the reader needs; a clear error when it is absent."""
        path = self.root.joinpath(*parts)
        if not path.exists():
            raise FileNotFoundError(
                f"{self.name}: '{path}' not found. Expected layout under '{self.root}':\n{self.layout}")
        return path

    def image_problem(self, path: str | os.PathLike) -> Optional[str]:
        """The skip reason for an image file, or None when it passes this reader's checks."""
        return check_image_file(path, self.verify)


def check_image_file(path: str | os.PathLike, verify: str = "header") -> Optional[str]:
    """Checks an image file; returns ``"missing image"``, ``"corrupt image"`` or None.

    ``"header"``: exists, non-empty, JPEG or PNG signature.  ``"full"``: also decodes
    with OpenCV and, for JPEG, requires the end-of-image marker.  ``"none"``: no check.
    """
    if verify == "none":
        return None
    try:
        size = os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return MISSING_IMAGE
    if size == 0:
        return CORRUPT_IMAGE
    with open(path, "rb") as f:
        head = f.read(8)
        if not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
            return CORRUPT_IMAGE
        if verify != "full":
            return None
        f.seek(0)
        data = f.read()
    return None if image_bytes_ok(data) else CORRUPT_IMAGE


def image_bytes_ok(data: bytes) -> bool:
    """True when encoded JPEG/PNG bytes decode completely with OpenCV."""
    import cv2  # imported here: only full verification needs it

    if data.startswith(_JPEG_MAGIC) and _JPEG_EOI not in data[-1024:]:
        return False
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None


def open_annotation(path: str | os.PathLike) -> IO[str]:
    """Opens an annotation text file: UTF-8 (a byte order mark is dropped), bytes that are not UTF-8 kept as
    lone surrogates (``errors="surrogateescape"``) so that one bad byte spoils only its line; test lines with
    :func:`undecodable`.  Newlines are left to the caller (``newline=""``, as :mod:`csv` wants)."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def undecodable(text: str | Iterable) -> Optional[str]:
    """What is wrong with a line read by :func:`open_annotation` that holds a byte that is not UTF-8 (``"byte
    0xff is not UTF-8"``, the first such byte), or None when it is clean.  ``text``: a string, or the fields
    of a csv row (a list, or a dict from :class:`csv.DictReader`)."""
    if isinstance(text, dict):
        text = list(text.values())
    if not isinstance(text, str):
        text = ",".join(v if isinstance(v, str) else ",".join(map(str, v or ())) for v in text)
    match = _UNDECODABLE.search(text)
    if match is None:
        return None
    return f"byte 0x{ord(match.group()) - 0xDC00:02x} is not UTF-8"


def open_csv(path: str | os.PathLike, columns: Iterable[str], dataset: str) -> Tuple[IO[str], csv.DictReader]:
    """``(file, csv.DictReader)`` over an annotation CSV (opened with :func:`open_annotation`), after checking its
    header; the caller closes the file.  Raises ValueError naming the file when it is empty or when its header
    lacks one of ``columns`` (saying so when the header holds bytes that are not UTF-8)."""
    columns = list(columns)
    f = open_annotation(path)
    try:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if not header:
            raise ValueError(f"{dataset}: '{path}' is empty (no header line); expected the columns {columns}")
        missing = [c for c in columns if c not in header]
        if missing:
            bad = undecodable(header)
            raise ValueError(f"{dataset}: '{path}' lacks columns {missing}; header is {header}"
                             + (f" (its header line is not UTF-8 text: {bad})" if bad else ""))
    except BaseException:
        f.close()
        raise
    return f, reader


def parse_float(text: str) -> float:
    """float(text) that raises ValueError on empty strings (NaN passes through)."""
    return float(str(text).strip())


def parse_landmarks(values: Sequence[float]) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """(68, 2) float32 landmarks from 136 numbers x0, y0, x1, y1 ...; or (None, reason)."""
    arr = np.asarray(values, np.float64).reshape(-1)
    if arr.size != 2 * NUM_LANDMARKS:
        return None, BAD_LANDMARKS
    if not np.all(np.isfinite(arr)):
        return None, NAN_VALUE
    return arr.reshape(NUM_LANDMARKS, 2).astype(np.float32), None


def va_problem(valence: float, arousal: float, low: float = -1.0, high: float = 1.0) -> Optional[str]:
    """Skip reason for a valence/arousal pair on the [low, high] scale, or None."""
    if math.isnan(valence) or math.isnan(arousal):
        return NAN_VALUE
    if not (low <= valence <= high and low <= arousal <= high):
        return INVALID_LABEL
    return None
