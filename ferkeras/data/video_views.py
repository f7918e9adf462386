"""Views from timed face tracks for self-supervised learning: an anchor frame, positives near it in time (or in
other people's tracks of the same video), hard negatives far from it in the same track, drawn afresh every epoch
and decoded inside ``tf.data``.

Three papers build their pre-training pairs this way:

* SSL-FER (Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression
  Recognition", BMVC 2022, Sec. 3.2.1 and 3.3): **TimeAug** takes the positive at a time offset ``t1`` drawn from
  a decreasing distribution over ``[0, T1]`` (``T1`` = 1 s), with a random sign; **HardNeg** adds frames of the
  same subject at least ``T2`` = 3 s away as negatives;
* RMFER (Cho et al., "RMFER: Semi-supervised Contrastive Learning for Facial Expression Recognition with Reaction
  Mashup Video", 2024, Sec. 4.2, Eq. 7-8): the positive set is the *other* people's faces in frames within ``d``
  of the anchor, the negative set the same face more than ``d'`` away;
* ContraWarping (Xue, Sun, Yang, CVPRW 2023) makes its views from single images; a table of one-frame tracks with
  :class:`SameFrame` positives gives it the same element.

The pieces
----------
:class:`TrackTable`
    one row per frame: timestamp, track, video, identity, box, 68 landmarks, probe labels and where the pixels are
    (in-memory frames, or image files / encoded bytes decoded in ``tf.data``); rows grouped by track and ordered by
    time.  Built from any reader's records (:meth:`TrackTable.from_records`, :meth:`TrackTable.from_reader`, e.g.
    :class:`~ferkeras.data.readers.voxceleb1.VoxCeleb1Reader`), from synthetic videos
    (:func:`synthetic_video_tracks`, one person per video) or synthetic reaction mashups (:func:`mashup_tracks`,
    several people per video), or from plain arrays (the constructor).
:class:`OffsetDistribution`
    TimeAug's ``P(t1)``: a probability table over offsets in seconds (:meth:`~OffsetDistribution.linear_decay`
    is the default, 5:4:3:2:1 over five equal steps up to ``T1``; :meth:`~OffsetDistribution.from_density` turns
    any callable into a table).
Positive rules
    :class:`TemporalPositive` (TimeAug), :class:`SameFrame` (SimCLR: the second view is the anchor frame itself),
    :class:`CrossTrackPositive` (RMFER: another track of the same video within ``max_offset``).  A rule has two
    methods, ``eligible(table) -> (N,) bool`` and ``draw(table, anchors, count, rng) -> (M, count)`` row indices,
    so a new policy is a small class.
:class:`ViewSampler`
    draws an epoch's plan in NumPy (:meth:`~ViewSampler.plan`): anchors in random order, ``num_positives``
    positives, ``hard_negatives`` negatives and ``num_others`` frames of other people (the identity images FaceSwap
    needs) per anchor, as row indices; and turns plans into ``tf.data`` (:meth:`~ViewSampler.elements`,
    :meth:`~ViewSampler.dataset`), where the map only gathers table columns, decodes and resizes.

The sampling rules, exactly
---------------------------
*Positive offsets (TimeAug).*  Per anchor at time ``ta`` and per positive: draw ``t1`` from the table and a sign
``s`` = +-1 with probability 1/2; the target time is ``ta + s t1``.  **Track ends are reflected**
(``ends="reflect"``, the default): when the target falls outside the track, the other sign is used - so an anchor
near the start takes its positives after it.  An anchor is eligible only when the track extends at least the
largest offset ``T1`` on one side of it (so the reflected target always exists and the offsets keep exactly the
requested distribution); anchors of a track shorter than ``2 T1`` near its middle and every frame of a track shorter
than ``T1`` are skipped and counted.  ``ends="clip"`` instead moves an outside target to the track's last (first)
frame (every frame with a neighbour can anchor; offsets near the ends come out shorter).  The positive is then the
frame nearest to the target among the frames strictly on side ``s`` within ``T1`` of the anchor (ties go to the
frame nearer the anchor): the realised offset lies in ``[-T1, T1] \\ {0}`` and equals ``s t1`` whenever a frame
sits at the target (the offsets on a track's frame grid, e.g. multiples of 0.04 s at 25 fps); an offset of 0 in the
table means the anchor frame itself.
*Hard negatives (HardNeg).*  ``K`` distinct frames drawn uniformly from the frames of the anchor's track with
``|dt| >= T2`` (and ``<= negative_max_offset`` when given); with ``negatives_from="identity"`` also from every other
track of the same (known) identity, SSL-FER's "same subject".  Anchors with fewer than ``K`` candidates are skipped
and counted.
*Cross-track positives (RMFER).*  Drawn uniformly from the union of the frames of the video's other tracks within
``max_offset`` of the anchor (Eq. 7's set P), distinct when ``count`` > 1.
*Others.*  ``num_others`` frames drawn uniformly (with replacement) from the rows of other identities (other tracks
where the identity is unknown).
*Multi-positive.*  ``num_positives = P`` > 1 draws P positives per anchor (independent offsets for TimeAug;
distinct frames for the cross-track rule) and the element carries ``"positives"`` ``(P, S, S, 3)`` instead of
``"positive"``: RMFER's multi-positive set is ``ViewSampler(table, CrossTrackPositive(0.2), num_positives=P,
hard_negatives=N, negative_min_offset=1.2)`` (``d`` = 5 and ``d'`` = 30 frames at 25 fps).

Every epoch is a new plan
-------------------------
A plan is a pure function of ``(seed, epoch key)`` (``numpy.random.default_rng([seed, key])``).
:meth:`ViewSampler.elements` with ``epochs=n`` holds ``n`` epochs and draws their keys from
``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``: each pass over the dataset (each Keras epoch)
gets fresh pairs, and two datasets built with the same seed (and the same TensorFlow global seed) give the same
sequence of passes.  ``epochs=None`` is an endless stream of the epochs ``first_epoch, first_epoch + 1, ...`` whose
keys are their indices - independent of TensorFlow's global seed, so a training stream can be rebuilt from any
epoch (exact resumes).  Within an epoch the anchors come in a random order (no shuffle buffer needed).

Statistics
----------
:class:`ViewStats` (``sampler.stats``) counts, by reason, the tracks that cannot give a single anchor and the
frames of the kept tracks that cannot anchor; the table's ``skips`` count the rows dropped while building it (no
timestamp, duplicate timestamp, no video).  Frames that fail to decode in ``tf.data`` drop their element and are
counted in a :class:`~ferkeras.data.elements.PipelineStats`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from ferkeras.data.elements import AUTOTUNE, PipelineStats, counted_map
from ferkeras.data.image_ops import crop_and_resize_face, decode_image, square_crop_box
from ferkeras.data.schema import MISSING_INT, NUM_LANDMARKS, FaceRecord, SkipCounter
from ferkeras.face.defaults import FACE_MARGIN

logger = logging.getLogger("ferkeras.data.video_views")

NO_TIMESTAMP = "no timestamp"
DUPLICATE_TIMESTAMP = "duplicate timestamp in its track"
NO_VIDEO = "no video (a still image is not a track)"

_US = 1_000_000            # search keys count microseconds
_TRACK_SPAN = 1 << 40      # key space of one track (2^40 us, about 12.7 days)
_EPS = 1e-6                # seconds: tolerance of time comparisons


# ---------------------------------------------------------------------------------------------------------------
# The table of frames
# ---------------------------------------------------------------------------------------------------------------

def _codes(values, unknown=("", "-1", "None", "nan")) -> Tuple[np.ndarray, Tuple[str, ...]]:
    """Strings -> (int32 codes into the sorted unique names, names); ``unknown`` spellings -> -1."""
    values = np.asarray([str(v) for v in values], dtype=object)
    known = np.array([v not in unknown for v in values], bool)
    names, inverse = np.unique(values[known].astype(str), return_inverse=True) if known.any() else (
        np.zeros((0,), str), np.zeros((0,), np.int64))
    codes = np.full(len(values), -1, np.int32)
    codes[known] = inverse.astype(np.int32)
    return codes, tuple(str(n) for n in names)


class TrackTable:
    """Frames of timed face tracks, one row per frame, grouped by track and ordered by time within a track.

    Args (one value per frame, in any order; the table sorts them):
      timestamp: seconds on the video's clock (rows with NaN are skipped and counted).
      track: track name (str or int) - one face followed through one video.
      identity: person (str; ``""`` or ``-1`` = unknown); must be constant within a track.
      video: video name (default: the track); tracks of one video share its clock (several people per video).
      frame: frame number (default -1).
      pixels, pixel_index: in-memory frames uint8 ``(F, H, W, 3)`` and each row's index into them (default: row
        ``i`` is frame ``i``); several rows may share a frame (the people of a mashup).
      image_path / image_bytes: instead of pixels, each row's image file (decoded in ``tf.data``) or encoded
        JPEG/PNG bytes; ``""`` / ``b""`` where the other is used.
      box: face box ``(N, 4)`` x0, y0, x1, y1 in pixels of the frame (NaN: the whole frame).
      landmarks: ``(N, 68, 2)`` dlib points in pixels of the frame (NaN: unknown).
      expression (-1 unknown), valence, arousal (NaN unknown): probe labels.
      name: for messages and counters.

    Attributes (NumPy, N rows after sorting): ``timestamp`` float64, ``track`` / ``video`` / ``identity`` /
    ``frame`` / ``expression`` int32 codes (``identity`` -1 = unknown), ``box``, ``landmarks``, ``valence``,
    ``arousal``; ``pixels`` + ``pixel_index`` or ``image_path`` (+ ``image_bytes``); per track: ``track_names``,
    ``track_start`` ``(T + 1,)`` (rows of track ``k`` are ``track_start[k]:track_start[k + 1]``),
    ``track_video``, ``track_identity``; ``identity_names``, ``video_names``; ``skips`` (rows dropped, by reason).
    """

    def __init__(self, timestamp, track, *, identity=None, video=None, frame=None, pixels=None, pixel_index=None,
                 image_path=None, image_bytes=None, box=None, landmarks=None, expression=None, valence=None,
                 arousal=None, name: str = "tracks"):
        self.name = name
        self.skips = SkipCounter(f"{name} frames")
        timestamp = np.asarray(timestamp, np.float64).reshape(-1)
        n = len(timestamp)
        track = np.asarray(track).reshape(-1)

        def column(values, fill, dtype, shape=()):
            if values is None:
                return np.full((n,) + shape, fill, dtype)
            values = np.asarray(values, dtype)
            if values.shape != (n,) + shape:
                raise ValueError(f"{name}: a column has shape {values.shape}, expected {(n,) + shape}")
            return values

        if len(track) != n:
            raise ValueError(f"{name}: {len(track)} track names for {n} timestamps")
        if pixels is None and image_path is None and image_bytes is None:
            raise ValueError(f"{name}: give the frames as pixels (in memory) or as image_path / image_bytes")
        if pixels is not None and (image_path is not None or image_bytes is not None):
            raise ValueError(f"{name}: give pixels or image files, not both")
        cols = {
            "identity": column(None if identity is None else [str(v) for v in np.asarray(identity).reshape(-1)],
                               "", object),
            "video": column(None if video is None else [str(v) for v in np.asarray(video).reshape(-1)], "", object),
            "frame": column(frame, MISSING_INT, np.int64).astype(np.int32),
            "box": column(box, np.nan, np.float32, (4,)),
            "landmarks": column(landmarks, np.nan, np.float32, (NUM_LANDMARKS, 2)),
            "expression": column(expression, MISSING_INT, np.int64).astype(np.int32),
            "valence": column(valence, np.nan, np.float32),
            "arousal": column(arousal, np.nan, np.float32),
        }
        track_str = np.asarray([str(t) for t in track], dtype=object)
        if video is None:
            cols["video"] = track_str.copy()
        if pixels is not None:
            pixels = np.asarray(pixels)
            if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
                raise ValueError(f"{name}: pixels must be uint8 (F, H, W, 3), got {pixels.dtype} {pixels.shape}")
            cols["pixel_index"] = column(np.arange(n) if pixel_index is None else pixel_index, 0, np.int64)
            if n and (cols["pixel_index"].min() < 0 or cols["pixel_index"].max() >= len(pixels)):
                raise ValueError(f"{name}: pixel_index outside the {len(pixels)} frames given")
        else:
            cols["image_path"] = column(image_path, "", object)
            cols["image_bytes"] = column(image_bytes, b"", object)
            both = np.array([bool(p) == bool(b) for p, b in zip(cols["image_path"], cols["image_bytes"])], bool)
            if both.any():
                raise ValueError(f"{name}: row {int(np.flatnonzero(both)[0])} needs exactly one of image_path "
                                 f"or image_bytes")

        keep = np.isfinite(timestamp)
        for i in np.flatnonzero(~keep):
            self.skips.skip(NO_TIMESTAMP, f"{track_str[i]} row {i}")
        track_codes, track_names = _codes(track_str, unknown=())
        order = np.flatnonzero(keep)
        order = order[np.lexsort((timestamp[order], track_codes[order]))]
        duplicate = np.zeros(len(order), bool)
        if len(order) > 1:
            duplicate[1:] = ((track_codes[order][1:] == track_codes[order][:-1])
                             & (timestamp[order][1:] == timestamp[order][:-1]))
        for i in order[duplicate]:
            self.skips.skip(DUPLICATE_TIMESTAMP, f"{track_str[i]} at {timestamp[i]:.6g} s")
        order = order[~duplicate]
        self.skips.read = len(order)

        # Re-code the tracks that kept rows, in sorted name order.
        self.timestamp = timestamp[order]
        track_codes, self.track_names = _codes(track_str[order], unknown=())
        self.track = track_codes
        self.identity, self.identity_names = _codes(cols["identity"][order])
        self.video, self.video_names = _codes(cols["video"][order], unknown=())
        for key in ("frame", "box", "landmarks", "expression", "valence", "arousal"):
            setattr(self, key, cols[key][order])
        self.pixels = pixels
        self.pixel_index = cols["pixel_index"][order] if pixels is not None else None
        self.image_path = cols["image_path"][order] if pixels is None else None
        self.image_bytes = cols["image_bytes"][order] if pixels is None else None

        num_tracks = len(self.track_names)
        self.track_start = np.searchsorted(self.track, np.arange(num_tracks + 1)).astype(np.int64)
        first = self.track_start[:-1]
        self.track_video = self.video[first] if num_tracks else np.zeros((0,), np.int32)
        self.track_identity = self.identity[first] if num_tracks else np.zeros((0,), np.int32)
        mixed = self.identity != self.track_identity[self.track] if len(self) else np.zeros((0,), bool)
        if mixed.any():
            k = int(self.track[np.flatnonzero(mixed)[0]])
            raise ValueError(f"{name}: track '{self.track_names[k]}' mixes identities; a track follows one face")
        mixed = self.video != self.track_video[self.track] if len(self) else np.zeros((0,), bool)
        if mixed.any():
            k = int(self.track[np.flatnonzero(mixed)[0]])
            raise ValueError(f"{name}: track '{self.track_names[k]}' spans several videos")
        self._track_first_time = self.timestamp[first] if num_tracks else np.zeros((0,), np.float64)
        local = np.round((self.timestamp - self._track_first_time[self.track]) * _US).astype(np.int64) + 1
        if len(local) and local.max() >= _TRACK_SPAN - 1:
            raise ValueError(f"{name}: a track lasts more than {(_TRACK_SPAN - 2) / _US:.0f} s")
        self._keys = self.track.astype(np.int64) * _TRACK_SPAN + local

    # ---- sizes and properties ----
    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def num_tracks(self) -> int:
        return len(self.track_names)

    @property
    def in_memory(self) -> bool:
        """True when the frames are in-memory pixels (else image files / bytes decoded in tf.data)."""
        return self.pixels is not None

    @property
    def has_labels(self) -> bool:
        """Whether any row has an expression or a valence-arousal label."""
        return bool(np.any(self.expression >= 0) or np.any(np.isfinite(self.valence)))

    @property
    def has_landmarks(self) -> bool:
        return bool(np.any(np.all(np.isfinite(self.landmarks), axis=(1, 2))))

    def track_rows(self, rows) -> Tuple[np.ndarray, np.ndarray]:
        """First and last row of the track of each row in ``rows``."""
        k = self.track[rows]
        return self.track_start[k], self.track_start[k + 1] - 1

    def durations(self) -> np.ndarray:
        """(T,) seconds from each track's first to its last frame."""
        first, last = self.track_start[:-1], self.track_start[1:] - 1
        return self.timestamp[last] - self.timestamp[first]

    # ---- time search (vectorised; int64 microsecond keys, exact and monotone) ----
    def _key(self, tracks, times) -> np.ndarray:
        tracks = np.asarray(tracks, np.int64)
        local = np.round((np.asarray(times, np.float64) - self._track_first_time[tracks]) * _US) + 1
        return tracks * _TRACK_SPAN + np.clip(local, 0, _TRACK_SPAN - 1).astype(np.int64)

    def first_at_or_after(self, tracks, times) -> np.ndarray:
        """Row of each track's first frame with timestamp >= time (the track's end + 1 when there is none)."""
        return np.searchsorted(self._keys, self._key(tracks, times), side="left").astype(np.int64)

    def last_at_or_before(self, tracks, times) -> np.ndarray:
        """Row of each track's last frame with timestamp <= time (the track's start - 1 when there is none)."""
        return np.searchsorted(self._keys, self._key(tracks, times), side="right").astype(np.int64) - 1

    def summary(self) -> str:
        d = self.durations()
        span = f", {d.min():.2f}-{d.max():.2f} s per track" if len(d) else ""
        return (f"{self.name}: {len(self)} frames in {self.num_tracks} tracks of {len(self.video_names)} videos, "
                f"{len(self.identity_names)} identities{span}; "
                f"{'in memory' if self.in_memory else 'image files'}, "
                f"{'with' if self.has_landmarks else 'no'} landmarks, {'with' if self.has_labels else 'no'} labels")

    def __repr__(self):
        return f"TrackTable({self.summary()})"

    # ---- constructors ----
    @classmethod
    def from_records(cls, records: Iterable[FaceRecord], *, name: str = "tracks") -> "TrackTable":
        """Records with ``video`` and ``timestamp`` (any reader) -> table; a track is one (video, identity) pair.

        A track is named after its video when the video holds one identity, else ``"<video>|<identity>"``.
        Records without a video are skipped and counted (``skips``), as are those without a timestamp.
        """
        records = list(records)
        kept = [r for r in records if r.video]
        people = collections.defaultdict(set)
        for r in kept:
            people[r.video].add(r.identity)
        tracks = [r.video if len(people[r.video]) == 1 else f"{r.video}|{r.identity}" for r in kept]
        table = cls._from_kept(kept, tracks, name)
        for r in records:
            if not r.video:
                table.skips.skip(NO_VIDEO, r.image_path or r.dataset)
        return table

    @classmethod
    def from_tracks(cls, tracks: Mapping[str, Sequence[FaceRecord]], *, name: str = "tracks") -> "TrackTable":
        """``{track name: records}`` (e.g. :meth:`VoxCeleb1Reader.tracks`) -> table."""
        kept, names = [], []
        for track, recs in tracks.items():
            kept.extend(recs)
            names.extend([track] * len(recs))
        return cls._from_kept(kept, names, name)

    @classmethod
    def from_reader(cls, reader, *, name: Optional[str] = None) -> "TrackTable":
        """A reader's tracks: its ``tracks()`` when it has one (VoxCeleb1), else :meth:`from_records` over it."""
        name = name or getattr(reader, "name", "") or "tracks"
        if hasattr(reader, "tracks"):
            return cls.from_tracks(reader.tracks(), name=name)
        return cls.from_records(reader, name=name)

    @classmethod
    def _from_kept(cls, records: List[FaceRecord], tracks: List[str], name: str) -> "TrackTable":
        if not records:
            raise ValueError(f"{name}: no records with a video (did the reader skip everything?)")
        has_bytes = any(r.image_bytes for r in records)
        return cls(
            timestamp=[r.timestamp for r in records], track=tracks, identity=[r.identity for r in records],
            video=[r.video for r in records], frame=[r.frame for r in records],
            image_path=[r.image_path for r in records],
            image_bytes=[r.image_bytes for r in records] if has_bytes else None,
            box=np.stack([r.box for r in records]), landmarks=np.stack([r.landmarks for r in records]),
            expression=[r.expression for r in records], valence=[r.valence for r in records],
            arousal=[r.arousal for r in records], name=name)


