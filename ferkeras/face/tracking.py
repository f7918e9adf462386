"""Keeping face identities across video frames: a greedy IoU tracker.

Each track remembers its last box and a smoothed per-frame velocity.  In every
frame the tracks' predicted boxes (last box moved by velocity times the frames
since it was seen) are matched to the new detections greedily, highest IoU
first, pairs below ``min_iou`` never matching.  A detection left unmatched starts
a new track; a track unmatched for more than ``max_age`` consecutive frames ends.
The velocity keeps two faces that pass each other apart, where matching on last
positions alone would swap them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Iterator, List, NamedTuple, Optional

import numpy as np

from ferkeras.face.detection import FaceDetector, as_image


def box_iou(a, b) -> np.ndarray:
    """Intersection over union, float32 (N, M), of boxes a (N, 4) and b (M, 4) in x0, y0, x1, y1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


@dataclasses.dataclass
class _Track:
    track_id: int
    box: np.ndarray
    velocity: np.ndarray
    misses: int = 0

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.misses + 1)


class IoUTracker:
    """Assigns a persistent integer id to each face box, frame after frame.

    Args:
      min_iou: the least IoU between a track's predicted box and a detection for them to match.
      max_age: how many consecutive frames a track may go undetected before it ends.
      velocity_smoothing: weight of the newest displacement in the track's velocity
        (exponential smoothing); 0 disables motion prediction (plain last-box IoU).

    Call :meth:`update` once per frame, in order, with that frame's boxes.
    """

    def __init__(self, min_iou: float = 0.3, max_age: int = 5, velocity_smoothing: float = 0.5):
        if not 0 < min_iou <= 1:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        if not 0 <= velocity_smoothing <= 1:
            raise ValueError(f"velocity_smoothing must be in [0, 1], got {velocity_smoothing}")
        self.min_iou = float(min_iou)
        self.max_age = int(max_age)
        self.velocity_smoothing = float(velocity_smoothing)
        self.reset()

    def reset(self) -> None:
        """Forgets every track (and restarts ids at 0)."""
        self._tracks: List[_Track] = []
        self._next_id = 0

    @property
    def active_ids(self) -> List[int]:
        """Ids of the tracks still alive (seen within the last ``max_age`` frames)."""
        return [t.track_id for t in self._tracks]

    def update(self, boxes) -> np.ndarray:
        """Matches this frame's boxes (N, 4) to the tracks; returns their ids, int64 (N,)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        matched_tracks = set()
        if self._tracks and len(boxes):
            iou = box_iou(np.stack([t.predicted() for t in self._tracks]), boxes)
            # Greedy: best remaining pair first.
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                ti, di = np.unravel_index(flat, iou.shape)
                if iou[ti, di] < self.min_iou:
                    break
                if ti in matched_tracks or ids[di] >= 0:
                    continue
                track = self._tracks[ti]
                step = (boxes[di] - track.box) / (track.misses + 1)
                a = self.velocity_smoothing
                track.velocity = a * step + (1 - a) * track.velocity
                track.box, track.misses = boxes[di].copy(), 0
                matched_tracks.add(int(ti))
                ids[di] = track.track_id
        survivors = []
        for ti, track in enumerate(self._tracks):
            if ti not in matched_tracks:
                track.misses += 1
            if track.misses <= self.max_age:
                survivors.append(track)
        self._tracks = survivors
        for di in np.flatnonzero(ids < 0):
            self._tracks.append(_Track(self._next_id, boxes[di].copy(), np.zeros(4)))
            ids[di] = self._next_id
            self._next_id += 1
        return ids


class TrackedFrame(NamedTuple):
    """One video frame's faces: frame ``index``, ``timestamp`` (s, NaN if unknown), boxes, scores and track ids."""

    index: int
    timestamp: float
    boxes: np.ndarray
    scores: np.ndarray
    ids: np.ndarray


def track_video(
    frames: Iterable,
    detector: Optional[FaceDetector] = None,
    tracker: Optional[IoUTracker] = None,
) -> Iterator[TrackedFrame]:
    """Detects and tracks faces frame by frame (a generator of :class:`TrackedFrame`).

    Args:
      frames: uint8 RGB images, or :class:`ferkeras.face.video.Frame` items (whose
        index and timestamp are passed on), e.g. from :func:`ferkeras.face.video.iter_frames`.
      detector: a :class:`FaceDetector`; ``FaceDetector()`` (:mod:`ferkeras.face.defaults`) when None.
      tracker: an :class:`IoUTracker`; a new default one when None.
    """
    detector = detector or FaceDetector()
    tracker = tracker or IoUTracker()
    for position, item in enumerate(frames):
        if hasattr(item, "image"):
            index, timestamp, image = item.index, item.timestamp, item.image
        else:
            index, timestamp, image = position, math.nan, item
        boxes, scores = detector(as_image(image))
        yield TrackedFrame(index, timestamp, boxes, scores, tracker.update(boxes))
