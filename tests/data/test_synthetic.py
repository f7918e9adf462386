"""Tests of the procedural synthetic faces (ferkeras.data.synthetic)."""

import math

import numpy as np
import pytest

from ferkeras.data import synthetic as S


def _frontal(ident, ex, size=96):
    return S.render_face(ident, ex, size=size, pose=S.Pose(), lighting=S.Lighting())


def _interocular(lm):
    return np.linalg.norm(lm[..., 42:48, :].mean(-2) - lm[..., 36:42, :].mean(-2), axis=-1)


def _corner_lift(lm):
    """How far the lip corners sit above the lip centre, in interocular distances (face-roll invariant enough)."""
    centre = 0.5 * (lm[..., 51, 1] + lm[..., 57, 1])
    corners = 0.5 * (lm[..., 48, 1] + lm[..., 54, 1])
    return (centre - corners) / _interocular(lm)


def _opening(lm):
    return np.linalg.norm(lm[..., 66, :] - lm[..., 62, :], axis=-1) / _interocular(lm)


def _ccc(x, y):
    mx, my = x.mean(), y.mean()
    return 2 * np.mean((x - mx) * (y - my)) / (x.var() + y.var() + (mx - my) ** 2)


# ---------------------------------------------------------------------------------------------------------------
# API, shapes, determinism
# ---------------------------------------------------------------------------------------------------------------


def test_synthetic_arrays_shapes_dtypes_and_determinism():
    a = S.synthetic_arrays(12, size=48, seed=3, num_identities=5)
    b = S.synthetic_arrays(12, size=48, seed=3, num_identities=5)
    c = S.synthetic_arrays(12, size=48, seed=4, num_identities=5)
    assert a["images"].shape == (12, 48, 48, 3) and a["images"].dtype == np.uint8
    assert a["landmarks"].shape == (12, 68, 2) and a["landmarks"].dtype == np.float32
    assert a["boxes"].shape == (12, 4) and a["boxes"].dtype == np.float32
    for k in ("valence", "arousal"):
        assert a[k].shape == (12,) and a[k].dtype == np.float32
        assert np.all(np.abs(a[k]) <= 1)
    assert a["expression"].dtype == np.int32 and set(a["expression"]) <= set(range(8))
    assert a["identity"].shape == (12,) and a["identity"].dtype.kind == "U"
    assert set(a["identity"]) <= {f"id{k:04d}" for k in range(5)}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["valence"], c["valence"])


def test_identity_depends_only_on_its_index():
    assert S.identity_pool(3, first_identity=7)[1] == S.identity_pool(10)[8]
    assert S.identity_pool(1)[0].identity_id == "id0000"
    assert S.identity_pool(2, first_identity=1000)[1].identity_id == "id1001"
    with pytest.raises(ValueError, match="num_identities"):
        S.identity_pool(0)


def test_generate_faces_fields():
    faces = list(S.generate_faces(4, size=40, seed=1, num_identities=3))
    assert len(faces) == 4
    for f in faces:
        assert f.image.shape == (40, 40, 3) and f.image.dtype == np.uint8
        assert f.video == "" and f.frame == -1 and math.isnan(f.timestamp)
        assert S.EXPRESSIONS[f.expression]


def test_render_face_defaults_and_errors():
    ident = S.sample_identity(np.random.default_rng(0), "x")
    ex = S.sample_expression(np.random.default_rng(0), 1)
    img1, lm1, box1 = S.render_face(ident, ex, size=64)
    img2, lm2, box2 = S.render_face(ident, ex, size=64)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(lm1, lm2)
    assert img1.shape == (64, 64, 3) and lm1.dtype == np.float32 and box1.shape == (4,)
    with pytest.raises(ValueError, match="size"):
        S.render_face(ident, ex, size=8)
    with pytest.raises(ValueError, match="category"):
        S.expression_from_va(0.0, 0.0, 8)
    with pytest.raises(ValueError, match="finite"):
        S.expression_from_va(float("nan"), 0.0)


def test_expression_sampling_and_nearest_centroid():
    assert S.EXPRESSIONS == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
    rng = np.random.default_rng(0)
    for c in range(8):
        ex = S.sample_expression(rng, c)
        assert ex.category == c
        np.testing.assert_allclose([ex.valence, ex.arousal], S.VA_CENTROIDS[c], atol=5 * S.VA_SPREAD[c])
        # Each centroid's nearest category is itself, and category None picks it.
        assert S.expression_from_va(*S.VA_CENTROIDS[c]).category == c
    # The AUs are a deterministic function of (category, valence, arousal).
    assert S.expression_from_va(0.3, -0.2, 5) == S.expression_from_va(0.3, -0.2, 5)
    assert S.expression_from_va(0.3, -0.2, 5) != S.expression_from_va(0.3, -0.2, 6)


