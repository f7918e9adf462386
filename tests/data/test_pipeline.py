"""tf.data pipelines of ferkeras.data.pipeline (element and shared tail of ferkeras.data.elements, image ops of
ferkeras.data.image_ops) and the in-graph augmentation of ferkeras.augment.spatial."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.augment.spatial import DLIB_FLIP_PERMUTATION, FaceAugment, flip_landmarks
from ferkeras.data.elements import EXTRA_KEYS, FACE_TOO_SMALL, MIN_FACE_SIZE, UNDECODABLE, PipelineStats
from ferkeras.data.pipeline import SyntheticSpec, build_dataset, from_arrays, from_records
from ferkeras.data.schema import MISSING_INT, FaceRecord
from ferkeras.face.align import crop_square, square_box


def _smooth_image(h, w, k):
    """A smooth colour image (so resampling differences stay small), different for each k."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return np.stack([xx * 200 / w + 20, yy * 200 / h + 20, 128 + 60 * np.sin((xx + yy) / 9 + k)], -1).astype(np.uint8)


def _write(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    return str(path)


def _records(tmp_path, n=6):
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        image = _smooth_image(70, 90, i)
        box = np.array([20 + i, 10, 60 + i, 50], np.float32)
        landmarks = rng.uniform([25, 15], [55, 45], (68, 2)).astype(np.float32)
        common = dict(box=box, landmarks=landmarks, valence=0.1 * i, arousal=-0.05 * i, expression=i % 4,
                      identity=f"id{i}", video=f"v{i // 2}", frame=i, timestamp=0.5 * i, dataset="test")
        if i % 3 == 2:  # encoded bytes instead of a path
            records.append(FaceRecord(image_bytes=cv2.imencode(".png", image[..., ::-1])[1].tobytes(), **common))
        else:
            records.append(FaceRecord(image_path=_write(tmp_path / f"{i}.{'jpg' if i % 3 else 'png'}", image),
                                      **common))
    return records


def _collect(ds):
    images, targets = [], {}
    for x, y in ds:
        images.append(x.numpy())
        for k, v in y.items():
            targets.setdefault(k, []).append(v.numpy())
    return np.concatenate(images), {k: np.concatenate(v) for k, v in targets.items()}


def test_raw_paths_and_bytes_crop_labels_and_landmarks(tmp_path):
    records = _records(tmp_path)
    size, margin = 48, 0.25
    ds = from_records(records, image_size=size, batch_size=4, margin=margin, extras=EXTRA_KEYS)
    images, t = _collect(ds)
    assert images.shape == (6, size, size, 3) and images.dtype == np.float32
    np.testing.assert_allclose(t["va"], [[0.1 * i, -0.05 * i] for i in range(6)], atol=1e-6)
    assert t["expression"].tolist() == [0, 1, 2, 3, 0, 1] and t["expression"].dtype == np.int32
    assert [s.decode() for s in t["identity"]] == [f"id{i}" for i in range(6)]
    assert t["frame"].tolist() == list(range(6)) and [s.decode() for s in t["video"]] == ["v0", "v0", "v1", "v1",
                                                                                          "v2", "v2"]
    for i, r in enumerate(records):
        image = _smooth_image(70, 90, i)
        if r.image_path.endswith(".jpg"):
            image = cv2.cvtColor(cv2.imread(r.image_path), cv2.COLOR_BGR2RGB)
        # Square box [x0, x0+60) x [0, 60): integer corners, so ferkeras.face's crop_square is exact too.
        expected, transform = crop_square(image, square_box(r.box, margin), size)
        assert np.abs(images[i] - expected / 255.0).mean() < 0.01
        np.testing.assert_allclose(t["landmarks"][i], r.landmarks @ transform[:, :2].T + transform[:, 2], atol=1e-3)


def test_grayscale_and_no_box_and_missing_labels(tmp_path):
    grey = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (20, 1))       # 20 x 40, no box
    record = FaceRecord(image_path=_write(tmp_path / "g.png", grey))
    (x, y), = list(from_records([record], image_size=40, batch_size=1, extras=("landmarks", "frame", "timestamp")))
    x = x.numpy()[0]
    np.testing.assert_allclose(x[..., 0], x[..., 1])
    np.testing.assert_allclose(x[..., 1], x[..., 2])
    # no box -> the whole image padded to a square: black bands above and below, the ramp in the middle
    assert x[:8].max() < 0.02 and x[-8:].max() < 0.02
    np.testing.assert_allclose(x[20, :, 0], np.linspace(0, 1, 40), atol=0.03)
    assert np.isnan(y["va"].numpy()).all() and y["expression"].numpy().tolist() == [MISSING_INT]
    assert np.isnan(y["landmarks"].numpy()).all() and y["frame"].numpy().tolist() == [MISSING_INT]
    assert np.isnan(y["timestamp"].numpy()).all()


