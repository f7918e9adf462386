"""ferkeras.face: face detection, dlib's 68 landmarks, alignment and crops, IoU tracking, video frames.

Images are uint8 RGB (H, W, 3) or grayscale (H, W); boxes float32 x0, y0, x1, y1
(x1, y1 exclusive); landmarks float32 (68, 2) in dlib's order.  The defaults (detector, upsampling,
crop margins) live in :mod:`ferkeras.face.defaults`, with the measurements behind them.  See
:mod:`ferkeras.face.detection` for how the dlib objects are built lazily so the
tools work in threads and multiprocessing workers.
"""

from ferkeras.face.align import (
    AlignedFace,
    align_face,
    crop_eyes,
    crop_face,
    crop_mouth,
    crop_square,
    eye_centers,
    mouth_center,
    points_box,
    similarity_transform,
    square_box,
    template_points,
    transform_points,
)
from ferkeras.face.defaults import ALIGN_MARGIN, DETECTOR_METHOD, DETECTOR_UPSAMPLE, FACE_MARGIN
from ferkeras.face.detection import (
    Detections,
    FaceDetector,
    LandmarkDetector,
    as_image,
    detect_faces,
    detect_landmarks,
)
from ferkeras.face.draw import draw_faces
from ferkeras.face.models import find_model_file
from ferkeras.face.tracking import IoUTracker, TrackedFrame, box_iou, track_video
from ferkeras.face.video import Frame, VideoInfo, iter_frames, video_info

__all__ = [
    "ALIGN_MARGIN", "DETECTOR_METHOD", "DETECTOR_UPSAMPLE", "FACE_MARGIN",
    "AlignedFace", "Detections", "FaceDetector", "Frame", "IoUTracker", "LandmarkDetector", "TrackedFrame",
    "VideoInfo", "align_face", "as_image", "box_iou", "crop_eyes", "crop_face", "crop_mouth", "crop_square",
    "detect_faces", "detect_landmarks", "draw_faces", "eye_centers", "find_model_file", "iter_frames",
    "mouth_center", "points_box", "similarity_transform", "square_box", "template_points", "track_video",
    "transform_points", "video_info",
]
