"""AVCEModel (ferkeras.methods.avce.model): Algorithm 1 of Kim & Song, "Emotion-aware Multi-view Contrastive Learning
for Facial Emotion Recognition", ECCV 2022 -- two-pass train_step, losses (L_AV, Sec. 4.2; L_AVCE, Eq. 2; L_dis, Eq. 8)
against NumPy, the Sec. 4.2 schedule, the ECOS path, saving, export, replica scaling."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras
import tensorflow as tf

from ferkeras.losses.affect import affect_loss
from ferkeras.methods.avce import AVCEModel, AVCEStepSchedule
from ferkeras.methods.avce.losses import avce_loss, discriminative_loss
from ferkeras.ops.sparsemax import softmax, sparsemax
from tests import helpers

SHAPE = (32, 32, 3)


def small_model(**kwargs):
    return AVCEModel("resnet18", SHAPE, width=16, **kwargs)


def sgd_compile(model, main=0.0, dis=0.0, head=0.0):
    model.compile(optimizer=keras.optimizers.SGD(main), dis_optimizer=keras.optimizers.SGD(dis),
                  head_optimizer=keras.optimizers.SGD(head), jit_compile=False)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (6,) + SHAPE).astype("float32")
    va = rng.uniform(-0.9, 0.9, (6, 2)).astype("float32")
    return images, va


# ---- NumPy references of the equations -------------------------------------------------------------------------
def np_sparsemax(z):
    out = np.empty_like(z)
    for i, row in enumerate(z):
        s = np.sort(row)[::-1]
        k = np.arange(1, len(row) + 1)
        support = 1 + k * s > np.cumsum(s)
        kz = k[support][-1]
        tau = (np.cumsum(s)[kz - 1] - 1) / kz
        out[i] = np.maximum(row - tau, 0)
    return out


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_norm(v, eps=1e-7):
    return np.sqrt(np.maximum((v * v).sum(-1), eps * eps))


def np_f(x, y, mu=0.75, eps=1e-7):  # Eq. 4
    cos = np.clip((x * y).sum(-1) / (np_norm(x) * np_norm(y)), -1 + eps, 1 - eps)
    return 1 - np.arccos(cos) / math.pi + mu * (1 - np.abs(np_norm(x) - np_norm(y)))


def np_l_av(t, p):  # Sec. 4.2: mean RMSE + (L_PCC + L_CCC) / 2, NaN labels masked per column
    rmse, pcc, ccc = [], [], []
    for c in range(t.shape[1]):
        keep = np.isfinite(t[:, c])
        a, b = t[keep, c].astype(np.float64), p[keep, c].astype(np.float64)
        cov = ((a - a.mean()) * (b - b.mean())).mean()
        rmse.append(np.sqrt(((a - b) ** 2).mean()))
        pcc.append(cov / np.sqrt(a.var() * b.var()))
        ccc.append(2 * cov / (a.var() + b.var() + (a.mean() - b.mean()) ** 2))
    return np.mean(rmse) + 0.5 * (1 - np.mean(pcc)) + 0.5 * (1 - np.mean(ccc))


def np_l_avce(x, y_a, y_n, alpha=0.5, beta=0.005, gamma=0.5):  # minus Eq. 2
    fa, fn = np_f(x, y_a), np_f(x, y_n)
    return -np.mean(fa - alpha * fn - 0.5 * beta * fa ** 2 - 0.5 * gamma * fn ** 2)


def np_l_dis(v, v_a, v_n, d1=1.0, d2=0.8):  # Eq. 8, summed over the batch
    def unit(u):
        return u / np_norm(u)[:, None]

    push = np.maximum(d1 - ((v_a - v_n) ** 2).sum(-1), 0)
    return np.sum(push + np_norm(unit(v_a) - unit(v)) - d2 + np_norm(unit(v_n) - unit(v)) - d2)


def logged(logs):
    return {k: float(v) for k, v in logs.items()}


# ---- tests ------------------------------------------------------------------------------------------------------
def test_schedule_values_and_config():
    sched = AVCEStepSchedule(1e-4)
    got = [float(sched(s)) for s in (0, 4999, 5000, 24999, 25000, 45000)]
    np.testing.assert_allclose(got, [1e-4, 1e-4, 0.8e-4, 0.8e-4, 0.64e-4, 0.512e-4], rtol=1e-6)
    again = helpers.assert_config_roundtrip(AVCEStepSchedule(1e-4, first=10, every=7, factor=0.5))
    assert float(again(17)) == pytest.approx(0.25e-4)
    again = AVCEStepSchedule.from_config(sched.get_config())
    assert float(again(25000)) == pytest.approx(0.64e-4)
    with pytest.raises(ValueError, match="every"):
        AVCEStepSchedule(1e-4, every=0)


def test_losses_equal_numpy_recomputation(batch):
    """With zero learning rates both passes see the same weights: the logged L_AV, L_AVCE and L_dis must equal the
    NumPy equations applied to the sub-models' outputs (training mode, so BatchNorm uses the batch statistics)."""
    images, va = batch
    va = va.copy()
    va[1, 0] = np.nan  # a missing valence label: masked, not propagated
    model = small_model()
    sgd_compile(model)
    logs = logged(model.train_step((tf.constant(images), {"va": tf.constant(va)})))

    z = model.compressor(model.encoder(images, training=True), training=True).numpy()
    x = model.regressor(z, training=True).numpy()
    z_a, z_n = np_sparsemax(z), np_softmax(z)
    y_a, y_n = model.head(z_a, training=True).numpy(), model.head(z_n, training=True).numpy()
    v, v_a, v_n = (model.head1(t, training=True).numpy() for t in (z, z_a, z_n))
    assert np.isfinite(list(logs.values())).all()
    assert logs["l_av"] == pytest.approx(np_l_av(va, x), rel=1e-4)
    assert logs["l_contrastive"] == pytest.approx(np_l_avce(x, y_a, y_n), rel=1e-4, abs=1e-5)
    assert logs["l_dis"] == pytest.approx(np_l_dis(v, v_a, v_n), rel=1e-4)
    assert logs["loss"] == pytest.approx(logs["l_av"] + logs["l_contrastive"], rel=1e-6)