# ---------------------------------------------------------------------------------------------------------------
# Synthetic tracks
# ---------------------------------------------------------------------------------------------------------------

def synthetic_video_tracks(num_identities: int = 8, videos_per_identity: int = 2, seconds: float = 8.0,
                           fps: float = 10.0, size: int = 64, seed: int = 0, first_identity: int = 0,
                           name: str = "synthetic videos") -> TrackTable:
    """Renders synthetic videos (:func:`ferkeras.data.synthetic.render_video`) into an in-memory table.

    ``num_identities`` people ``id{first_identity}`` ... (appearance fixed by the index, so identity ranges make
    disjoint splits), ``videos_per_identity`` videos each of ``seconds`` at ``fps``, frames ``size`` x ``size``
    (the whole frame is the face crop: no box).  Every row carries exact landmarks, the expression category and
    valence-arousal of its frame, its identity, video (= track) and timestamp.  Deterministic given ``seed``.
    """
    from ferkeras.data.synthetic import identity_pool, render_video

    if num_identities < 1 or videos_per_identity < 1:
        raise ValueError(f"need num_identities and videos_per_identity >= 1, got {num_identities}, "
                         f"{videos_per_identity}")
    num_frames = int(round(seconds * fps))
    if num_frames < 1:
        raise ValueError(f"seconds * fps must give at least one frame, got {seconds} s at {fps} fps")
    faces = []
    for k, person in enumerate(identity_pool(num_identities, first_identity)):
        for v in range(videos_per_identity):
            video_seed = (seed * 1_000_003 + (first_identity + k) * 997 + v) % (2 ** 31)
            faces.extend(render_video(person, num_frames, fps=fps, size=size, seed=video_seed,
                                      video_id=f"{person.identity_id}/v{v}"))
    return TrackTable(
        timestamp=[f.timestamp for f in faces], track=[f.video for f in faces], identity=[f.identity for f in faces],
        frame=[f.frame for f in faces], pixels=np.stack([f.image for f in faces]),
        landmarks=np.stack([f.landmarks for f in faces]), expression=[f.expression for f in faces],
        valence=[f.valence for f in faces], arousal=[f.arousal for f in faces], name=name)


