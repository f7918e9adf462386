"""TFRecord shards of ferkeras.data.tfrecord: round trip, resumable preparation, the prepare tool."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.data import tfrecord
from ferkeras.data.schema import FaceRecord
from ferkeras.face.align import crop_square, square_box

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _image(h, w, k):
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return np.stack([xx * 200 / w + 20, yy * 200 / h + 20, 128 + 60 * np.sin((xx + yy) / 9 + k)], -1).astype(np.uint8)


def _records(tmp_path, n=10, bad=()):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        if i in bad:
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken")
        else:
            cv2.imwrite(str(path), cv2.cvtColor(_image(60, 80, i), cv2.COLOR_RGB2BGR))
        box = [10 + i, 8, 50 + i, 48]
        lm = rng.uniform([15, 12], [45, 44], (68, 2)).astype(np.float32) if i % 2 == 0 else np.full((68, 2), np.nan)
        out.append(FaceRecord(image_path=str(path), box=box, landmarks=lm, valence=0.1 * (i % 10) - 0.5,
                              arousal=np.nan if i % 3 == 0 else 0.3, expression=i % 7, identity=f"p{i % 3}",
                              video=f"vid{i // 4}", frame=i, timestamp=i / 25, dataset="toy"))
    return out


def _examples(folder):
    files = tfrecord.shard_files(str(folder))
    return [tfrecord.parse_example(s) for s in tf.data.TFRecordDataset(files)]


def test_shards_round_trip_labels_landmarks_and_classes(tmp_path):
    records = _records(tmp_path, n=6)
    classes = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    settings = tfrecord.CropSettings(crop_size=64, margin=0.25, quality=100)
    summary = tfrecord.prepare(records, str(tmp_path / "out"), num_shards=3, settings=settings, classes=classes,
                               dataset="toy", split="train", progress=False)
    assert summary["records_written"] == 6 and summary["skipped_total"] == 0 and summary["classes"] == list(classes)
    examples = _examples(tmp_path / "out")
    assert len(examples) == 6
    for r, f in zip(records, examples, strict=True):
        assert [c.decode() for c in f["meta/classes"].numpy()] == list(classes)
        assert int(f["label/expression"]) == r.expression and f["meta/identity"].numpy().decode() == r.identity
        np.testing.assert_allclose(float(f["label/valence"]), r.valence, atol=1e-6)
        assert np.isnan(float(f["label/arousal"])) == np.isnan(r.arousal)
        assert int(f["meta/frame"]) == r.frame and f["meta/video"].numpy().decode() == r.video
        assert f["meta/source"].numpy().decode() == r.image_path
        crop, transform = crop_square(_image(60, 80, int(r.frame)), square_box(r.box, 0.25), 64)
        stored = tf.io.decode_jpeg(f["image/encoded"]).numpy()
        assert stored.shape == (64, 64, 3) and np.abs(stored.astype(float) - crop).mean() < 2.0
        to_crop = lambda p: p @ transform[:, :2].T + transform[:, 2]  # noqa: E731
        np.testing.assert_allclose(f["face/landmarks"].numpy(), to_crop(r.landmarks), atol=1e-3)
        np.testing.assert_allclose(f["face/box"].numpy(), to_crop(r.box.reshape(2, 2)).reshape(4), atol=1e-3)
        # a 40 px box widened by 25 % of its side on each side: a 60 px square, the box 10 px inside it,
        # resized by 64/60 (cv2's half-pixel centres: o = (p + 0.5) s - 0.5)
        s = 64 / 60
        np.testing.assert_allclose(f["face/box"].numpy(), (np.array([10, 10, 50, 50]) + 0.5) * s - 0.5, atol=1e-3)
    # read back through the pipeline: labels in order, landmarks rescaled to the output size
    ds = tfrecord.tfrecord_dataset(str(tmp_path / "out"), image_size=32, batch_size=4, extras=("landmarks",))
    ys = [y for _, y in ds]
    assert np.concatenate([y["expression"].numpy() for y in ys]).tolist() == [r.expression for r in records]
    lm = np.concatenate([y["landmarks"].numpy() for y in ys])
    np.testing.assert_allclose(lm[0], (examples[0]["face/landmarks"].numpy() + 0.5) * 0.5 - 0.5, atol=1e-4)
    assert np.isnan(lm[1]).all()
    assert tfrecord.read_summary(str(tmp_path / "out"))["classes"] == list(classes)


def test_shard_shuffle_is_seeded_and_complete(tmp_path):
    records = _records(tmp_path, n=10)
    tfrecord.prepare(records, str(tmp_path / "out"), num_shards=3, settings=tfrecord.CropSettings(crop_size=16),
                     progress=False)

    def frames(seed):
        ds = tfrecord.tfrecord_dataset(str(tmp_path / "out"), image_size=16, batch_size=4, shuffle=True, seed=seed,
                                       extras=("frame",))
        return [np.concatenate([y["frame"].numpy() for _, y in ds]).tolist() for _ in range(2)]

    first, second = frames(3)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    assert frames(3) == [first, second] and frames(4)[0] != first


def test_skips_are_counted_in_the_summary(tmp_path):
    records = _records(tmp_path, n=5, bad=(1, 3))
    summary = tfrecord.prepare(records, str(tmp_path / "out"), num_shards=2, classes=("a",),
                               reader_skips={"invalid label": 4, tfrecord.UNDECODABLE_IMAGE: 1}, progress=False)
    assert summary["records_written"] == 3
    assert summary["skipped"] == {"invalid label": 4, tfrecord.UNDECODABLE_IMAGE: 3}
    with open(tmp_path / "out" / tfrecord.SUMMARY_FILE) as f:
        on_disk = json.load(f)
    assert on_disk["skipped_total"] == 7 and on_disk["records_written"] == 3
    assert len(_examples(tmp_path / "out")) == 3


def test_faces_below_the_minimum_size_are_skipped_and_named(tmp_path):
    """The shard writer skips (and counts, naming the first) a 1x1 image with a box outside it - once written as a
    flat grey face - and a box only 12 px wide; the reader drops a stored face that was below the minimum."""
    from ferkeras.data.elements import FACE_TOO_SMALL, UNDECODABLE, PipelineStats

    records = _records(tmp_path, n=3)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((1, 1, 3), 128, np.uint8))
    records.insert(1, FaceRecord(image_path=str(tiny), box=[10, 10, 60, 60], expression=3))
    records.append(FaceRecord(image_path=records[0].image_path, box=[10, 10, 22, 40], expression=4))
    summary = tfrecord.prepare(records, str(tmp_path / "out"), num_shards=2, settings=tfrecord.CropSettings(
        crop_size=32), progress=False)
    assert summary["records_written"] == 3 and summary["skipped"] == {FACE_TOO_SMALL: 2}
    assert summary["first_skipped"] == {FACE_TOO_SMALL: str(tiny)}
    assert [int(f["label/expression"]) for f in _examples(tmp_path / "out")] == [0, 1, 2]

    # a shard written without the check (a 1-pixel source stored as a 32 px crop) is dropped on reading, counted
    record = FaceRecord(image_path=str(tiny), box=[0, 0, 1, 1], expression=5)
    crop = tf.io.encode_jpeg(np.full((32, 32, 3), 128, np.uint8)).numpy()
    example = tfrecord.make_example(crop, 32, record, [0, 0, 32, 32], np.full((68, 2), np.nan), [0, 0, 1, 1], ())
    with tf.io.TFRecordWriter(str(tmp_path / "old.tfrecord")) as writer:
        writer.write(b"not an Example")  # and a record that does not parse: dropped, named by its position
        writer.write(example.SerializeToString())
    stats = PipelineStats("old shards")
    assert list(tfrecord.tfrecord_dataset(str(tmp_path / "old.tfrecord"), image_size=16, stats=stats)) == []
    assert stats.counts == {UNDECODABLE: 1, FACE_TOO_SMALL: 1}
    old = tmp_path / "old.tfrecord"
    assert stats.first_dropped() == [f"{old}#0 ({UNDECODABLE})", f"{old}#1 ({FACE_TOO_SMALL})"]  # shard#record


def test_interrupted_preparation_resumes(tmp_path, monkeypatch):
    records = _records(tmp_path, n=12)
    settings = tfrecord.CropSettings(crop_size=32)
    reference = tfrecord.prepare(records, str(tmp_path / "ref"), num_shards=4, settings=settings, progress=False)

    real = tfrecord.encode_record
    calls = {"n": 0}

    def dies_in_third_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:                                                 # shard 2 holds records 6..8
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(tfrecord, "encode_record", dies_in_third_shard)
    with pytest.raises(KeyboardInterrupt):
        tfrecord.prepare(records, str(out), num_shards=4, settings=settings, progress=False)
    monkeypatch.setattr(tfrecord, "encode_record", real)
    names = sorted(os.listdir(out))
    assert sum(n.endswith(tfrecord.DONE_SUFFIX) for n in names) == 2
    assert tfrecord.shard_path(str(out), 2, 4) + ".incomplete" in [str(out / n) for n in names]
    # a shard renamed but killed before its marker must be redone, too
    os.remove(tfrecord.shard_path(str(out), 1, 4) + tfrecord.DONE_SUFFIX)

    resumed = tfrecord.prepare(records, str(out), num_shards=4, settings=settings, progress=False)
    assert resumed["shards_written_now"] == [1, 2, 3]
    for key in ("records_written", "skipped", "shards", "num_shards"):
        assert resumed[key] == reference[key]
    for i in range(4):
        with open(tfrecord.shard_path(str(out), i, 4), "rb") as a, \
                open(tfrecord.shard_path(str(tmp_path / "ref"), i, 4), "rb") as b:
            assert a.read() == b.read()
    again = tfrecord.prepare(records, str(out), num_shards=4, settings=settings, progress=False)
    assert again["shards_written_now"] == [] and again["records_written"] == 12
    with pytest.raises(ValueError, match="different preparation.*settings"):
        tfrecord.prepare(records, str(out), num_shards=4, settings=tfrecord.CropSettings(crop_size=48),
                         progress=False)


def test_dlib_landmarks_and_face_detection(tmp_path):
    from ferkeras.data.synthetic import synthetic_arrays

    faces = synthetic_arrays(1, size=160, seed=3)
    cv2.imwrite(str(tmp_path / "face.png"), cv2.cvtColor(faces["images"][0], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((80, 80, 3), 128, np.uint8))
    records = [FaceRecord(image_path=str(tmp_path / "face.png"), box=faces["boxes"][0], expression=1),
               FaceRecord(image_path=str(tmp_path / "blank.png"), expression=2)]
    settings = tfrecord.CropSettings(crop_size=96, landmarks="dlib", detect=True, detector="hog")
    summary = tfrecord.prepare(records, str(tmp_path / "out"), num_shards=1, settings=settings, progress=False)
    assert summary["records_written"] == 1 and summary["skipped"] == {tfrecord.NO_FACE_FOUND: 1}
    f, = _examples(tmp_path / "out")
    lm = f["face/landmarks"].numpy()
    assert np.isfinite(lm).all() and lm.min() > 0 and lm.max() < 96
    with pytest.raises(ValueError, match="landmarks must be one of"):
        tfrecord.CropSettings(landmarks="magic")


@pytest.mark.slow
def test_prepare_tool_with_two_workers(tmp_path):
    from ferkeras.data.synthetic import formats

    result = formats.write_affectnet(tmp_path / "affectnet", num=12, seed=0, bad_rows=3, size=48)
    from ferkeras.data.readers import make_reader

    dot = make_reader("affectnet", str(tmp_path / "affectnet"), split="train").records()[2].image_path
    cv2.imwrite(dot, np.zeros((1, 1, 3), np.uint8))  # a 1x1 image: skipped as a face too small, named
    out = tmp_path / "shards"
    cmd = [sys.executable, os.path.join(REPO, "tools", "prepare_dataset.py"), "--dataset=affectnet",
           f"--root={tmp_path / 'affectnet'}", "--split=train", f"--out={out}", "--shards=2", "--workers=2",
           "--crop_size=48"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = tfrecord.read_summary(str(out))
    truth = result["splits"]["train"]
    assert summary["classes"][:2] == ["neutral", "happy"] and summary["dataset"] == "affectnet"
    assert summary["records_written"] == len(_examples(out)) == truth["records"] - 1
    assert summary["skipped"] == {**truth["skips"], tfrecord.FACE_TOO_SMALL: 1} and summary["skipped_total"] == 4
    assert f"{truth['records'] - 1} records written to 2 shards" in proc.stdout
    assert f"1  {tfrecord.FACE_TOO_SMALL}  (first: {dot})" in proc.stdout
