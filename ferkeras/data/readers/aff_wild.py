"""Aff-Wild (v1; Kollias et al., 2019 / Zafeiriou et al., 2017): per-frame valence and arousal of YouTube videos.

Aff-Wild is distributed as videos plus per-video annotation text files
(``aff_wild_annotations_bboxes_landmarks_new``)::

    input/aff_wild/
      annotations/train/valence/<video>.txt    one value in [-1, 1] per line, no header
      annotations/train/arousal/<video>.txt    (split "test": annotations/test/...)
      bboxes/train/<video>/<k>.pts             optional, 4-point face box per frame
      landmarks/train/<video>/<k>.pts          optional, 68 landmarks per frame
      frames/<video>/<k:05d>.jpg               frames YOU extract from videos/<split>/<video>.mp4|.avi

Frames are not shipped as images: extract every frame of each video in decoding
order, numbered from 0 (``ffmpeg -i videos/train/105.avi -start_number 0
frames/105/%05d.jpg``); ``.png`` frames are found too.  Line ``k`` (0-based) of
the valence and arousal files describes frame ``k``.  The ``.pts`` files
(``version: 1`` / ``n_points: N`` / ``{`` / N lines ``x y`` / ``}``) are read
when present, named by the same frame index (``pts_start=1`` if your copy
numbers them from 1); a box is the bounding rectangle of its 4 points.

Lines present in only one of the two files, blank lines (which keep their
place: line ``k`` is always frame ``k``), non-numbers and values outside [-1, 1]
are ``"invalid label"``; NaN is ``"nan value"``; a line holding a byte that is
not UTF-8 is ``"corrupt annotation"``; a valence or arousal file without a line
is counted once as ``"empty annotation"``; a frame without an image is
``"missing image"``; a landmark file without 68 points (or not readable as
text) is ``"bad landmarks"``, a box file without 4 points ``"bad box"``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from ferkeras.data.readers.base import (
    BAD_BOX, BAD_LANDMARKS, CORRUPT_ANNOTATION, EMPTY_ANNOTATION, INVALID_LABEL, MISSING_IMAGE, Reader,
    open_annotation, parse_landmarks, undecodable, va_problem)
from ferkeras.data.schema import FaceRecord

FRAME_EXTENSIONS = (".jpg", ".png")


def read_pts(path: Path) -> Optional[np.ndarray]:
    """Points of an ibug ``.pts`` file as an (N, 2) float array; None when it cannot be parsed."""
    try:
        with open(path, encoding="utf-8") as f:  # bytes that are not UTF-8 raise UnicodeDecodeError, a ValueError
            lines = [line.strip() for line in f if line.strip()]
        count = int(lines[1].split(":")[1])
        start = lines.index("{") + 1
        points = [[float(v) for v in line.split()[:2]] for line in lines[start:start + count]]
        if len(points) != count or lines[start + count] != "}":
            return None
        return np.asarray(points, np.float64).reshape(count, 2)
    except (IndexError, ValueError):
        return None


def _read_values(path: Path) -> List[str]:
    """The stripped lines of a valence or arousal file, blank lines kept in place, trailing ones dropped."""
    with open_annotation(path) as f:
        lines = [line.strip() for line in f.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


class AffWildReader(Reader):
    """Reads Aff-Wild (v1) valence/arousal per frame, with optional boxes and landmarks.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"``, ``"test"``).
        fps: frame rate for ``timestamp = frame / fps``; None leaves NaN.
        pts_start: index of the first frame in the ``.pts`` file names (0 or 1).
    """

    name = "aff_wild"
    split_names = ("train", "test")
    layout = (
        "  annotations/<split>/valence/<video>.txt and annotations/<split>/arousal/<video>.txt\n"
        "  frames/<video>/<k:05d>.jpg  (frame k, from 0, extracted from videos/<split>/<video>.*)\n"
        "  optional: bboxes/<split>/<video>/<k>.pts, landmarks/<split>/<video>/<k>.pts")

    def __init__(self, root, split: str = "train", fps: Optional[float] = None, pts_start: int = 0,
                 verify: str = "header"):
        super().__init__(root, split, verify)
        self.fps, self.pts_start = fps, pts_start
        self.valence_dir = self.require("annotations", split, "valence")
        self.arousal_dir = self.require("annotations", split, "arousal")
        self.frame_dir = self.require("frames")

    def videos(self) -> List[str]:
        """Video ids that have a valence file in this split."""
        return sorted(p.stem for p in self.valence_dir.glob("*.txt"))

    def _read(self) -> Iterator[FaceRecord]:
        for video in self.videos():
            valence_path, arousal_path = self.valence_dir / f"{video}.txt", self.arousal_dir / f"{video}.txt"
            valence = _read_values(valence_path)
            arousal = _read_values(arousal_path) if arousal_path.is_file() else []
            for path, lines in ((valence_path, valence), (arousal_path, arousal)):
                if path.is_file() and not lines:
                    self.skips.skip(EMPTY_ANNOTATION, str(path))
            folder = self.frame_dir / video
            present = set(os.listdir(folder)) if folder.is_dir() else set()
            for k in range(max(len(valence), len(arousal))):
                v = valence[k] if k < len(valence) else ""
                a = arousal[k] if k < len(arousal) else ""
                record = self._frame(video, k, v, a, folder, present)
                if record is not None:
                    yield record

    def _frame(self, video: str, k: int, v: str, a: str, folder: Path, present: set) -> Optional[FaceRecord]:
        where = f"{video} line {k + 1}"
        bad = undecodable(v) or undecodable(a)
        if bad:
            self.skips.skip(CORRUPT_ANNOTATION, f"{where} ({bad})")
            return None
        try:
            valence, arousal = float(v), float(a)
        except ValueError:
            self.skips.skip(INVALID_LABEL, where)
            return None
        problem = va_problem(valence, arousal)
        if problem:
            self.skips.skip(problem, where)
            return None
        image_path = None
        for ext in FRAME_EXTENSIONS:
            if f"{k:05d}{ext}" in present:
                image_path = folder / f"{k:05d}{ext}"
                break
        problem = MISSING_IMAGE if image_path is None else self.image_problem(image_path)
        if problem:
            self.skips.skip(problem, str(image_path or folder / f"{k:05d}.jpg"))
            return None
        box, landmarks, problem = self._geometry(video, k)
        if problem:
            self.skips.skip(problem, where)
            return None
        record = FaceRecord(image_path=str(image_path), valence=valence, arousal=arousal, video=video,
                            frame=k, timestamp=k / self.fps if self.fps else math.nan, dataset=self.name)
        if box is not None:
            record.box = box
        if landmarks is not None:
            record.landmarks = landmarks
        return record

    def _geometry(self, video: str, k: int) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[str]]:
        name = f"{k + self.pts_start}.pts"
        box = landmarks = None
        box_path = self.root / "bboxes" / self.split / video / name
        if box_path.is_file():
            points = read_pts(box_path)
            if points is None or points.shape[0] != 4 or not np.all(np.isfinite(points)):
                return None, None, BAD_BOX
            box = np.concatenate([points.min(0), points.max(0)]).astype(np.float32)
        lm_path = self.root / "landmarks" / self.split / video / name
        if lm_path.is_file():
            points = read_pts(lm_path)
            if points is None:
                return None, None, BAD_LANDMARKS
            landmarks, problem = parse_landmarks(points)
            if problem:
                return None, None, problem
        return box, landmarks, None