def mashup_tracks(num_videos: int = 2, num_people: int = 3, seconds: float = 6.0, fps: float = 10.0,
                  frame_size: Tuple[int, int] = (240, 426), seed: int = 0, name: str = "synthetic mashups"
                  ) -> TrackTable:
    """Renders reaction-mashup clips (:func:`ferkeras.data.synthetic.render_mashup`) into an in-memory table.

    One track per person and clip, named ``"mashup<v>/<face id>"``, in video ``"mashup<v>"``; rows of one
    instant share the canvas (``pixel_index``) and are cut out by their face box.  Labels and landmarks exact.
    """
    from ferkeras.data.synthetic import render_mashup

    num_frames = int(round(seconds * fps))
    canvases, cols = [], collections.defaultdict(list)
    for v in range(num_videos):
        clip = render_mashup(num_people, num_frames, fps=fps, frame_size=frame_size,
                             seed=(seed * 1009 + v) % (2 ** 31))
        offset = sum(len(c) for c in canvases)
        canvases.append(clip.frames)
        for person in clip.people:
            t = np.arange(num_frames)
            cols["timestamp"].append(t / fps)
            cols["track"].extend([f"mashup{v}/{person.face_id}"] * num_frames)
            cols["video"].extend([f"mashup{v}"] * num_frames)
            cols["identity"].extend([person.face_id] * num_frames)
            cols["frame"].append(t)
            cols["pixel_index"].append(offset + t)
            cols["box"].append(person.boxes)
            cols["landmarks"].append(person.landmarks)
            cols["expression"].append(person.expression)
            cols["valence"].append(person.valence)
            cols["arousal"].append(person.arousal)
    cat = {k: (np.concatenate(v) if isinstance(v[0], np.ndarray) else v) for k, v in cols.items()}
    return TrackTable(pixels=np.concatenate(canvases), name=name, **cat)


