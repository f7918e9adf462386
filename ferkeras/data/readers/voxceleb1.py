"""VoxCeleb1 face frames (Nagrani, Chung & Zisserman, "VoxCeleb: a large-scale speaker identification dataset",
Interspeech 2017), for self-supervised temporal sampling.

On disk (the face-track frames, one folder level per identity, YouTube video and clip)::

    input/voxceleb1/<identity>/<youtube id>/<clip>/<frame>.jpg

``<frame>`` is the frame number in the source video (e.g. ``0000375.jpg``); the
frames of a clip are sampled sparsely (the published code of SSL-FER, Shu et al.,
BMVC 2022, treats them as 25/6 fps; see docs/papers.md),
but the number in the name is on the video's own clock, so ``timestamp =
frame / fps`` with ``fps`` the video frame rate (25 by default).  An image whose
name is not a frame number (a stray ``abc.jpg``) is skipped as ``"unnumbered
frame"``, and the clip's other frames keep their numbers and times; an image
that fails the reader's check is ``"missing image"`` / ``"corrupt image"``;
files that are not images are ignored.  VoxCeleb1 has no expression labels:
records carry identity, video (``"<identity>/<youtube id>/<clip>"``), frame and
timestamp.  There is no split
in this layout: ``"train"`` and ``"all"`` both read every clip.

:meth:`VoxCeleb1Reader.tracks` groups the records into timed tracks (one list
per clip, ordered by frame) for TimeAug / HardNeg sampling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List

from ferkeras.data.readers.base import Reader
from ferkeras.data.schema import FaceRecord

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
UNNUMBERED_FRAME = "unnumbered frame"


def _printable(path: Path) -> str:
    """The path as text, a byte of its name that is not UTF-8 shown as ``\\xff``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _frame_number(path: Path):
    """The frame number in an image's name, or None when the name is not a (decimal, ASCII) number."""
    stem = path.stem
    return int(stem) if stem.isascii() and stem.isdigit() else None


def _subdirs(path: Path) -> List[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir())


class VoxCeleb1Reader(Reader):
    """Reads VoxCeleb1 face frames as identity-labelled, timed records.

    Args:
        root, split, verify: see :class:`~ferkeras.data.readers.base.Reader`
            (splits ``"train"`` and ``"all"``, identical here).
        fps: frame rate of the source videos, for ``timestamp = frame / fps``.
    """

    name = "voxceleb1"
    split_names = ("train", "all")
    layout = "  <identity>/<youtube id>/<clip>/<frame number>.jpg"

    def __init__(self, root, split: str = "train", fps: float = 25.0, verify: str = "header"):
        super().__init__(root, split, verify)
        if not fps > 0:
            raise ValueError(f"voxceleb1: fps must be positive, got {fps}")
        self.fps = float(fps)

    def _read(self) -> Iterator[FaceRecord]:
        for identity_dir in _subdirs(self.root):
            for video_dir in _subdirs(identity_dir):
                for clip_dir in _subdirs(video_dir):
                    yield from self._clip(identity_dir.name, clip_dir)

    def _clip(self, identity: str, clip_dir: Path) -> Iterator[FaceRecord]:
        frames = []
        for path in sorted(p for p in clip_dir.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS):
            frame = _frame_number(path)
            if frame is None:
                self.skips.skip(UNNUMBERED_FRAME, _printable(path))
            else:
                frames.append((frame, path.name, path))
        video = "/".join(clip_dir.parts[-3:])
        for frame, _, path in sorted(frames):
            problem = self.image_problem(path)
            if problem:
                self.skips.skip(problem, _printable(path))
                continue
            yield FaceRecord(image_path=str(path), identity=identity, video=video, frame=frame,
                             timestamp=frame / self.fps, dataset=self.name)

    def tracks(self) -> Dict[str, List[FaceRecord]]:
        """Video id -> that clip's records ordered by frame (a full pass; skips are counted)."""
        out: Dict[str, List[FaceRecord]] = {}
        for record in self:
            out.setdefault(record.video, []).append(record)
        for track in out.values():
            track.sort(key=lambda r: r.frame)
        return out
