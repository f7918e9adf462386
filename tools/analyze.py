"""Faces, expressions and valence-arousal in a photo, a folder of photos or a video: a CSV and pictures.

    python tools/analyze.py --input=group.jpg --model=runs/baseline --out=out/
    python tools/analyze.py --input=photos/ --model=saved_models/baseline --out=out/
    python tools/analyze.py --input=clip.mp4 --model=runs/baseline --out=out/ --every=2 --annotate
    # any Keras FER model: a grayscale 64x64 mini-Xception saved as legacy HDF5, inputs in [-1, 1]
    python tools/analyze.py --input=group.jpg --model=fer2013_mini_XCEPTION.hdf5 --scaling=symmetric --out=out/

--model: a .keras / .h5 / .hdf5 file, a ferkeras run directory, an export (``saved_models/<name>[/<version>]``) or
any SavedModel folder.  The adapter flags (--input_size, --channels, --scaling, --va_output, --expression_output,
--outputs, --class_names) are the fields of ferkeras.inference.ModelAdapter; what is not set is inferred from the
model.  Every output goes under --out (``<name>`` = the input's name without extension, or --name):

* photos: ``<name>.csv`` (file, face_id, box, score, valence, arousal, expression, prob_<class>) and
  ``<photo>_annotated.jpg`` per photo (boxes, ids, top expression, valence-arousal);
* video (a video file, or a folder of frames with --as_video / --fps): ``<name>.csv`` (frame, time, face_id, ...),
  ``<name>_va.png`` and ``<name>_expression.png`` timelines, ``<name>_annotated.mp4`` with --annotate,
  ``<name>_frames/<frame>.png`` with --annotate_frames.

Prints what it wrote and the time per stage.  See ferkeras.inference for the library functions.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

_INPUT = flags.DEFINE_string("input", None, "A photo, a folder of photos, a video file, or a folder of frames "
                             "(with --as_video).")
_MODEL = flags.DEFINE_string("model", None, "A .keras / .h5 / .hdf5 file, a run directory, an export or a "
                             "SavedModel folder.", required=True)
_OUT = flags.DEFINE_string("out", "analysis", "Output folder (created); nothing is written beside the input.")
_NAME = flags.DEFINE_string("name", None, "Stem of the output files; default the input's name.")
_AS_VIDEO = flags.DEFINE_bool("as_video", None, "A folder holds the frames of a video (default: photos, unless "
                              "--fps is given).")
# Detection and crops: None = ferkeras.face's defaults.
_DETECTOR = flags.DEFINE_enum("detector", None, ["hog", "haar", "cnn", "auto"],
                              "Face detector (default FaceDetector()'s; auto: HOG, then Haar when HOG finds nothing; "
                              "cnn finds more faces but costs seconds per photo on a CPU).")
_UPSAMPLE = flags.DEFINE_integer("upsample", None, "Image doublings before detection (default FaceDetector()'s; "
                                 "each finds faces half as small and costs ~4x).")
_MIN_FACE = flags.DEFINE_float("min_face", 0.0, "Drop faces whose box side is below this many pixels.")
_MAX_FACES = flags.DEFINE_integer("max_faces", None, "Keep at most this many faces per image (largest first).")
_CROP = flags.DEFINE_enum("crop", "box", ["box", "aligned"], "box: the training pipelines' square crop around the "
                          "detector box; aligned: warped to the canonical face by dlib's 68 landmarks.")
_MARGIN = flags.DEFINE_float("margin", None, "Face widening on each side (default ferkeras.face's for --crop).")
_LANDMARKS = flags.DEFINE_bool("landmarks", False, "Find dlib's 68 landmarks: x_i, y_i CSV columns, drawn.")
# Video.
_EVERY = flags.DEFINE_integer("every", 1, "Video: analyse every n-th frame.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", None, "Video: stop after this many analysed frames.")
_FPS = flags.DEFINE_float("fps", None, "Frame rate of a folder of frames (times are left empty without it).")
_MIN_IOU = flags.DEFINE_float("min_iou", 0.3, "Tracker: least IoU for a face to keep its id.")
_MAX_AGE = flags.DEFINE_integer("max_age", 5, "Tracker: analysed frames a face may be missed before its id ends.")
_ANNOTATE = flags.DEFINE_bool("annotate", False, "Video: write <name>_annotated.mp4.")
_ANNOTATE_FRAMES = flags.DEFINE_bool("annotate_frames", False, "Video: write <name>_frames/<frame>.png.")
_ANNOTATE_PHOTOS = flags.DEFINE_bool("annotate_photos", True, "Photos: write <photo>_annotated.jpg.")
# The model adapter (ferkeras.inference.ModelAdapter); unset = inferred from the model.
_INPUT_SIZE = flags.DEFINE_integer("input_size", None, "Model input side (needed when the model accepts any size).")
_CHANNELS = flags.DEFINE_enum("channels", None, ["1", "3"], "Model input channels: 1 grayscale, 3 RGB.")
_SCALING = flags.DEFINE_enum("scaling", "unit", ["unit", "symmetric", "byte", "imagenet"],
                             "Pixel range the model takes: unit [0, 1] (ferkeras), symmetric [-1, 1], byte [0, 255], "
                             "imagenet (mean / std).")
_VA_OUTPUT = flags.DEFINE_string("va_output", None, "Name or index of the (B, 2) valence-arousal output, or none.")
_EXPRESSION_OUTPUT = flags.DEFINE_string("expression_output", None, "Name or index of the (B, C) expression output, "
                                         "or none.")
_OUTPUTS = flags.DEFINE_enum("outputs", "auto", ["auto", "logits", "probabilities"],
                             "Expression output kind (auto: probabilities if rows are non-negative and sum to 1).")
_CLASS_NAMES = flags.DEFINE_list("class_names", None, "Expression class names (default the run's / export's, else "
                                 "ferkeras' 8 for 8 classes, FER2013's order for 7).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Faces predicted together.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")

# The names of tools/analyze_video.py, which is this tool with --out as a file prefix.
flags.DEFINE_alias("video", "input")
flags.DEFINE_alias("every_n", "every")
flags.DEFINE_alias("annotate_video", "annotate")


def adapter_from_flags():
    """The ferkeras.inference.ModelAdapter the adapter flags describe."""
    from ferkeras.inference import ModelAdapter

    return ModelAdapter(input_size=_INPUT_SIZE.value, channels=int(_CHANNELS.value) if _CHANNELS.value else None,
                        scaling=_SCALING.value, va_output=_VA_OUTPUT.value,
                        expression_output=_EXPRESSION_OUTPUT.value, outputs=_OUTPUTS.value,
                        class_names=tuple(_CLASS_NAMES.value) if _CLASS_NAMES.value else None)


def detector_from_flags():
    """FaceDetector with ferkeras.face's defaults for every detection flag left unset."""
    from ferkeras.face import FaceDetector

    kwargs = dict(min_size=_MIN_FACE.value, max_faces=_MAX_FACES.value)
    if _DETECTOR.value is not None:
        kwargs["method"] = _DETECTOR.value
    if _UPSAMPLE.value is not None:
        kwargs["upsample"] = _UPSAMPLE.value
    return FaceDetector(**kwargs)


