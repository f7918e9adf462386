"""MaskFN (Shu et al., BMVC 2022, Sec. 3.4, Eq. 2) and SSLFERObjective against NumPy computations of the equations."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses.info_nce import info_nce_views
from ferkeras.losses.objective import ContrastiveObjective
from ferkeras.methods.sslfer import MaskFN, SSLFERObjective, maskfn_loss, part_features, pick_false_negatives
from tests import helpers
from tests.helpers import contrastive_views as views, numeric_grad_at as numeric_grad

EPS = 1e-8


# ----------------------------------------------------------------------------------- NumPy references (float64)
def np_cos(u, v):
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return float(u @ v / (max(np.linalg.norm(u), EPS) * max(np.linalg.norm(v), EPS)))


def np_pick(features, valid, n_fn, exclude=None):
    """Sec. 3.4 step 4: for each valid anchor i, the n_fn valid samples l != i of highest cosine similarity."""
    B = len(features)
    picks = []
    for i in range(B):
        if not valid[i]:
            picks.append([])
            continue
        cands = [l for l in range(B) if l != i and valid[l] and not (exclude is not None and exclude[i][l])]
        cands.sort(key=lambda l: (-np_cos(features[i], features[l]), l))
        picks.append(cands[:n_fn])
    return picks


def np_maskfn(a, p, h, picks, tau, w, denominator="printed", symmetric=False, scope="all"):
    """Eq. 2 by loops: per anchor l1 + w * mean_l l2 with the shared denominator sum_k 1[k != i, j, l] e^{s_ik/tau}.

    Views of the batch: a_b, p_b, h_bk. Anchor a_i (and p_i when symmetric): positive x_j = the other view of i,
    extra positives x_l = a_l for l in picks[i]. "printed": the denominator leaves out i, j and every l;
    "simclr": only i. Returns (loss, mean l1, mean l2 over anchors with picks).
    """
    B = len(a)
    K = 0 if h is None else h.shape[1]
    views = [("a", b, a[b]) for b in range(B)] + [("p", b, p[b]) for b in range(B)]
    views += [("h", b, h[b, k]) for b in range(B) for k in range(K)]
    anchors = [("a", i) for i in range(B)] + ([("p", i) for i in range(B)] if symmetric else [])
    totals, l1s, l2s = [], [], []
    for kind, i in anchors:
        x = a[i] if kind == "a" else p[i]
        pos_key = ("p", i) if kind == "a" else ("a", i)
        pos = p[i] if kind == "a" else a[i]
        picked_keys = [("a", l) for l in picks[i] if ("a", l) != (kind, i)]
        den = 0.0
        for vkind, b, v in views:
            if (vkind, b) == (kind, i):
                continue
            if scope == "own" and vkind == "h" and b != i:
                continue
            if denominator == "printed" and ((vkind, b) == pos_key or (vkind, b) in picked_keys):
                continue
            den += math.exp(np_cos(x, v) / tau)
        if den == 0:
            continue
        l1 = -math.log(math.exp(np_cos(x, pos) / tau) / den)
        l2 = 0.0
        if picked_keys:
            l2 = float(np.mean([-math.log(math.exp(np_cos(x, a[l]) / tau) / den) for _, l in picked_keys]))
            l2s.append(l2)
        l1s.append(l1)
        totals.append(l1 + w * l2)
    mean = lambda v: float(np.mean(v)) if v else 0.0  # noqa: E731
    return mean(totals), mean(l1s), mean(l2s)


def picks_matrix(picks, B):
    m = np.zeros((B, B), bool)
    for i, ls in enumerate(picks):
        m[i, ls] = True
    return m


def pooled_colour_encoder(size=8):
    """A tiny deterministic 'encoder': per-channel mean colour (N, 3) -- NumPy can compute it exactly."""
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs), name="colour_encoder")


def conv_map_encoder(size=16):
    """An encoder returning a feature MAP (N, h, w, F), which part_features must average-pool."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", kernel_initializer=keras.initializers.GlorotUniform(1),
                            name="conv")(inputs)
    return keras.Model(inputs, x, name="map_encoder")


