"""FERPlus (Barsoum et al., ICMI 2016): ten crowd votes per FER2013 face.

On disk::

    input/ferplus/fer2013new.csv   header "Usage,Image name,neutral,happiness,surprise,sadness,
                                           anger,disgust,fear,contempt,unknown,NF"
    input/ferplus/fer2013.csv      the original FER2013 file (pixels), or put it in input/fer2013/

Row ``i`` of ``fer2013new.csv`` labels row ``i`` of ``fer2013.csv`` (the two
files have the same length and order; their ``Usage`` columns must agree, else
the reader stops with an error since every label would be misaligned).  Rows
with an empty ``Image name`` are faces FERPlus dropped: skipped as ``"no image
name"``.

Label (``mode="majority"``, the FERPlus authors' majority protocol): votes of 1
are discarded as outliers; the emotion with the most remaining votes is the
label if it holds more than half of them, else the row is skipped as ``"no
majority"`` (so a tie can never win).  ``mode="plurality"`` takes the most-voted
of the ten columns without the outlier rule and skips ties for the top as
``"tied votes"``.  In both modes a winner of ``unknown`` or ``NF`` (not a face)
is skipped as ``"unknown or non-face"`` (the usual protocol).  Records carry
the index into the eight emotions :data:`FERPLUS_CLASSES` (the first eight vote
columns, in the file's order).

A line of either file holding a byte that is not UTF-8 is ``"corrupt
annotation"``, one whose ``Usage`` is none of the three ``"malformed row"``; such
a line is counted by the split the other file's ``Usage`` names, or by every
split when neither can be read.  Vote counts that are not non-negative numbers
are ``"invalid label"``.  An empty file, or one without
the required columns, is an error naming the file.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from ferkeras.data.readers.base import INVALID_LABEL, NAN_VALUE, Reader, open_csv
from ferkeras.data.readers.fer2013 import USAGE, open_fer2013_csv, pixels_to_png, usage_problem
from ferkeras.data.schema import FaceRecord

FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
VOTE_COLUMNS = FERPLUS_CLASSES + ("unknown", "NF")
NO_IMAGE_NAME = "no image name"
NO_MAJORITY = "no majority"
TIED_VOTES = "tied votes"
UNKNOWN_OR_NON_FACE = "unknown or non-face"


def vote_label(votes: Sequence[float], mode: str = "majority") -> Tuple[Optional[int], Optional[str]]:
    """(label index, None) from the ten FERPlus vote counts, or (None, skip reason); see the module doc."""
    votes = np.asarray(votes, np.float64)
    if mode == "majority":
        kept = np.where(votes > 1, votes, 0.0)
        best = int(np.argmax(kept))
        if not kept[best] > 0.5 * kept.sum():
            return None, NO_MAJORITY
    elif mode == "plurality":
        best = int(np.argmax(votes))
        if np.count_nonzero(votes == votes[best]) > 1:
            return None, TIED_VOTES
    else:
        raise ValueError(f"ferplus: mode must be 'majority' or 'plurality', got '{mode}'")
    if best >= len(FERPLUS_CLASSES):
        return None, UNKNOWN_OR_NON_FACE
    return best, None


class FerPlusReader(Reader):
    """Reads FERPlus vote counts with the FER2013 pixels, one label per face.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"``, ``"val"``, ``"test"`` = Training, PublicTest, PrivateTest).
        mode: ``"majority"`` (default) or ``"plurality"``.
        fer2013_csv: path of fer2013.csv when it is neither in ``root`` nor in ``root/../fer2013``.
    """

    name = "ferplus"
    classes = FERPLUS_CLASSES
    split_names = tuple(USAGE)
    layout = ("  fer2013new.csv   (Usage,Image name,<10 vote columns>)\n"
              "  fer2013.csv      (the original FER2013 file; or ../fer2013/fer2013.csv)")

    def __init__(self, root, split: str = "train", mode: str = "majority", fer2013_csv=None,
                 verify: str = "header"):
        super().__init__(root, split, verify)
        vote_label([0] * len(VOTE_COLUMNS), mode)  # validates mode
        self.mode = mode
        self.votes_path = self.require("fer2013new.csv")
        candidates = [Path(fer2013_csv)] if fer2013_csv else [
            self.root / "fer2013.csv", self.root.parent / "fer2013" / "fer2013.csv"]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FileNotFoundError(
                f"ferplus: FER2013 pixels not found (looked for {[str(p) for p in candidates]}). "
                f"Expected layout under '{self.root}':\n{self.layout}")
        self.pixels_path = found[0]

    def _read(self) -> Iterator[FaceRecord]:
        f_votes, vote_rows = open_csv(self.votes_path, ("Usage", "Image name") + VOTE_COLUMNS, self.name)
        with f_votes:
            f_pixels, pixel_rows = open_fer2013_csv(self.pixels_path, self.name)
            with f_pixels:
                yield from self._rows(vote_rows, pixel_rows)

    def _rows(self, vote_rows, pixel_rows) -> Iterator[FaceRecord]:
        for votes_row, pixel_row in itertools.zip_longest(vote_rows, pixel_rows):
            if votes_row is None or pixel_row is None:
                raise ValueError(f"ferplus: {self.votes_path} and {self.pixels_path} differ in length: "
                                 "they are not row-aligned")
            where = f"{self.votes_path.name}:{vote_rows.line_num}"
            usage, pixel_usage = ((row["Usage"] or "").strip() for row in (votes_row, pixel_row))
            if usage != pixel_usage and {usage, pixel_usage} <= set(USAGE.values()):
                raise ValueError(
                    f"ferplus: line {vote_rows.line_num} has Usage '{usage}' in {self.votes_path} but "
                    f"'{pixel_usage}' in {self.pixels_path}: the files are not row-aligned")
            checks = (usage_problem(votes_row, self.split, where),
                      usage_problem(pixel_row, self.split, f"{self.pixels_path.name}:{pixel_rows.line_num}"))
            if not all(mine for mine, _ in checks):
                continue  # a line of another split
            problems = [problem for _, problem in checks if problem]
            if problems:
                self.skips.skip(*problems[0])
                continue
            record = self._parse(votes_row, pixel_row, where)
            if record is not None:
                yield record

    def _parse(self, votes_row, pixel_row, where: str) -> Optional[FaceRecord]:
        if not (votes_row["Image name"] or "").strip():
            self.skips.skip(NO_IMAGE_NAME, where)
            return None
        try:
            votes = np.array([float(votes_row[c]) for c in VOTE_COLUMNS])
        except (TypeError, ValueError):
            self.skips.skip(INVALID_LABEL, where)
            return None
        if not np.all(np.isfinite(votes)):
            self.skips.skip(NAN_VALUE, where)
            return None
        if np.any(votes < 0):
            self.skips.skip(INVALID_LABEL, where)
            return None
        label, problem = vote_label(votes, self.mode)
        if problem:
            self.skips.skip(problem, where)
            return None
        png, problem = pixels_to_png(pixel_row["pixels"] or "")
        if problem:
            self.skips.skip(problem, where)
            return None
        return FaceRecord(image_bytes=png, expression=label, dataset=self.name)
