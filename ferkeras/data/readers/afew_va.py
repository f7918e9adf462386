"""AFEW-VA (Kossaifi et al., 2017): 600 film clips with per-frame valence, arousal and 68 landmarks.

On disk (as distributed, after unzipping the 12 archives into one folder)::

    input/afew_va/
      001/
        001.json
        00000.png  00001.png ...
      002/ ...

``<clip>.json`` holds ``{"actor": ..., "video_id": ..., "frames": {"00000":
{"valence": v, "arousal": a, "landmarks": [[x, y] * 68]}, ...}}`` with valence
and arousal integers in -10..10, rescaled here to [-1, 1] (divided by 10).

AFEW-VA has no official split.  Papers (e.g. AVCE: Kim and Song, "Emotion-aware
Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022) use
subject-wise cross-validation: with ``fold=k`` and ``num_folds=n`` the clips are grouped by
actor, actors are dealt into ``n`` folds (largest actor first, each into the
fold holding the fewest clips so far, ties to the lowest fold index - so folds
are balanced and deterministic), and split ``"test"`` is fold ``k`` while
``"train"`` is every other fold.  No actor ever sits on both sides.  Clips whose
JSON has an empty actor form their own group.  With ``fold=None`` every clip is
read (split ``"train"`` or ``"all"``).

A clip without its JSON is skipped as ``"missing annotation"``, one whose JSON
cannot be read (not UTF-8, not JSON, no ``frames`` object) as ``"corrupt
annotation"``; such a clip has no actor, so it belongs to no fold, and with
``fold=k`` both splits count it.  Frames are skipped as ``"invalid label"``
(valence/arousal absent or not numbers, or outside -10..10), ``"bad
landmarks"``, ``"nan value"``, ``"missing image"`` or ``"corrupt image"``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ferkeras.data.readers.base import (
    BAD_LANDMARKS, CORRUPT_ANNOTATION, INVALID_LABEL, Reader, parse_landmarks, va_problem)
from ferkeras.data.schema import FaceRecord

AFEW_VA_SCALE = 10.0
MISSING_ANNOTATION = "missing annotation"


def assign_folds(groups: Dict[str, str], num_folds: int) -> Dict[str, int]:
    """Deals clips into ``num_folds`` folds so that clips sharing a group (actor) share a fold.

    Args:
        groups: clip id -> group (actor) name.
        num_folds: number of folds (>= 1, at most the number of groups).
    Returns:
        clip id -> fold index in [0, num_folds).
    """
    members: Dict[str, List[str]] = {}
    for clip in sorted(groups):
        members.setdefault(groups[clip], []).append(clip)
    if not 1 <= num_folds <= len(members):
        raise ValueError(f"num_folds must be in [1, {len(members)}] (the number of subjects), got {num_folds}")
    sizes = [0] * num_folds
    folds: Dict[str, int] = {}
    for group in sorted(members, key=lambda g: (-len(members[g]), g)):
        fold = min(range(num_folds), key=lambda i: (sizes[i], i))
        sizes[fold] += len(members[group])
        for clip in members[group]:
            folds[clip] = fold
    return folds


class AfewVaReader(Reader):
    """Reads AFEW-VA clips, optionally one side of a subject-wise fold.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"``, ``"test"``, ``"all"``).
        fold: the held-out fold index, or None for all clips.
        num_folds: number of subject-wise folds (6 gives the 5:1 protocol).
        fps: frame rate used for ``timestamp = frame / fps``; None leaves NaN.
    """

    name = "afew_va"
    split_names = ("train", "test", "all")
    layout = (
        "  <clip>/<clip>.json   (001/001.json ... 600/600.json)\n"
        "  <clip>/<frame>.png   (001/00000.png ...)")

    def __init__(self, root, split: str = "train", fold: Optional[int] = None, num_folds: int = 6,
                 fps: Optional[float] = None, verify: str = "header"):
        super().__init__(root, split, verify)
        if fold is None and split == "test":
            raise ValueError("afew_va: split 'test' needs a fold index (fold=0..num_folds-1)")
        if fold is not None and not 0 <= fold < num_folds:
            raise ValueError(f"afew_va: fold must be in [0, {num_folds}), got {fold}")
        if fold is not None and split == "all":
            raise ValueError("afew_va: split 'all' reads every clip; pass fold=None")
        self.fold, self.num_folds, self.fps = fold, num_folds, fps
        self.clip_dirs = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not self.clip_dirs:
            raise FileNotFoundError(
                f"afew_va: no clip folders in '{self.root}'. Expected layout:\n{self.layout}")

    def _load(self, clip_dir: Path) -> Tuple[Optional[dict], Optional[str]]:
        path = clip_dir / f"{clip_dir.name}.json"
        if not path.is_file():
            return None, MISSING_ANNOTATION
        try:
            with open(path, encoding="utf-8-sig") as f:
                data = json.load(f)
            if not isinstance(data.get("frames"), dict):
                return None, CORRUPT_ANNOTATION
        except (ValueError, UnicodeDecodeError, AttributeError):
            return None, CORRUPT_ANNOTATION
        return data, None

    def actors(self) -> Dict[str, str]:
        """Clip id -> actor (the clip id itself when the JSON names none), for readable clips."""
        out = {}
        for clip_dir in self.clip_dirs:
            data, _ = self._load(clip_dir)
            if data is not None:
                out[clip_dir.name] = str(data.get("actor") or "") or f"clip:{clip_dir.name}"
        return out

    def folds(self) -> Dict[str, int]:
        """Clip id -> fold index for this reader's ``num_folds`` (subject-wise)."""
        return assign_folds(self.actors(), self.num_folds)

    def _read(self) -> Iterator[FaceRecord]:
        folds = self.folds() if self.fold is not None else {}
        test = self.split == "test"
        for clip_dir in self.clip_dirs:
            clip = clip_dir.name
            if clip in folds and (folds[clip] == self.fold) != test:
                continue  # a readable clip of the other side; unreadable clips (in no fold) are counted by both
            data, problem = self._load(clip_dir)
            if problem:
                self.skips.skip(problem, str(clip_dir / f"{clip}.json"))
                continue
            actor = str(data.get("actor") or "")
            for key in sorted(data["frames"]):
                record = self._frame(clip_dir, key, data["frames"][key], actor)
                if record is not None:
                    yield record

    def _frame(self, clip_dir: Path, key: str, entry, actor: str) -> Optional[FaceRecord]:
        where = f"{clip_dir.name}/{key}"
        try:
            frame = int(key)
            valence, arousal = float(entry["valence"]), float(entry["arousal"])
        except (KeyError, TypeError, ValueError):
            self.skips.skip(INVALID_LABEL, where)
            return None
        problem = va_problem(valence, arousal, -AFEW_VA_SCALE, AFEW_VA_SCALE)
        if problem:
            self.skips.skip(problem, where)
            return None
        try:
            lm_values = [float(v) for point in entry["landmarks"] for v in point]
        except (KeyError, TypeError, ValueError):
            self.skips.skip(BAD_LANDMARKS, where)
            return None
        landmarks, problem = parse_landmarks(lm_values)
        if problem:
            self.skips.skip(problem, where)
            return None
        image_path = clip_dir / f"{key}.png"
        problem = self.image_problem(image_path)
        if problem:
            self.skips.skip(problem, str(image_path))
            return None
        return FaceRecord(
            image_path=str(image_path), landmarks=landmarks,
            valence=valence / AFEW_VA_SCALE, arousal=arousal / AFEW_VA_SCALE,
            identity=actor, video=clip_dir.name, frame=frame,
            timestamp=frame / self.fps if self.fps else math.nan, dataset=self.name)

