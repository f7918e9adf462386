"""Synthetic copies of the real FER datasets, written in each dataset's own on-disk format.

Each ``write_<dataset>(root, num, seed, bad_rows)`` renders faces with
:mod:`ferkeras.data.synthetic` and writes them under ``root`` exactly as the real
dataset lays out its files (see ``input/README.md`` and the reader modules), so
the real readers in :mod:`ferkeras.data.readers` run on them unchanged.  The
synthetic category (AffectNet order, :data:`ferkeras.data.schema.EXPRESSIONS`)
is mapped to the dataset's own class list and indices, and valence/arousal to
its scale (AFEW-VA: integers -10..10).  Datasets without a contempt class
(RAF-DB, FER2013) simply get no contempt faces.

``root`` must be new or empty.  ``bad_rows`` injects rows a reader must skip: an int spreads that many over the
kinds the dataset can hold (see :data:`BAD_ROW_KINDS`), a dict asks for exact
counts per kind, e.g. ``{"missing image": 2, "nan value": 1}``.  Bad rows always
go to the training split, at random positions among the good ones.

Every writer returns what a reader with default options (Aff-Wild2: ``task="both"``) must find::

    {"dataset": "affectnet", "root": "...",
     "splits": {"train": {"records": 30, "skips": {"missing image": 2, ...},
                          "truth": [ {expected record fields}, ... in reading order ]},
                "val": {...}}}

``truth`` entries hold the labels after the reader's documented rescaling and
class mapping: ``image`` (path relative to ``root``, or None for pixel-string
datasets, which give ``pixels`` instead), ``expression``, ``valence``,
``arousal``, ``box``, ``landmarks``, ``identity``, ``video``, ``frame``,
``timestamp`` (NaN / -1 / "" where the dataset has no such label).  Written
numbers are rounded (3-6 decimals); the truth holds the rounded values.
"""

from __future__ import annotations

import csv
import json
import math
import string
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import cv2
import numpy as np

from ferkeras.data.readers.aff_wild2 import AFF_WILD2_EXPR_CLASSES
from ferkeras.data.readers.fer2013 import FER2013_SIZE, USAGE
from ferkeras.data.readers.ferplus import (
    NO_IMAGE_NAME, NO_MAJORITY, UNKNOWN_OR_NON_FACE, VOTE_COLUMNS)
from ferkeras.data.synthetic.faces import SyntheticFace, generate_faces
from ferkeras.data.synthetic.identities import identity_pool
from ferkeras.data.synthetic.videos import render_video

MISSING_IMAGE, CORRUPT_IMAGE = "missing image", "corrupt image"
INVALID_LABEL, BAD_LANDMARKS, NAN_VALUE = "invalid label", "bad landmarks", "nan value"

# Synthetic category (AffectNet order: neutral, happy, sad, surprise, fear, disgust, anger, contempt) ->
# the dataset's own label as written in its files (None: the dataset has no such class).
TO_AFF_WILD2 = (0, 4, 5, 6, 3, 2, 1, 7)  # Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other
TO_RAF_DB = (7, 4, 5, 1, 2, 3, 6, None)  # 1 Surprise .. 7 Neutral (1-based in the file)
TO_FER2013 = (6, 3, 4, 5, 2, 1, 0, None)  # 0 Angry,1 Disgust,2 Fear,3 Happy,4 Sad,5 Surprise,6 Neutral
TO_FERPLUS = (0, 1, 3, 2, 6, 5, 4, 7)  # neutral,happiness,surprise,sadness,anger,disgust,fear,contempt