def test_package_keeps_every_public_name_and_the_old_dataset_module():
    from ferkeras.data import schema, synthetic_datasets
    from ferkeras.data.synthetic import expressions, faces, formats, geometry, identities, raster, videos

    old_names = ("EXPRESSIONS", "VA_CENTROIDS", "VA_SPREAD", "Identity", "sample_identity", "identity_pool",
                 "Expression", "nearest_category", "expression_from_va", "sample_expression", "Pose", "sample_pose",
                 "Lighting", "sample_lighting", "render_face", "SyntheticFace", "generate_faces", "synthetic_arrays",
                 "render_video", "MashupPerson", "Mashup", "render_mashup")
    assert [n for n in old_names if not hasattr(S, n)] == []
    assert set(S.__all__) == set(old_names)
    # One home per name: the package re-exports the submodules' objects, the class names are the schema's.
    assert S.EXPRESSIONS is schema.EXPRESSIONS is expressions.EXPRESSIONS
    assert S.render_face is faces.render_face and S.Pose is geometry.Pose and S.Lighting is raster.Lighting
    assert S.identity_pool is identities.identity_pool and S.render_mashup is videos.render_mashup
    for name in formats.__all__:
        assert getattr(synthetic_datasets, name) is getattr(formats, name), name


def test_rendering_is_pinned():
    """Labels, landmarks and colours of three faces as the renderer has always drawn them: moving or refactoring
    the renderer must leave them alone (OpenCV's anti-aliasing and NumPy's transcendental functions may differ by
    rounding between builds, hence the tolerances)."""
    a = S.synthetic_arrays(3, size=64, seed=7, num_identities=4)
    np.testing.assert_allclose(a["valence"], [-0.51946, 0.50964, -0.51661], atol=1e-4)
    np.testing.assert_allclose(a["arousal"], [-0.63013, 0.19870, -0.03395], atol=1e-4)
    assert a["expression"].tolist() == [2, 1, 7]
    assert a["identity"].tolist() == ["id0000", "id0001", "id0003"]
    np.testing.assert_allclose(a["landmarks"][:, [0, 8, 30, 48, 54]], [
        [[16.228, 23.634], [34.121, 51.909], [38.570, 32.442], [30.552, 42.041], [40.983, 41.605]],
        [[17.907, 22.605], [30.111, 45.979], [29.035, 30.362], [24.855, 33.348], [35.890, 34.257]],
        [[14.130, 24.000], [31.839, 50.742], [26.663, 28.403], [24.148, 38.531], [36.127, 35.398]]], atol=2e-3)
    np.testing.assert_allclose(a["boxes"], [[16.228, 7.774, 49.164, 51.909], [17.411, 11.399, 48.200, 45.979],
                                            [14.130, 6.318, 49.429, 50.781]], atol=2e-3)
    np.testing.assert_allclose(a["images"].reshape(3, -1, 3).mean(1),
                               [[107.714, 72.071, 152.012], [129.882, 118.475, 108.638],
                                [153.997, 122.205, 168.897]], atol=0.05)


# ---------------------------------------------------------------------------------------------------------------
# Geometry: landmarks in dlib order, inside the image, driven by the expression
# ---------------------------------------------------------------------------------------------------------------