def test_corrupt_image_is_dropped_and_counted(tmp_path):
    records = _records(tmp_path, n=4)
    jpeg = open(records[1].image_path, "rb").read()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])        # valid header, cut short
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    bad = [FaceRecord(image_path=str(tmp_path / "truncated.jpg"), expression=7),
           FaceRecord(image_bytes=b"not an image at all", expression=7),
           FaceRecord(image_path=str(tmp_path / "garbage.jpg"), expression=7)]
    stats = PipelineStats("test")
    ds = from_records(records[:2] + bad + records[2:], image_size=32, batch_size=3, stats=stats)
    _, t = _collect(ds)
    assert t["expression"].tolist() == [0, 1, 2, 3]
    assert stats.dropped == 3 and int(stats.decoded.numpy()) == 4
    assert stats.counts == {UNDECODABLE: 3, FACE_TOO_SMALL: 0}
    assert stats.first_dropped() == [f"{tmp_path / 'truncated.jpg'} (undecodable image)",
                                     "<encoded bytes> (undecodable image)",
                                     f"{tmp_path / 'garbage.jpg'} (undecodable image)"]
    _collect(ds)  # a second epoch does not crash either, counts accumulate; each name is listed once
    assert stats.dropped == 6 and int(stats.attempted.numpy()) == 14 and len(stats.first_dropped()) == 3
    assert stats.as_dict()["dropped_by_reason"] == {UNDECODABLE: 6, FACE_TOO_SMALL: 0}


def test_faces_below_the_minimum_size_are_dropped_and_counted(tmp_path):
    """A 1x1 image with a face box outside it (once trained on as a flat grey face), a face box of 15 px, a box
    lying outside a large image and a 12x40 image without a box are dropped as too small; 16 px faces are kept."""
    records = _records(tmp_path, n=2)
    tiny = _write(tmp_path / "tiny.png", np.full((1, 1, 3), 128, np.uint8))
    strip = _write(tmp_path / "strip.png", _smooth_image(12, 40, 0))
    big = records[0].image_path  # 70 x 90
    small = [FaceRecord(image_path=tiny, box=[10, 10, 60, 60], expression=7),
             FaceRecord(image_path=big, box=[10, 10, 25, 40], expression=7),                  # 15 px wide
             FaceRecord(image_path=big, box=[200, 200, 260, 260], expression=7),              # outside the image
             FaceRecord(image_path=big, box=[80, 10, 120, 50], expression=7),                 # 10 px inside it
             FaceRecord(image_path=strip, expression=7)]
    kept = [FaceRecord(image_path=big, box=[10, 10, 10 + MIN_FACE_SIZE, 10 + MIN_FACE_SIZE], expression=5),
            FaceRecord(image_path=_write(tmp_path / "min.png", _smooth_image(MIN_FACE_SIZE, MIN_FACE_SIZE, 1)),
                       expression=6)]
    stats = PipelineStats("small")
    _, t = _collect(from_records(records + small + kept, image_size=16, batch_size=4, stats=stats))
    assert t["expression"].tolist() == [0, 1, 5, 6]
    assert stats.counts == {UNDECODABLE: 0, FACE_TOO_SMALL: 5} and stats.dropped == 5
    assert stats.first_dropped()[0] == f"{tiny} ({FACE_TOO_SMALL})" and FACE_TOO_SMALL == "face smaller than 16 px"


