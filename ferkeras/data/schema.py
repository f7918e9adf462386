"""The one record schema every ferkeras dataset reader yields.

A :class:`FaceRecord` describes one face in one image (or video frame).  Every
reader in :mod:`ferkeras.data.readers` produces these, whatever the dataset's
on-disk format, so pipelines, preparation tools and methods pick the fields
they need without knowing where a record came from.

Absent values are filled with documented sentinels, never guessed:

=================  ===========================  ==============================
field              type / shape                 sentinel when absent
=================  ===========================  ==============================
image_path         str (file on disk)           ``""``
image_bytes        bytes (encoded JPEG/PNG)     ``b""``
box                float32 (4,) x0, y0, x1, y1  all NaN
                   in pixels of the image
landmarks          float32 (68, 2) x, y pixels  all NaN
                   in dlib's 68-point order
valence, arousal   float32 in [-1, 1]           NaN
expression         int, index into the reader's ``MISSING_INT`` (-1)
                   ``classes`` tuple
identity           str (subject / person)       ``""``
video              str (video or clip id)       ``""``
frame              int (frame index in video)   ``MISSING_INT`` (-1)
timestamp          float seconds in the video   NaN
dataset            str (reader name)            ``""``
=================  ===========================  ==============================

Exactly one of ``image_path`` / ``image_bytes`` is set.  Valence and arousal are
always rescaled to [-1, 1] by the reader (AFEW-VA's -10..10, Aff-Wild's -1..1,
AffectNet's -1..1).  Because rows with NaN in the *source* data are bad rows and
are skipped by the readers, a NaN in a record always means "this dataset has no
such label here"; losses and metrics mask labels with ``is_finite``.

:data:`EXPRESSIONS` names the expression classes of the built-in synthetic
faces and of the default models: the eight AffectNet categories in AffectNet's
own index order (Mollahosseini, Hasani, Mahoor, "AffectNet: A Database for
Facial Expression, Valence, and Arousal Computing in the Wild", IEEE
Transactions on Affective Computing 2017).  Readers of other datasets keep
their dataset's own class list (the reader's ``classes``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

MISSING_INT = -1
NUM_LANDMARKS = 68
EXPRESSIONS: Tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
"""Expression class names, index = class id (AffectNet's 8 categories and order)."""

logger = logging.getLogger("ferkeras.data")


def _nan_box() -> np.ndarray:
    return np.full((4,), np.nan, np.float32)


def _nan_landmarks() -> np.ndarray:
    return np.full((NUM_LANDMARKS, 2), np.nan, np.float32)


@dataclasses.dataclass
class FaceRecord:
    """One face: where its pixels are and every label a dataset gives for it."""

    image_path: str = ""
    image_bytes: bytes = b""
    box: np.ndarray = dataclasses.field(default_factory=_nan_box)
    landmarks: np.ndarray = dataclasses.field(default_factory=_nan_landmarks)
    valence: float = float("nan")
    arousal: float = float("nan")
    expression: int = MISSING_INT
    identity: str = ""
    video: str = ""
    frame: int = MISSING_INT
    timestamp: float = float("nan")
    dataset: str = ""

    def __post_init__(self):
        self.box = np.asarray(self.box, np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, np.float32).reshape(NUM_LANDMARKS, 2)
        if bool(self.image_path) == bool(self.image_bytes):
            raise ValueError("a FaceRecord needs exactly one of image_path or image_bytes")

    @property
    def has_box(self) -> bool:
        return bool(np.all(np.isfinite(self.box)))

    @property
    def has_landmarks(self) -> bool:
        return bool(np.all(np.isfinite(self.landmarks)))

    @property
    def has_va(self) -> bool:
        return bool(np.isfinite(self.valence) and np.isfinite(self.arousal))

    @property
    def has_expression(self) -> bool:
        return self.expression != MISSING_INT


class SkipCounter:
    """Counts records a reader skipped, by reason, and reports them once.

    Readers call :meth:`skip` for every bad row (missing or corrupt image,
    sentinel label, wrong landmark count, NaN ...) and :meth:`report` when
    reading ends; :attr:`counts` stays available for tests and summaries.
    """

    def __init__(self, name: str):
        self.name = name
        self.read = 0
        self.counts: Dict[str, int] = collections.Counter()
        self.examples: Dict[str, str] = {}

    def ok(self) -> None:
        self.read += 1

    def skip(self, reason: str, where: str = "") -> None:
        self.counts[reason] += 1
        if where and reason not in self.examples:
            self.examples[reason] = where

    @property
    def skipped(self) -> int:
        return int(sum(self.counts.values()))

    def summary(self) -> str:
        parts = [f"{self.name}: {self.read} records read, {self.skipped} skipped"]
        for reason, n in sorted(self.counts.items()):
            ex = self.examples.get(reason)
            parts.append(f"  {n} x {reason}" + (f" (first: {ex})" if ex else ""))
        return "\n".join(parts)

    def report(self) -> None:
        logger.info(self.summary())

    def as_dict(self) -> dict:
        """``{"read", "skipped", "skipped_by_reason", "first_skipped"}``: the counts for a result.json."""
        return {"read": int(self.read), "skipped": self.skipped,
                "skipped_by_reason": {k: int(v) for k, v in sorted(self.counts.items())},
                "first_skipped": dict(sorted(self.examples.items()))}


def records_to_columns(records: Iterable[FaceRecord]) -> Dict[str, np.ndarray]:
    """Stacks records into column arrays (the form tf.data.Dataset.from_tensor_slices takes)."""
    recs = list(records)
    cols = {f.name: [getattr(r, f.name) for r in recs] for f in dataclasses.fields(FaceRecord)}
    out: Dict[str, np.ndarray] = {}
    for name, values in cols.items():
        if name in ("box", "landmarks"):
            out[name] = np.stack(values).astype(np.float32) if values else (
                np.zeros((0, 4), np.float32) if name == "box" else np.zeros((0, NUM_LANDMARKS, 2), np.float32))
        elif name in ("valence", "arousal", "timestamp"):
            out[name] = np.asarray(values, np.float32)
        elif name in ("expression", "frame"):
            out[name] = np.asarray(values, np.int32)
        else:
            out[name] = np.asarray(values, dtype=object)
    return out
