"""Reading frames from a video file (cv2.VideoCapture) or a folder of frame images."""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Iterator, List, NamedTuple, Optional

import cv2
import numpy as np

from ferkeras.data.schema import SkipCounter

logger = logging.getLogger("ferkeras.face")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class Frame(NamedTuple):
    """One frame: its ``index`` in the video, ``timestamp`` in seconds (NaN when the fps is unknown), uint8 image."""

    index: int
    timestamp: float
    image: np.ndarray


class VideoInfo(NamedTuple):
    """What a video says about itself; ``frame_count`` is the container's estimate for files."""

    fps: float
    frame_count: int
    width: int
    height: int


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _frame_files(folder: str) -> List[str]:
    names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
    return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def _open(path: str) -> "cv2.VideoCapture":
    if not os.path.exists(path):
        raise FileNotFoundError(f"video {path!r} does not exist")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise OSError(f"OpenCV cannot open the video {path!r} (not a video, corrupt, or an unsupported codec)")
    return capture


def video_info(path: str, fps: Optional[float] = None) -> VideoInfo:
    """fps, frame count and size of a video file or a folder of frames (whose fps is ``fps`` or NaN)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = _frame_files(path)
        if not files:
            raise FileNotFoundError(f"frame folder {path!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        first = cv2.imread(files[0], cv2.IMREAD_UNCHANGED)
        if first is None:
            raise OSError(f"cannot read the frame image {files[0]!r}")
        return VideoInfo(float(fps) if fps else math.nan, len(files), first.shape[1], first.shape[0])
    capture = _open(path)
    try:
        native = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(
            float(fps) if fps else (native if native > 0 else math.nan),
            int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def iter_frames(
    path: str,
    step: int = 1,
    max_frames: Optional[int] = None,
    fps: Optional[float] = None,
    rgb: bool = True,
    skipped: Optional[SkipCounter] = None,
) -> Iterator[Frame]:
    """Yields :class:`Frame` items of a video file or of a folder of frame images.

    Args:
      path: a video file, or a folder whose images (natural order: ``2.jpg`` before
        ``10.jpg``) are the frames.
      step: yield every ``step``-th frame (the others are grabbed but not decoded to arrays).
      max_frames: stop after yielding this many.
      fps: frames per second for the timestamps (``index / fps``); a file's own
        fps when None; NaN timestamps for a folder without it.
      rgb: RGB (True) or OpenCV's BGR order.
      skipped: a SkipCounter that counts frame images of a folder that cannot be
        read (they are skipped, never yielded as garbage); one is made and
        reported in the log when None.

    Raises FileNotFoundError / OSError naming the path when it cannot be opened.
    """
    path = os.fspath(path)
    if int(step) < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    step = int(step)
    info = video_info(path, fps)
    yielded = 0

    def convert(image):
        if image.ndim == 2 or not rgb:
            return image
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    if os.path.isdir(path):
        counter = skipped or SkipCounter(f"frames of {path}")
        for index, file in enumerate(_frame_files(path)):
            if max_frames is not None and yielded >= max_frames:
                break
            if index % step:
                continue
            image = cv2.imread(file, cv2.IMREAD_COLOR)
            if image is None:
                counter.skip("unreadable frame image", file)
                continue
            counter.ok()
            yield Frame(index, index / info.fps, convert(image))
            yielded += 1
        if skipped is None and counter.skipped:
            logger.warning(counter.summary())
        return

    capture = _open(path)
    try:
        index = 0
        while max_frames is None or yielded < max_frames:
            if index % step:
                if not capture.grab():
                    break
            else:
                ok, image = capture.read()
                if not ok:
                    break
                yield Frame(index, index / info.fps, convert(image))
                yielded += 1
            index += 1
    finally:
        capture.release()
