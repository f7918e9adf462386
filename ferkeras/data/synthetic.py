"""Procedural synthetic faces with exact labels: the default data of every ferkeras binary.

Real facial-expression datasets are licence-gated, so ferkeras draws its own faces with NumPy and OpenCV.
Each picture is built **geometry first**:

1. An :class:`Identity` (face width/length, jaw shape, skin tone, hair style and colour, eye spacing and size,
   nose length and width, mouth width, glasses, clothing and background) is sampled independently of
   everything else.
2. An :class:`Expression` holds continuous valence and arousal in [-1, 1], one of the 8 AffectNet categories
   (:data:`EXPRESSIONS`) and action-unit-like intensities (brow raise / lower / inner raise, lid opening, cheek
   raise, lip-corner pull and depress, jaw drop, nose wrinkle, upper-lip raise, lip stretch, one-sided lip
   corner).  The action units are a deterministic function of (category, valence, arousal)
   (:func:`expression_from_va`): lip-corner pull grows with positive valence, lip-corner depress with negative
   valence, lid opening and jaw drop with arousal, and each category adds its own signature (raised brows for
   surprise, lowered brows for anger, nose wrinkle for disgust, a one-sided corner for contempt, ...).
3. The 68 landmarks, in dlib's order (0-16 jaw, 17-21 right brow = image left, 22-26 left brow, 27-30 nose
   bridge, 31-35 nostrils, 36-41 right eye, 42-47 left eye, 48-59 outer lips, 60-67 inner lips), plus denser
   rendering curves, are placed on a 3-D face surface, rotated by the head :class:`Pose` (yaw, pitch, roll)
   and projected orthographically to pixels.
4. The face is rasterised *from those projected points* (anti-aliased ``fillPoly`` / ``polylines`` with
   sub-pixel coordinates), so the returned landmarks are exactly where the features are drawn.
5. :class:`Lighting` (brightness, contrast, a directional gradient, sensor noise) is applied last.

On top of single faces the module renders videos with smooth valence-arousal trajectories
(:func:`render_video`) and "reaction mashup" videos in the spirit of RMFER (Cho et al., 2024,
``/work/shared/seeds/004_*.txt``, Sec. 3): several people in one frame reacting, each with its own lag, gain and
noise, to one shared valence-arousal signal driven by an abstract "film" shown beside them
(:func:`render_mashup`).

Everything is deterministic given the seed.  An identity's appearance depends only on its index
(``"id0007"`` looks the same in every dataset), so train/test splits by identity are easy (see the
``first_identity`` argument of :func:`generate_faces`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

EXPRESSIONS: Tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")

# Circumplex centroids (valence, arousal) of each category, in EXPRESSIONS order, and their spread (std).
VA_CENTROIDS = np.array(
    [
        [0.0, 0.0],  # neutral
        [0.7, 0.3],  # happy
        [-0.6, -0.45],  # sad
        [0.2, 0.75],  # surprise
        [-0.45, 0.75],  # fear
        [-0.65, 0.25],  # disgust
        [-0.7, 0.55],  # anger
        [-0.45, -0.1],  # contempt
    ],
    np.float32,
)
VA_SPREAD = np.array([0.1, 0.13, 0.13, 0.12, 0.12, 0.12, 0.12, 0.12], np.float32)

_FIXED_POINT_SHIFT = 4  # OpenCV drawing with 4 fractional bits: sub-pixel accurate, anti-aliased
_FP = float(1 << _FIXED_POINT_SHIFT)


# --------------------------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Expression
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Expression:
    """Valence, arousal, category and the action-unit-like intensities that draw them (all >= 0 except VA)."""

    valence: float
    arousal: float
    category: int
    brow_raise: float = 0.0  # AU1+2: whole brow up
    brow_lower: float = 0.0  # AU4: brows down and together
    brow_inner: float = 0.0  # AU1: inner brow ends up (sadness, fear)
    lid_open: float = 1.0  # AU5 (> 1) / AU7 (< 1): upper-lid opening, 1 at rest
    cheek_raise: float = 0.0  # AU6: lower lids pushed up, cheeks lifted
    lid_tighten: float = 0.0  # AU7: lower lids pushed up without the cheeks
    smile: float = 0.0  # AU12: lip corners up and out
    lip_depress: float = 0.0  # AU15: lip corners down
    jaw_drop: float = 0.0  # AU26/27: mouth opening
    nose_wrinkle: float = 0.0  # AU9
    upper_lip_raise: float = 0.0  # AU10
    lip_stretch: float = 0.0  # AU20: lips pulled sideways
    contempt_side: float = 0.0  # AU14 on one side: image-right lip corner up and out

    @property
    def name(self) -> str:
        return EXPRESSIONS[self.category]


# Category-specific action-unit offsets added to the valence/arousal-driven part (see expression_from_va).
_CATEGORY_AUS: Dict[int, Dict[str, float]] = {
    0: {},
    1: {"cheek_raise": 0.35, "smile": 0.25},
    2: {"brow_inner": 0.9, "lip_depress": 0.35, "lid_open": -0.2},
    3: {"brow_raise": 1.0, "lid_open": 0.3, "jaw_drop": 0.25},
    4: {"brow_raise": 0.45, "brow_inner": 0.7, "lid_open": 0.35, "lip_stretch": 0.8, "lip_depress": 0.35},
    5: {"nose_wrinkle": 1.0, "upper_lip_raise": 1.0, "brow_lower": 0.45, "lid_open": -0.25, "lid_tighten": 0.4},
    6: {"brow_lower": 1.0, "lid_open": -0.25, "lid_tighten": 0.7, "lip_stretch": 0.3, "jaw_drop": -0.35},
    7: {"contempt_side": 1.0, "lid_open": -0.15, "lid_tighten": 0.2},
}


def nearest_category(valence: float, arousal: float) -> int:
    """Index of the category whose VA centroid is nearest (distance divided by that category's spread)."""
    d = np.sum((VA_CENTROIDS - np.array([valence, arousal], np.float32)) ** 2, axis=1) / VA_SPREAD**2
    return int(np.argmin(d))


def expression_from_va(valence: float, arousal: float, category: Optional[int] = None) -> Expression:
    """The deterministic action units of (category, valence, arousal); category None -> nearest centroid.

    Continuous part: lip-corner pull = max(v, 0), cheek raise = 0.6 max(v, 0), lip-corner depress =
    0.8 max(-v, 0), lid opening = 0.6 + 0.7 (a + 1) / 2, jaw drop = 0.85 clip((a + 0.15) / 1.15, 0, 1).
    Each category then adds the fixed offsets of ``_CATEGORY_AUS`` (which do not depend on v or a, so within a
    category the mouth corners rise monotonically with valence and the mouth opens monotonically with arousal).
    """
    if not (math.isfinite(valence) and math.isfinite(arousal)):
        raise ValueError(f"valence/arousal must be finite, got ({valence}, {arousal})")
    v = min(max(float(valence), -1.0), 1.0)
    a = min(max(float(arousal), -1.0), 1.0)
    if category is None:
        category = nearest_category(v, a)
    category = int(category)
    if not 0 <= category < len(EXPRESSIONS):
        raise ValueError(f"category must be in 0..{len(EXPRESSIONS) - 1}, got {category}")
    aus = {
        "smile": max(v, 0.0),
        "cheek_raise": 0.6 * max(v, 0.0),
        "lip_depress": 0.8 * max(-v, 0.0),
        "lid_open": 0.6 + 0.7 * (a + 1.0) / 2.0,
        "jaw_drop": 0.85 * min(max((a + 0.15) / 1.15, 0.0), 1.0),
    }
    for key, off in _CATEGORY_AUS[category].items():
        aus[key] = aus.get(key, 0.0) + off
    aus = {k: min(max(x, 0.0), 1.6 if k == "lid_open" else 1.2) for k, x in aus.items()}
    return Expression(valence=v, arousal=a, category=category, **aus)


def sample_expression(rng: np.random.Generator, category: Optional[int] = None) -> Expression:
    """Draws a category (uniform if None) and VA around its centroid; AUs from :func:`expression_from_va`."""
    if category is None:
        category = int(rng.integers(len(EXPRESSIONS)))
    va = VA_CENTROIDS[category] + rng.normal(0.0, 1.0, 2) * VA_SPREAD[category]
    va = np.clip(va, -1.0, 1.0)
    return expression_from_va(float(va[0]), float(va[1]), category)


# --------------------------------------------------------------------------------------------------------------
# Pose and lighting
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Pose:
    """Head rotation in degrees (yaw > 0 turns the face to image right), scale and offset (fractions of size)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0


def sample_pose(rng: np.random.Generator) -> Pose:
    """Yaw +-22, pitch +-12, roll +-12 degrees, scale 0.88..1.1, offset +-5 % (x) / +-4 % (y) of the size."""
    return Pose(
        yaw=float(rng.uniform(-22, 22)),
        pitch=float(rng.uniform(-12, 12)),
        roll=float(rng.uniform(-12, 12)),
        scale=float(rng.uniform(0.88, 1.1)),
        dx=float(rng.uniform(-0.05, 0.05)),
        dy=float(rng.uniform(-0.04, 0.04)),
    )


@dataclasses.dataclass
class Lighting:
    """Global brightness / contrast, a linear gradient of relative strength ``gradient`` along ``angle`` (deg),
    and Gaussian sensor noise of std ``noise`` (grey levels)."""

    brightness: float = 1.0
    contrast: float = 1.0
    gradient: float = 0.0
    angle: float = 0.0
    noise: float = 0.0


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Brightness 0.75..1.2, contrast 0.75..1.15, gradient up to 45 % in any direction, noise std up to 7."""
    return Lighting(
        brightness=float(rng.uniform(0.75, 1.2)),
        contrast=float(rng.uniform(0.75, 1.15)),
        gradient=float(rng.uniform(0.0, 0.45)),
        angle=float(rng.uniform(0, 360)),
        noise=float(rng.uniform(0.0, 7.0)),
    )


# --------------------------------------------------------------------------------------------------------------
# Geometry: canonical 3-D points -> pixels
# --------------------------------------------------------------------------------------------------------------


def _surface_z(x: np.ndarray) -> np.ndarray:
    """Depth of the face surface at canonical x (a cylinder-like front, 0 at the silhouette)."""
    return 0.62 * np.sqrt(np.maximum(1.0 - (x / 1.05) ** 2, 0.0))


# Landmark parts, in dlib order, then the denser curves and outlines used only for drawing.
_LANDMARK_PARTS = ("jaw", "brow_r", "brow_l", "bridge", "nostrils", "eye_r", "eye_l", "lips_outer", "lips_inner")

# Parameters of the mouth curves at which the dlib lip landmarks sit, and the dense curves drawn.
_T_OUTER_UP = np.array([-1.0, -0.62, -0.27, 0.0, 0.27, 0.62, 1.0])  # 48..54
_T_OUTER_LOW = np.array([0.62, 0.27, 0.0, -0.27, -0.62])  # 55..59
_T_INNER_UP = np.array([-0.86, -0.35, 0.0, 0.35, 0.86])  # 60..64
_T_INNER_LOW = np.array([0.35, 0.0, -0.35])  # 65..67
_T_DENSE = np.linspace(-1.0, 1.0, 17)
_T_DENSE_INNER = np.linspace(-0.86, 0.86, 13)


def _mouth_constants():
    """All mouth-curve parameters in one vector (so one call evaluates every lip curve) and their segments."""
    segs = [  # (name, t, kind) kind: 0 outer upper, 1 outer lower, 2 inner upper, 3 inner lower
        ("lm_ou", _T_OUTER_UP, 0), ("lm_ol", _T_OUTER_LOW, 1), ("lm_iu", _T_INNER_UP, 2), ("lm_il", _T_INNER_LOW, 3),
        ("ou", _T_DENSE, 0), ("ol", _T_DENSE[-2:0:-1], 1), ("iu", _T_DENSE_INNER, 2), ("il", _T_DENSE_INNER, 3),
    ]
    t = np.concatenate([s[1] for s in segs])
    kind = np.concatenate([np.full(len(s[1]), s[2]) for s in segs])
    prof = np.maximum(1.0 - (t / 0.86) ** 2, 0.0)  # opening profile, 0 at the inner corners
    circ = np.sqrt(np.maximum(1.0 - t**2, 0.0))  # lip thickness profile
    bow = 1.0 - 0.35 * np.exp(-((t / 0.12) ** 2))  # cupid's bow
    upper = (kind == 0) | (kind == 2)
    bounds, start = {}, 0
    for name, ts, _ in segs:
        bounds[name] = slice(start, start + len(ts))
        start += len(ts)
    return dict(
        t=t, t2=t**2, tp2=np.maximum(t, 0.0) ** 2, prof_up=prof * upper, prof_lo=prof * ~upper,
        thick_up=0.85 * circ * bow * (kind == 0), thick_lo=1.15 * circ * (kind == 1),
        offset=-0.01 * (kind == 0) + 0.005 * (kind == 1), bounds=bounds,
    )


_MOUTH = _mouth_constants()

# Eye lids: u runs from the image-left corner (0) to the image-right corner (1); landmarks first, then dense.
_U_UP = np.concatenate([[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0], np.linspace(0.0, 1.0, 10)])
_U_LO = np.concatenate([[2.0 / 3.0, 1.0 / 3.0], np.linspace(0.0, 1.0, 10)])
_EYE_UP_R = np.sin(math.pi * _U_UP**0.8)  # right eye (image left): lid peak nearer the inner (image-right) corner
_EYE_UP_L = np.sin(math.pi * _U_UP**1.25)
_EYE_LO = np.sin(math.pi * _U_LO)

_JAW_PHI = np.linspace(0.0, math.pi, 17)
_JAW_COS, _JAW_SIN = np.abs(np.cos(_JAW_PHI)), np.sin(_JAW_PHI)
_JAW_SIGN = -np.sign(np.cos(_JAW_PHI))
_SKULL_TH = np.linspace(0.0, math.pi, 15)
_SKULL_COS, _SKULL_SIN = np.cos(_SKULL_TH), np.sin(_SKULL_TH) ** 0.85
_BROW_U = np.linspace(0.0, 1.0, 5)
_BROW_ARCH = np.sin(math.pi * (0.15 + 0.8 * _BROW_U))
_HAIR_X = np.linspace(-1.0, 1.0, 11)
_FRINGE = 0.05 * (np.arange(11) % 2)


def _face_geometry(ident: Identity, ex: Expression) -> Tuple[List[Tuple[str, int]], np.ndarray]:
    """All canonical 3-D points (x right, y down, z towards the camera) of one face.

    Returns ``[(part, count), ...]`` and the stacked (N, 3) points; the first 68 points are the dlib landmarks
    (parts ``_LANDMARK_PARTS``), the other parts are denser curves and outlines used for drawing.
    """
    parts: Dict[str, tuple] = {}  # name -> (x, y, z or None = on the face surface)
    W, L = ident.face_width, ident.face_length
    jaw_top, chin_y, eye_y = -0.22, 1.18 * L, -0.2

    # Jaw 0..16: a superellipse from the image-left temple, under the chin, to the image-right temple; the
    # dropped jaw pulls the lower contour down (more at the chin).
    e = 2.0 / ident.jaw_squareness
    jx = W * _JAW_SIGN * _JAW_COS**e * (1.0 - (1.0 - ident.chin_width) * 0.18 * _JAW_SIN**6)
    jy = jaw_top + (chin_y - jaw_top) * _JAW_SIN**e + 0.3 * ex.jaw_drop * _JAW_SIN**4
    parts["jaw"] = (jx, jy, 0.55 * _surface_z(jx))
    # Skull from the image-right temple over the top back to the image-left temple.
    parts["skull"] = (W * 1.02 * _SKULL_COS, jaw_top - 1.05 * _SKULL_SIN, 0.0)

    # Brows 17..21 (image left, outer -> inner) and 22..26 (inner -> outer); lower edges for drawing.
    u = _BROW_U
    es, ew, eh = ident.eye_spacing, ident.eye_width, ident.eye_height
    brow_y = (-0.45 - 0.15 * ex.brow_raise + ex.brow_lower * (0.03 + 0.06 * u + 0.06 * u**2)
              - 0.12 * ex.brow_inner * u**2
              - 0.045 * _BROW_ARCH * (1.0 - 0.6 * min(ex.brow_inner, 1.0)))
    bx = es + 1.45 * ew - 2.35 * ew * u - 0.07 * ex.brow_lower * u  # distance from the midline
    low_y = brow_y + ident.brow_thickness * (0.55 + 0.45 * u)
    parts["brow_r"] = (-bx, brow_y, None)
    parts["brow_l"] = (bx[::-1], brow_y[::-1], None)
    parts["brow_r_low"] = (-bx, low_y, None)
    parts["brow_l_low"] = (bx[::-1], low_y[::-1], None)

    # Nose bridge 27..30, nostrils 31..35 and the alar curves.
    tip_y = eye_y + ident.nose_length
    parts["bridge"] = (np.zeros(4), eye_y + np.array([0.02, 0.35, 0.67, 1.0]) * ident.nose_length,
                       np.array([0.72, 0.82, 0.92, 1.02]))
    nw = ident.nose_width * (1.0 + 0.2 * ex.nose_wrinkle)
    ny = tip_y + 0.06 - 0.035 * ex.nose_wrinkle - 0.02 * ex.upper_lip_raise
    parts["nostrils"] = (np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) * nw,
                         ny + np.array([-0.015, 0.012, 0.025, 0.012, -0.015]),
                         np.array([0.78, 0.85, 0.88, 0.85, 0.78]))
    side_y = tip_y + np.array([-0.12, -0.03, 0.04])
    parts["nose_side_r"] = (np.array([-0.45, -1.15, -1.05]) * nw, side_y, 0.8)
    parts["nose_side_l"] = (np.array([0.45, 1.15, 1.05]) * nw, side_y, 0.8)

    # Eyes 36..41 and 42..47: image-left corner, upper lid, image-right corner, lower lid back.  Raised cheeks
    # push the lower lid up; the lid opening scales the upper lid.
    up_h = eh * ex.lid_open
    lo_h = eh * 0.55 * (1.0 - 0.55 * ex.cheek_raise - 0.4 * ex.lid_tighten) - 0.035 * ex.cheek_raise
    xu, xl = ew * (2 * _U_UP - 1), ew * (2 * _U_LO - 1)
    yl = eye_y + lo_h * _EYE_LO
    eye_r_up, eye_l_up = (xu - es, eye_y - up_h * _EYE_UP_R), (xu + es, eye_y - up_h * _EYE_UP_L)
    eye_r_lo, eye_l_lo = (xl - es, yl), (xl + es, yl)
    parts["eye_r"] = (np.concatenate([eye_r_up[0][:4], eye_r_lo[0][:2]]),
                      np.concatenate([eye_r_up[1][:4], eye_r_lo[1][:2]]), None)
    parts["eye_l"] = (np.concatenate([eye_l_up[0][:4], eye_l_lo[0][:2]]),
                      np.concatenate([eye_l_up[1][:4], eye_l_lo[1][:2]]), None)
    parts["eye_r_up"], parts["eye_r_lo"] = (*[c[4:] for c in eye_r_up], None), (*[c[2:] for c in eye_r_lo], None)
    parts["eye_l_up"], parts["eye_l_lo"] = (*[c[4:] for c in eye_l_up], None), (*[c[2:] for c in eye_l_lo], None)
    iris_r = min(0.78 * ew, 0.12)
    parts["iris"] = (np.array([-es, es, -es + iris_r, es + iris_r]), eye_y + 0.005, None)

    # Mouth: a centre line whose corners rise with the smile and fall with depression, opened by the jaw
    # (mostly the lower lip), widened by smile and stretch, rounded by a jaw drop without them; contempt lifts
    # and pulls the image-right corner only.
    m = _MOUTH
    mouth_y = 0.56 * L + 0.02
    o = 0.3 * ex.jaw_drop + 0.035 * ex.smile
    o_up, o_lo = 0.22 * o + 0.045 * ex.upper_lip_raise, 0.78 * o
    mw = ident.mouth_width * (
        1.0 + 0.22 * ex.smile + 0.25 * ex.lip_stretch - 0.25 * ex.jaw_drop * max(0.0, 1.0 - ex.smile - ex.lip_stretch))
    corner_dy = -0.12 * ex.smile + 0.15 * ex.lip_depress
    lt = ident.lip_thickness
    mxs = mw * m["t"] + 0.05 * ex.contempt_side * m["tp2"]
    mys = (mouth_y + corner_dy * m["t2"] - 0.1 * ex.contempt_side * m["tp2"] - o_up * m["prof_up"]
           + o_lo * m["prof_lo"] - lt * m["thick_up"] + lt * m["thick_lo"] + m["offset"])
    b = m["bounds"]
    parts["lips_outer"] = (np.concatenate([mxs[b["lm_ou"]], mxs[b["lm_ol"]]]),
                           np.concatenate([mys[b["lm_ou"]], mys[b["lm_ol"]]]), None)
    parts["lips_inner"] = (np.concatenate([mxs[b["lm_iu"]], mxs[b["lm_il"]]]),
                           np.concatenate([mys[b["lm_iu"]], mys[b["lm_il"]]]), None)
    parts["lip_outer"] = (np.concatenate([mxs[b["ou"]], mxs[b["ol"]]]), np.concatenate([mys[b["ou"]], mys[b["ol"]]]),
                          None)
    parts["lip_inner_up"] = (mxs[b["iu"]], mys[b["iu"]], None)
    parts["lip_inner_low"] = (mxs[b["il"]], mys[b["il"]], None)
    # Nasolabial folds from beside the nostrils to just outside the lip corners.
    cx_r, cx_l = mxs[b["lm_ou"]][0] - 0.05, mxs[b["lm_ou"]][-1] + 0.05
    cy_r, cy_l = mys[b["lm_iu"]][0], mys[b["lm_iu"]][-1]
    parts["fold_r"] = (np.array([-nw - 0.06, cx_r - 0.03, cx_r]), np.array([ny - 0.04, (ny + cy_r) / 2, cy_r + 0.04]),
                       None)
    parts["fold_l"] = (np.array([nw + 0.06, cx_l + 0.03, cx_l]), np.array([ny - 0.04, (ny + cy_l) / 2, cy_l + 0.04]),
                       None)

    # Hair: the front hairline (lower edge of the hair cap), outlines behind the head; ears, neck, shoulders.
    hx = _HAIR_X * W * 0.98
    hl = ident.hairline + (0.15 if ident.hair_style == 5 else 0.0)
    hy = hl + (jaw_top - 0.05 - hl) * np.abs(_HAIR_X * 0.98) ** 2.5
    parts["hairline"] = (hx, hy + _FRINGE if ident.hair_style == 5 else hy, None)
    parts["hair_back"] = (
        np.concatenate([[-1.25 * W, -1.3 * W], -1.12 * W * _SKULL_COS, [1.3 * W, 1.25 * W]]),
        np.concatenate([[1.45, 0.6], jaw_top - 1.15 * _SKULL_SIN, [0.6, 1.45]]), -0.3)
    parts["hair_center"] = (np.array([0.0, 0.0, 1.45, 0.0, 0.35]), np.array([-0.55, -1.42, -0.55, -1.3, -1.3]), -0.2)
    parts["ears"] = (np.array([-W * 0.98, W * 0.98]), np.array([-0.05, -0.05]), -0.05)
    parts["neck"] = (np.array([-0.5, 0.5, 0.6, -0.6]) * W, np.array([0.7, 0.7, 2.2, 2.2]), -0.3)
    parts["shoulders"] = (np.array([0.0, 2.0]), np.array([2.15, 2.15]), -0.3)
    if ident.glasses:
        parts["glasses"] = (np.array([-es, es, -es - ew * 1.55, es + ew * 1.55, -1.0 * W, 1.0 * W, 0.0]),
                            np.array([eye_y, eye_y, eye_y - 0.03, eye_y - 0.03, -0.25, -0.25, eye_y - 0.05]), None)

    order = list(_LANDMARK_PARTS) + [k for k in parts if k not in _LANDMARK_PARTS]
    sizes = [(k, len(parts[k][0])) for k in order]
    x = np.concatenate([parts[k][0] for k in order])
    y = np.concatenate([np.full(n, parts[k][1]) if np.ndim(parts[k][1]) == 0 else parts[k][1] for k, n in sizes])
    z = _surface_z(x)
    start = 0
    for k, n in sizes:
        if parts[k][2] is not None:
            z[start : start + n] = parts[k][2]
        start += n
    return sizes, np.stack([x, y, z], axis=1)


