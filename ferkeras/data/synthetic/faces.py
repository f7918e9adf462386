"""Rendering one synthetic face, and data sets of still faces with exact labels."""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from ferkeras.data.synthetic.expressions import Expression, sample_expression
from ferkeras.data.synthetic.geometry import Pose, face_box, face_geometry, project, sample_pose
from ferkeras.data.synthetic.identities import Identity, identity_pool
from ferkeras.data.synthetic.raster import Lighting, apply_lighting, draw_face, sample_lighting


def render_face(
    identity: Identity,
    expression: Expression,
    size: int = 128,
    pose: Optional[Pose] = None,
    lighting: Optional[Lighting] = None,
    rng: Optional[np.random.Generator] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders one face; returns (RGB uint8 (size, size, 3), landmarks float32 (68, 2) px, box float32 x0,y0,x1,y1).

    ``pose`` / ``lighting`` default to random ones drawn from ``rng`` when it is given, else to a frontal pose
    and neutral light without noise.  Sensor noise needs ``rng``.
    """
    if size < 24:
        raise ValueError(f"size must be >= 24 pixels, got {size}")
    if pose is None:
        pose = sample_pose(rng) if rng is not None else Pose()
    if lighting is None:
        lighting = sample_lighting(rng) if rng is not None else Lighting()
    geom = face_geometry(identity, expression)
    p, unit = project(geom, pose, size)
    img = draw_face(identity, expression, p, unit, size)
    img = apply_lighting(img, lighting, rng)
    return img, p["landmarks"].astype(np.float32), face_box(p, size)


@dataclasses.dataclass
class SyntheticFace:
    """One rendered face and its exact labels (fields match :class:`ferkeras.data.schema.FaceRecord`)."""

    image: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray
    valence: float
    arousal: float
    expression: int
    identity: str
    video: str = ""
    frame: int = -1
    timestamp: float = float("nan")


def generate_faces(
    n: int, size: int = 128, seed: int = 0, num_identities: int = 50, first_identity: int = 0
) -> Iterator[SyntheticFace]:
    """Yields ``n`` faces of identities ``id{first_identity}`` .. drawn uniformly from a fixed pool; the
    expression (uniform category, VA around its centroid), pose and lighting are drawn independently of it."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = identity_pool(num_identities, first_identity)
    rng = np.random.default_rng([0x5E, seed])
    for _ in range(n):
        ident = pool[int(rng.integers(num_identities))]
        ex = sample_expression(rng)
        img, lm, box = render_face(ident, ex, size=size, rng=rng)
        yield SyntheticFace(img, lm, box, ex.valence, ex.arousal, ex.category, ident.identity_id)


def synthetic_arrays(
    n: int, size: int = 112, seed: int = 0, num_identities: int = 50, first_identity: int = 0
) -> Dict[str, np.ndarray]:
    """:func:`generate_faces` stacked into arrays: images uint8 (n, s, s, 3), landmarks float32 (n, 68, 2),
    boxes float32 (n, 4), valence / arousal float32 (n,), expression int32 (n,), identity str (n,)."""
    images = np.empty((n, size, size, 3), np.uint8)
    lms = np.empty((n, 68, 2), np.float32)
    boxes = np.empty((n, 4), np.float32)
    val = np.empty((n,), np.float32)
    aro = np.empty((n,), np.float32)
    exp = np.empty((n,), np.int32)
    ids = []
    for i, f in enumerate(generate_faces(n, size, seed, num_identities, first_identity)):
        images[i], lms[i], boxes[i] = f.image, f.landmarks, f.box
        val[i], aro[i], exp[i] = f.valence, f.arousal, f.expression
        ids.append(f.identity)
    return {
        "images": images,
        "landmarks": lms,
        "boxes": boxes,
        "valence": val,
        "arousal": aro,
        "expression": exp,
        "identity": np.asarray(ids, dtype=str).reshape(n),
    }


__all__ = ("SyntheticFace", "generate_faces", "render_face", "synthetic_arrays")
