"""Synthetic identities: everything about a person that does not change with expression, pose or lighting.

An identity's appearance depends only on its index (:func:`identity_pool`: ``"id0007"`` looks the same in every
dataset), so splits by identity are a matter of index ranges (see :mod:`ferkeras.data.splits`).
"""

from __future__ import annotations

import dataclasses
from typing import List, Tuple

import numpy as np

@dataclasses.dataclass
class Identity:
    """Everything about a synthetic person that does not change with expression, pose or lighting.

    Lengths are in face units: the face is about 2 units wide and 2.5 units tall (skull top to chin).
    Colours are RGB tuples in 0..255.
    """

    identity_id: str
    face_width: float  # half-width of the face, ~1
    face_length: float  # scales the chin's distance below the eyes
    jaw_squareness: float  # superellipse exponent of the jaw: 2 round .. 3.5 square
    chin_width: float  # 0 pointed .. 1 broad
    skin: Tuple[float, float, float]
    hair_style: int  # 0 bald, 1 short, 2 long, 3 afro, 4 bun, 5 fringe
    hair_color: Tuple[float, float, float]
    hairline: float  # y of the front hairline (more negative = higher forehead)
    eye_spacing: float  # x of each eye centre
    eye_width: float  # half-width of an eye
    eye_height: float  # upper-lid height of an eye at rest
    iris_color: Tuple[float, float, float]
    brow_thickness: float
    brow_color: Tuple[float, float, float]
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    lip_color: Tuple[float, float, float]
    glasses: bool
    glasses_color: Tuple[float, float, float]
    clothing_color: Tuple[float, float, float]
    background_color: Tuple[float, float, float]
    background_color2: Tuple[float, float, float]
    background_texture: int  # 0 flat, 1 gradient, 2 stripes, 3 blobs, 4 checker
    background_seed: int


_HAIR_COLORS = np.array(
    [[25, 20, 18], [60, 40, 25], [105, 70, 40], [190, 150, 90], [150, 60, 30], [150, 150, 150], [230, 215, 170]],
    np.float32,
)
_SKIN_LIGHT = np.array([245, 210, 185], np.float32)
_SKIN_DARK = np.array([90, 58, 40], np.float32)


def _color(c) -> Tuple[float, float, float]:
    return tuple(float(x) for x in np.clip(c, 0, 255))


def sample_identity(rng: np.random.Generator, identity_id: str) -> Identity:
    """Draws a random identity; every parameter independently of expression (and mostly of each other)."""
    tone = rng.uniform()
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + rng.normal(0, 6, 3)
    hair = _HAIR_COLORS[rng.integers(len(_HAIR_COLORS))] + rng.normal(0, 10, 3)
    bg = rng.uniform(20, 235, 3)
    bg2 = np.clip(bg + rng.choice([-1, 1], 3) * rng.uniform(30, 90, 3), 0, 255)
    return Identity(
        identity_id=identity_id,
        face_width=float(rng.uniform(0.88, 1.08)),
        face_length=float(rng.uniform(0.9, 1.12)),
        jaw_squareness=float(rng.uniform(2.0, 3.4)),
        chin_width=float(rng.uniform(0.0, 1.0)),
        skin=_color(skin),
        hair_style=int(rng.integers(6)),
        hair_color=_color(hair),
        hairline=float(rng.uniform(-0.95, -0.7)),
        eye_spacing=float(rng.uniform(0.34, 0.44)),
        eye_width=float(rng.uniform(0.13, 0.17)),
        eye_height=float(rng.uniform(0.065, 0.085)),
        iris_color=_color(rng.choice([[70, 45, 25], [40, 30, 20], [70, 110, 150], [80, 110, 70]])
                          + rng.normal(0, 8, 3)),
        brow_thickness=float(rng.uniform(0.045, 0.08)),
        brow_color=_color(np.minimum(hair, 120) * 0.8),
        nose_length=float(rng.uniform(0.38, 0.5)),
        nose_width=float(rng.uniform(0.12, 0.2)),
        mouth_width=float(rng.uniform(0.26, 0.34)),
        lip_thickness=float(rng.uniform(0.04, 0.07)),
        lip_color=_color(skin * np.array([0.78, 0.5, 0.52]) + rng.normal(0, 6, 3)),
        glasses=bool(rng.uniform() < 0.3),
        glasses_color=_color(rng.choice([[20, 20, 20], [120, 70, 30], [160, 160, 170]])),
        clothing_color=_color(rng.uniform(10, 245, 3)),
        background_color=_color(bg),
        background_color2=_color(bg2),
        background_texture=int(rng.integers(5)),
        background_seed=int(rng.integers(2**31)),
    )


def identity_pool(num_identities: int, first_identity: int = 0) -> List[Identity]:
    """The fixed identities ``id{first_identity:04d}`` ... ; each one's look depends only on its index."""
    if num_identities < 1:
        raise ValueError(f"num_identities must be >= 1, got {num_identities}")
    return [
        sample_identity(np.random.default_rng([0x1D, k]), f"id{k:04d}")
        for k in range(first_identity, first_identity + num_identities)
    ]


__all__ = ("Identity", "identity_pool", "sample_identity")