BAD_ROW_KINDS: Dict[str, tuple] = {
    "affectnet": (MISSING_IMAGE, CORRUPT_IMAGE, INVALID_LABEL, BAD_LANDMARKS, NAN_VALUE),
    "afew_va": (MISSING_IMAGE, CORRUPT_IMAGE, INVALID_LABEL, BAD_LANDMARKS, NAN_VALUE),
    "aff_wild2": (MISSING_IMAGE, CORRUPT_IMAGE, INVALID_LABEL, NAN_VALUE),
    "aff_wild": (MISSING_IMAGE, CORRUPT_IMAGE, INVALID_LABEL, BAD_LANDMARKS, NAN_VALUE),
    "raf_db": (MISSING_IMAGE, CORRUPT_IMAGE, INVALID_LABEL, NAN_VALUE),
    "fer2013": (CORRUPT_IMAGE, INVALID_LABEL, NAN_VALUE),
    "ferplus": (CORRUPT_IMAGE, INVALID_LABEL, NAN_VALUE, NO_IMAGE_NAME, UNKNOWN_OR_NON_FACE, NO_MAJORITY),
    "voxceleb1": (CORRUPT_IMAGE,),
}

BadRows = Union[int, Mapping[str, int]]


# ------------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------------
def plan_bad_rows(dataset: str, bad_rows: BadRows) -> List[str]:
    """The list of bad-row kinds to inject (an int is spread round-robin over the dataset's kinds)."""
    kinds = BAD_ROW_KINDS[dataset]
    if isinstance(bad_rows, Mapping):
        unknown = sorted(set(bad_rows) - set(kinds))
        if unknown:
            raise ValueError(f"{dataset}: cannot inject bad rows of kind {unknown}; it supports {list(kinds)}")
        if any(int(n) < 0 for n in bad_rows.values()):
            raise ValueError(f"{dataset}: bad row counts must be >= 0, got {dict(bad_rows)}")
        return [kind for kind in kinds for _ in range(int(bad_rows.get(kind, 0)))]
    if int(bad_rows) < 0:
        raise ValueError(f"{dataset}: bad_rows must be >= 0, got {bad_rows}")
    return [kinds[i % len(kinds)] for i in range(int(bad_rows))]


def _interleave(num_good: int, bad: Sequence[str], rng: np.random.Generator) -> List[Optional[str]]:
    """A row plan: None for a good row, a kind for a bad one, bad rows at random positions."""
    plan: List[Optional[str]] = [None] * num_good
    for kind in bad:
        plan.insert(int(rng.integers(len(plan) + 1)), kind)
    return plan


class _Split:
    """Accumulates one split's expected records and skips."""

    def __init__(self):
        self.truth: List[dict] = []
        self.skips: Dict[str, int] = {}

    def good(self, **fields) -> None:
        entry = dict(image=None, expression=-1, valence=math.nan, arousal=math.nan,
                     box=np.full(4, np.nan, np.float32), landmarks=np.full((68, 2), np.nan, np.float32),
                     identity="", video="", frame=-1, timestamp=math.nan)
        entry.update(fields)
        self.truth.append(entry)

    def bad(self, kind: str) -> None:
        self.skips[kind] = self.skips.get(kind, 0) + 1

    def result(self) -> dict:
        return {"records": len(self.truth), "skips": dict(self.skips), "truth": self.truth}


def _result(dataset: str, root: Path, splits: Dict[str, _Split], by_video: bool = False) -> dict:
    """The writer's return value; ``by_video`` orders the truth as readers walk folders (sorted names)."""
    if by_video:
        for split in splits.values():
            split.truth.sort(key=lambda t: (t["video"].split("/"), t["frame"]))
    return {"dataset": dataset, "root": str(root), "splits": {k: s.result() for k, s in splits.items()}}


def _fresh_root(root) -> Path:
    """The output folder, which must be new or empty: stale files would change what a reader finds."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"synthetic dataset folder '{root}' is not empty; remove it or choose another")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _save(path: Path, image: np.ndarray) -> None:
    """Writes an RGB (or grey) uint8 image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = image[..., ::-1] if image.ndim == 3 else image
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
        raise OSError(f"could not write {path}")