def test_each_pass_updates_exactly_its_variables(batch):
    """Plain SGD with a different rate per optimiser; the new weights must equal a hand-run Algorithm 1:
    E, C, R, H step on L_main (rates main / main / main / head), then E, C, H1 step on L_dis evaluated AFTER the
    pass-1 update (rates dis / dis / head). H1 moving in pass 1, R or H moving in pass 2, pass 2 reusing the
    pass-1 features, or an optimiser applied to the wrong variables all change the result."""
    images, va = batch
    lr_main, lr_dis, lr_head = 0.05, 0.2, 0.5
    model = small_model()
    sgd_compile(model, lr_main, lr_dis, lr_head)
    start = [v.numpy() for v in model.weights]
    E, C = model.encoder.trainable_variables, model.compressor.trainable_variables
    R, H, H1 = (m.trainable_variables for m in (model.regressor, model.head, model.head1))

    def forward(training=True):
        z = model.compressor(model.encoder(images, training=training), training=training)
        return z, sparsemax(z), softmax(z)

    with tf.GradientTape() as tape:
        z, z_a, z_n = forward()
        x = model.regressor(z, training=True)
        l_main = affect_loss(va, x) + tf.reduce_mean(
            avce_loss(x, model.head(z_a, training=True), model.head(z_n, training=True)))
    g_main = tape.gradient(l_main, E + C + R + H)
    expected = {}
    for var, g, lr in zip(E + C + R + H, g_main, [lr_main] * len(E + C + R) + [lr_head] * len(H)):
        expected[id(var)] = var.numpy() - lr * g.numpy()
    for var in E + C:  # pass 2 runs on the updated encoder and compressor
        var.assign(expected[id(var)])
    with tf.GradientTape() as tape:
        z, z_a, z_n = forward()
        l_dis = tf.reduce_sum(discriminative_loss(*(model.head1(t, training=True) for t in (z, z_a, z_n))))
    g_dis = tape.gradient(l_dis, E + C + H1)
    for var, g, lr in zip(E + C + H1, g_dis, [lr_dis] * len(E + C) + [lr_head] * len(H1)):
        expected[id(var)] = (expected[id(var)] if id(var) in expected else var.numpy()) - lr * g.numpy()
    assert set(expected) == {id(v) for v in model.trainable_variables}

    for var, value in zip(model.weights, start):  # back to the starting point, then the real step
        var.assign(value)
    model.train_step((tf.constant(images), tf.constant(va)))
    for var in model.trainable_variables:
        np.testing.assert_allclose(var.numpy(), expected[id(var)], rtol=1e-4, atol=1e-6, err_msg=var.path)
    for opt in (model.optimizer, model.dis_optimizer, model.head_optimizer):
        assert int(opt.iterations) == 1  # one apply per iteration: the schedule counts Algorithm 1's iterations