def _rotation(pose: Pose) -> np.ndarray:
    y, p, r = (math.radians(a) for a in (pose.yaw, pose.pitch, pose.roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _project(geom: Tuple[List[Tuple[str, int]], np.ndarray], pose: Pose,
             size: int) -> Tuple[Dict[str, np.ndarray], float]:
    """Rotates and projects every part to pixels; shifts the face so all 68 landmarks stay inside the image.

    Returns the 2-D points by part (plus ``"landmarks"``, the first 68) and the pixels per face unit.
    """
    sizes, pts = geom
    px_per_unit = 0.285 * size * pose.scale
    xy = (pts @ _rotation(pose)[:2].T) * px_per_unit + np.array([size * (0.5 + pose.dx), size * (0.44 + pose.dy)])
    lo, hi = xy[:68].min(0), xy[:68].max(0)
    margin = 1.0
    if np.any(hi - lo > size - 2 * margin - 1):
        raise ValueError(f"face does not fit in a {size}x{size} image (pose scale {pose.scale}); lower the scale")
    xy += np.maximum(margin - lo, 0.0) - np.maximum(hi - (size - 1 - margin), 0.0)
    out, start = {"landmarks": xy[:68]}, 0
    for k, n in sizes:
        out[k] = xy[start : start + n]
        start += n
    return out, px_per_unit


# --------------------------------------------------------------------------------------------------------------
# Rasterisation
# --------------------------------------------------------------------------------------------------------------


def _fx(p: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(p) * _FP).astype(np.int32)


def _fill(img, pts, color):
    """Fills one polygon, or several non-overlapping ones given as a list, in one OpenCV call."""
    polys = [_fx(q) for q in pts] if isinstance(pts, list) else [_fx(pts)]
    cv2.fillPoly(img, polys, color, cv2.LINE_AA, _FIXED_POINT_SHIFT)


def _line(img, pts, color, thickness, closed=False):
    """Draws one polyline, or several given as a list, in one OpenCV call."""
    lines = [_fx(q) for q in pts] if isinstance(pts, list) else [_fx(pts)]
    cv2.polylines(img, lines, closed, color, max(1, int(round(thickness))), cv2.LINE_AA, _FIXED_POINT_SHIFT)


def _circle(img, center, radius, color, thickness=-1):
    c = tuple(int(round(v * _FP)) for v in center)
    cv2.circle(img, c, max(1, int(round(radius * _FP))), color, thickness, cv2.LINE_AA, _FIXED_POINT_SHIFT)


def _ellipse(img, center, axes, angle, color, thickness=-1):
    c = tuple(int(round(v * _FP)) for v in center)
    ax = tuple(max(1, int(round(v * _FP))) for v in axes)
    cv2.ellipse(img, c, ax, angle, 0, 360, color, thickness, cv2.LINE_AA, _FIXED_POINT_SHIFT)


def _shade(c, f) -> Tuple[float, float, float]:
    return tuple(float(min(255.0, x * f)) for x in c)


@functools.lru_cache(maxsize=256)
def _background(texture: int, c1: tuple, c2: tuple, seed: int, size: int) -> np.ndarray:
    """An identity's (read-only, cached) background: flat, gradient, stripes, blobs or checker."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.array(c1, np.float32).astype(np.uint8)
    rng = np.random.default_rng(seed)
    if texture == 1:  # vertical or horizontal gradient
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        grad = (1 - t) * np.array(c1, np.float32) + t * np.array(c2, np.float32)
        img[:] = (grad if rng.uniform() < 0.5 else grad.transpose(1, 0, 2)).astype(np.uint8)
    elif texture == 2:  # stripes
        period = size * rng.uniform(0.08, 0.2)
        x = np.arange(size, dtype=np.float32)
        band = (np.floor(x / period) % 2).astype(bool)
        if rng.uniform() < 0.5:
            img[:, band] = np.array(c2, np.float32).astype(np.uint8)
        else:
            img[band, :] = np.array(c2, np.float32).astype(np.uint8)
    elif texture == 3:  # blobs
        for _ in range(12):
            cv2.circle(img, (int(rng.uniform(0, size)), int(rng.uniform(0, size))), int(size * rng.uniform(0.04, 0.15)),
                       tuple(float(x) for x in np.clip(np.array(c2) + rng.normal(0, 20, 3), 0, 255)), -1, cv2.LINE_AA)
    elif texture == 4:  # checker
        cell = max(2, int(size * rng.uniform(0.1, 0.2)))
        yy, xx = np.mgrid[0:size, 0:size]
        img[((yy // cell + xx // cell) % 2).astype(bool)] = np.array(c2, np.float32).astype(np.uint8)
    img.setflags(write=False)
    return img


@functools.lru_cache(maxsize=16)
def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size
    return c[None, :, None], c[:, None, None]


@functools.lru_cache(maxsize=16)
def _noise_field(size: int) -> np.ndarray:
    """A fixed (2 size, 2 size, 1) standard-normal field; each image takes a random window of it (fast)."""
    field = np.random.default_rng(size).standard_normal((2 * size, 2 * size, 1), dtype=np.float32)
    field.setflags(write=False)
    return field


def _apply_lighting(img: np.ndarray, light: Lighting, rng: Optional[np.random.Generator]) -> np.ndarray:
    size = img.shape[0]
    mean = float(np.mean(cv2.mean(img)[:3]))
    gx, gy = _grid(size)
    a = math.radians(light.angle)
    gain = light.brightness * (1.0 + light.gradient * (math.cos(a) * gx + math.sin(a) * gy))
    f = (img.astype(np.float32) * light.contrast + mean * (1.0 - light.contrast)) * gain
    if light.noise > 0 and rng is not None:
        oy, ox = rng.integers(0, size, 2)
        f += _noise_field(size)[oy : oy + size, ox : ox + size] * light.noise
    return np.clip(f, 0, 255).astype(np.uint8)


def _draw(ident: Identity, ex: Expression, p: Dict[str, np.ndarray], unit: float, size: int) -> np.ndarray:
    """Rasterises the projected parts ``p`` (``unit`` pixels per face unit), back to front."""
    img = _background(ident.background_texture, ident.background_color, ident.background_color2,
                      ident.background_seed, size).copy()
    skin = ident.skin
    skin_dark = _shade(skin, 0.78)
    skin_shadow = _shade(skin, 0.88)
    hair = ident.hair_color
    lw = max(1.0, unit * 0.035)  # base line width in pixels

    # Body, hair behind the head, ears, the face itself.
    _fill(img, p["neck"], skin_shadow)
    sc = p["shoulders"]
    _ellipse(img, sc[0], (unit * 1.9, unit * 0.75), 0, ident.clothing_color)
    if ident.hair_style == 2:
        _fill(img, p["hair_back"], hair)
    elif ident.hair_style == 3:
        hc = p["hair_center"]
        _circle(img, hc[0], np.linalg.norm(hc[2] - hc[0]), hair)
    elif ident.hair_style == 4:
        hc = p["hair_center"]
        _circle(img, hc[3], np.linalg.norm(hc[4] - hc[3]), hair)
    for e in p["ears"]:
        _ellipse(img, e, (unit * 0.13, unit * 0.24), 0, skin_shadow)
    lm = p["landmarks"]
    face = np.concatenate([lm[0:17], p["skull"]])
    _fill(img, face, skin)
    _line(img, lm[0:17], skin_dark, lw * 0.6)

    # Cheeks flush with a smile; nasolabial folds deepen with a smile, a nose wrinkle or stretched lips.
    if ex.cheek_raise > 0.15:
        blush = _shade((skin[0] * 1.05, skin[1] * 0.88, skin[2] * 0.88), 1.0)
        for k in (2, 14):
            c = 0.5 * (lm[k] + lm[30])
            _ellipse(img, c, (unit * 0.17, unit * 0.1), 0, blush)
    fold = max(ex.smile, ex.nose_wrinkle * 0.8, ex.lip_stretch * 0.6)
    if fold > 0.2:
        col = _shade(skin, 1.0 - 0.22 * min(1.0, fold))
        _line(img, [p["fold_r"], p["fold_l"]], col, lw * 0.8)

    # Hair cap over the forehead (not for bald heads).
    if ident.hair_style != 0:
        cap = np.concatenate([p["hairline"], p["skull"]])
        _fill(img, cap, hair)

    # Eyes: white, iris and pupil, then skin drawn over whatever lies outside the lids, then the lid lines.
    iris = p["iris"]
    iris_rad = float(np.linalg.norm(iris[2] - iris[0]))
    for side, k in (("r", 0), ("l", 1)):
        up, lo = p[f"eye_{side}_up"], p[f"eye_{side}_lo"]
        _fill(img, np.concatenate([up, lo[::-1]]), (245, 245, 240))
        _circle(img, iris[k], iris_rad, ident.iris_color)
        _circle(img, iris[k], iris_rad * 0.45, (15, 12, 10))
        _circle(img, iris[k] + iris_rad * np.array([-0.3, -0.35]), iris_rad * 0.18, (250, 250, 250))
        n = up[-1] - up[0]
        n = np.array([n[1], -n[0]]) / (np.linalg.norm(n) + 1e-9)  # points up (image y down)
        cover_h = iris_rad * 1.3
        _fill(img, np.concatenate([up, (up + n * cover_h)[::-1]]), skin)
        _fill(img, np.concatenate([lo, (lo - n * cover_h)[::-1]]), skin)
        _line(img, up, (30, 22, 20), lw * 1.1)
        _line(img, lo, skin_dark, lw * 0.5)
        # Upper-lid crease just above the lid.
        _line(img, up[2:-2] + n * (0.35 * iris_rad + 0.03 * unit), skin_dark, lw * 0.5)

    if ident.glasses:
        gl = p["glasses"]
        r = float(np.linalg.norm(gl[2] - gl[0])) * 0.85
        t = max(1.0, unit * 0.03)
        for k in (0, 1):
            _circle(img, gl[k], r, ident.glasses_color, int(round(t)))
        bridge = np.stack([gl[0] + (gl[1] - gl[0]) / np.linalg.norm(gl[1] - gl[0]) * r, gl[6],
                           gl[1] - (gl[1] - gl[0]) / np.linalg.norm(gl[1] - gl[0]) * r])
        _line(img, [bridge, gl[[2, 4]], gl[[3, 5]]], ident.glasses_color, t)

    # Brows: a tapered band between the landmark edge and its lower copy.
    _fill(img, [np.concatenate([lm[17:22], p["brow_r_low"][::-1]]), np.concatenate([lm[22:27], p["brow_l_low"][::-1]])],
          ident.brow_color)
    # Frown furrows (brow lower) and forehead lines (brow raise).
    if ex.brow_lower > 0.3:
        furrows = []
        for a, b in ((21, 39), (22, 42)):
            top = lm[a] + (lm[a] - lm[b]) * 0.15
            bot = 0.5 * (lm[b] + lm[27])
            furrows.append(np.stack([top * 0.8 + lm[27] * 0.2, bot * 0.9 + lm[27] * 0.1]))
        _line(img, furrows, skin_dark, lw * 0.7)
    if ex.brow_raise > 0.4 or ex.brow_inner > 0.5:
        up = (lm[19] + lm[24]) / 2 - lm[27]
        lines = []
        for k in (0.3, 0.55):
            a = lm[19] + up * k
            b = lm[24] + up * k
            lines.append(np.stack([a, (a + b) / 2 + up * 0.05, b]))
        _line(img, lines, skin_dark, lw * 0.6)

    # Nose: alar curves, nostrils, wrinkles on the bridge.
    _line(img, [p["nose_side_r"], p["nose_side_l"]], skin_dark, lw * 0.8)
    _line(img, lm[31:36], _shade(skin, 0.7), lw * 0.8)
    for k in (32, 34):
        _ellipse(img, lm[k] + (lm[30] - lm[33]) * 0.15, (unit * 0.035, unit * 0.02), 0, _shade(skin, 0.45))
    if ex.nose_wrinkle > 0.3:
        across = (lm[45] - lm[36]) / (np.linalg.norm(lm[45] - lm[36]) + 1e-9)  # along the eye line
        d, lift = across * unit * 0.08, np.array([across[1], -across[0]]) * unit * 0.02
        wrinkles = [np.stack([c - d, c - d * 0.2 + lift, c + d])
                    for c in (lm[27] + (lm[30] - lm[27]) * f for f in (0.35, 0.6))]
        _line(img, wrinkles, skin_dark, lw * 0.6)

    # Mouth: lips, the dark inside, teeth under the upper lip.
    _fill(img, p["lip_outer"], ident.lip_color)
    iu, il = p["lip_inner_up"], p["lip_inner_low"]
    gap = float(np.max(np.linalg.norm(il - iu, axis=1)))
    if gap > 0.6:
        _fill(img, np.concatenate([iu, il[::-1]]), (70, 20, 25))
        teeth_h = min(unit * 0.07, gap * 0.5)
        d = il - iu
        dn = d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
        tb = iu + dn * np.minimum(np.linalg.norm(d, axis=1, keepdims=True), teeth_h)
        _fill(img, np.concatenate([iu[1:-1], tb[-2:0:-1]]), (240, 238, 228))
    _line(img, iu, _shade(ident.lip_color, 0.55), lw * 0.7)
    if gap > 0.6:
        _line(img, il, _shade(ident.lip_color, 0.7), lw * 0.5)

    return img


def _face_box(p: Dict[str, np.ndarray], size: int) -> np.ndarray:
    """Detector-style box: jaw sides and chin, top at the middle of the forehead."""
    lm = p["landmarks"]
    jaw = lm[0:17]
    brow_top = lm[17:27, 1].min()
    eye_y = lm[36:48, 1].mean()
    top = brow_top - 0.8 * (eye_y - brow_top) - 0.1 * (jaw[:, 1].max() - brow_top)
    box = np.array([jaw[:, 0].min(), top, jaw[:, 0].max(), jaw[:, 1].max()], np.float32)
    return np.clip(box, 0, size - 1).astype(np.float32)


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
    geom = _face_geometry(identity, expression)
    p, unit = _project(geom, pose, size)
    img = _draw(identity, expression, p, unit, size)
    img = _apply_lighting(img, lighting, rng)
    return img, p["landmarks"].astype(np.float32), _face_box(p, size)


# --------------------------------------------------------------------------------------------------------------
# Datasets of still faces
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------------------


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
        cv2.circle(canvas, (int(cx * _FP), int(cy * _FP)), int(r * min(w, h) * _FP),
                   tuple(int(c) for c in col), -1, cv2.LINE_AA, _FIXED_POINT_SHIFT)
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