def test_frontal_landmarks_follow_dlib_order():
    rng = np.random.default_rng(5)
    for k in range(6):
        ident = S.sample_identity(rng, f"p{k}")
        _, lm, box = _frontal(ident, S.sample_expression(rng))
        x, y = lm[:, 0], lm[:, 1]
        assert np.all(np.diff(x[0:9]) > 0) and np.all(np.diff(x[8:17]) > 0)  # jaw left to right
        assert np.all(np.diff(y[0:9]) > 0) and np.all(np.diff(y[8:17]) < 0)  # down to the chin, back up
        assert np.all(np.diff(x[17:22]) > 0) and np.all(np.diff(x[22:27]) > 0)  # brows left to right
        assert x[21] < x[22] and x[17:22].mean() < x[27] < x[22:27].mean()
        assert np.all(np.diff(y[27:31]) > 0)  # nose bridge downwards
        assert np.all(np.diff(x[31:36]) > 0) and y[33] > y[31]
        for e in (36, 42):  # eye: left corner, upper lid, right corner, lower lid back
            assert x[e] < x[e + 1] < x[e + 2] < x[e + 3]
            assert x[e + 3] > x[e + 4] > x[e + 5] > x[e]
            assert y[e + 1] < y[e + 5] and y[e + 2] < y[e + 4]
        assert lm[36:42, 0].mean() < lm[27, 0] < lm[42:48, 0].mean()  # right eye on image left
        assert np.all(np.diff(x[48:55]) > 0) and np.all(np.diff(x[54:60]) < 0)  # outer lips
        assert np.all(np.diff(x[60:65]) > 0) and np.all(np.diff(x[64:68]) < 0)  # inner lips
        assert y[51] <= y[62] <= y[66] <= y[57]
        # brows above eyes above nose tip above mouth above chin
        assert y[17:27].max() < y[36:48].min() and y[36:48].max() < y[30] < y[51] and y[57] < y[8]
        # the box holds the jaw and the brows
        assert box[0] <= x[0:17].min() + 1e-3 and box[2] >= x[0:17].max() - 1e-3
        assert box[1] < y[17:27].min() and box[3] >= y[8] - 1e-3


def test_random_pose_landmarks_inside_image_and_box():
    faces = S.synthetic_arrays(150, size=48, seed=11, num_identities=20)
    lm, box = faces["landmarks"], faces["boxes"]
    assert np.all(lm >= 0) and np.all(lm <= 47)
    assert np.all(box[:, 0] < box[:, 2]) and np.all(box[:, 1] < box[:, 3])
    assert np.all(box >= 0) and np.all(box <= 47)
    assert np.all(lm[:, 36:42, 0].mean(1) < lm[:, 42:48, 0].mean(1))  # right eye on image left
    assert np.all(lm[:, 36:48, 1].mean(1) < lm[:, 48:68, 1].mean(1))  # eyes above mouth
    inside = (lm[..., 0] >= box[:, None, 0] - 0.5) & (lm[..., 0] <= box[:, None, 2] + 0.5)
    inside &= (lm[..., 1] >= box[:, None, 1] - 0.5) & (lm[..., 1] <= box[:, None, 3] + 0.5)
    assert inside.mean() > 0.99


def test_landmarks_sit_on_the_drawn_features():
    """Pixels at the landmarks carry the features drawn there (lips are lip-coloured, eyes are not skin)."""
    rng = np.random.default_rng(2)
    for k in range(4):
        ident = S.sample_identity(rng, f"p{k}")
        ex = S.expression_from_va(0.0, -0.5, 0)
        img, lm, _ = _frontal(ident, ex, size=192)
        lips = 0.4 * lm[66] + 0.6 * lm[57]  # inside the lower lip
        px = img[int(round(lips[1])), int(round(lips[0]))].astype(float)
        np.testing.assert_allclose(px, ident.lip_color, atol=12)
        cheek = 0.5 * (lm[1] + lm[31])
        np.testing.assert_allclose(img[int(round(cheek[1])), int(round(cheek[0]))], ident.skin, atol=12)
        eye = lm[36:42].mean(0)
        assert np.abs(img[int(round(eye[1])), int(round(eye[0]))].astype(float) - ident.skin).max() > 30


def test_mouth_corners_rise_with_valence_and_mouth_opens_with_arousal():
    ident = S.identity_pool(1)[0]
    vs = np.linspace(-0.9, 0.9, 7)
    for c in range(8):
        a0 = float(S.VA_CENTROIDS[c, 1])
        lift = [_corner_lift(_frontal(ident, S.expression_from_va(v, a0, c))[1]) for v in vs]
        assert np.all(np.diff(lift) > 0), (S.EXPRESSIONS[c], lift)
        v0 = float(S.VA_CENTROIDS[c, 0])
        opening = [_opening(_frontal(ident, S.expression_from_va(v0, a, c))[1]) for a in np.linspace(-0.9, 0.9, 5)]
        assert np.all(np.diff(opening) >= -1e-5) and opening[-1] > opening[0] + 0.15, (S.EXPRESSIONS[c], opening)
    # Brows: surprise raises them, anger lowers them (distance brow-eye over interocular distance).
    def brow_gap(c):
        lm = _frontal(ident, S.expression_from_va(*S.VA_CENTROIDS[c], c))[1]
        return (lm[36:48, 1].mean() - lm[17:27, 1].mean()) / _interocular(lm)

    assert brow_gap(3) > brow_gap(0) + 0.05 > brow_gap(6) + 0.1