@pytest.mark.parametrize("kwargs, frozen", [
    (dict(contrastive="none"), "head"),
    (dict(use_dis=False), "head1"),
])
def test_ablations_leave_their_head_untouched(batch, kwargs, frozen):
    images, va = batch
    model = small_model(**kwargs)
    sgd_compile(model, 0.1, 0.1, 0.5)
    other = "head1" if frozen == "head" else "head"
    before = {name: [v.numpy() for v in getattr(model, name).trainable_variables] for name in (frozen, other)}
    logs = logged(model.train_step((tf.constant(images), tf.constant(va))))
    changed = {name: [not np.array_equal(b, v.numpy()) for b, v in zip(before[name],
                                                                       getattr(model, name).trainable_variables)]
               for name in (frozen, other)}
    assert not any(changed[frozen]) and any(changed[other])
    assert logs["l_contrastive" if frozen == "head" else "l_dis"] == 0.0


@pytest.mark.parametrize("contrastive, similarity", [("infonce", "f2"), ("barlow_twins", "f1")])
def test_other_contrastive_losses_train(batch, contrastive, similarity):
    images, va = batch
    model = small_model(contrastive=contrastive, similarity=similarity)
    model.compile(jit_compile=False)
    logs = logged(model.train_step((tf.constant(images), tf.constant(va))))
    assert np.isfinite(list(logs.values())).all() and logs["l_contrastive"] != 0.0
    with pytest.raises(ValueError, match="contrastive"):
        small_model(contrastive="simclr")


def test_nan_labels_and_identical_predictions(batch):
    """NaN labels are masked (L_AV equals L_AV on the labelled rows); a batch of identical images (identical
    predictions) and a batch without any label give finite losses and finite weights."""
    images, va = batch
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    va_nan = va.copy()
    va_nan[[0, 3], :] = np.nan
    va_nan[5, 1] = np.nan
    # Pass 1 runs on the weights before the step; training mode, so BatchNorm uses this batch's statistics.
    x = model.regressor(model.compressor(model.encoder(images, training=True), training=True), training=True)
    l_masked = logged(model.train_step((tf.constant(images), tf.constant(va_nan))))["l_av"]
    assert l_masked == pytest.approx(np_l_av(va_nan, x.numpy()), rel=1e-4)
    assert l_masked != pytest.approx(np_l_av(va, x.numpy()), rel=1e-3)  # the masked rows did count as missing

    same = np.repeat(images[:1], 6, axis=0)
    for data in ((same, va), (images, np.full_like(va, np.nan))):
        logs = logged(model.train_step((tf.constant(data[0]), tf.constant(data[1]))))
        assert np.isfinite(list(logs.values())).all(), logs
    assert all(np.isfinite(v.numpy()).all() for v in model.weights)


