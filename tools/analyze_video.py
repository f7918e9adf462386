"""Valence, arousal and expression of every face in a video: a CSV, a plot over time, annotated frames.

    python tools/analyze_video.py --video=clip.mp4 --model=saved_models/baseline --out=out/clip
    python tools/analyze_video.py --video=frames/ --fps=30 --model=runs/baseline_affectnet --detector=haar \
        --every_n=2 --annotate_video

--model is an exported SavedModel (``saved_models/<name>/<version>`` or ``saved_models/<name>`` for the newest
version) or a ``.keras`` file / run directory.  Writes ``<out>.csv`` (frame, time, face_id, box, valence, arousal,
expression and one ``prob_<class>`` column per class), ``<out>_va.png`` and, on request, ``<out>_annotated.mp4`` or
``<out>_frames/*.png``; prints the time spent per stage.  See ferkeras.inference for the details.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

_VIDEO = flags.DEFINE_string("video", None, "A video file or a folder of frame images.", required=True)
_MODEL = flags.DEFINE_string("model", None, "An exported SavedModel folder, a .keras file or a run directory.",
                             required=True)
_OUT = flags.DEFINE_string("out", None, "Output prefix; default the video's path without its extension.")
_DETECTOR = flags.DEFINE_enum("detector", "hog", ["hog", "haar", "cnn", "auto"],
                              "Face detector (auto: HOG, then Haar when HOG finds nothing).")
_UPSAMPLE = flags.DEFINE_integer("upsample", 0, "Image doublings before detection (finds faces half as small, "
                                 "~4x slower each).")
_MIN_FACE = flags.DEFINE_float("min_face", 0.0, "Drop faces whose box side is below this many pixels.")
_MAX_FACES = flags.DEFINE_integer("max_faces", None, "Keep at most this many faces per frame (largest first).")
_EVERY_N = flags.DEFINE_integer("every_n", 1, "Analyse every n-th frame.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", None, "Stop after this many analysed frames.")
_FPS = flags.DEFINE_float("fps", None, "Frame rate of a folder of frames (times are left empty without it).")
_MARGIN = flags.DEFINE_float("margin", 0.2, "Face box widening on each side, as in training.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Faces predicted together.")
_MIN_IOU = flags.DEFINE_float("min_iou", 0.3, "Tracker: least IoU for a face to keep its id.")
_MAX_AGE = flags.DEFINE_integer("max_age", 5, "Tracker: analysed frames a face may be missed before its id ends.")
_CLASS_NAMES = flags.DEFINE_list("class_names", None, "Expression class names of a Keras model without a "
                                 "result.json (default the run's, else ferkeras' 8).")
_ANNOTATE_VIDEO = flags.DEFINE_bool("annotate_video", False, "Write <out>_annotated.mp4.")
_ANNOTATE_FRAMES = flags.DEFINE_bool("annotate_frames", False, "Write <out>_frames/<frame>.png.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
    del argv
    from ferkeras.inference import analyze_video
    from ferkeras.face import FaceDetector, IoUTracker

    out = _OUT.value or os.path.splitext(os.path.normpath(_VIDEO.value))[0]
    detector = FaceDetector(_DETECTOR.value, upsample=_UPSAMPLE.value, min_size=_MIN_FACE.value,
                            max_faces=_MAX_FACES.value)
    try:
        result = analyze_video(
            _VIDEO.value, _MODEL.value, out + ".csv", plot_path=out + "_va.png", detector=detector,
            tracker=IoUTracker(min_iou=_MIN_IOU.value, max_age=_MAX_AGE.value), every_n=_EVERY_N.value,
            max_frames=_MAX_FRAMES.value, fps=_FPS.value, margin=_MARGIN.value, batch_size=_BATCH_SIZE.value,
            class_names=_CLASS_NAMES.value, annotated_video=out + "_annotated.mp4" if _ANNOTATE_VIDEO.value else None,
            annotated_frames=out + "_frames" if _ANNOTATE_FRAMES.value else None, progress=_PROGRESS.value)
    except (FileNotFoundError, OSError, ValueError) as e:
        logging.error("%s", e)
        return 1
    print(f"{result.frames} frames, {result.faces} faces, face ids {result.face_ids}")
    print(f"wrote {result.csv_path} ({result.rows} rows) and {result.plot_path}")
    print(result.timer.summary(result.frames))
    return 0


if __name__ == "__main__":
    app.run(main)