def run(source: str, out_dir: str, name=None, as_video=None) -> int:
    from ferkeras.face import IoUTracker
    from ferkeras.inference import PhotoAnalysis, analyze

    try:
        result = analyze(
            source, _MODEL.value, out_dir, name=name, as_video=as_video, detector=detector_from_flags(),
            tracker=IoUTracker(min_iou=_MIN_IOU.value, max_age=_MAX_AGE.value), margin=_MARGIN.value,
            crop=_CROP.value, landmarks=_LANDMARKS.value, batch_size=_BATCH_SIZE.value, adapter=adapter_from_flags(),
            every_n=_EVERY.value, max_frames=_MAX_FRAMES.value, fps=_FPS.value, annotate_video=_ANNOTATE.value,
            annotate_frames=_ANNOTATE_FRAMES.value, annotate_photos=_ANNOTATE_PHOTOS.value,
            progress=_PROGRESS.value)
    except (FileNotFoundError, OSError, ValueError) as e:
        logging.error("%s", e)
        return 1
    if isinstance(result, PhotoAnalysis):
        print(f"{result.photos} photos, {result.faces} faces, {result.skipped.skipped} unreadable files skipped")
        print(f"wrote {result.csv_path} ({result.rows} rows)")
        for path in result.annotated:
            print(f"wrote {path}")
        print(result.timer.summary(result.photos, "photo"))
    else:
        print(f"{result.frames} frames, {result.faces} faces, face ids {result.face_ids}")
        print(f"wrote {result.csv_path} ({result.rows} rows)")
        for path in (result.plot_path, result.expression_plot_path):
            if path:
                print(f"wrote {path}")
        print(result.timer.summary(result.frames))
    return 0


def main(argv, out_is_prefix: bool = False):
    """``out_is_prefix``: tools/analyze_video.py's convention, --out is a file prefix and a folder is frames."""
    source = _INPUT.value
    if len(argv) == 2 and source is None:
        source = argv[1]
    elif len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; pass one input (--input=PATH or a single argument)")
    if source is None:
        raise app.UsageError("no input: pass --input=PATH (a photo, a folder of photos or a video)")
    if out_is_prefix:
        prefix = _OUT.value if _OUT.value != "analysis" else os.path.join(
            "analysis", os.path.splitext(os.path.basename(os.path.normpath(source)))[0])
        return run(source, os.path.dirname(prefix) or ".", name=os.path.basename(prefix), as_video=True)
    return run(source, _OUT.value, name=_NAME.value, as_video=_AS_VIDEO.value)


if __name__ == "__main__":
    app.run(main)