# ---------------------------------------------------------------------------------------------------- selection
@pytest.mark.parametrize("B", [1, 2, 5, 9])
@pytest.mark.parametrize("n_fn", [1, 2, 3])
def test_pick_matches_numpy(B, n_fn):
    rng = np.random.default_rng(B * 10 + n_fn)
    features = rng.normal(size=(B, 6)).astype(np.float32)
    valid = rng.random(B) < 0.75
    got = pick_false_negatives(features, valid, n_fn).numpy()
    np.testing.assert_array_equal(got, picks_matrix(np_pick(features, valid, n_fn), B))
    assert not got.diagonal().any()
    assert not got[~valid].any() and not got[:, ~valid].any()
    # Unknown batch size (tf.function): same picks.
    fn = tf.function(lambda f, v: pick_false_negatives(f, v, n_fn))
    concrete = fn.get_concrete_function(tf.TensorSpec([None, 6]), tf.TensorSpec([None], tf.bool))
    np.testing.assert_array_equal(concrete(tf.constant(features), tf.constant(valid)).numpy(), got)


def test_pick_special_cases():
    # B = 2: each valid sample picks the other.
    np.testing.assert_array_equal(pick_false_negatives(np.eye(2, 3), [True, True]).numpy(), [[0, 1], [1, 0]])
    # All parts invalid: nothing is picked.
    assert not pick_false_negatives(np.ones((4, 3)), np.zeros(4, bool), 2).numpy().any()
    # B = 1: nothing to pick.
    assert not pick_false_negatives(np.ones((1, 3)), None).numpy().any()
    # Ties go to the lower index; zero features have cosine 0 with everything.
    features = np.array([[1, 0], [1, 0], [1, 0], [0, 0]], np.float32)
    np.testing.assert_array_equal(np.argwhere(pick_false_negatives(features).numpy()),
                                  [[0, 1], [1, 0], [2, 0], [3, 0]])
    # Exclusions (e.g. same track).
    exclude = np.zeros((4, 4), bool)
    exclude[0, 1] = True
    got = pick_false_negatives(features, None, 1, exclude).numpy()
    assert got[0, 2] and not got[0, 1]
    with pytest.raises(ValueError, match="num_false_negatives"):
        pick_false_negatives(features, None, 0)


def test_same_track_exclusion():
    layer = MaskFN(encoder=pooled_colour_encoder(), exclude_same_track=True)
    features = np.array([[1, 0], [1, 0.01], [0.5, 0.5]], np.float32)
    picked = layer.pick(features, None, track=np.array([7, 7, 8])).numpy()
    np.testing.assert_array_equal(np.argwhere(picked), [[0, 2], [1, 2], [2, 1]])
    with pytest.raises(ValueError, match="track"):
        layer.pick(features, None)


# -------------------------------------------------------------------------------------------------------- loss
@pytest.mark.parametrize("B,K,D", [(2, 0, 4), (3, 2, 5), (6, 1, 8)])
@pytest.mark.parametrize("tau", [0.07, 0.5])
@pytest.mark.parametrize("denominator", ["printed", "simclr"])
@pytest.mark.parametrize("n_fn", [1, 2])
def test_loss_matches_numpy(B, K, D, tau, denominator, n_fn):
    rng = np.random.default_rng(B + 10 * K + D + n_fn)
    a, p, h = views(rng, B, K, D)
    features = rng.normal(size=(B, 10)).astype(np.float32)
    valid = np.ones(B, bool)
    if B > 2:
        valid[1] = False
    picks = np_pick(features, valid, n_fn)
    picked = pick_false_negatives(features, valid, n_fn)
    out = maskfn_loss(a, p, h, picked, temperature=tau, weight=0.5, denominator=denominator)
    loss, l1, l2 = np_maskfn(a, p, h, picks, tau, 0.5, denominator)
    np.testing.assert_allclose(float(out["loss"]), loss, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(out["l1"]), l1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(out["l2"]), l2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(out["picked_fraction"]), np.mean([bool(x) for x in picks]))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("scope", ["all", "own"])
def test_loss_symmetric_scope_weight(symmetric, scope):
    rng = np.random.default_rng(3)
    a, p, h = views(rng, 4, 2, 6)
    picks = [[2], [], [0, 3], [1]]
    out = maskfn_loss(a, p, h, picks_matrix(picks, 4), temperature=0.2, weight=0.8, symmetric=symmetric,
                      hard_negatives_scope=scope)
    want = np_maskfn(a, p, h, picks, 0.2, 0.8, "printed", symmetric, scope)
    np.testing.assert_allclose(float(out["loss"]), want[0], rtol=1e-4)


