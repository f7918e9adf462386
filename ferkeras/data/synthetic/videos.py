"""Synthetic videos: one person with a smooth valence-arousal trajectory, and reaction-mashup clips.

:func:`render_video` renders one person's video: a smooth valence-arousal trajectory (category = nearest
centroid per frame), slow head motion, fixed lighting.  :func:`render_mashup` renders "reaction mashup" clips in
the spirit of RMFER (Cho, Kim, Cho, Ku, Kim, Boboev, Lee, Baek, "RMFER: Semi-supervised Contrastive Learning for
Facial Expression Recognition with Reaction Mashup Video", 2024, Sec. 3): several people in one frame
reacting, each with its own lag, gain and noise, to one shared valence-arousal signal driven by an abstract
"film" shown beside them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, List, Tuple

import cv2
import numpy as np

from ferkeras.data.synthetic.expressions import EXPRESSIONS, VA_CENTROIDS, VA_SPREAD, expression_from_va
from ferkeras.data.synthetic.faces import SyntheticFace, render_face
from ferkeras.data.synthetic.geometry import Pose, sample_pose
from ferkeras.data.synthetic.identities import Identity, sample_identity
from ferkeras.data.synthetic.raster import FIXED_POINT_SCALE, FIXED_POINT_SHIFT, sample_lighting


def _smooth_path(rng: np.random.Generator, num_frames: int, fps: float, seconds_per_key: float = 2.0,
                 limit: float = 0.9) -> np.ndarray:
    """A smooth (T, 2) VA trajectory: key poses at category centroids (plus spread) every ``seconds_per_key``,
    joined by cosine interpolation, plus a little low-passed wobble; clipped to +-``limit``.

    Prefix-consistent: the first frames do not depend on ``num_frames``.
    """
    key_rng, wobble_rng = rng.spawn(2)
    step = max(2, int(round(seconds_per_key * fps)))
    num_keys = num_frames // step + 2
    keys = np.empty((num_keys, 2))
    for k in range(num_keys):
        cat = int(key_rng.integers(len(EXPRESSIONS)))
        keys[k] = VA_CENTROIDS[cat] + key_rng.normal(0, 1, 2) * VA_SPREAD[cat]
    t = np.arange(num_frames) / step
    k = np.floor(t).astype(int)
    w = (1 - np.cos(math.pi * (t - k))) / 2
    path = keys[k] * (1 - w[:, None]) + keys[k + 1] * w[:, None]
    wobble = wobble_rng.normal(0, 1, (num_frames + 2 * step, 2))
    kernel = np.hanning(step + 2)[1:-1]
    kernel /= np.sqrt(np.sum(kernel**2))
    wob = np.stack([np.convolve(wobble[:, d], kernel, mode="same") for d in range(2)], 1)[step : step + num_frames]
    return np.clip(path + 0.03 * wob, -limit, limit)


def _smooth_poses(rng: np.random.Generator, num_frames: int, fps: float, amplitude: float = 1.0) -> List[Pose]:
    """Slow head motion around a random mean pose."""
    base = sample_pose(rng)
    base.scale = min(base.scale, 1.0)
    t = np.arange(num_frames) / fps
    f = rng.uniform(0.1, 0.4, 3)
    ph = rng.uniform(0, 2 * math.pi, 3)
    return [
        Pose(
            yaw=float(np.clip(base.yaw + amplitude * 8 * math.sin(2 * math.pi * f[0] * ti + ph[0]), -25, 25)),
            pitch=float(np.clip(base.pitch + amplitude * 4 * math.sin(2 * math.pi * f[1] * ti + ph[1]), -14, 14)),
            roll=float(np.clip(base.roll + amplitude * 4 * math.sin(2 * math.pi * f[2] * ti + ph[2]), -14, 14)),
            scale=base.scale,
            dx=base.dx,
            dy=base.dy,
        )
        for ti in t
    ]


def render_video(
    identity: Identity, num_frames: int, fps: float = 25.0, size: int = 128, seed: int = 0, video_id: str = ""
) -> Iterator[SyntheticFace]:
    """Yields the frames of one person's video: a smooth VA trajectory (category = nearest centroid per frame),
    slow head motion, fixed lighting; ``frame`` and ``timestamp`` (= frame / fps) are filled."""
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0, got {num_frames}, {fps}")
    rng = np.random.default_rng([0x71D, seed])
    video_id = video_id or f"{identity.identity_id}_v{seed}"
    path = _smooth_path(rng, num_frames, fps)
    poses = _smooth_poses(rng, num_frames, fps)
    light = sample_lighting(rng)
    for i in range(num_frames):
        ex = expression_from_va(float(path[i, 0]), float(path[i, 1]))
        img, lm, box = render_face(identity, ex, size=size, pose=poses[i], lighting=light, rng=rng)
        yield SyntheticFace(img, lm, box, ex.valence, ex.arousal, ex.category, identity.identity_id,
                            video=video_id, frame=i, timestamp=i / fps)


@dataclasses.dataclass
class MashupPerson:
    """One viewer of a reaction mashup: valence(t) = clip(gain * shared(t - lag) + noise(t), -1, 1) with
    |noise(t)| <= 3 * ``noise`` (a clipped Gaussian of std ``noise``); boxes/landmarks in frame pixels."""

    face_id: str
    identity: Identity
    lag: int
    gain: float
    noise: float
    boxes: np.ndarray  # (T, 4)
    landmarks: np.ndarray  # (T, 68, 2)
    valence: np.ndarray  # (T,)
    arousal: np.ndarray  # (T,)
    expression: np.ndarray  # (T,) int32


@dataclasses.dataclass
class Mashup:
    """A reaction-mashup clip: a film region and several people reacting to one shared VA signal."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    film_box: np.ndarray  # (4,) x0, y0, x1, y1
    shared_valence: np.ndarray  # (T,)
    shared_arousal: np.ndarray  # (T,)
    people: List[MashupPerson]

    @property
    def timestamps(self) -> np.ndarray:
        return (np.arange(len(self.frames)) / self.fps).astype(np.float32)