@pytest.mark.slow
def test_ecos_step_matches_closed_form_and_exports_without_py_function(batch, tmp_path):
    """The ECOS path trains one step with (nearly) the closed form's losses and weights; the SavedModel of the
    ECOS-trained model holds no py_function and serves the inference path in a fresh process."""
    images, va = batch
    model = small_model(sparsemax_method="ecos")
    sgd_compile(model, 1e-3, 1e-3, 1e-2)
    # The first step's losses with the closed-form Sp (Eq. 6) on the same weights, by hand.
    va_t = tf.constant(va)
    z = model.compressor(model.encoder(images, training=True), training=True)
    x = model.regressor(z, training=True)
    l_con = tf.reduce_mean(avce_loss(x, model.head(sparsemax(z), training=True), model.head(softmax(z), training=True)))
    logs = logged(model.train_step((tf.constant(images), va_t)))
    assert logs["l_av"] == pytest.approx(float(affect_loss(va, x)), rel=1e-5)
    assert logs["l_contrastive"] == pytest.approx(float(l_con), rel=1e-4, abs=1e-5)
    assert np.isfinite(logs["l_dis"])
    assert all(np.isfinite(v.numpy()).all() for v in model.weights)

    export_dir = str(tmp_path / "avce_export")
    model.export(export_dir, verbose=False)
    pb = (tmp_path / "avce_export" / "saved_model.pb").read_bytes()
    assert b"PyFunc" not in pb and b"sparsemax" not in pb.lower()
    # Positive control: the same scan finds a py_function in a SavedModel that has one.
    probe = tf.Module()
    probe.f = tf.function(lambda t: tf.py_function(np.square, [t], tf.float32),
                          input_signature=[tf.TensorSpec([2], tf.float32)])
    tf.saved_model.save(probe, str(tmp_path / "probe"))
    assert b"PyFunc" in (tmp_path / "probe" / "saved_model.pb").read_bytes()

    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", model(images).numpy())
    script = textwrap.dedent(f"""
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        served = loaded.serve(tf.constant(np.load({str(tmp_path / 'images.npy')!r})))
        np.testing.assert_allclose(served.numpy(), np.load({str(tmp_path / 'expected.npy')!r}), rtol=1e-5, atol=1e-5)
        print("SERVED", served.shape)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "SERVED (6, 2)" in run.stdout, run.stderr[-2000:]


def test_config_round_trip_and_keras_file(batch, tmp_path):
    images, va = batch
    model = small_model(contrastive="infonce", similarity="f2", use_dis=False, head_batch_norm=True)
    model.compile(head_optimizer=keras.optimizers.SGD(AVCEStepSchedule(0.02)), jit_compile=False)
    model.train_step((tf.constant(images), tf.constant(va)))
    helpers.assert_config_roundtrip(model)
    loaded = helpers.assert_keras_roundtrip(model, images, tmp_path, atol=1e-6)
    assert isinstance(loaded, AVCEModel) and loaded.contrastive == "infonce" and not loaded.use_dis
    assert float(loaded.head_optimizer.learning_rate) == pytest.approx(0.02)
    assert int(loaded.optimizer.iterations) == 1


def test_task_model_through_the_shared_helper(batch, tmp_path):
    """One fit step on a batch as the va pipelines yield it ((images, {"va": ...})), finite logs, every weight moved
    (E, C, R, H in pass 1; E, C, H1 in pass 2), .keras and SavedModel round-trips of the inference path."""
    images, va = batch
    result = helpers.run_task_model_test(small_model(), (images, {"va": va}), tmp_path)
    assert {"loss", "l_av", "l_contrastive", "l_dis"} <= set(result["logs"])
    assert isinstance(result["reloaded"], AVCEModel)


def test_short_fit_on_synthetic_faces_lowers_the_loss():
    from ferkeras.data.pipeline import from_arrays
    from ferkeras.data.synthetic import synthetic_arrays
    from ferkeras.metrics import CCC, RMSE

    arrays = synthetic_arrays(16, size=32, seed=5)
    data = from_arrays(arrays["images"], arrays["valence"], arrays["arousal"], arrays["expression"],
                       batch_size=16)
    model = small_model()
    # Eager: a handful of steps costs less than tracing the two-pass step.
    model.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=[RMSE(), CCC(index=0)], run_eagerly=True)
    before = model.evaluate(data, verbose=0, return_dict=True)
    model.fit(data, epochs=5, verbose=0, shuffle=False)
    after = model.evaluate(data, verbose=0, return_dict=True)
    assert {"loss", "l_av", "rmse", "ccc_v"} <= set(after)
    assert after["l_av"] < before["l_av"] - 0.05, (before, after)


def test_mixed_precision_keeps_losses_in_float32(batch):
    images, va = batch
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_model()
        model.compile(jit_compile=False)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.encoder.get_layer("stem_conv").compute_dtype == "float16"
    for opt in (model.optimizer, model.dis_optimizer, model.head_optimizer):
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    x, l_av, l_con = model.main_losses(tf.constant(images), tf.constant(va))
    l_dis = model.dis_loss_value(tf.constant(images))
    for value in (x, l_av, l_con, l_dis):
        assert value.dtype == tf.float32 and np.isfinite(value.numpy()).all()


MIRRORED_SCRIPT = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from ferkeras.methods.avce import AVCEModel

rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (8, 63, 63, 3)).astype("float32")
va = rng.uniform(-1, 1, (8, 2)).astype("float32")

def update(strategy, contrastive, rates):
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = AVCEModel("alexnet", (63, 63, 3), contrastive=contrastive)  # no BatchNorm: replicas see same features
        model.compile(optimizer=keras.optimizers.SGD(rates[0]), dis_optimizer=keras.optimizers.SGD(rates[1]),
                      head_optimizer=keras.optimizers.SGD(rates[2]), jit_compile=False)
    start = [v.numpy() for v in model.trainable_variables]
    data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, va)).batch(8))
    tf.function(lambda b: strategy.run(model.train_step, args=(b,)))(next(iter(data)))
    return np.concatenate([(v.numpy() - s).ravel() for v, s in zip(model.trainable_variables, start)])

one = tf.distribute.OneDeviceStrategy("/cpu:0")
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
a, b = update(one, "none", (0.0, 1e-3, 1e-2)), update(two, "none", (0.0, 1e-3, 1e-2))
print("DIS", np.abs(a - b).max() / np.abs(a).max())
a, b = update(one, "avce", (1e-3, 0.0, 1e-2)), update(two, "avce", (1e-3, 0.0, 1e-2))
print("MAIN", np.linalg.norm(b) / np.linalg.norm(a))
"""


@pytest.mark.slow
def test_replica_scaling_under_mirrored_strategy(tmp_path):
    """Two replicas (two logical CPUs, a fresh process): L_dis (Eq. 8, a batch sum, left unscaled) gives exactly the
    single-device update of the global batch; L_main (means and batch statistics, divided by the replicas once)
    gives an update of the same size (per-replica batch statistics differ a little; a missing or a double division
    would change its size by 2x)."""
    import ferkeras

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(ferkeras.__file__)))
    run = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=300,
                         env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    values = dict(line.split() for line in run.stdout.splitlines() if line.startswith(("DIS", "MAIN")))
    assert float(values["DIS"]) < 1e-4
    assert 0.75 < float(values["MAIN"]) < 1.35