def test_eq2_denominators_exclude_positive_and_pick():
    """Hand-made case: L1 and L2 share the denominator over the 'other' views only (i, j, l left out)."""
    a = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    p = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    tau = 1.0
    picked = np.zeros((3, 3), bool)
    picked[0, 1] = True  # anchor a_0 gets a_1 as extra positive
    out = maskfn_loss(a, p, None, picked, temperature=tau, weight=0.5)
    # Anchor a_0: denominator over p_1 (cos 0), a_2, p_2 (cos -1): 1 + 2/e.
    den = 1 + 2 * math.exp(-1)
    l1_0 = -(1.0 - math.log(den))
    l2_0 = -(0.0 - math.log(den))
    # Anchors a_1, a_2 pick nothing: denominators over the 4 other views but their positive.
    den_1 = math.exp(0) + math.exp(0) + math.exp(0) + math.exp(0)  # a_0, p_0, a_2, p_2 all at cos 0
    l1_1 = -(1.0 - math.log(den_1))
    den_2 = 2 * math.exp(-1) + 2 * math.exp(0)  # a_0, p_0 at cos -1; a_1, p_1 at 0
    l1_2 = -(1.0 - math.log(den_2))
    np.testing.assert_allclose(float(out["loss"]), (l1_0 + 0.5 * l2_0 + l1_1 + l1_2) / 3, rtol=1e-5)
    np.testing.assert_allclose(float(out["l2"]), l2_0, rtol=1e-5)


def test_all_parts_invalid_reduces_to_printed_eq1():
    rng = np.random.default_rng(8)
    a, p, h = views(rng, 5, 2, 6)
    picked = pick_false_negatives(rng.normal(size=(5, 4)), np.zeros(5, bool))
    out = maskfn_loss(a, p, h, picked, temperature=0.1)
    np.testing.assert_allclose(float(out["loss"]),
                               float(info_nce_views(a, p, h, temperature=0.1, denominator="printed")), rtol=1e-5)
    assert float(out["l2"]) == 0.0 and float(out["picked_fraction"]) == 0.0
    out = maskfn_loss(a, p, h, picked, temperature=0.1, denominator="simclr")
    np.testing.assert_allclose(float(out["loss"]), float(info_nce_views(a, p, h, temperature=0.1)), rtol=1e-5)


def test_edge_cases_b1_b2_zero_and_parallel_vectors():
    # B = 1, K = 0: no negative, nothing to pick: the printed loss is 0 with zero gradient.
    a = np.array([[1.0, 2.0]], np.float32)
    out = maskfn_loss(a, 2 * a, None, np.zeros((1, 1), bool))
    assert float(out["loss"]) == 0.0
    # B = 2, K = 0: each anchor picks the other: printed denominators are left with the other positive only.
    a = np.array([[1, 0], [0.6, 0.8]], np.float32)
    p = np.array([[0.8, 0.6], [0, 1]], np.float32)
    picks = [[1], [0]]
    out = maskfn_loss(a, p, None, picks_matrix(picks, 2), temperature=0.07)
    np.testing.assert_allclose(float(out["loss"]), np_maskfn(a, p, None, picks, 0.07, 0.5)[0], rtol=1e-4)
    # Exact +1 / -1 cosines and zero vectors.
    a = np.array([[1, 1], [0, 0], [-1, -1]], np.float32)
    p = np.array([[2, 2], [1, 0], [-3, -3]], np.float32)
    h = np.array([[[-1, -1]], [[0, 0]], [[1, 1]]], np.float32)
    picks = [[2], [0], [1]]
    for denominator in ("printed", "simclr"):
        out = maskfn_loss(a, p, h, picks_matrix(picks, 3), temperature=0.07, denominator=denominator)
        np.testing.assert_allclose(float(out["loss"]), np_maskfn(a, p, h, picks, 0.07, 0.5, denominator)[0],
                                   rtol=1e-4)
    tensors = [tf.constant(v) for v in (a, p, h)]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        loss = maskfn_loss(*tensors, picks_matrix(picks, 3), temperature=0.07)["loss"]
    for g in tape.gradient(loss, tensors):
        assert np.all(np.isfinite(g.numpy()))