def _save_garbage(path: Path, rng: np.random.Generator) -> None:
    """A file with an image name but no image signature (what a failed download leaves)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<html>not an image</html>" + rng.bytes(64))


def _write_planned(path: Path, kind: str, image: np.ndarray, rng: np.random.Generator) -> None:
    """Writes ``image`` as a row's plan says: a garbage file for a corrupt image, nothing for a missing one."""
    if kind == CORRUPT_IMAGE:
        _save_garbage(path, rng)
    elif kind != MISSING_IMAGE:
        _save(path, image)


def _r(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}f}")


def _rounded(a: np.ndarray, digits: int = 3) -> np.ndarray:
    return np.round(np.asarray(a, np.float64), digits).astype(np.float32)


def _faces(num: int, size: int, seed: int, first_identity: int = 0, allowed=None) -> Iterator[SyntheticFace]:
    """``num`` still faces whose category is in ``allowed`` (all when None)."""
    if num == 0:
        return
    count = 0
    for face in generate_faces(8 * num + 64, size=size, seed=seed, first_identity=first_identity):
        if allowed is None or face.expression in allowed:
            yield face
            count += 1
            if count == num:
                return
    raise RuntimeError("synthetic generator produced too few faces of the allowed categories")


def _video_plans(num: int, per_video: int, bad: Sequence[str], rng) -> List[List[Optional[str]]]:
    """Splits ``num`` good frames into videos of ``per_video`` and scatters the bad frames among them."""
    sizes = [per_video] * (num // per_video) + ([num % per_video] if num % per_video else [])
    plans = [[None] * n for n in sizes] or [[]]
    for kind in bad:
        plan = plans[int(rng.integers(len(plans)))]
        plan.insert(int(rng.integers(len(plan) + 1)), kind)
    return plans


def _num_val(num: int, num_val: Optional[int]) -> int:
    return max(2, num // 4) if num_val is None else int(num_val)


# ------------------------------------------------------------------------------------------------
# AffectNet
# ------------------------------------------------------------------------------------------------
def write_affectnet(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0, size: int = 64,
                    num_val: Optional[int] = None) -> dict:
    """AffectNet's manually annotated layout: CSV lists + images in sub-folders.

    Bad ``invalid label`` rows alternate between expression 10 (No-Face, VA -2) and
    expression 9 (Uncertain) with valid VA; the latter are kept by
    ``keep_va_only=True`` (their count is in the split's ``"va_only_rows"``).
    """
    root = _fresh_root(root)
    rng = np.random.default_rng([11, seed])
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    splits = {"train": _Split(), "val": _Split()}
    counts = {"train": num, "val": _num_val(num, num_val)}
    va_only = {"train": 0, "val": 0}
    list_dir = root / "Manually_Annotated_file_lists"
    list_dir.mkdir(parents=True, exist_ok=True)
    row_id = 0
    for split, fname in (("train", "training.csv"), ("val", "validation.csv")):
        plan = _interleave(counts[split], plan_bad_rows("affectnet", bad_rows) if split == "train" else [], rng)
        faces = _faces(len(plan), size, seed + (0 if split == "train" else 1000),
                       first_identity=0 if split == "train" else 1000)
        with open(list_dir / fname, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for kind, face in zip(plan, faces):
                row_id += 1
                rel = f"{row_id // 10 + 1}/{rng.bytes(8).hex()}{row_id:05d}.jpg"
                path = root / "Manually_Annotated_Images" / rel
                x0, y0, x1, y1 = (_r(float(v), 2) for v in face.box)
                w, h = _r(x1 - x0, 2), _r(y1 - y0, 2)
                lm = _rounded(face.landmarks, 2)
                lm_values = lm.reshape(-1).tolist()
                expression, valence, arousal = face.expression, _r(face.valence), _r(face.arousal)
                if kind == MISSING_IMAGE:
                    pass
                elif kind == CORRUPT_IMAGE:
                    _save_garbage(path, rng)
                else:
                    _save(path, face.image)
                if kind == INVALID_LABEL:
                    if splits[split].skips.get(INVALID_LABEL, 0) % 2 == 0:
                        expression, valence, arousal = 10, -2.0, -2.0
                    else:
                        expression = 9
                        va_only[split] += 1
                elif kind == BAD_LANDMARKS:
                    lm_values = lm_values[:-2]
                elif kind == NAN_VALUE:
                    valence = math.nan
                writer.writerow([rel, x0, y0, w, h, ";".join(f"{v:.2f}" for v in lm_values), expression,
                                 "NaN" if math.isnan(valence) else valence, arousal])
                if kind:
                    splits[split].bad(kind)
                else:
                    splits[split].good(image=f"Manually_Annotated_Images/{rel}", expression=expression,
                                       valence=valence, arousal=arousal,
                                       box=np.array([x0, y0, x0 + w, y0 + h], np.float32), landmarks=lm,
                                       identity="")
    out = _result("affectnet", root, splits)
    for split in splits:
        out["splits"][split]["va_only_rows"] = va_only[split]
    return out


# ------------------------------------------------------------------------------------------------
# AFEW-VA
# ------------------------------------------------------------------------------------------------
def write_afew_va(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0, size: int = 64,
                  frames_per_clip: int = 6, clips_per_actor: int = 2) -> dict:
    """AFEW-VA clips: ``<clip>/<clip>.json`` + ``<clip>/<frame>.png``; VA written as integers -10..10.

    ``num`` good frames in clips of ``frames_per_clip``; each actor (synthetic
    identity) plays in ``clips_per_actor`` consecutive clips.
    """
    root = _fresh_root(root)
    rng = np.random.default_rng([12, seed])
    split = _Split()
    plans = _video_plans(num, frames_per_clip, plan_bad_rows("afew_va", bad_rows), rng)
    actors = identity_pool(len(plans) // clips_per_actor + 1, first_identity=seed * 1000)
    for c, plan in enumerate(plans):
        clip = f"{c + 1:03d}"
        actor = actors[c // clips_per_actor]
        frames = {}
        video = render_video(actor, max(1, len(plan)), size=size, seed=seed * 1000 + c, video_id=clip)
        for i, (kind, face) in enumerate(zip(plan, video)):
            key = f"{i:05d}"
            path = root / clip / f"{key}.png"
            _write_planned(path, kind, face.image, rng)
            valence, arousal = int(round(face.valence * 10)), int(round(face.arousal * 10))
            lm = _rounded(face.landmarks)
            entry = {"valence": valence, "arousal": arousal, "landmarks": lm.tolist()}
            if kind == INVALID_LABEL:
                entry["valence"] = 15
            elif kind == BAD_LANDMARKS:
                entry["landmarks"] = entry["landmarks"][:60]
            elif kind == NAN_VALUE:
                entry["arousal"] = math.nan
            frames[key] = entry
            if kind:
                split.bad(kind)
            else:
                split.good(image=f"{clip}/{key}.png", valence=valence / 10, arousal=arousal / 10, landmarks=lm,
                           identity=actor.identity_id, video=clip, frame=i)
        (root / clip).mkdir(parents=True, exist_ok=True)
        with open(root / clip / f"{clip}.json", "w") as f:
            json.dump({"actor": actor.identity_id, "video_id": clip, "frames": frames}, f)
    return _result("afew_va", root, {"train": split}, by_video=True)


# ------------------------------------------------------------------------------------------------
# Aff-Wild2
# ------------------------------------------------------------------------------------------------
def write_aff_wild2(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0, size: int = 64,
                    frames_per_video: int = 8, num_val: Optional[int] = None) -> dict:
    """Aff-Wild2 ABAW layout: VA and EXPR text files per video + ``cropped_aligned/<video>/<i:05d>.jpg``.

    Every frame is labelled in both files, so tasks ``va``, ``expr`` and ``both``
    read the same frames; a bad ``invalid label`` frame has both sentinels (-5 and
    -1) and a ``nan value`` frame NaN in both.
    """
    root = _fresh_root(root)
    rng = np.random.default_rng([13, seed])
    splits = {"train": _Split(), "val": _Split()}
    counts = {"train": num, "val": _num_val(num, num_val)}
    folders = {"train": "Train_Set", "val": "Validation_Set"}
    va_header = "valence,arousal"
    expr_header = ",".join(c.capitalize() for c in AFF_WILD2_EXPR_CLASSES)
    serial = 0
    for split in ("train", "val"):
        bad = plan_bad_rows("aff_wild2", bad_rows) if split == "train" else []
        plans = _video_plans(counts[split], frames_per_video, bad, rng)
        people = identity_pool(len(plans), first_identity=seed * 1000 + (0 if split == "train" else 500))
        for v, plan in enumerate(plans):
            serial += 1  # video names are unique across splits, in the styles Aff-Wild2 uses
            video = (f"{serial:03d}", f"{serial}-30-1280x720", f"{serial}-24-640x360_left")[serial % 3]
            va_lines, expr_lines = [va_header], [expr_header]
            frames = render_video(people[v], max(1, len(plan)), size=size, seed=seed * 1000 + v,
                                            video_id=video)
            for i, (kind, face) in enumerate(zip(plan, frames)):
                path = root / "cropped_aligned" / video / f"{i + 1:05d}.jpg"
                _write_planned(path, kind, face.image, rng)
                valence, arousal = _r(face.valence), _r(face.arousal)
                expression = TO_AFF_WILD2[face.expression]
                if kind == INVALID_LABEL:
                    va_lines.append("-5,-5")
                    expr_lines.append("-1")
                elif kind == NAN_VALUE:
                    va_lines.append("nan,nan")
                    expr_lines.append("nan")
                else:
                    va_lines.append(f"{valence},{arousal}")
                    expr_lines.append(str(expression))
                if kind:
                    splits[split].bad(kind)
                else:
                    splits[split].good(image=f"cropped_aligned/{video}/{i + 1:05d}.jpg", valence=valence,
                                       arousal=arousal, expression=expression, video=video, frame=i)
            for task, lines in (("VA_Estimation_Challenge", va_lines),
                                ("EXPR_Classification_Challenge", expr_lines)):
                folder = root / "annotations" / task / folders[split]
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{video}.txt").write_text("\n".join(lines) + "\n")
    return _result("aff_wild2", root, splits, by_video=True)


# ------------------------------------------------------------------------------------------------
# Aff-Wild (v1)
# ------------------------------------------------------------------------------------------------
def _pts(points: np.ndarray) -> str:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    return f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n"


def write_aff_wild(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0, size: int = 64,
                   frames_per_video: int = 8, num_val: Optional[int] = None) -> dict:
    """Aff-Wild v1: per-video valence/arousal files, extracted frames and per-frame ``.pts`` boxes/landmarks."""
    root = _fresh_root(root)
    rng = np.random.default_rng([14, seed])
    splits = {"train": _Split(), "test": _Split()}
    counts = {"train": num, "test": _num_val(num, num_val)}
    video_id = 100
    for split in ("train", "test"):
        bad = plan_bad_rows("aff_wild", bad_rows) if split == "train" else []
        plans = _video_plans(counts[split], frames_per_video, bad, rng)
        people = identity_pool(len(plans), first_identity=seed * 1000 + (0 if split == "train" else 500))
        for v, plan in enumerate(plans):
            video_id += 1
            video = str(video_id)
            valence_lines, arousal_lines = [], []
            frames = render_video(people[v], max(1, len(plan)), size=size, seed=seed * 1000 + video_id,
                                            video_id=video)
            for k, (kind, face) in enumerate(zip(plan, frames)):
                path = root / "frames" / video / f"{k:05d}.jpg"
                _write_planned(path, kind, face.image, rng)
                valence, arousal = _r(face.valence), _r(face.arousal)
                lm = _rounded(face.landmarks)
                x0, y0, x1, y1 = (float(c) for c in _rounded(face.box))
                corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
                for sub, points in (("bboxes", corners), ("landmarks", lm[:60] if kind == BAD_LANDMARKS else lm)):
                    pts_path = root / sub / split / video / f"{k}.pts"
                    pts_path.parent.mkdir(parents=True, exist_ok=True)
                    pts_path.write_text(_pts(points))
                valence_lines.append("nan" if kind == NAN_VALUE else str(valence))
                arousal_lines.append("3.5" if kind == INVALID_LABEL else str(arousal))
                if kind:
                    splits[split].bad(kind)
                else:
                    splits[split].good(image=f"frames/{video}/{k:05d}.jpg", valence=valence, arousal=arousal,
                                       box=np.array([x0, y0, x1, y1], np.float32), landmarks=lm, video=video,
                                       frame=k)
            for kind_dir, lines in (("valence", valence_lines), ("arousal", arousal_lines)):
                folder = root / "annotations" / split / kind_dir
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{video}.txt").write_text("\n".join(lines) + "\n")
    return _result("aff_wild", root, splits, by_video=True)


# ------------------------------------------------------------------------------------------------
# RAF-DB
# ------------------------------------------------------------------------------------------------
def write_raf_db(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0, size: int = 64,
                 num_val: Optional[int] = None) -> dict:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/<name>_aligned.jpg``."""
    root = _fresh_root(root)
    rng = np.random.default_rng([15, seed])
    splits = {"train": _Split(), "test": _Split()}
    counts = {"train": num, "test": _num_val(num, num_val)}
    allowed = [c for c, label in enumerate(TO_RAF_DB) if label is not None]
    lines = []
    for split, digits in (("train", 5), ("test", 4)):
        plan = _interleave(counts[split], plan_bad_rows("raf_db", bad_rows) if split == "train" else [], rng)
        faces = _faces(len(plan), size, seed + (0 if split == "train" else 1000),
                       first_identity=0 if split == "train" else 1000, allowed=allowed)
        for i, (kind, face) in enumerate(zip(plan, faces), start=1):
            name = f"{split}_{i:0{digits}d}"
            path = root / "Image" / "aligned" / f"{name}_aligned.jpg"
            _write_planned(path, kind, face.image, rng)
            label = TO_RAF_DB[face.expression]
            text = {INVALID_LABEL: "8", NAN_VALUE: "nan"}.get(kind, str(label))
            lines.append(f"{name}.jpg {text}")
            if kind:
                splits[split].bad(kind)
            else:
                splits[split].good(image=f"Image/aligned/{name}_aligned.jpg", expression=label - 1)
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return _result("raf_db", root, splits)


# ------------------------------------------------------------------------------------------------
# FER2013 and FERPlus
# ------------------------------------------------------------------------------------------------
def _grey48(face: SyntheticFace) -> np.ndarray:
    grey = cv2.cvtColor(face.image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (FER2013_SIZE, FER2013_SIZE), interpolation=cv2.INTER_AREA)


def _pixel_string(grey: np.ndarray) -> str:
    return " ".join(map(str, grey.reshape(-1).tolist()))


def _fer_rows(num: int, num_val: int, seed: int, bad: Sequence[str], rng, allowed) -> List[tuple]:
    """(split, kind, face) rows of a FER2013-shaped file: Training, then PublicTest, then PrivateTest."""
    rows = []
    for split, count in (("train", num), ("val", num_val), ("test", num_val)):
        plan = _interleave(count, bad if split == "train" else [], rng)
        faces = _faces(len(plan), 64, seed + {"train": 0, "val": 1000, "test": 2000}[split],
                       first_identity={"train": 0, "val": 1000, "test": 2000}[split], allowed=allowed)
        rows.extend((split, kind, face) for kind, face in zip(plan, faces))
    return rows


def write_fer2013(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0,
                  num_val: Optional[int] = None) -> dict:
    """``fer2013.csv`` (emotion,pixels,Usage) with 48x48 grey faces; no contempt faces (FER2013 has none)."""
    root = _fresh_root(root)
    rng = np.random.default_rng([16, seed])
    splits = {s: _Split() for s in USAGE}
    allowed = [c for c, label in enumerate(TO_FER2013) if label is not None]
    rows = _fer_rows(num, _num_val(num, num_val), seed, plan_bad_rows("fer2013", bad_rows), rng, allowed)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for split, kind, face in rows:
            grey = _grey48(face)
            label = TO_FER2013[face.expression]
            pixels = _pixel_string(grey[:-2]) if kind == CORRUPT_IMAGE else _pixel_string(grey)
            emotion = {INVALID_LABEL: "7", NAN_VALUE: "nan"}.get(kind, str(label))
            writer.writerow([emotion, pixels, USAGE[split]])
            if kind:
                splits[split].bad(kind)
            else:
                splits[split].good(pixels=grey, expression=label)
    return _result("fer2013", root, splits)


def _votes(label: int, rng: np.random.Generator) -> List[int]:
    """Ten votes with a clear majority (6-10) for ``label``, the rest spread over other emotions."""
    votes = [0] * len(VOTE_COLUMNS)
    top = int(rng.integers(6, 11))
    votes[label] = top
    for _ in range(10 - top):
        other = int(rng.integers(len(VOTE_COLUMNS)))
        while other == label:
            other = int(rng.integers(len(VOTE_COLUMNS)))
        votes[other] += 1
    return votes


def write_ferplus(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0,
                  num_val: Optional[int] = None) -> dict:
    """``fer2013new.csv`` vote counts row-aligned with a ``fer2013.csv`` of the same faces.

    Good rows have a clear majority (6-10 of the 10 votes) for the face's emotion.
    Protocol exclusions: ``no image name`` (empty name, 10 NF votes), ``unknown or
    non-face`` (6 unknown votes), ``no majority`` (a 4-4-2 split: majority mode
    skips it as "no majority", plurality mode as "tied votes").
    """
    root = _fresh_root(root)
    rng = np.random.default_rng([17, seed])
    splits = {s: _Split() for s in USAGE}
    rows = _fer_rows(num, _num_val(num, num_val), seed, plan_bad_rows("ferplus", bad_rows), rng, None)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as f_pix, open(root / "fer2013new.csv", "w", newline="") as f_vot:
        pix, vot = csv.writer(f_pix), csv.writer(f_vot)
        pix.writerow(["emotion", "pixels", "Usage"])
        vot.writerow(["Usage", "Image name"] + list(VOTE_COLUMNS))
        for index, (split, kind, face) in enumerate(rows):
            grey = _grey48(face)
            label = TO_FERPLUS[face.expression]
            fer_label = TO_FER2013[face.expression]
            pix.writerow([6 if fer_label is None else fer_label,
                          _pixel_string(grey[:-2] if kind == CORRUPT_IMAGE else grey), USAGE[split]])
            name = f"fer{index:07d}.png"
            votes: List = _votes(label, rng)
            if kind == NO_IMAGE_NAME:
                name, votes = "", [0] * 9 + [10]
            elif kind == UNKNOWN_OR_NON_FACE:
                votes = [0] * len(VOTE_COLUMNS)
                votes[label], votes[8] = 4, 6
            elif kind == NO_MAJORITY:
                votes = [0] * len(VOTE_COLUMNS)
                votes[label], votes[(label + 1) % 8], votes[(label + 2) % 8] = 4, 4, 2
            elif kind == INVALID_LABEL:
                votes[(label + 1) % 8] = -1
            elif kind == NAN_VALUE:
                votes[(label + 1) % 8] = "nan"
            vot.writerow([USAGE[split], name] + votes)
            if kind:
                splits[split].bad(kind)
            else:
                splits[split].good(pixels=grey, expression=label)
    return _result("ferplus", root, splits)


# ------------------------------------------------------------------------------------------------
# VoxCeleb1 face frames
# ------------------------------------------------------------------------------------------------
_YT_CHARS = string.ascii_letters + string.digits + "-_"


def write_voxceleb1(root, num: int = 32, seed: int = 0, bad_rows: BadRows = 0, size: int = 64,
                    frames_per_clip: int = 8, clips_per_identity: int = 2, fps: float = 25.0,
                    frame_step: int = 6) -> dict:
    """``<identity>/<youtube id>/<clip>/<frame:07d>.jpg`` face tracks sampled every ``frame_step`` frames.

    Frame numbers are on the source video's clock (``fps``), so a reader with
    the same ``fps`` gets ``timestamp = frame / fps``.
    """
    root = _fresh_root(root)
    rng = np.random.default_rng([18, seed])
    split = _Split()
    plans = _video_plans(num, frames_per_clip, plan_bad_rows("voxceleb1", bad_rows), rng)
    people = identity_pool(len(plans) // clips_per_identity + 1, first_identity=seed * 1000)
    youtube = {}
    for c, plan in enumerate(plans):
        person = people[c // clips_per_identity]
        identity = f"Person_{person.identity_id}"
        if identity not in youtube:
            youtube[identity] = "".join(rng.choice(list(_YT_CHARS), 11))
        clip = f"{c % clips_per_identity + 1:05d}"
        video = f"{identity}/{youtube[identity]}/{clip}"
        start = int(rng.integers(0, 500))
        frames = render_video(person, max(1, len(plan)), fps=fps / frame_step, size=size,
                                        seed=seed * 1000 + c, video_id=video)
        for i, (kind, face) in enumerate(zip(plan, frames)):
            frame = start + frame_step * i
            path = root / video / f"{frame:07d}.jpg"
            if kind == CORRUPT_IMAGE:
                _save_garbage(path, rng)
                split.bad(kind)
            else:
                _save(path, face.image)
                split.good(image=f"{video}/{frame:07d}.jpg", identity=identity, video=video, frame=frame,
                           timestamp=frame / fps)
    return _result("voxceleb1", root, {"train": split}, by_video=True)


WRITERS: Dict[str, Callable[..., dict]] = {
    "affectnet": write_affectnet,
    "afew_va": write_afew_va,
    "aff_wild2": write_aff_wild2,
    "aff_wild": write_aff_wild,
    "raf_db": write_raf_db,
    "fer2013": write_fer2013,
    "ferplus": write_ferplus,
    "voxceleb1": write_voxceleb1,
}


def write_synthetic(name: str, root, **kwargs) -> dict:
    """Writes the synthetic copy of dataset ``name`` under ``root`` (see :data:`WRITERS`)."""
    if name not in WRITERS:
        raise ValueError(f"unknown synthetic dataset '{name}'; known: {sorted(WRITERS)}")
    return WRITERS[name](root, **kwargs)


__all__ = ("BAD_ROW_KINDS", "BadRows", "CORRUPT_IMAGE", "INVALID_LABEL", "BAD_LANDMARKS", "MISSING_IMAGE",
           "NAN_VALUE", "TO_AFF_WILD2", "TO_FER2013", "TO_FERPLUS", "TO_RAF_DB", "WRITERS", "plan_bad_rows",
           "write_aff_wild", "write_aff_wild2", "write_afew_va", "write_affectnet", "write_fer2013", "write_ferplus",
           "write_raf_db", "write_synthetic", "write_voxceleb1")
