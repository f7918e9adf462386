"""Rasterisation of the projected face points, and lighting.

The face is drawn *from the projected points* (anti-aliased ``fillPoly`` / ``polylines`` with sub-pixel
coordinates: :data:`FIXED_POINT_SHIFT` fractional bits), so the landmarks are exactly where the features are
drawn (:func:`draw_face`).  :class:`Lighting` (brightness, contrast, a directional gradient, sensor noise) is
applied last (:func:`apply_lighting`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from ferkeras.data.synthetic.expressions import Expression
from ferkeras.data.synthetic.identities import Identity

FIXED_POINT_SHIFT = 4  # OpenCV drawing with 4 fractional bits: sub-pixel accurate, anti-aliased
FIXED_POINT_SCALE = float(1 << FIXED_POINT_SHIFT)
"""Pixel coordinates are multiplied by this before OpenCV draws them with ``shift=FIXED_POINT_SHIFT``."""


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


def _fx(p: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(p) * FIXED_POINT_SCALE).astype(np.int32)


def _fill(img, pts, color):
    """Fills one polygon, or several non-overlapping ones given as a list, in one OpenCV call."""
    polys = [_fx(q) for q in pts] if isinstance(pts, list) else [_fx(pts)]
    cv2.fillPoly(img, polys, color, cv2.LINE_AA, FIXED_POINT_SHIFT)


def _line(img, pts, color, thickness, closed=False):
    """Draws one polyline, or several given as a list, in one OpenCV call."""
    lines = [_fx(q) for q in pts] if isinstance(pts, list) else [_fx(pts)]
    cv2.polylines(img, lines, closed, color, max(1, int(round(thickness))), cv2.LINE_AA, FIXED_POINT_SHIFT)


def _circle(img, center, radius, color, thickness=-1):
    c = tuple(int(round(v * FIXED_POINT_SCALE)) for v in center)
    cv2.circle(img, c, max(1, int(round(radius * FIXED_POINT_SCALE))), color, thickness, cv2.LINE_AA, FIXED_POINT_SHIFT)


def _ellipse(img, center, axes, angle, color, thickness=-1):
    c = tuple(int(round(v * FIXED_POINT_SCALE)) for v in center)
    ax = tuple(max(1, int(round(v * FIXED_POINT_SCALE))) for v in axes)
    cv2.ellipse(img, c, ax, angle, 0, 360, color, thickness, cv2.LINE_AA, FIXED_POINT_SHIFT)


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


def apply_lighting(img: np.ndarray, light: Lighting, rng: Optional[np.random.Generator]) -> np.ndarray:
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


def draw_face(ident: Identity, ex: Expression, p: Dict[str, np.ndarray], unit: float, size: int) -> np.ndarray:
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


__all__ = ("FIXED_POINT_SCALE", "FIXED_POINT_SHIFT", "Lighting", "apply_lighting", "draw_face", "sample_lighting")