@pytest.mark.parametrize("denominator", ["printed", "simclr"])
@pytest.mark.parametrize("K", [0, 2])
def test_gradients_match_finite_differences(denominator, K):
    rng = np.random.default_rng(20 + K)
    a, p, h = views(rng, 4, K, 3)
    picks = [[1], [3], [], [0, 2]]
    tau, w = 0.4, 0.5
    tensors = [tf.constant(v) for v in (a, p, h) if v is not None]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        loss = maskfn_loss(*tensors, *([None] if K == 0 else []), picks_matrix(picks, 4), temperature=tau,
                           weight=w, denominator=denominator)["loss"]
    grads = tape.gradient(loss, tensors)
    a64, p64 = a.astype(np.float64), p.astype(np.float64)
    h64 = None if h is None else h.astype(np.float64)
    ref = [numeric_grad(lambda x: np_maskfn(x, p64, h64, picks, tau, w, denominator)[0], a64),
           numeric_grad(lambda x: np_maskfn(a64, x, h64, picks, tau, w, denominator)[0], p64)]
    if K:
        ref.append(numeric_grad(lambda x: np_maskfn(a64, p64, x, picks, tau, w, denominator)[0], h64))
    for got, want in zip(grads, ref):
        np.testing.assert_allclose(got.numpy(), want, atol=2e-4 * max(1.0, np.abs(want).max()), rtol=1e-3)


# ------------------------------------------------------------------------------------------ the layer, encoder
def test_part_features_pool_and_concatenate():
    rng = np.random.default_rng(0)
    parts = rng.random((3, 2, 8, 8, 3)).astype(np.float32)
    got = part_features(pooled_colour_encoder(8), parts).numpy()
    want = parts.mean(axis=(2, 3)).reshape(3, 6)  # [eye mean colour, mouth mean colour]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    encoder = conv_map_encoder(16)
    parts = rng.random((2, 2, 16, 16, 3)).astype(np.float32)
    maps = encoder(parts.reshape(4, 16, 16, 3)).numpy()  # (4, 8, 8, 4)
    np.testing.assert_allclose(part_features(encoder, parts).numpy(), maps.mean(axis=(1, 2)).reshape(2, 8),
                               rtol=1e-5, atol=1e-6)


def test_default_encoder_is_frozen_resnet18():
    layer = MaskFN()
    assert layer.encoder.name == "maskfn_part_encoder" and not layer.encoder.trainable
    features = layer(np.random.default_rng(0).random((2, 2, 64, 64, 3)).astype(np.float32))
    assert features.shape == (2, 1024)
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) > 0


