"""Aff-Wild2 (Kollias & Zafeiriou; ABAW challenges): per-frame VA and expression of YouTube videos.

On disk (ABAW annotation release + the cropped-aligned frames)::

    input/aff_wild2/
      annotations/VA_Estimation_Challenge/Train_Set/<video>.txt        split "train"
      annotations/VA_Estimation_Challenge/Validation_Set/<video>.txt   split "val"
      annotations/EXPR_Classification_Challenge/{Train_Set,Validation_Set}/<video>.txt
      cropped_aligned/<video>/00001.jpg 00002.jpg ...

(older releases name the task folders ``VA_Set`` / ``EXPR_Set``; both are found.)

A VA file has the header ``valence,arousal`` then one ``v,a`` line per video
frame, already in [-1, 1]; ``-5,-5`` marks an unlabelled frame.  An EXPR file
has the header ``Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other``
then one integer per frame (0 Neutral ... 7 Other); -1 marks an unlabelled
frame.

Frame alignment: data line ``i`` (1-based, after the header) describes video
frame ``i``, whose cropped face is ``cropped_aligned/<video>/<i:05d>.jpg``.
Records carry the 0-based frame index ``frame = i - 1`` (blank lines keep
their place).  Frames whose face was not detected have no image and are skipped
as ``"missing image"``; frames unlabelled in every file read are skipped as
``"invalid label"``.

``task="va"`` reads the VA files, ``"expr"`` the EXPR files, ``"both"`` joins
them per (video, frame): a frame is kept when either label is valid and the
other is unlabelled (the sentinel, or no line or file for it), the other then
left absent (NaN / MISSING_INT).  A frame whose line in either file is broken is
skipped, never kept with that label dropped: ``"invalid label"`` for a line that
is not two numbers (VA) or one integer (EXPR), a VA value outside [-1, 1] other
than the sentinel, an EXPR value outside 0..7 other than -1; ``"nan value"`` for
NaN; ``"corrupt annotation"`` for a line holding a byte that is not UTF-8.  An
annotation file with no data line is counted once as ``"empty annotation"``
(the video's frames then come from the other task's file, if read).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from ferkeras.data.readers.base import (
    CORRUPT_ANNOTATION, EMPTY_ANNOTATION, INVALID_LABEL, MISSING_IMAGE, NAN_VALUE, Reader, open_annotation,
    undecodable, va_problem)
from ferkeras.data.schema import MISSING_INT, FaceRecord

AFF_WILD2_EXPR_CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other")
VA_TASK_DIRS = ("VA_Estimation_Challenge", "VA_Set")
EXPR_TASK_DIRS = ("EXPR_Classification_Challenge", "EXPR_Recognition_Challenge", "EXPR_Set")
SPLIT_DIRS = {"train": ("Train_Set", "Train_set"), "val": ("Validation_Set", "Validation_set")}
UNLABELLED_VA = -5.0
UNLABELLED_EXPR = -1.0

Label = Tuple[Optional[tuple], Optional[str]]  # (value, skip reason); (None, None): unlabelled (the sentinel)


def _parse_va(line: str) -> Label:
    parts = line.split(",")
    if len(parts) != 2:
        return None, INVALID_LABEL
    try:
        valence, arousal = float(parts[0]), float(parts[1])
    except ValueError:
        return None, INVALID_LABEL
    if valence == UNLABELLED_VA and arousal == UNLABELLED_VA:
        return None, None
    problem = va_problem(valence, arousal)
    return (None, problem) if problem else ((valence, arousal), None)


def _parse_expr(line: str) -> Label:
    try:
        value = float(line)
    except ValueError:
        return None, INVALID_LABEL
    if math.isnan(value):
        return None, NAN_VALUE
    if value == UNLABELLED_EXPR:
        return None, None
    if not value.is_integer() or not 0 <= value < len(AFF_WILD2_EXPR_CLASSES):
        return None, INVALID_LABEL
    return (int(value),), None


def _read_labels(path: Path, parse) -> List[Label]:
    """One label per data line of an annotation file (line 1 is the header); a blank line inside the file
    keeps its place (as an invalid label), trailing blank lines are dropped."""
    with open_annotation(path) as f:
        lines = [line.strip() for line in f.read().splitlines()[1:]]
    while lines and not lines[-1]:
        lines.pop()
    return [(None, CORRUPT_ANNOTATION) if undecodable(line) else parse(line) for line in lines]


class AffWild2Reader(Reader):
    """Reads Aff-Wild2 VA and/or expression annotations with the cropped-aligned frames.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"``, ``"val"``).
        task: ``"va"``, ``"expr"`` or ``"both"``.
        fps: frame rate for ``timestamp = frame / fps``; None (default) leaves NaN,
            since Aff-Wild2 videos differ in frame rate.
    """

    name = "aff_wild2"
    split_names = ("train", "val")
    classes = AFF_WILD2_EXPR_CLASSES
    layout = (
        "  annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt\n"
        "  annotations/EXPR_Classification_Challenge/{Train_Set,Validation_Set}/<video>.txt\n"
        "  cropped_aligned/<video>/00001.jpg ...  (5-digit, 1-based frame numbers)")

    def __init__(self, root, split: str = "train", task: str = "va", fps: Optional[float] = None,
                 verify: str = "header"):
        super().__init__(root, split, verify)
        if task not in ("va", "expr", "both"):
            raise ValueError(f"aff_wild2: task must be 'va', 'expr' or 'both', got '{task}'")
        self.task, self.fps = task, fps
        self.image_dir = self.require("cropped_aligned")
        self.va_dir = self._find_dir(VA_TASK_DIRS) if task in ("va", "both") else None
        self.expr_dir = self._find_dir(EXPR_TASK_DIRS) if task in ("expr", "both") else None
        if self.va_dir is None and self.expr_dir is None:
            wanted = {"va": VA_TASK_DIRS, "expr": EXPR_TASK_DIRS, "both": VA_TASK_DIRS + EXPR_TASK_DIRS}[task]
            raise FileNotFoundError(
                f"aff_wild2: no annotation folder for task '{task}' and split '{split}' under "
                f"'{self.root / 'annotations'}' (looked for {wanted} / {SPLIT_DIRS[split]}). "
                f"Expected layout:\n{self.layout}")

    def _find_dir(self, task_dirs) -> Optional[Path]:
        for task_dir in task_dirs:
            for split_dir in SPLIT_DIRS[self.split]:
                path = self.root / "annotations" / task_dir / split_dir
                if path.is_dir():
                    return path
        return None

    def videos(self) -> List[str]:
        """Video ids with an annotation file for this task and split."""
        names = set()
        for folder in (self.va_dir, self.expr_dir):
            if folder is not None:
                names.update(p.stem for p in folder.glob("*.txt"))
        return sorted(names)

    def _labels(self, folder: Optional[Path], video: str, parse) -> Tuple[List[Label], Optional[Path]]:
        """The labels of ``video`` in ``folder`` (none when there is no such file), and the file's path."""
        path = folder / f"{video}.txt" if folder is not None else None
        if path is None or not path.is_file():
            return [], None
        labels = _read_labels(path, parse)
        if not labels:
            self.skips.skip(EMPTY_ANNOTATION, str(path))
        return labels, path

    def _read(self) -> Iterator[FaceRecord]:
        for video in self.videos():
            va, va_path = self._labels(self.va_dir, video, _parse_va)
            expr, expr_path = self._labels(self.expr_dir, video, _parse_expr)
            frame_dir = self.image_dir / video
            present = set(os.listdir(frame_dir)) if frame_dir.is_dir() else set()
            for index in range(max(len(va), len(expr))):
                record = self._frame(video, index, (va, va_path), (expr, expr_path), frame_dir, present)
                if record is not None:
                    yield record

    def _frame(self, video: str, index: int, va_file, expr_file, frame_dir: Path,
               present: set) -> Optional[FaceRecord]:
        (va, va_path), (expr, expr_path) = va_file, expr_file
        va_value, va_reason = va[index] if index < len(va) else (None, None)
        expr_value, expr_reason = expr[index] if index < len(expr) else (None, None)
        for reason, path in ((va_reason, va_path), (expr_reason, expr_path)):
            if reason:  # a broken line: the frame is skipped, not kept without that label
                self.skips.skip(reason, f"{path}:{index + 2}")
                return None
        if va_value is None and expr_value is None:
            self.skips.skip(INVALID_LABEL, f"{video} frame {index + 1} (unlabelled)")
            return None
        name = f"{index + 1:05d}.jpg"
        image_path = frame_dir / name
        problem = MISSING_IMAGE if name not in present else self.image_problem(image_path)
        if problem:
            self.skips.skip(problem, str(image_path))
            return None
        valence, arousal = va_value if va_value is not None else (math.nan, math.nan)
        return FaceRecord(
            image_path=str(image_path), valence=valence, arousal=arousal,
            expression=expr_value[0] if expr_value is not None else MISSING_INT,
            video=video, frame=index, timestamp=index / self.fps if self.fps else math.nan,
            dataset=self.name)