def test_geometry_tracks_labels_across_random_faces():
    faces = S.synthetic_arrays(200, size=64, seed=2, num_identities=30)
    lm = faces["landmarks"]
    assert np.corrcoef(_corner_lift(lm), faces["valence"])[0, 1] > 0.6
    assert np.corrcoef(_opening(lm), faces["arousal"])[0, 1] > 0.6


# ---------------------------------------------------------------------------------------------------------------
# Identity is independent of expression
# ---------------------------------------------------------------------------------------------------------------


def _chi2(ids, labels):
    table = np.zeros((ids.max() + 1, labels.max() + 1))
    np.add.at(table, (ids, labels), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(np.sum((table - expected) ** 2 / np.maximum(expected, 1e-9)))


def test_identity_does_not_predict_expression():
    faces = S.synthetic_arrays(1200, size=24, seed=5, num_identities=15)
    ids = np.array([int(s[2:]) for s in faces["identity"]])
    expr = faces["expression"]
    assert len(set(ids)) == 15 and np.bincount(expr).min() > 100
    rng = np.random.default_rng(0)
    null = np.array([_chi2(ids, rng.permutation(expr)) for _ in range(200)])
    stat = _chi2(ids, expr)
    assert stat < np.quantile(null, 0.99)
    # The statistic has power: a mild identity preference (a third of the labels replaced by an identity's
    # favourite expression) is far outside the permutation distribution.
    biased = np.where(rng.uniform(size=len(expr)) < 0.33, ids % 8, expr)
    assert _chi2(ids, biased) > null.max()
    # Mean valence per identity is what independent sampling gives.
    per_id = np.array([faces["valence"][ids == k].mean() for k in range(15)])
    assert per_id.std() < 3 * faces["valence"].std() / math.sqrt(len(expr) / 15)


def test_appearance_of_identity_does_not_change_with_expression():
    ident = S.identity_pool(1, first_identity=3)[0]
    a, lm_a, _ = _frontal(ident, S.expression_from_va(0.8, 0.3, 1))
    b, lm_b, _ = _frontal(ident, S.expression_from_va(-0.7, 0.6, 6))
    np.testing.assert_array_equal(lm_a[:17, 0], lm_b[:17, 0])  # same face width
    np.testing.assert_array_equal(a[:8, :8], b[:8, :8])  # same background
    np.testing.assert_array_equal(a[-5:, :], b[-5:, :])  # same clothes
    assert np.abs(a.astype(int) - b).max() > 50  # but a different expression


# ---------------------------------------------------------------------------------------------------------------
# Videos and reaction mashups
# ---------------------------------------------------------------------------------------------------------------


def test_video_is_smooth_and_timestamped():
    ident = S.identity_pool(1)[0]
    frames = list(S.render_video(ident, 60, fps=20.0, size=40, seed=2, video_id="clip"))
    assert len(frames) == 60
    va = np.array([[f.valence, f.arousal] for f in frames])
    assert np.abs(np.diff(va, axis=0)).max() < 0.08
    assert va.std(0).max() > 0.1  # it does move
    assert [f.frame for f in frames] == list(range(60))
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(60) / 20.0)
    assert {f.video for f in frames} == {"clip"} and {f.identity for f in frames} == {ident.identity_id}
    assert all(f.expression == S.nearest_category(f.valence, f.arousal) for f in frames)
    lm = np.stack([f.landmarks for f in frames])
    assert np.abs(np.diff(lm, axis=0)).max() < 3.0  # the head moves smoothly too
    again = list(S.render_video(ident, 3, fps=20.0, size=40, seed=2))
    np.testing.assert_array_equal(again[2].image, frames[2].image)
    assert again[0].video == "id0000_v2"