def test_no_gradient_through_selection_and_encoder():
    rng = np.random.default_rng(1)
    layer = MaskFN(encoder=conv_map_encoder(16))
    parts = tf.constant(rng.random((4, 2, 16, 16, 3)).astype(np.float32))
    a, p, h = views(rng, 4, 1, 5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(parts)
        features = layer(parts)
        out = layer.loss({"anchor": tf.constant(a), "positive": tf.constant(p), "hard_negatives": tf.constant(h)},
                         features, np.ones(4, bool))
    assert tape.gradient(out["loss"], parts) is None
    assert tape.gradient(out["loss"], layer.encoder.trainable_variables + layer.encoder.non_trainable_variables) \
        == [None] * len(layer.encoder.weights)
    assert layer.trainable_weights == []


def test_layer_roundtrips(tmp_path):
    rng = np.random.default_rng(2)
    layer = MaskFN(encoder=conv_map_encoder(16), num_false_negatives=2, weight=0.8, denominator="simclr",
                   part_size=16)
    clone = helpers.assert_config_roundtrip(layer)
    assert clone.num_false_negatives == 2 and clone.weight == 0.8 and not clone.encoder.trainable
    parts_in = keras.Input((2, 16, 16, 3))
    model = keras.Model(parts_in, layer(parts_in))
    parts = rng.random((4, 2, 16, 16, 3)).astype(np.float32)
    loaded = helpers.assert_keras_roundtrip(model, parts, tmp_path)
    np.testing.assert_allclose(loaded(parts).numpy(), model(parts).numpy(), atol=1e-5)
    helpers.assert_savedmodel_roundtrip(model, parts, tmp_path)


def test_encoder_from_files(tmp_path):
    parts = np.random.default_rng(3).random((2, 2, 32, 32, 3)).astype(np.float32)
    source = MaskFN(part_size=32, encoder_width=16)
    weights = tmp_path / "enc.weights.h5"
    source.encoder.save_weights(weights)
    from_weights = MaskFN(encoder=str(weights), part_size=32, encoder_width=16)
    np.testing.assert_allclose(from_weights(parts).numpy(), source(parts).numpy(), atol=1e-5)
    model_file = tmp_path / "enc.keras"
    conv = conv_map_encoder(32)
    conv.save(model_file)
    from_model = MaskFN(encoder=model_file)
    np.testing.assert_allclose(from_model(parts).numpy(), part_features(conv, parts).numpy(), atol=1e-6)
    assert not from_model.encoder.trainable
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        MaskFN(encoder=str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match=".keras model or a .weights.h5"):
        (tmp_path / "enc.pth").write_bytes(b"x")
        MaskFN(encoder=str(tmp_path / "enc.pth"))


# ------------------------------------------------------------------------------------------------- objective
def test_objective_without_maskfn_is_info_nce():
    rng = np.random.default_rng(4)
    a, p, h = views(rng, 5, 2, 6)
    for denominator in ("simclr", "printed"):
        obj = SSLFERObjective(temperature=0.1, denominator=denominator)
        assert isinstance(obj, ContrastiveObjective) and obj.precompute({"anchor": a}) == {}
        out = obj({"anchor": a, "positive": p, "hard_negatives": h}, {})
        np.testing.assert_allclose(float(out["loss"]),
                                   float(info_nce_views(a, p, h, temperature=0.1, denominator=denominator)),
                                   rtol=1e-6)
        assert set(out) == {"loss", "info_nce", "accuracy"}
    helpers.assert_config_roundtrip(SSLFERObjective(symmetric=True, hard_negatives_scope="own"))


def test_objective_with_maskfn_matches_numpy():
    rng = np.random.default_rng(5)
    B = 6
    a, p, h = views(rng, B, 1, 6)
    parts = rng.random((B, 2, 8, 8, 3)).astype(np.float32)
    valid = np.array([True, True, False, True, True, True])
    obj = SSLFERObjective(temperature=0.2, maskfn=MaskFN(encoder=pooled_colour_encoder(8), weight=0.5))
    extras = obj.precompute({"anchor": a, "parts": parts, "parts_valid": valid})
    assert set(extras) == {"part_features", "parts_valid"}
    np.testing.assert_allclose(extras["part_features"].numpy(), parts.mean(axis=(2, 3)).reshape(B, 6), rtol=1e-5)
    out = obj({"anchor": a, "positive": p, "hard_negatives": h}, extras)
    picks = np_pick(parts.mean(axis=(2, 3)).reshape(B, 6), valid, 1)
    assert picks[2] == [] and all(2 not in x for x in picks)
    loss, l1, l2 = np_maskfn(a, p, h, picks, 0.2, 0.5)
    np.testing.assert_allclose(float(out["loss"]), loss, rtol=1e-4)
    np.testing.assert_allclose(float(out["info_nce"]), l1, rtol=1e-4)
    np.testing.assert_allclose(float(out["maskfn_l2"]), l2, rtol=1e-4)
    np.testing.assert_allclose(float(out["maskfn_picked"]), 5 / 6)
    # Missing parts_valid means all valid; missing parts is a clear error.
    extras_all = obj.precompute({"parts": parts})
    assert bool(tf.reduce_all(extras_all["parts_valid"]))
    with pytest.raises(ValueError, match="parts"):
        obj.precompute({"anchor": a})
    clone = helpers.assert_config_roundtrip(obj)
    assert isinstance(clone.maskfn, MaskFN) and clone.maskfn.weight == 0.5


def test_objective_in_a_model_roundtrip(tmp_path):
    """The objective's frozen encoder is saved with a model that owns the objective."""
    rng = np.random.default_rng(6)
    obj = SSLFERObjective(maskfn=MaskFN(encoder=conv_map_encoder(16)))
    parts_in = keras.Input((2, 16, 16, 3))
    model = keras.Model(parts_in, obj.maskfn(parts_in))
    parts = rng.random((2, 2, 16, 16, 3)).astype(np.float32)
    helpers.assert_keras_roundtrip(model, parts, tmp_path)


def test_objective_errors():
    with pytest.raises(TypeError, match="MaskFN"):
        SSLFERObjective(maskfn="yes")
    with pytest.raises(ValueError, match="denominator"):
        MaskFN(encoder=pooled_colour_encoder(), denominator="eq2")
    with pytest.raises(ValueError, match="weight"):
        MaskFN(encoder=pooled_colour_encoder(), weight=-1)
    obj = SSLFERObjective(maskfn=MaskFN(encoder=pooled_colour_encoder()))
    with pytest.raises(ValueError, match="part_features"):
        obj({"anchor": np.ones((2, 3)), "positive": np.ones((2, 3))}, {})