def test_drop_counting_works_in_graph_mode_and_under_a_distribution_strategy(tmp_path):
    """The counts and names are TensorFlow state: a tf.function consuming the pipeline and a distributed dataset
    update them like eager iteration."""
    records = _records(tmp_path, n=4)
    (tmp_path / "half.jpg").write_bytes(open(records[1].image_path, "rb").read()[:300])
    records.insert(2, FaceRecord(image_path=str(tmp_path / "half.jpg"), expression=7))
    stats = PipelineStats("graph")
    ds = from_records(records, image_size=16, batch_size=2, stats=stats)

    @tf.function
    def total(dataset):
        n = tf.constant(0)
        for _, y in dataset:
            n += tf.shape(y["expression"])[0]
        return n

    assert int(total(ds)) == 4 and stats.dropped == 1
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    seen = sum(int(strategy.experimental_local_results(y["expression"])[0].shape[0])
               for _, y in strategy.experimental_distribute_dataset(ds))
    assert seen == 4 and stats.dropped == 2 and int(stats.decoded.numpy()) == 8
    assert stats.first_dropped() == [f"{tmp_path / 'half.jpg'} (undecodable image)"]
    with strategy.scope():  # stats made inside a strategy's scope still count (their variables are not mirrored)
        inside = PipelineStats("inside")
    assert len(list(from_records(records, image_size=16, batch_size=2, stats=inside))) == 2 and inside.dropped == 1


def test_raw_files_shards_and_arrays_give_the_same_labels(tmp_path):
    """The same records through raw files, TFRecord shards and arrays give identical ``va`` and ``expression``
    batches, equal to the hand-written labels: valence and arousal differ in every record, so a reader that swaps
    them (or mixes up label fields) fails here."""
    from ferkeras.data.tfrecord import CropSettings, prepare

    valence = [0.5, -0.25, 0.75, -0.5, 0.125]
    arousal = [-0.75, 0.25, 0.0, 0.625, -0.375]
    expression = [3, 0, 6, 1, 5]
    images = [_smooth_image(40, 40, k) for k in range(5)]
    records = [FaceRecord(image_path=_write(tmp_path / f"f{i}.png", images[i]), valence=valence[i],
                          arousal=arousal[i], expression=expression[i]) for i in range(5)]
    prepare(records, str(tmp_path / "shards"), num_shards=2, settings=CropSettings(crop_size=32), progress=False)
    common = dict(image_size=32, batch_size=2)
    sources = {"raw": build_dataset(records, **common), "shards": build_dataset(str(tmp_path / "shards"), **common),
               "arrays": from_arrays(np.stack(images), valence, arousal, expression, **common)}
    want_va = np.array([valence, arousal], np.float32).T
    for name, ds in sources.items():
        batches = [(y["va"].numpy(), y["expression"].numpy()) for _, y in ds]
        assert [len(e) for _, e in batches] == [2, 2, 1], name
        np.testing.assert_array_equal(np.concatenate([va for va, _ in batches]), want_va, err_msg=name)
        assert np.concatenate([e for _, e in batches]).tolist() == expression, name


def test_flip_permutation_is_a_mirror_involution():
    perm = DLIB_FLIP_PERMUTATION
    assert sorted(perm.tolist()) == list(range(68)) and (perm[perm] == np.arange(68)).all()
    from ferkeras.data.synthetic import synthetic_arrays

    lm = synthetic_arrays(2, size=64, seed=0)["landmarks"]
    flipped = flip_landmarks(lm, 64).numpy()
    # after mirroring and relabelling, the semantic left/right order is the same as before
    for a, b in [(0, 16), (36, 45), (39, 42), (17, 26), (48, 54), (31, 35), (60, 64)]:
        assert (lm[:, a, 0] < lm[:, b, 0]).all() and (flipped[:, a, 0] < flipped[:, b, 0]).all()
    np.testing.assert_allclose(flip_landmarks(flipped, 64).numpy(), lm, atol=1e-4)


def test_flip_augment_moves_pixels_and_landmarks_together():
    n, s = 12, 32
    rng = np.random.default_rng(1)
    lm = rng.uniform(4, 27, (n, 68, 2)).round().astype(np.float32)
    images = np.zeros((n, s, s, 3), np.float32)
    for i in range(n):  # a marker only at landmark 0 (jaw start, which becomes index 16 when mirrored)
        x, y = lm[i, 0].astype(int)
        images[i, y, x] = 1.0
    aug = FaceAugment(flip=True, seed=3)
    out, out_lm = aug(images, lm)
    out, out_lm = out.numpy(), out_lm.numpy()
    flipped = np.array([np.allclose(out[i], images[i, :, ::-1]) for i in range(n)])
    assert flipped.any() and (~flipped).any()
    for i in range(n):
        if flipped[i]:
            np.testing.assert_allclose(out_lm[i], flip_landmarks(lm[i], s).numpy(), atol=1e-4)
            x, y = out_lm[i, 16]
        else:
            np.testing.assert_allclose(out_lm[i], lm[i], atol=1e-4)
            x, y = out_lm[i, 0]
        assert out[i, int(round(y)), int(round(x)), 0] == pytest.approx(1.0, abs=1e-4)


