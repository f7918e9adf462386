"""Synthetic face geometry: head pose, the canonical 3-D face points and their projection to pixels.

The 68 landmarks, in dlib's order (0-16 jaw, 17-21 right brow = image left, 22-26 left brow, 27-30 nose bridge,
31-35 nostrils, 36-41 right eye, 42-47 left eye, 48-59 outer lips, 60-67 inner lips), plus denser rendering
curves, are placed on a 3-D face surface by :func:`face_geometry` (driven by the :class:`Identity` and the
:class:`Expression`), rotated by the head :class:`Pose` (yaw, pitch, roll) and projected orthographically to
pixels by :func:`project`.  :func:`face_box` gives the detector-style face box of the projected points.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Tuple

import numpy as np

from ferkeras.data.synthetic.expressions import Expression
from ferkeras.data.synthetic.identities import Identity

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


def face_geometry(ident: Identity, ex: Expression) -> Tuple[List[Tuple[str, int]], np.ndarray]:
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


def project(geom: Tuple[List[Tuple[str, int]], np.ndarray], pose: Pose,
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


def face_box(p: Dict[str, np.ndarray], size: int) -> np.ndarray:
    """Detector-style box: jaw sides and chin, top at the middle of the forehead."""
    lm = p["landmarks"]
    jaw = lm[0:17]
    brow_top = lm[17:27, 1].min()
    eye_y = lm[36:48, 1].mean()
    top = brow_top - 0.8 * (eye_y - brow_top) - 0.1 * (jaw[:, 1].max() - brow_top)
    box = np.array([jaw[:, 0].min(), top, jaw[:, 0].max(), jaw[:, 1].max()], np.float32)
    return np.clip(box, 0, size - 1).astype(np.float32)


__all__ = ("Pose", "face_box", "face_geometry", "project", "sample_pose")