@pytest.mark.parametrize("backbone, shape, feature_values", [("resnet18", SHAPE, 36 * 128),
                                                              ("alexnet", (64, 64, 3), 9216)])
def test_flatten_compressor_is_the_authors(backbone, shape, feature_values, tmp_path):
    """compressor="flatten": 6 x 6 adaptive average pooling, flatten (AlexNet: the authors' 9216 values), FC, ReLU;
    z equals that computed by hand from the encoder's map; trains, saves and exports."""
    from tests.models.test_layers import np_adaptive_pool

    kwargs = {"width": 16} if backbone == "resnet18" else {}
    model = AVCEModel(backbone, shape, compressor="flatten", **kwargs)
    assert model.compressor.get_layer("fc").kernel.shape == (feature_values, 32)
    images = np.random.default_rng(1).uniform(0, 1, (4,) + shape).astype("float32")
    va = np.random.default_rng(2).uniform(-0.9, 0.9, (4, 2)).astype("float32")
    fmap = model.encoder(images).numpy()
    kernel, bias = (w.numpy() for w in model.compressor.get_layer("fc").weights)
    want = np.maximum(np_adaptive_pool(fmap, 6, 6).reshape(4, -1) @ kernel + bias, 0)
    np.testing.assert_allclose(model.encode(images).numpy(), want, rtol=1e-4, atol=1e-5)
    gap = AVCEModel(backbone, shape, **kwargs)
    assert gap.compressor.get_layer("fc").kernel.shape == (fmap.shape[-1], 32)
    result = helpers.run_task_model_test(model, (images, {"va": va}), tmp_path)
    assert result["reloaded"].compressor_kind == "flatten"
    with pytest.raises(ValueError, match="compressor"):
        AVCEModel(backbone, shape, compressor="max", **kwargs)


