"""Synthetic expressions: valence, arousal, category and the action-unit-like intensities that draw them.

The category names are the record schema's :data:`ferkeras.data.schema.EXPRESSIONS` (AffectNet's eight
categories in AffectNet's order).  :data:`VA_CENTROIDS` places each category on the valence-arousal circumplex
(Russell, "A circumplex model of affect", Journal of Personality and Social Psychology 1980); a sampled face
draws its valence and arousal around its category's centroid with spread :data:`VA_SPREAD`.  The action units
(named after the Facial Action Coding System of Ekman and Friesen) are a deterministic function of
(category, valence, arousal): :func:`expression_from_va`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional

import numpy as np

from ferkeras.data.schema import EXPRESSIONS

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


__all__ = ("EXPRESSIONS", "VA_CENTROIDS", "VA_SPREAD", "Expression", "expression_from_va", "nearest_category",
           "sample_expression")