def test_geometric_augment_keeps_landmarks_on_their_pixels():
    n, s = 8, 64
    rng = np.random.default_rng(2)
    lm = np.full((n, 68, 2), np.nan, np.float32)
    lm[:, 30] = rng.uniform(20, 44, (n, 2)).round()
    images = np.zeros((n, s, s, 3), np.float32)
    for i in range(n):
        x, y = lm[i, 30].astype(int)
        images[i, y - 1:y + 2, x - 1:x + 2] = 1.0   # a 3x3 dot around the nose tip
    aug = FaceAugment(crop_scale=(0.5, 0.9), crop_ratio=(0.8, 1.25), max_rotation=25, flip=True,
                      fill_mode="constant", seed=5)
    out, out_lm = aug(images, lm)
    out, out_lm = out.numpy()[..., 0], out_lm.numpy()
    assert np.isnan(out_lm[:, :30]).all()
    for i in range(n):
        w = out[i] / out[i].sum()
        centre = [(w.sum(0) * np.arange(s)).sum(), (w.sum(1) * np.arange(s)).sum()]  # x, y centroid
        np.testing.assert_allclose(centre, out_lm[i, 30], atol=0.6)


def test_colour_augment():
    images = tf.random.stateless_uniform((6, 16, 16, 3), (1, 2))
    same, _ = FaceAugment(flip=False, brightness=0.5, contrast=0.5, jitter_p=0.0)(images)
    np.testing.assert_allclose(same.numpy(), images.numpy(), atol=1e-6)
    jittered, _ = FaceAugment(flip=False, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2, seed=1)(images)
    assert 0 <= jittered.numpy().min() and jittered.numpy().max() <= 1
    assert np.abs(jittered.numpy() - images.numpy()).mean() > 0.02
    grey, _ = FaceAugment(flip=False, grayscale_p=1.0, seed=1)(images)
    np.testing.assert_allclose(grey.numpy()[..., 0], grey.numpy()[..., 2], atol=1e-5)
    blurred, _ = FaceAugment(flip=False, blur_p=1.0, blur_sigma=(1.0, 1.0), seed=1)(images)
    # a normalised blur keeps the mean and lowers the pixel-to-pixel variation
    np.testing.assert_allclose(blurred.numpy().mean(), images.numpy().mean(), atol=0.01)
    assert np.diff(blurred.numpy(), axis=2).std() < 0.6 * np.diff(images.numpy(), axis=2).std()
    with pytest.raises(ValueError, match="preset"):
        FaceAugment.preset("nope")


def test_seeded_shuffle_and_augmentation_are_reproducible(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)

    def run(seed):
        ds = from_arrays(images, expression=np.arange(40), batch_size=8, shuffle=True, seed=seed,
                         augment=FaceAugment.preset("sslfer", seed=seed))
        return [_collect(ds) for _ in range(2)]

    (x1, t1), (x2, t2) = run(7)
    (y1, u1), (y2, u2) = run(7)
    assert sorted(t1["expression"].tolist()) == list(range(40))
    assert t1["expression"].tolist() == u1["expression"].tolist() and t2["expression"].tolist() == u2[
        "expression"].tolist()
    assert t1["expression"].tolist() != t2["expression"].tolist()           # reshuffled each epoch
    np.testing.assert_array_equal(x1, y1)
    np.testing.assert_array_equal(x2, y2)
    (z1, v1), _ = run(8)
    assert v1["expression"].tolist() != t1["expression"].tolist()


def test_element_specs_are_identical(tmp_path):
    from ferkeras.data.tfrecord import CropSettings, prepare

    records = _records(tmp_path, n=3)
    prepare(records, str(tmp_path / "shards"), num_shards=2, settings=CropSettings(crop_size=40), progress=False)
    arrays = np.zeros((3, 24, 24, 3), np.uint8)
    for extras in ((), EXTRA_KEYS):
        common = dict(image_size=32, batch_size=2, extras=extras)
        raw = build_dataset(records, **common)
        shards = build_dataset(str(tmp_path / "shards"), **common)
        mem = from_arrays(arrays, **common)
        assert raw.element_spec == shards.element_spec == mem.element_spec
        spec = raw.element_spec
        assert spec[0].shape.as_list() == [None, 32, 32, 3] and spec[0].dtype == tf.float32
        assert set(spec[1]) == {"va", "expression", *extras}
        for ds in (raw, shards, mem):
            x, y = next(iter(ds))
            assert x.shape == (2, 32, 32, 3) and y["va"].shape == (2, 2)