def test_contrastive_weight_scales_only_the_contrastive_gradient(batch):
    """L_main = L_AV + w L_AVCE: after one pass-1 SGD step, R's update is the L_AV gradient plus w times the L_AVCE
    gradient (R is not read by L_dis; H's update is w times its L_AVCE gradient)."""
    images, va = batch
    data = (tf.constant(images), {"va": tf.constant(va)})
    deltas = {}
    for w in (0.0, 1.0, 0.25):
        keras.utils.set_random_seed(4)
        model = small_model(contrastive_weight=w, use_dis=False)
        sgd_compile(model, main=0.1, head=0.1)
        before = [v.numpy() for v in model.regressor.trainable_variables + model.head.trainable_variables]
        logs = logged(model.train_step(data))
        after = [v.numpy() for v in model.regressor.trainable_variables + model.head.trainable_variables]
        deltas[w] = [a - b for a, b in zip(after, before)]
        assert logs["loss"] == pytest.approx(logs["l_av"] + w * logs["l_contrastive"], rel=1e-6)
    n_r = len(small_model().regressor.trainable_variables)
    for k, (d0, d1, dq) in enumerate(zip(deltas[0.0], deltas[1.0], deltas[0.25])):
        np.testing.assert_allclose(dq, d0 + 0.25 * (d1 - d0), rtol=1e-3, atol=1e-7)
        if k >= n_r:  # H: no L_AV gradient at all
            assert np.all(d0 == 0)
    assert any(np.abs(d1 - d0).max() > 1e-6 for d0, d1 in zip(deltas[0.0], deltas[1.0]))
    again = helpers.assert_config_roundtrip(small_model(contrastive_weight=1e-4, regression_loss="mse"))
    assert again.contrastive_weight == 1e-4 and again.regression_loss == "mse"
    with pytest.raises(ValueError, match="contrastive_weight"):
        small_model(contrastive_weight=-1)


def test_regression_loss_mse_is_the_authors(batch):
    """regression_loss="mse": the logged L_AV is MSE_v + MSE_a + (L_PCC + L_CCC) / 2 of R's outputs."""
    images, va = batch
    model = small_model(regression_loss="mse")
    sgd_compile(model)
    logs = logged(model.train_step((tf.constant(images), {"va": tf.constant(va)})))
    x = model(images, training=True).numpy()
    paper = np_l_av(va, x)
    rmse = np.mean([np.sqrt(np.mean((x[:, k] - va[:, k]) ** 2)) for k in (0, 1)])
    mse_sum = sum(np.mean((x[:, k] - va[:, k]) ** 2) for k in (0, 1))
    assert logs["l_av"] == pytest.approx(paper - rmse + mse_sum, rel=1e-4)
    with pytest.raises(ValueError, match="regression_loss"):
        small_model(regression_loss="mae")