# ---------------------------------------------------------------------------------------------------------------
# TimeAug's offset distribution
# ---------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class OffsetDistribution:
    """A probability table over time offsets in seconds: TimeAug's ``P(t1)`` on ``[0, T1]``.

    Args:
      offsets: the offsets (seconds, >= 0, distinct); 0 means the anchor frame itself.
      weights: their relative probabilities (>= 0, normalised here).
    """

    offsets: Tuple[float, ...]
    weights: Tuple[float, ...]

    def __post_init__(self):
        offsets = np.asarray(self.offsets, np.float64).reshape(-1)
        weights = np.asarray(self.weights, np.float64).reshape(-1)
        if len(offsets) == 0 or offsets.shape != weights.shape:
            raise ValueError(f"need as many offsets as weights (at least one), got {self.offsets}, {self.weights}")
        if np.any(~np.isfinite(offsets)) or np.any(offsets < 0) or len(np.unique(offsets)) != len(offsets):
            raise ValueError(f"offsets must be distinct finite seconds >= 0, got {self.offsets}")
        if np.any(~np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {self.weights}")
        order = np.argsort(offsets)
        object.__setattr__(self, "offsets", tuple(float(x) for x in offsets[order]))
        object.__setattr__(self, "weights", tuple(float(x) for x in weights[order] / weights.sum()))

    @property
    def probabilities(self) -> np.ndarray:
        return np.asarray(self.weights, np.float64)

    @property
    def max_offset(self) -> float:
        """The largest offset with a positive probability (``T1``)."""
        offsets = np.asarray(self.offsets)
        return float(offsets[self.probabilities > 0].max())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n,) offsets in seconds drawn from the table."""
        cdf = np.cumsum(self.probabilities)
        idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)
        return np.asarray(self.offsets)[idx]

    @classmethod
    def linear_decay(cls, max_offset: float = 1.0, steps: int = 5) -> "OffsetDistribution":
        """Offsets ``k T1 / steps`` (k = 1 .. steps) with weights ``steps + 1 - k``: nearer is likelier.

        The default (1 s, 5 steps: 0.2, 0.4, ... 1.0 s weighted 5:4:3:2:1) is the authors' 5:4:3:2:1 over
        ``T1`` = 1 s (Shu et al., BMVC 2022, Sec. 3.2.1).
        """
        if max_offset <= 0 or steps < 1:
            raise ValueError(f"need max_offset > 0 and steps >= 1, got {max_offset}, {steps}")
        k = np.arange(1, steps + 1)
        return cls(tuple(k * max_offset / steps), tuple(steps + 1 - k))

    @classmethod
    def authors_voxceleb1(cls) -> "OffsetDistribution":
        """The SSL-FER code's table on VoxCeleb1's frames (25/6 fps): 2-6 frames (0.48-1.44 s) weighted 5:4:3:2:1."""
        k = np.arange(2, 7)
        return cls(tuple(k * 6 / 25), (5, 4, 3, 2, 1))

    @classmethod
    def from_density(cls, density: Callable[[np.ndarray], np.ndarray], max_offset: float = 1.0,
                     step: float = 0.04, include_zero: bool = False) -> "OffsetDistribution":
        """Any density over offsets, tabulated at ``step, 2 step, ..., max_offset`` (and 0 when ``include_zero``)."""
        if step <= 0 or max_offset < step:
            raise ValueError(f"need 0 < step <= max_offset, got step={step}, max_offset={max_offset}")
        grid = np.arange(1, int(math.floor(max_offset / step + 1e-9)) + 1) * step
        if include_zero:
            grid = np.concatenate([[0.0], grid])
        return cls(tuple(grid), tuple(np.asarray(density(grid), np.float64).reshape(-1)))

    @classmethod
    def zero(cls) -> "OffsetDistribution":
        """Always 0: the positive is the anchor frame itself (SimCLR)."""
        return cls((0.0,), (1.0,))


OffsetsLike = Union[OffsetDistribution, Mapping[float, float], Callable[[np.ndarray], np.ndarray]]


def as_offset_distribution(offsets: OffsetsLike, max_offset: float = 1.0, step: float = 0.04) -> OffsetDistribution:
    """An :class:`OffsetDistribution` from itself, a ``{offset: weight}`` table, or a density callable (tabulated
    on ``step, ..., max_offset`` by :meth:`OffsetDistribution.from_density`)."""
    if isinstance(offsets, OffsetDistribution):
        return offsets
    if isinstance(offsets, Mapping):
        return OffsetDistribution(tuple(offsets.keys()), tuple(offsets.values()))
    if callable(offsets):
        return OffsetDistribution.from_density(offsets, max_offset, step)
    raise TypeError(f"offsets must be an OffsetDistribution, a {{offset: weight}} mapping or a callable, "
                    f"got {type(offsets).__name__}")


# ---------------------------------------------------------------------------------------------------------------
# Drawing from unions of row ranges (vectorised over anchors)
# ---------------------------------------------------------------------------------------------------------------

def choose_ranks(rng: np.random.Generator, counts: np.ndarray, k: int, replace: bool) -> np.ndarray:
    """(M, k) ranks drawn uniformly from ``[0, counts[m])``; without replacement (Floyd's algorithm, uniform over
    k-subsets; needs ``counts >= k``) unless ``replace``.  Rows with ``counts == 0`` get 0."""
    counts = np.asarray(counts, np.int64)
    m = len(counts)
    out = np.zeros((m, k), np.int64)
    if replace:
        ranks = np.floor(rng.random((m, k)) * counts[:, None]).astype(np.int64)
        return np.minimum(ranks, np.maximum(counts - 1, 0)[:, None])
    if np.any((counts < k) & (counts > 0)):
        raise ValueError("choose_ranks: fewer candidates than draws without replacement")
    for j in range(k):
        n_j = counts - k + j + 1                           # Floyd: draw from [0, c - k + j]
        t = np.minimum(np.floor(rng.random(m) * n_j).astype(np.int64), np.maximum(n_j - 1, 0))
        taken = np.any(out[:, :j] == t[:, None], axis=1) if j else np.zeros(m, bool)
        out[:, j] = np.where(taken, n_j - 1, t)
    return np.where(counts[:, None] > 0, out, 0)


def draw_from_ranges(rng: np.random.Generator, starts: np.ndarray, counts: np.ndarray, k: int, replace: bool,
                     maps: Optional[Sequence[Optional[np.ndarray]]] = None) -> np.ndarray:
    """(M, k) rows drawn uniformly from the union of ``R`` ranges per anchor.

    ``starts``, ``counts``: (M, R); range ``r`` of anchor ``m`` holds positions ``starts[m, r] ...
    starts[m, r] + counts[m, r] - 1``, mapped to rows by ``maps[r]`` (None: positions are rows).
    """
    starts, counts = np.asarray(starts, np.int64), np.maximum(np.asarray(counts, np.int64), 0)
    total = counts.sum(axis=1)
    ranks = choose_ranks(rng, total, k, replace)                            # (M, k)
    ends = np.cumsum(counts, axis=1)                                        # (M, R)
    which = np.sum(ranks[:, :, None] >= ends[:, None, :], axis=2)           # (M, k) range index
    which = np.minimum(which, counts.shape[1] - 1)
    before = np.take_along_axis(ends - counts, which, axis=1)
    pos = np.take_along_axis(starts, which, axis=1) + ranks - before
    if maps is None:
        return pos
    rows = pos.copy()
    for r, mapping in enumerate(maps):
        if mapping is not None:
            sel = which == r
            rows[sel] = mapping[np.clip(pos[sel], 0, len(mapping) - 1)]
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Positive rules
# ---------------------------------------------------------------------------------------------------------------

class PositiveRule:
    """How an anchor's positives are chosen.  Subclasses implement :meth:`eligible` and :meth:`draw` and set the
    two skip reasons; ``same_frame`` tells the loader the positive is the anchor frame (decoded once)."""

    same_frame = False
    track_reason = "no positive"
    anchor_reason = "no positive"

    def eligible(self, table: TrackTable, count: int = 1) -> np.ndarray:
        """(N,) bool: rows that can anchor (that can have ``count`` positives)."""
        raise NotImplementedError

    def draw(self, table: TrackTable, anchors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """(M, count) rows: the positives of ``anchors`` (all eligible)."""
        raise NotImplementedError


class SameFrame(PositiveRule):
    """The positive is the anchor frame itself (SimCLR: two augmentations of one image)."""

    same_frame = True

    def eligible(self, table, count=1):
        return np.ones(len(table), bool)

    def draw(self, table, anchors, count, rng):
        return np.repeat(np.asarray(anchors, np.int64)[:, None], count, axis=1)

    def __repr__(self):
        return "SameFrame()"


class TemporalPositive(PositiveRule):
    """TimeAug (Shu et al., BMVC 2022, Sec. 3.2.1): a frame of the anchor's track at a drawn offset, random sign.

    Args:
      offsets: ``P(t1)``: an :class:`OffsetDistribution`, a ``{seconds: weight}`` table or a density callable
        (tabulated on ``step`` up to ``max_offset``); default :meth:`OffsetDistribution.linear_decay` (T1 = 1 s,
        5:4:3:2:1).
      ends: ``"reflect"`` (default) or ``"clip"``; see the module docstring.
      max_offset, step: only for a callable ``offsets``.
    """

    def __init__(self, offsets: Optional[OffsetsLike] = None, ends: str = "reflect", max_offset: float = 1.0,
                 step: float = 0.04):
        if ends not in ("reflect", "clip"):
            raise ValueError(f"ends must be 'reflect' or 'clip', got {ends!r}")
        self.offsets = OffsetDistribution.linear_decay() if offsets is None else as_offset_distribution(
            offsets, max_offset, step)
        self.ends = ends
        t1 = self.offsets.max_offset
        self.track_reason = f"shorter than the largest positive offset ({t1:g} s)"
        self.anchor_reason = (f"less than {t1:g} s of track on either side" if ends == "reflect"
                              else "no other frame within the largest positive offset")

    def __repr__(self):
        return f"TemporalPositive(offsets={self.offsets}, ends={self.ends!r})"

    def _sides(self, table, rows):
        t1 = self.offsets.max_offset
        lo, hi = table.track_rows(rows)
        ta, k = table.timestamp[rows], table.track[rows]
        plus_hi = np.minimum(table.last_at_or_before(k, ta + t1), hi)
        minus_lo = np.maximum(table.first_at_or_after(k, ta - t1), lo)
        return dict(lo=lo, hi=hi, ta=ta, plus_hi=plus_hi, minus_lo=minus_lo, has_plus=plus_hi >= rows + 1,
                    has_minus=minus_lo <= rows - 1, room_plus=table.timestamp[hi] - ta,
                    room_minus=ta - table.timestamp[lo])

    def eligible(self, table, count=1):
        if self.offsets.max_offset == 0:
            return np.ones(len(table), bool)
        rows = np.arange(len(table))
        s = self._sides(table, rows)
        if self.ends == "clip":
            return s["has_plus"] | s["has_minus"]
        t1 = self.offsets.max_offset
        return ((s["has_plus"] & (s["room_plus"] >= t1 - _EPS))
                | (s["has_minus"] & (s["room_minus"] >= t1 - _EPS)))

    def draw(self, table, anchors, count, rng):
        anchors = np.asarray(anchors, np.int64)
        m = len(anchors)
        s = self._sides(table, anchors)
        t = table.timestamp
        out = np.empty((m, count), np.int64)
        for c in range(count):
            t1 = self.offsets.sample(rng, m)
            sign = np.where(rng.random(m) < 0.5, 1, -1)
            if self.ends == "reflect":
                ok_plus = s["has_plus"] & (s["room_plus"] >= t1 - _EPS)
                ok_minus = s["has_minus"] & (s["room_minus"] >= t1 - _EPS)
            else:
                ok_plus, ok_minus = s["has_plus"], s["has_minus"]
            sign = np.where((sign > 0) & ~ok_plus, -1, np.where((sign < 0) & ~ok_minus, 1, sign))
            target = s["ta"] + sign * t1
            if self.ends == "clip":
                target = np.clip(target, t[s["lo"]], t[s["hi"]])
            # The frame nearest to the target, strictly on side `sign`, within T1 of the anchor.
            r_lo = np.where(sign > 0, anchors + 1, s["minus_lo"])
            r_hi = np.where(sign > 0, s["plus_hi"], anchors - 1)
            after = table.first_at_or_after(table.track[anchors], target)
            c1, c2 = np.clip(after - 1, r_lo, r_hi), np.clip(after, r_lo, r_hi)
            e1, e2 = np.abs(t[c1] - target), np.abs(t[c2] - target)
            nearer_anchor = np.abs(t[c2] - s["ta"]) < np.abs(t[c1] - s["ta"])
            pick = np.where((e2 < e1 - 1e-9) | ((np.abs(e2 - e1) <= 1e-9) & nearer_anchor), c2, c1)
            out[:, c] = np.where(t1 == 0, anchors, pick)
        return out


class CrossTrackPositive(PositiveRule):
    """RMFER's positives (Cho et al. 2024, Eq. 7): frames of the OTHER tracks of the anchor's video (other people
    watching the same film) within ``max_offset`` seconds of the anchor, drawn uniformly from that set.

    Args:
      max_offset: ``d`` in seconds (RMFER: 5 frames, 0.2 s at 25 fps).
      different_identity: exclude tracks of the anchor's own (known) identity.
      distinct: with several positives per anchor, draw distinct frames (anchors with fewer candidates are
        skipped); False draws with replacement.
    """

    def __init__(self, max_offset: float = 0.2, different_identity: bool = True, distinct: bool = True):
        if max_offset < 0:
            raise ValueError(f"max_offset must be >= 0, got {max_offset}")
        self.max_offset = float(max_offset)
        self.different_identity = bool(different_identity)
        self.distinct = bool(distinct)
        self.track_reason = f"no other track of its video within {self.max_offset:g} s"
        self.anchor_reason = f"too few frames of other tracks of its video within {self.max_offset:g} s"

    def __repr__(self):
        return f"CrossTrackPositive(max_offset={self.max_offset:g}, different_identity={self.different_identity})"

    def _ranges(self, table, rows):
        """(M, L) starts and counts of the window on each other track of the video."""
        by_video = collections.defaultdict(list)
        for k in range(table.num_tracks):
            by_video[int(table.track_video[k])].append(k)
        width = max((len(v) for v in by_video.values()), default=1)
        others = np.full((table.num_tracks, width), -1, np.int64)
        for k in range(table.num_tracks):
            mates = [o for o in by_video[int(table.track_video[k])] if o != k and not (
                self.different_identity and table.track_identity[k] >= 0
                and table.track_identity[o] == table.track_identity[k])]
            others[k, :len(mates)] = mates
        cand = others[table.track[rows]]                                    # (M, L)
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        ta = table.timestamp[rows][:, None]
        lo = table.first_at_or_after(safe, np.broadcast_to(ta - self.max_offset - _EPS, safe.shape))
        hi = table.last_at_or_before(safe, np.broadcast_to(ta + self.max_offset + _EPS, safe.shape))
        lo = np.maximum(lo, table.track_start[safe])
        hi = np.minimum(hi, table.track_start[safe + 1] - 1)
        return lo, np.where(valid, np.maximum(hi - lo + 1, 0), 0)

    def eligible(self, table, count=1):
        _, counts = self._ranges(table, np.arange(len(table)))
        return counts.sum(axis=1) >= (count if self.distinct else 1)

    def draw(self, table, anchors, count, rng):
        starts, counts = self._ranges(table, np.asarray(anchors, np.int64))
        return draw_from_ranges(rng, starts, counts, count, replace=not self.distinct)


# ---------------------------------------------------------------------------------------------------------------
# The sampler
# ---------------------------------------------------------------------------------------------------------------

class ViewStats:
    """Why tracks and frames do not anchor, by reason (counts of one :class:`ViewSampler`'s table; fixed at build).

    ``tracks``: a :class:`~ferkeras.data.schema.SkipCounter`; ``read`` = tracks with at least one anchor,
    ``counts`` = tracks without any, by the first requirement none of their frames meets.  ``anchors``: ``read`` =
    anchor frames per epoch, ``counts`` = frames of the kept tracks that cannot anchor, by the first requirement
    they miss (and frames left out by ``anchors_per_track``).  ``frames``: the table's own skips.
    """

    def __init__(self, name: str, frames: SkipCounter):
        self.tracks = SkipCounter(f"{name} tracks")
        self.anchors = SkipCounter(f"{name} anchors")
        self.frames = frames

    def as_dict(self) -> Dict[str, int]:
        out = {"tracks used": self.tracks.read, "anchors per epoch": self.anchors.read}
        out.update({f"tracks skipped: {k}": int(v) for k, v in sorted(self.tracks.counts.items())})
        out.update({f"frames not anchoring: {k}": int(v) for k, v in sorted(self.anchors.counts.items())})
        out.update({f"frames dropped: {k}": int(v) for k, v in sorted(self.frames.counts.items())})
        return out

    def summary(self) -> str:
        return "\n".join([self.frames.summary(), self.tracks.summary(), self.anchors.summary()])

    def report(self) -> None:
        logger.info(self.summary())


ANCHORS_PER_TRACK_REASON = "left out by anchors_per_track (drawn afresh each epoch)"


class ViewSampler:
    """Draws, every epoch, an anchor's positives, hard negatives and other people's frames from a track table.

    Args:
      table: a :class:`TrackTable`.
      positive: a :class:`PositiveRule` - :class:`TemporalPositive` (TimeAug; the default, None, is T1 = 1 s
        weighted 5:4:3:2:1), :class:`SameFrame` (SimCLR) or :class:`CrossTrackPositive` (RMFER) - or an
        :class:`OffsetDistribution` / ``{seconds: weight}`` table / density, wrapped in :class:`TemporalPositive`.
      num_positives: positives per anchor (P > 1: the multi-positive element, key ``"positives"``).
      hard_negatives: ``K``, distinct hard negatives per anchor (0: none).
      negative_min_offset: ``T2`` in seconds (3 s).  negative_max_offset: optional upper bound.
      negatives_from: ``"track"`` (the anchor's track) or ``"identity"`` (also the other tracks of its identity).
      num_others: frames of other identities per anchor (FaceSwap's identity images), with replacement.
      anchors_per_track: anchors drawn per track and epoch (None: every eligible frame, each epoch).
      seed: the sampler's seed (None: a fresh random one).
    """

    def __init__(self, table: TrackTable, positive: Union[PositiveRule, OffsetsLike, None] = None, *,
                 num_positives: int = 1, hard_negatives: int = 0, negative_min_offset: float = 3.0,
                 negative_max_offset: Optional[float] = None, negatives_from: str = "track", num_others: int = 0,
                 anchors_per_track: Optional[int] = None, seed: Optional[int] = 0):
        if positive is None:
            positive = TemporalPositive()
        elif not isinstance(positive, PositiveRule):
            positive = TemporalPositive(positive)
        if num_positives < 1 or hard_negatives < 0 or num_others < 0:
            raise ValueError(f"need num_positives >= 1, hard_negatives >= 0, num_others >= 0; got {num_positives}, "
                             f"{hard_negatives}, {num_others}")
        if negatives_from not in ("track", "identity"):
            raise ValueError(f"negatives_from must be 'track' or 'identity', got {negatives_from!r}")
        if negative_min_offset < 0 or (negative_max_offset is not None and negative_max_offset < negative_min_offset):
            raise ValueError(f"need 0 <= negative_min_offset <= negative_max_offset, got {negative_min_offset}, "
                             f"{negative_max_offset}")
        if anchors_per_track is not None and anchors_per_track < 1:
            raise ValueError(f"anchors_per_track must be >= 1 or None, got {anchors_per_track}")
        if len(table) == 0:
            raise ValueError(f"{table.name}: the table has no frames")
        self.table = table
        self.positive = positive
        self.num_positives = int(num_positives)
        self.hard_negatives = int(hard_negatives)
        self.negative_min_offset = float(negative_min_offset)
        self.negative_max_offset = None if negative_max_offset is None else float(negative_max_offset)
        self.negatives_from = negatives_from
        self.num_others = int(num_others)
        self.anchors_per_track = anchors_per_track
        self.seed = int(np.random.SeedSequence().entropy % (2 ** 63)) if seed is None else int(seed)

        # Groups for "others": the identity where known, else the track.
        group = np.where(table.identity >= 0, table.identity.astype(np.int64),
                         len(table.identity_names) + table.track.astype(np.int64))
        self._by_group = np.lexsort((np.arange(len(table)), group)).astype(np.int64)
        sorted_groups = group[self._by_group]
        self._group = group
        self._group_start = np.searchsorted(sorted_groups, group, side="left")
        self._group_end = np.searchsorted(sorted_groups, group, side="right")
        if self.num_others and np.all(self._group_end - self._group_start == len(table)):
            raise ValueError(f"{table.name}: num_others > 0 needs frames of at least two identities (or tracks)")
        # Identity order for negatives_from="identity": rows sorted by (identity, row); a track is contiguous.
        self._by_identity = np.lexsort((np.arange(len(table)), table.identity)).astype(np.int64)
        self._position = np.empty(len(table), np.int64)
        self._position[self._by_identity] = np.arange(len(table))
        ident_sorted = table.identity[self._by_identity]
        self._identity_start = np.searchsorted(ident_sorted, table.identity, side="left")
        self._identity_end = np.searchsorted(ident_sorted, table.identity, side="right")

        self.stats = ViewStats(table.name, table.skips)
        self._anchor_rows = self._eligibility()

    def __repr__(self):
        return (f"ViewSampler({self.table.name}: {self.positive}, P={self.num_positives}, K={self.hard_negatives} "
                f">= {self.negative_min_offset:g} s, others={self.num_others}, {self.num_anchors} anchors/epoch)")

    # ---- negatives ----
    def _negative_ranges(self, rows):
        """(M, R) starts, counts and the position maps of the hard-negative candidates of ``rows``."""
        table = self.table
        lo, hi = table.track_rows(rows)
        ta, k = table.timestamp[rows], table.track[rows]
        t2, tmax = self.negative_min_offset, self.negative_max_offset
        m_lo = lo if tmax is None else np.maximum(table.first_at_or_after(k, ta - tmax), lo)
        m_hi = np.minimum(table.last_at_or_before(k, ta - t2), rows - 1)    # never the anchor itself (T2 = 0)
        p_lo = np.maximum(table.first_at_or_after(k, ta + t2), rows + 1)
        p_hi = hi if tmax is None else np.minimum(table.last_at_or_before(k, ta + tmax), hi)
        starts = [m_lo, p_lo]
        counts = [np.maximum(m_hi - m_lo + 1, 0), np.maximum(p_hi - p_lo + 1, 0)]
        maps: List[Optional[np.ndarray]] = [None, None]
        if self.negatives_from == "identity":
            known = table.identity[rows] >= 0
            first_pos, last_pos = self._position[lo], self._position[hi]
            starts += [self._identity_start[rows], last_pos + 1]
            counts += [np.where(known, first_pos - self._identity_start[rows], 0),
                       np.where(known, self._identity_end[rows] - last_pos - 1, 0)]
            maps += [self._by_identity, self._by_identity]
        return np.stack(starts, 1), np.stack(counts, 1), maps

    # ---- eligibility (once per sampler) ----
    def _eligibility(self) -> np.ndarray:
        table = self.table
        rows = np.arange(len(table))
        checks = [(self.positive.eligible(table, self.num_positives), self.positive.track_reason,
                   self.positive.anchor_reason)]
        if self.hard_negatives:
            _, counts, _ = self._negative_ranges(rows)
            where = "of its identity" if self.negatives_from == "identity" else "of its track"
            checks.append((counts.sum(axis=1) >= self.hard_negatives,
                           f"too short for {self.hard_negatives} hard negatives >= "
                           f"{self.negative_min_offset:g} s away",
                           f"fewer than {self.hard_negatives} frames {where} >= {self.negative_min_offset:g} s "
                           f"away"))
        ok = np.ones(len(table), bool)
        first_failure = np.full(len(table), -1)
        for i, (mask, _, _) in enumerate(checks):
            first_failure[(first_failure < 0) & ~mask] = i
            ok &= mask
        starts, names = table.track_start[:-1], table.track_names
        track_ok = np.add.reduceat(ok.astype(np.int64), starts) > 0
        kept_row = track_ok[table.track]
        self.stats.tracks.read = int(track_ok.sum())
        for i, (_, _, anchor_reason) in enumerate(checks):   # frames of kept tracks, by first missed requirement
            missed = kept_row & (first_failure == i)
            if missed.any():
                self.stats.anchors.counts[anchor_reason] += int(missed.sum())
                self.stats.anchors.examples[anchor_reason] = names[table.track[np.flatnonzero(missed)[0]]]
        cumulative = np.ones(len(table), bool)
        decided = track_ok.copy()
        for mask, track_reason, _ in checks:                 # skipped tracks, by the first requirement none meets
            cumulative &= mask
            none = ~decided & (np.add.reduceat(cumulative.astype(np.int64), starts) == 0)
            if none.any():
                self.stats.tracks.counts[track_reason] += int(none.sum())
                self.stats.tracks.examples[track_reason] = names[int(np.flatnonzero(none)[0])]
            decided |= none
        anchors = np.flatnonzero(ok).astype(np.int64)
        per_track = np.bincount(table.track[anchors], minlength=table.num_tracks)
        if self.anchors_per_track is not None:
            extra = np.maximum(per_track - self.anchors_per_track, 0)
            if extra.any():
                self.stats.anchors.counts[ANCHORS_PER_TRACK_REASON] += int(extra.sum())
                self.stats.anchors.examples[ANCHORS_PER_TRACK_REASON] = names[int(np.flatnonzero(extra)[0])]
            per_track = np.minimum(per_track, self.anchors_per_track)
        self.num_anchors = int(per_track.sum())
        self.stats.anchors.read = self.num_anchors
        if self.num_anchors == 0:
            raise ValueError(f"{table.name}: no frame can anchor with these settings\n{self.stats.summary()}")
        return anchors

    # ---- one epoch ----
    def plan(self, epoch: int) -> Dict[str, np.ndarray]:
        """The epoch's views as table rows, a pure function of ``(seed, epoch)``.

        Returns ``{"anchor": (M,), "positive": (M, P), "hard_negatives": (M, K), "others": (M, Q)}`` int64, the
        anchors in a random order.
        """
        rng = np.random.default_rng([self.seed, int(epoch) % (2 ** 63)])
        table = self.table
        anchors = self._anchor_rows
        if self.anchors_per_track is not None:
            keys = rng.random(len(anchors))
            order = np.lexsort((keys, table.track[anchors]))
            sorted_tracks = table.track[anchors][order]
            rank = np.arange(len(order)) - np.searchsorted(sorted_tracks, sorted_tracks, side="left")
            anchors = anchors[order][rank < self.anchors_per_track]
        anchors = anchors[rng.permutation(len(anchors))]
        m = len(anchors)
        positive = self.positive.draw(table, anchors, self.num_positives, rng)
        if self.hard_negatives:
            starts, counts, maps = self._negative_ranges(anchors)
            negatives = draw_from_ranges(rng, starts, counts, self.hard_negatives, replace=False, maps=maps)
        else:
            negatives = np.zeros((m, 0), np.int64)
        if self.num_others:
            gs, ge = self._group_start[anchors], self._group_end[anchors]
            starts = np.stack([np.zeros_like(gs), ge], 1)
            counts = np.stack([gs, len(table) - ge], 1)
            others = draw_from_ranges(rng, starts, counts, self.num_others, replace=True,
                                      maps=[self._by_group, self._by_group])
        else:
            others = np.zeros((m, 0), np.int64)
        return {"anchor": anchors.astype(np.int64), "positive": positive.astype(np.int64),
                "hard_negatives": negatives.astype(np.int64), "others": others.astype(np.int64)}

    # ---- tf.data ----
    def _plan_arrays(self, key):
        p = self.plan(int(key))
        return p["anchor"], p["positive"], p["hard_negatives"], p["others"]

    def elements(self, *, image_size: int = 112, margin: float = FACE_MARGIN, epochs: Optional[int] = 1,
                 first_epoch: int = 0, deterministic: bool = True, num_parallel_calls=AUTOTUNE,
                 stats: Optional[PipelineStats] = None, metadata: bool = True) -> tf.data.Dataset:
        """Unbatched view elements of ``epochs`` epochs, in the plans' order.

        One element (``S`` = image_size, P / K / Q the counts)::

            "anchor"             float32 (S, S, 3) in [0, 1]
            "positive"           float32 (S, S, 3)        ("positives" (P, S, S, 3) when P > 1)
            "hard_negatives"     float32 (K, S, S, 3)     only when K > 0
            "others"             float32 (Q, S, S, 3)     only when Q > 0
            "identity", "track"  int32 ()  the anchor's (identity -1 = unknown)
            "expression" int32 (), "va" float32 (2,)      the anchor's probe labels, when the table has labels
          with ``metadata``:
            "<view>_landmarks"   float32 (..., 68, 2) in pixels of the view (NaN = unknown), every view
            "timestamp"          float32 ()  the anchor's time;  "index" int64 () its table row
            "<view>_offset"      float32 (...) time of the view minus the anchor's, seconds
            "<view>_track", "<view>_identity"  int32 (...)   (for positive(s), hard_negatives, others)

        A view is the whole frame resized to ``S`` when the frame is square and has no box (synthetic frames,
        VoxCeleb1's face crops), else the square around its box widened by ``margin`` (cut and resized by
        :func:`~ferkeras.data.image_ops.crop_and_resize_face`); landmarks follow the same map.

        Args:
          image_size: output side ``S`` of every view.
          margin: face box widening per side (rows with a box; rows without show the whole frame, padded square).
          epochs: epochs per pass over the dataset (keys from ``tf.data.Dataset.random``: every pass differs);
            None: endless, epochs ``first_epoch, first_epoch + 1, ...`` keyed by their index.
          deterministic: keep the plan's order through the parallel decode.
          stats: a :class:`PipelineStats` counting elements attempted / decoded (undecodable files drop the element).
          metadata: also emit the landmarks, offsets and tracks of every view (see below); the images, ``"identity"``,
            ``"track"`` and the probe labels are always there.
        """
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None, got {epochs}")
        if epochs is None:
            keys = tf.data.Dataset.counter(start=int(first_epoch))
        else:
            keys = tf.data.Dataset.random(seed=self.seed % (2 ** 31), rerandomize_each_iteration=True).take(epochs)
        p, k, q = self.num_positives, self.hard_negatives, self.num_others

        def epoch_of(key):
            arrays = tf.numpy_function(self._plan_arrays, [key], [tf.int64] * 4, stateful=False,
                                       name="view_plan")
            for a, width in zip(arrays, (None, p, k, q)):
                a.set_shape([None] if width is None else [None, width])
            return tf.data.Dataset.from_tensor_slices(tuple(arrays))

        ds = keys.flat_map(epoch_of)
        if epochs is not None and self.table.in_memory:
            ds = ds.apply(tf.data.experimental.assert_cardinality(epochs * self.num_anchors))
        load = self._loader(int(image_size), float(margin), bool(metadata))
        return counted_map(ds, load, stats, num_parallel_calls=num_parallel_calls, deterministic=deterministic,
                           skip_errors=not self.table.in_memory)

    def dataset(self, batch_size: int, *, drop_remainder: bool = True, **options) -> tf.data.Dataset:
        """:meth:`elements` batched and prefetched: each element a dict of ``(B, ...)`` tensors."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self.elements(**options).batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)

    def _loader(self, size: int, margin: float, metadata: bool) -> Callable:
        table = self.table
        ts = tf.constant(table.timestamp, tf.float64)
        tracks = tf.constant(table.track, tf.int32)
        identities = tf.constant(table.identity, tf.int32)
        landmarks = tf.constant(table.landmarks, tf.float32)
        boxes = tf.constant(table.box, tf.float32)
        has_box = bool(np.any(np.all(np.isfinite(table.box), axis=1)))
        labels = None
        if table.has_labels:
            labels = (tf.constant(table.expression, tf.int32),
                      tf.constant(np.stack([table.valence, table.arousal], 1), tf.float32))
        if table.in_memory:
            pixels = tf.constant(table.pixels)
            pixel_index = tf.constant(table.pixel_index, tf.int64)
            whole_frames = not has_box and table.pixels.shape[1] == table.pixels.shape[2]
        else:
            paths = tf.constant(table.image_path.tolist(), tf.string)
            data = (tf.constant(table.image_bytes.tolist(), tf.string)
                    if any(bool(b) for b in table.image_bytes) else None)
        p, k, q = self.num_positives, self.hard_negatives, self.num_others
        same = self.positive.same_frame

        def resize_square(images, side, lms):
            """Whole square frames (..., side, side, 3) -> (..., S, S, 3); antialiased only when shrinking."""
            images = tf.cast(images, tf.float32) / 255.0
            scale = tf.cast(size, tf.float32) / tf.cast(side, tf.float32)

            def shrink():
                return tf.image.resize(images, [size, size], antialias=True)

            def grow():
                return tf.image.resize(images, [size, size])

            if isinstance(side, int):   # static: no branch in the graph
                out = images if side == size else (shrink() if side > size else grow())
            else:
                out = tf.cond(side > size, shrink, grow)
            return tf.clip_by_value(out, 0.0, 1.0), (lms + 0.5) * scale - 0.5

        def fit(image, row, lm):
            """One frame -> its face view: the whole frame when it is square and has no box (a resize, the same
            geometry as the crop of the square around the whole frame), else the square around the box."""
            shape = tf.shape(image)
            box = boxes[row]

            def cut():
                crop_box = square_crop_box(box, shape[0], shape[1], margin)
                return crop_and_resize_face(image, crop_box, size, lm)

            whole = tf.logical_not(tf.reduce_all(tf.math.is_finite(box))) & tf.equal(shape[0], shape[1])
            return tf.cond(whole, lambda: resize_square(image, shape[0], lm), cut)

        def load_rows(rows):
            """(V,) rows -> (V, S, S, 3) float32 views and (V, 68, 2) landmarks in view pixels."""
            lms = tf.gather(landmarks, rows)
            if table.in_memory and whole_frames:   # one batched gather + resize for all views
                frames = tf.gather(pixels, tf.gather(pixel_index, rows))
                return resize_square(frames, int(table.pixels.shape[1]), lms)
            faces, points = [], []
            for v in range(rows.shape[0]):
                row = rows[v]
                if table.in_memory:
                    image = pixels[pixel_index[row]]
                else:
                    path = paths[row]
                    if data is None:
                        encoded = tf.io.read_file(path)
                    else:
                        encoded = tf.cond(tf.strings.length(path) > 0, lambda: tf.io.read_file(path),
                                          lambda: data[row])
                    image = decode_image(encoded)
                face, lm = fit(image, row, lms[v])
                faces.append(face)
                points.append(lm)
            return tf.stack(faces), tf.stack(points)

        def load(anchor, positive, negatives, others):
            groups = [("anchor", anchor[None])]
            if not same:
                groups.append(("positive", positive))
            if k:
                groups.append(("hard_negatives", negatives))
            if q:
                groups.append(("others", others))
            rows = tf.concat([g for _, g in groups], 0)
            images, points = load_rows(rows)
            views, start = {}, 0
            for name, g in groups:
                n = g.shape[0]
                views[name] = (images[start:start + n], points[start:start + n], g)
                start += n
            if same:
                views["positive"] = tuple(tf.repeat(x, p, axis=0) for x in views["anchor"][:2]) + (positive,)
            out = {"anchor": views["anchor"][0][0]}
            pos_key = "positive" if p == 1 else "positives"
            out[pos_key] = views["positive"][0][0] if p == 1 else views["positive"][0]
            if k:
                out["hard_negatives"] = views["hard_negatives"][0]
            if q:
                out["others"] = views["others"][0]
            out["identity"] = tf.gather(identities, anchor)
            out["track"] = tf.gather(tracks, anchor)
            if labels is not None:
                out["expression"] = tf.gather(labels[0], anchor)
                out["va"] = tf.gather(labels[1], anchor)
            if metadata:
                t_anchor = tf.gather(ts, anchor)
                out["index"] = anchor
                out["timestamp"] = tf.cast(t_anchor, tf.float32)
                out["anchor_landmarks"] = views["anchor"][1][0]
                for name, key in (("positive", pos_key), ("hard_negatives", "hard_negatives"), ("others", "others")):
                    if key not in out:
                        continue
                    lm, rws = views[name][1], views[name][2]
                    single = key == "positive"
                    out[f"{key}_landmarks"] = lm[0] if single else lm
                    offset = tf.cast(tf.gather(ts, rws) - t_anchor, tf.float32)
                    out[f"{key}_offset"] = offset[0] if single else offset
                    out[f"{key}_track"] = tf.gather(tracks, rws)[0] if single else tf.gather(tracks, rws)
                    ids = tf.gather(identities, rws)
                    out[f"{key}_identity"] = ids[0] if single else ids
            return out

        return load


__all__ = ("ANCHORS_PER_TRACK_REASON", "DUPLICATE_TIMESTAMP", "NO_TIMESTAMP", "NO_VIDEO", "CrossTrackPositive",
           "OffsetDistribution", "PositiveRule", "SameFrame", "TemporalPositive", "TrackTable", "ViewSampler",
           "ViewStats", "as_offset_distribution", "choose_ranks", "draw_from_ranges", "mashup_tracks",
           "synthetic_video_tracks")