def _film_signal(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """The shared (T, 2) VA signal a film triggers: a smooth trajectory plus short reaction events (a laugh, a
    scare: Gaussian bumps of 0.1-0.2 s towards a random category centroid) about every 0.8 s; within +-0.85."""
    path = _smooth_path(rng, num_frames, fps, limit=0.85)
    t = np.arange(num_frames)
    num_events = max(1, int(round(num_frames / (0.8 * fps))))
    for centre, width, cat in zip(rng.uniform(0, num_frames, num_events), rng.uniform(0.1, 0.2, num_events) * fps,
                                  rng.integers(len(EXPRESSIONS), size=num_events)):
        bump = np.exp(-0.5 * ((t - centre) / width) ** 2)[:, None]
        path = path + 0.7 * bump * (VA_CENTROIDS[cat] - path)
    return np.clip(path, -0.85, 0.85)


def _film_frame(canvas: np.ndarray, box: Tuple[int, int, int, int], t: float, v: float, a: float,
                blobs: np.ndarray) -> None:
    """Abstract moving content whose hue follows valence and whose speed follows arousal."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    hue = (1.0 - (v + 1) / 2) * 120  # warm (red/yellow) for positive valence, blue-ish for negative
    base = cv2.cvtColor(np.uint8([[[hue * 0.5 + 60, 120, 60 + 40 * (a + 1)]]]), cv2.COLOR_HSV2RGB)[0, 0]
    canvas[y0:y1, x0:x1] = base
    for bx, by, fx, fy, r, hshift in blobs:
        speed = 0.5 + 1.5 * (a + 1)
        cx = x0 + w * (0.5 + 0.4 * math.sin(speed * fx * t + bx))
        cy = y0 + h * (0.5 + 0.4 * math.sin(speed * fy * t + by))
        col = cv2.cvtColor(np.uint8([[[(hue + hshift) % 180, 200, 230]]]), cv2.COLOR_HSV2RGB)[0, 0]
        fp = FIXED_POINT_SCALE
        cv2.circle(canvas, (int(cx * fp), int(cy * fp)), int(r * min(w, h) * fp),
                   tuple(int(c) for c in col), -1, cv2.LINE_AA, FIXED_POINT_SHIFT)
    cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (240, 240, 240), 1)


def render_mashup(
    num_people: int = 3, num_frames: int = 64, fps: float = 25.0, frame_size: Tuple[int, int] = (240, 426),
    seed: int = 0, max_lag: int = 12,
) -> Mashup:
    """Renders a reaction-mashup clip (RMFER, Cho et al. 2024, Sec. 3): a "film" on the left and ``num_people``
    viewers in a grid on the right, each reacting with its own lag (0..``max_lag`` frames), gain and noise to
    one shared smooth VA signal."""
    if not 1 <= num_people <= 6:
        raise ValueError(f"num_people must be in 1..6, got {num_people}")
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0, got {num_frames}, {fps}")
    H, W = frame_size
    rng = np.random.default_rng([0x3A5, seed])
    film_w = int(W * 0.4)
    film_h = min(H - 8, int(film_w * 0.75))
    film = (4, (H - film_h) // 2, 4 + film_w, (H - film_h) // 2 + film_h)
    rows = 1 if num_people <= 2 else 2
    cols = int(math.ceil(num_people / rows))
    gx0 = film[2] + 4
    cell_w, cell_h = (W - gx0) // cols, H // rows
    cell = min(cell_w, cell_h)
    if cell < 32:
        raise ValueError(f"frame_size {frame_size} is too small for {num_people} people")

    shared = _film_signal(rng, num_frames + max_lag, fps)
    shared_now = shared[max_lag:]
    blobs = np.column_stack([rng.uniform(0, 6, (6, 2)), rng.uniform(0.5, 2.0, (6, 2)), rng.uniform(0.06, 0.18, 6),
                             rng.uniform(-25, 25, 6)])
    frames = np.empty((num_frames, H, W, 3), np.uint8)
    frames[:] = np.array([25, 25, 30], np.uint8)
    for t in range(num_frames):
        _film_frame(frames[t], film, t / fps, float(shared_now[t, 0]), float(shared_now[t, 1]), blobs)

    people = []
    for k in range(num_people):
        r, c = divmod(k, cols)
        ox = gx0 + c * cell_w + (cell_w - cell) // 2
        oy = r * cell_h + (cell_h - cell) // 2
        ident = sample_identity(rng, f"mashup{seed}_p{k}")
        lag = int(rng.integers(0, max_lag + 1))
        gain = float(rng.uniform(0.6, 1.1))
        sd = float(rng.uniform(0.01, 0.04))
        noise = sd * np.clip(rng.normal(0, 1, (num_frames, 2)), -3, 3)
        va = np.clip(gain * shared[max_lag - lag : max_lag - lag + num_frames] + noise, -1, 1)
        poses = _smooth_poses(rng, num_frames, fps, amplitude=0.6)
        light = sample_lighting(rng)
        boxes = np.empty((num_frames, 4), np.float32)
        lms = np.empty((num_frames, 68, 2), np.float32)
        cats = np.empty((num_frames,), np.int32)
        for t in range(num_frames):
            ex = expression_from_va(float(va[t, 0]), float(va[t, 1]))
            img, lm, box = render_face(ident, ex, size=cell, pose=poses[t], lighting=light, rng=rng)
            frames[t, oy : oy + cell, ox : ox + cell] = img
            lms[t] = lm + np.array([ox, oy], np.float32)
            boxes[t] = box + np.array([ox, oy, ox, oy], np.float32)
            cats[t] = ex.category
        people.append(MashupPerson(f"mashup{seed}_p{k}", ident, lag, gain, sd, boxes, lms,
                                   va[:, 0].astype(np.float32), va[:, 1].astype(np.float32), cats))
    return Mashup(frames, float(fps), np.array(film, np.float32), shared_now[:, 0].astype(np.float32),
                  shared_now[:, 1].astype(np.float32), people)


__all__ = ("Mashup", "MashupPerson", "render_mashup", "render_video")