def test_build_dataset_sources_and_errors(tmp_path):
    class FakeReader:
        def __init__(self, records):
            from ferkeras.data.schema import SkipCounter

            self.records, self.classes, self.skips = records, ("a", "b"), SkipCounter("fake")

        def __iter__(self):
            return iter(self.records)

    ds = build_dataset(FakeReader(_records(tmp_path, n=4)), batch_size=3, training=True, seed=0, image_size=16)
    assert [x.shape[0] for x, _ in ds] == [3]                               # training drops the partial batch
    syn = build_dataset(SyntheticSpec(num=4, size=32), batch_size=4, image_size=24, extras=("landmarks",))
    x, y = next(iter(syn))
    assert x.shape == (4, 24, 24, 3) and np.isfinite(y["landmarks"].numpy()).all()
    assert set(y["expression"].numpy().tolist()) <= set(range(8))
    with pytest.raises(ValueError, match="unknown extras"):
        build_dataset(_records(tmp_path, n=1), extras=("pose",))
    with pytest.raises(ValueError, match="every epoch would be empty"):
        build_dataset(_records(tmp_path, n=2), batch_size=3, training=True)
    with pytest.raises(ValueError, match="no records"):
        build_dataset([])
    with pytest.raises(FileNotFoundError, match="no TFRecord shards"):
        build_dataset(str(tmp_path / "nothing-*.tfrecord"))


def test_old_import_paths_reexport_the_moved_names():
    """pipeline.py keeps the names that moved to elements.py and image_ops.py, as the very same objects."""
    from ferkeras.data import elements, image_ops, pipeline, tfrecord

    for name in ("AUTOTUNE", "EXTRA_KEYS", "PipelineStats", "finish_pipeline"):
        assert getattr(pipeline, name) is getattr(elements, name), name
    for name in ("decode_image", "crop_and_resize_face", "square_crop_box"):
        assert getattr(pipeline, name) is getattr(image_ops, name), name
    assert tfrecord.finish_pipeline is elements.finish_pipeline


def test_check_extras_names_the_unknown_key():
    from ferkeras.data.elements import check_extras

    assert check_extras(iter(["frame", "landmarks"])) == ("frame", "landmarks")
    with pytest.raises(ValueError, match=r"unknown extras \['pose'\]"):
        check_extras(["frame", "pose"])


def test_shuffled_is_seeded_and_reshuffles_each_epoch():
    from ferkeras.data.elements import shuffled

    ds = tf.data.Dataset.range(32)
    assert list(shuffled(ds, 32, False, 0).as_numpy_iterator()) == list(range(32))
    a, b = shuffled(ds, 32, True, 3), shuffled(ds, 32, True, 3)
    first, second = list(a.as_numpy_iterator()), list(a.as_numpy_iterator())
    assert sorted(first) == list(range(32)) and first != list(range(32))
    assert first != second  # a fresh order every epoch ...
    assert [first, second] == [list(b.as_numpy_iterator()), list(b.as_numpy_iterator())]  # ... the same sequence


def test_make_element_casts_and_keeps_only_the_requested_extras():
    from ferkeras.data.elements import make_element

    fields = {"valence": np.float64(0.25), "arousal": -0.5, "expression": np.int64(3), "frame": np.int64(7),
              "timestamp": 1.5, "identity": "id1", "video": "v", "dataset": "d"}
    landmarks = np.arange(136, dtype=np.float64)
    out = make_element(tf.zeros((4, 4, 3)), landmarks, fields, ("landmarks", "frame", "timestamp", "identity"))
    assert set(out) == {"image", "va", "expression", "landmarks", "frame", "timestamp", "identity"}
    np.testing.assert_allclose(out["va"].numpy(), [0.25, -0.5])
    assert out["va"].dtype == tf.float32 and out["expression"].dtype == tf.int32 and int(out["expression"]) == 3
    assert out["landmarks"].shape == (68, 2) and out["landmarks"].dtype == tf.float32
    np.testing.assert_array_equal(out["landmarks"].numpy()[1], [2, 3])  # x0, y0, x1, y1, ... pairs
    assert out["frame"].dtype == tf.int32 and out["timestamp"].dtype == tf.float32
    assert out["identity"].numpy() == b"id1"