def test_mashup_people_follow_the_lagged_shared_signal():
    T, max_lag = 64, 12
    m = S.render_mashup(num_people=3, num_frames=T, fps=25.0, frame_size=(120, 214), seed=4, max_lag=max_lag)
    assert m.frames.shape == (T, 120, 214, 3) and m.frames.dtype == np.uint8
    assert m.shared_valence.shape == (T,) and m.shared_arousal.shape == (T,) and m.fps == 25.0
    np.testing.assert_allclose(m.timestamps, np.arange(T) / 25.0, rtol=1e-6)
    x0, y0, x1, y1 = m.film_box.astype(int)
    film = m.frames[:, y0:y1, x0:x1].astype(float)
    assert np.abs(np.diff(film, axis=0)).mean() > 1.0  # the film moves
    assert len(m.people) == 3 and len({p.face_id for p in m.people}) == 3
    shared = np.stack([m.shared_valence, m.shared_arousal], 1)
    lags = []
    for p in m.people:
        assert p.boxes.shape == (T, 4) and p.landmarks.shape == (T, 68, 2)
        assert p.valence.shape == p.arousal.shape == p.expression.shape == (T,)
        assert np.all(p.landmarks >= 0) and np.all(p.landmarks[..., 0] < 214) and np.all(p.landmarks[..., 1] < 120)
        assert np.all(p.boxes[:, 0] >= x1)  # people sit beside the film
        va = np.stack([p.valence, p.arousal], 1)
        # valence(t) = gain * shared(t - lag) + bounded noise
        resid = va[p.lag:] - p.gain * shared[: T - p.lag]
        assert np.abs(resid).max() <= 3 * p.noise + 1e-5
        assert np.abs(resid).std() > 0.1 * p.noise  # there is noise
        # the cross-correlation with the shared signal peaks at the person's lag
        scores = []
        for lag in range(max_lag + 1):
            s = shared[: T - lag] - shared[: T - lag].mean(0)
            q = va[lag:] - va[lag:].mean(0)
            scores.append(np.sum(s * q) / np.sqrt(np.sum(s * s) * np.sum(q * q)))
        lags.append((int(np.argmax(scores)), p.lag))
        assert np.all(p.expression == [S.nearest_category(v, a) for v, a in va])
    assert all(abs(found - true) <= 1 for found, true in lags), lags
    assert sum(found == true for found, true in lags) >= 2, lags
    assert len({true for _, true in lags}) > 1  # people have different lags


def test_mashup_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_people"):
        S.render_mashup(num_people=0, num_frames=2)
    with pytest.raises(ValueError, match="too small"):
        S.render_mashup(num_people=4, num_frames=2, frame_size=(50, 80))


# ---------------------------------------------------------------------------------------------------------------
# The labels are learnable from the pixels (held-out identities)
# ---------------------------------------------------------------------------------------------------------------


def _crop_faces(images, boxes, out=32):
    """Square crops around the face boxes, resized to ``out`` pixels (what a FER pipeline feeds a network)."""
    import cv2

    crops = np.empty((len(images), out, out, 3), np.uint8)
    for i, (img, (x0, y0, x1, y1)) in enumerate(zip(images, boxes)):
        half = 0.525 * max(x1 - x0, y1 - y0)
        s = out / (2 * half)
        m = np.float32([[s, 0, out / 2 - s * (x0 + x1) / 2], [0, s, out / 2 - s * (y0 + y1) / 2]])
        crops[i] = cv2.warpAffine(img, m, (out, out), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return crops


@pytest.mark.slow
def test_labels_are_learnable_on_held_out_identities():
    import keras

    train = S.synthetic_arrays(2400, size=64, seed=0, num_identities=40)
    test = S.synthetic_arrays(500, size=64, seed=1, num_identities=10, first_identity=1000)
    assert not set(train["identity"]) & set(test["identity"])
    x_train = _crop_faces(train["images"], train["boxes"])
    x_test = _crop_faces(test["images"], test["boxes"])

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1)(inp)
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPool2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(x))
    model = keras.Model(inp, {"va": keras.layers.Dense(2)(x), "expr": keras.layers.Dense(8)(x)})
    model.compile(keras.optimizers.Adam(1e-3),
                  loss={"va": "mse", "expr": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    targets = {"va": np.stack([train["valence"], train["arousal"]], 1), "expr": train["expression"]}
    model.fit(x_train, targets, batch_size=64, epochs=10, verbose=0)
    pred = model.predict(x_test, batch_size=250, verbose=0)

    ccc_v = _ccc(pred["va"][:, 0], test["valence"])
    ccc_a = _ccc(pred["va"][:, 1], test["arousal"])
    acc = np.mean(pred["expr"].argmax(1) == test["expression"])
    majority = np.bincount(test["expression"]).max() / len(test["expression"])
    # A constant predictor has CCC 0 and the majority-class accuracy.
    assert ccc_v > 0.5 and ccc_a > 0.5, (ccc_v, ccc_a)
    assert acc > 0.5 > 3 * majority, (acc, majority)
    print(f"held-out identities: CCC valence {ccc_v:.3f}, arousal {ccc_a:.3f}; accuracy {acc:.3f} "
          f"(majority {majority:.3f})")
