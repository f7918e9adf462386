"""Drawing boxes, landmarks and track ids on an image, to look at what the face tools found."""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from ferkeras.face.detection import as_image

# Contours of dlib's 68 points: (start, end, closed).
_CONTOURS = ((0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False),
             (36, 42, True), (42, 48, True), (48, 60, True), (60, 68, True))
_COLOURS = ((255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255), (0, 220, 220))


def draw_faces(
    image: np.ndarray,
    boxes=None,
    landmarks=None,
    ids: Optional[Sequence[int]] = None,
    thickness: int = 2,
) -> np.ndarray:
    """Returns an RGB copy of ``image`` with boxes (N, 4), landmark contours (N, 68, 2) and ids drawn.

    Face ``i`` is drawn in colour ``ids[i]`` (or ``i``) of a small palette.
    """
    canvas = as_image(image)
    canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB) if canvas.ndim == 2 else canvas.copy()
    boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    landmarks = np.zeros((0, 68, 2)) if landmarks is None else np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    radius = max(1, thickness)
    for i in range(max(len(boxes), len(landmarks))):
        key = int(ids[i]) if ids is not None else i
        colour = _COLOURS[key % len(_COLOURS)]
        if i < len(boxes):
            x0, y0, x1, y1 = np.round(boxes[i]).astype(int)
            cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
            if ids is not None:
                cv2.putText(canvas, str(key), (x0, max(y0 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.5 * thickness, colour, thickness)
        if i < len(landmarks):
            pts = np.round(landmarks[i]).astype(np.int32)
            for start, end, closed in _CONTOURS:
                cv2.polylines(canvas, [pts[start:end]], closed, colour, max(1, thickness // 2))
            for x, y in pts:
                cv2.circle(canvas, (int(x), int(y)), radius, (255, 255, 255), -1)
    return canvas
