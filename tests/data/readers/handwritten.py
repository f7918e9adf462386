"""Tiny datasets in each reader's on-disk format, written from literal annotation text (not by the project's
synthetic writers), with tiny generated images.  Every annotation text below is spelled out by hand from the
dataset's published format; tests add their own broken lines to it."""

import json
from pathlib import Path

import cv2
import numpy as np

PIXELS = " ".join(["128"] * 48 * 48)  # one FER2013 face: 2304 grey levels


def image(path: Path, value: int = 100) -> Path:
    """A tiny flat JPEG (or PNG, by suffix) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path


def write(path: Path, text) -> Path:
    """``text`` (str, or bytes for lines that are not UTF-8) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                    "valence,arousal\n")


def affectnet(root: Path, rows: str, images=("1/a.jpg", "1/b.jpg", "2/c.jpg")) -> Path:
    """AffectNet: ``rows`` (str or bytes) under the published header, in training.csv."""
    for name in images:
        image(root / "Manually_Annotated_Images" / name)
    header = AFFECTNET_HEADER.encode() if isinstance(rows, bytes) else AFFECTNET_HEADER
    write(root / "Manually_Annotated_file_lists" / "training.csv", header + rows)
    return root


def raf_db(root: Path, lines, names=("train_00001", "train_00002", "train_00003", "test_0001")) -> Path:
    """RAF-DB basic: ``lines`` in EmoLabel/list_patition_label.txt, aligned images for ``names``."""
    for name in names:
        image(root / "Image" / "aligned" / f"{name}_aligned.jpg")
    write(root / "EmoLabel" / "list_patition_label.txt", lines)
    return root


def fer2013(root: Path, text) -> Path:
    write(root / "fer2013.csv", text)
    return root


VA_HEADER = "valence,arousal\n"
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"


def aff_wild2(root: Path, videos: dict, frames: int = 4) -> Path:
    """Aff-Wild2: ``videos`` maps a video name to ``{"va": text, "expr": text}`` (either may be absent; str or
    bytes, written as is); every video gets frames 00001.jpg .. ``frames``."""
    for video, files in videos.items():
        for task, folder in (("va", "VA_Estimation_Challenge"), ("expr", "EXPR_Classification_Challenge")):
            if task in files:
                write(root / "annotations" / folder / "Train_Set" / f"{video}.txt", files[task])
        for i in range(1, frames + 1):
            image(root / "cropped_aligned" / video / f"{i:05d}.jpg", 10 * i)
    return root


def aff_wild(root: Path, video: str, valence, arousal, frames: int = 3) -> Path:
    """Aff-Wild (v1): one video's valence and arousal files (str or bytes) and frames 00000.jpg ..."""
    write(root / "annotations" / "train" / "valence" / f"{video}.txt", valence)
    write(root / "annotations" / "train" / "arousal" / f"{video}.txt", arousal)
    for k in range(frames):
        image(root / "frames" / video / f"{k:05d}.jpg")
    return root


def afew_va_json(actor: str, frames: dict) -> str:
    """An AFEW-VA clip annotation: ``frames`` maps "00000" to (valence, arousal) on the -10..10 scale; 68
    landmarks per frame (point i at (i, 2 i))."""
    landmarks = [[float(i), float(2 * i)] for i in range(68)]
    return json.dumps({"actor": actor, "video_id": "x", "frames": {
        key: {"valence": v, "arousal": a, "landmarks": landmarks} for key, (v, a) in frames.items()}})


def afew_va_clip(root: Path, clip: str, text, frames=("00000",)) -> Path:
    """One AFEW-VA clip folder: ``<clip>/<clip>.json`` holding ``text`` and PNG frames."""
    write(root / clip / f"{clip}.json", text)
    for key in frames:
        image(root / clip / f"{key}.png")
    return root
