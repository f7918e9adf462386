"""Streaming metrics of ferkeras.metrics against the NumPy references, over uneven batchings and edge cases."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses import AffectLoss
from ferkeras.metrics import (
    CCC,
    PCC,
    RMSE,
    SAGR,
    AverageAccuracy,
    ConfusionMatrix,
    MacroF1,
    OverallAccuracy,
    numpy_ref,
)

SPLITS = (7, 1, 13, 3)  # 24 samples in uneven batches
REGRESSION = [(RMSE, numpy_ref.rmse), (SAGR, numpy_ref.sagr), (PCC, numpy_ref.pcc), (CCC, numpy_ref.ccc)]
CLASSIFICATION = [(OverallAccuracy, numpy_ref.accuracy), (AverageAccuracy, numpy_ref.average_accuracy),
                  (MacroF1, numpy_ref.macro_f1)]
C = 5


def stream(metric, y_true, y_pred, splits=SPLITS, sample_weight=None):
    metric.reset_state()
    start = 0
    for size in splits:
        sl = slice(start, start + size)
        metric.update_state(y_true[sl], y_pred[sl], None if sample_weight is None else sample_weight[sl])
        start += size
    assert start == len(y_true)
    return np.asarray(metric.result())


def va_data(n=24, seed=0, offset=0.0, scale=1.0, dtype="float64"):
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, (n, 2))
    p = 0.6 * t + rng.normal(0, 0.4, (n, 2)) + 0.1
    t, p = offset + scale * t, offset + scale * p
    t[[3, 10, 11], 0] = np.nan  # missing valence labels
    t[[5], 1] = np.nan  # missing arousal label
    return t.astype(dtype), p.astype(dtype)


def class_data(n=24, seed=0, absent=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    if absent is not None:
        y[y == absent] = (absent + 1) % C
    y[[2, 8]] = -1
    scores = rng.normal(size=(n, C)) + 1.5 * np.eye(C)[np.maximum(y, 0)]
    return y.astype("int32"), scores.astype("float32")


# ---------------------------------------------------------------------------------------------- regression
@pytest.mark.parametrize("index", [0, 1, None])
@pytest.mark.parametrize("cls,ref", REGRESSION)
def test_regression_whole_set_over_uneven_batches(cls, ref, index):
    t, p = va_data()
    want = ref(t, p, index)
    assert np.isfinite(want)
    got = stream(cls(index=index), t, p)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # another batching and an all-masked batch in the middle give the same value
    t2 = np.concatenate([t[:5], np.full((4, 2), np.nan), t[5:]])
    p2 = np.concatenate([p[:5], np.zeros((4, 2)), p[5:]])
    np.testing.assert_allclose(stream(cls(index=index), t2, p2, splits=(5, 4, 18, 1)), want, rtol=1e-6, atol=1e-6)


def test_correlation_is_not_the_mean_of_batch_values():
    """Keras' own ConcordanceCorrelation averages per-batch values (correlating along axis -1); ours must not."""
    t, p = va_data()
    keep = np.isfinite(t[:, 0])
    tv, pv = t[keep, 0], p[keep, 0]
    batches = (slice(0, 7), slice(7, 21))
    want = numpy_ref.ccc(tv, pv)
    ours = stream(CCC(index=0), np.stack([tv, tv], 1), np.stack([pv, pv], 1), splits=(7, 14))
    keras_ccc = keras.metrics.ConcordanceCorrelation()
    for sl in batches:
        keras_ccc.update_state(tv[None, sl].astype("float32"), pv[None, sl].astype("float32"))
    np.testing.assert_allclose(ours, want, rtol=1e-6)
    per_batch_mean = np.mean([numpy_ref.ccc(tv[sl], pv[sl]) for sl in batches])
    np.testing.assert_allclose(float(keras_ccc.result()), per_batch_mean, rtol=1e-5)
    assert abs(per_batch_mean - want) > 1e-2


def test_large_offset_needs_the_stable_merge():
    """1e3 + variation of 1e-3: raw float64 sums lose the variance, the streamed co-moments do not."""
    t, p = va_data(offset=1e3, scale=1e-3)
    for cls, ref in REGRESSION[2:]:
        for index in (0, 1):
            np.testing.assert_allclose(stream(cls(index=index), t, p), ref(t, p, index), rtol=1e-6, atol=1e-6)
    # the same data through textbook raw sums (sum x, sum x^2) in float64 is off by far more than 1e-6
    col = t[np.isfinite(t[:, 1]), 1]
    var_exact = np.var(col)
    var_raw = np.mean(col * col) - np.mean(col) ** 2
    assert abs(var_raw - var_exact) / var_exact > 1e-6


def test_constant_predictions_and_labels():
    t, _ = va_data()
    p = np.full_like(t, 0.3)
    assert float(stream(PCC(index=0), t, p)) == 0.0
    assert numpy_ref.pcc(t, p, 0) == 0.0
    # CCC with a constant prediction: cov = 0, so 0 (and not NaN)
    np.testing.assert_allclose(stream(CCC(index=1), t, p), 0.0, atol=1e-7)
    # constant labels: PCC 0; CCC 0 as well since cov = 0
    tc = np.where(np.isfinite(t), 0.1, np.nan)
    assert float(stream(PCC(), tc, np.nan_to_num(t))) == 0.0
    np.testing.assert_allclose(stream(CCC(), tc, np.nan_to_num(t)), 0.0, atol=1e-7)
    # both constant and equal: prediction is exactly right, CCC 1 by definition
    same = np.where(np.isfinite(t), 0.1, np.nan)
    assert float(stream(CCC(), same, np.full_like(t, 0.1))) == 1.0
    assert numpy_ref.ccc(same, np.full_like(t, 0.1)) == 1.0
    # both constant but different: no agreement
    np.testing.assert_allclose(stream(CCC(), same, np.full_like(t, 0.4)), 0.0, atol=1e-12)


def test_empty_set_and_reset():
    t, p = va_data()
    for cls, ref in REGRESSION:
        m = cls()
        assert np.isnan(m.result())  # nothing seen
        m.update_state(np.full((3, 2), np.nan), np.zeros((3, 2)))
        assert np.isnan(m.result())  # only masked labels
        assert np.isnan(ref(np.full((3, 2), np.nan), np.zeros((3, 2))))
        m.update_state(t, p)
        first = float(m.result())
        m.reset_state()
        assert np.isnan(m.result())
        m.update_state(t, p)
        assert float(m.result()) == first


def test_sample_weight_is_a_frequency_weight():
    t, p = va_data()
    w = np.random.default_rng(3).integers(0, 3, len(t)).astype("float64")
    rep = np.repeat(np.arange(len(t)), w.astype(int))
    for cls, ref in REGRESSION:
        np.testing.assert_allclose(stream(cls(), t, p, sample_weight=w), ref(t[rep], p[rep]), rtol=1e-6, atol=1e-7)


def test_regression_input_errors():
    with pytest.raises(ValueError, match="index"):
        CCC(index=2)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        RMSE().update_state(np.zeros((4, 3)), np.zeros((4, 3)))


# ------------------------------------------------------------------------------------------ classification
@pytest.mark.parametrize("absent", [None, 3])
@pytest.mark.parametrize("cls,ref", CLASSIFICATION)
def test_classification_over_uneven_batches(cls, ref, absent):
    y, s = class_data(absent=absent)
    want = ref(y, s)
    np.testing.assert_allclose(stream(cls(C), y, s), want, rtol=1e-6)
    # one-hot labels (all-zero row = no label) give the same value
    onehot = np.eye(C, dtype="float32")[np.maximum(y, 0)] * (y >= 0)[:, None]
    np.testing.assert_allclose(stream(cls(C), onehot, s), want, rtol=1e-6)


def test_confusion_matrix_and_absent_class_rules():
    y, s = class_data(absent=3)
    m = numpy_ref.confusion_matrix(y, s, C)
    np.testing.assert_array_equal(stream(ConfusionMatrix(C), y, s), m)
    assert m[3].sum() == 0 and m.sum() == np.sum(y >= 0)
    # average accuracy averages the recall of the 4 labelled classes, not 5
    recall = np.diag(m) / np.maximum(m.sum(1), 1)
    np.testing.assert_allclose(numpy_ref.average_accuracy(y, s), recall[[0, 1, 2, 4]].mean())


def test_macro_f1_leaves_out_classes_neither_labelled_nor_predicted():
    y = np.array([0, 0, 1, 1, 2, -1], "int32")
    s = np.eye(4, dtype="float32")[[0, 1, 1, 1, 2, 3]]  # class 3 only predicted for the unlabelled sample
    f1 = {0: 2 / 3, 1: 0.8, 2: 1.0}  # 2TP / (2TP + FP + FN); class 3 is absent everywhere (masked row)
    want = np.mean(list(f1.values()))
    assert numpy_ref.macro_f1(y, s) == pytest.approx(want)
    assert float(stream(MacroF1(4), y, s, splits=(4, 2))) == pytest.approx(want)
    # keras.metrics.F1Score counts class 3 as F1 = 0: a lower value, hence not used
    keep = y >= 0
    k = keras.metrics.F1Score(average="macro")
    k.update_state(np.eye(4, dtype="float32")[y[keep]], s[keep])
    assert float(k.result()) == pytest.approx(sum(f1.values()) / 4, rel=1e-5)


def test_classification_empty_weights_and_errors():
    for cls, _ in CLASSIFICATION:
        m = cls(C)
        m.update_state(np.full(3, -1), np.zeros((3, C)))
        assert np.isnan(m.result())
    y, s = class_data()
    w = np.random.default_rng(4).integers(0, 3, len(y)).astype("float32")
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    np.testing.assert_array_equal(stream(ConfusionMatrix(C), y, s, sample_weight=w),
                                  numpy_ref.confusion_matrix(y[rep], s[rep], C))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        OverallAccuracy(C).update_state(np.array([0, C]), np.zeros((2, C)))
    with pytest.raises(ValueError, match="num_classes"):
        MacroF1(1)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        MacroF1(C).update_state(np.array([0, 1]), np.zeros((2, 3)))


# ------------------------------------------------------------------------------- serialisation and compile
def all_metrics():
    return [RMSE(), SAGR(index=0), PCC(index=1), CCC(index=0), CCC(name="my_ccc"),
            OverallAccuracy(C), AverageAccuracy(C), MacroF1(C), ConfusionMatrix(C)]


def test_default_names_and_config_round_trip():
    assert [m.name for m in (RMSE(index=0), SAGR(index=1), PCC(), CCC(index=0), CCC(index=1), CCC())] == [
        "rmse_v", "sagr_a", "pcc", "ccc_v", "ccc_a", "ccc"]
    t, p = va_data()
    y, s = class_data()
    for m in all_metrics():
        clone = type(m).from_config(m.get_config())
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(m))
        assert type(restored) is type(m)
        for other in (clone, restored):
            assert other.get_config() == m.get_config()
            args = (t, p) if isinstance(m, (RMSE, SAGR, PCC, CCC)) else (y, s)
            np.testing.assert_array_equal(stream(other, *args, splits=(24,)), stream(m, *args, splits=(24,)))


def tiny_model():
    inp = keras.Input((3,))
    return keras.Model(inp, {"va": keras.layers.Dense(2, name="va")(inp),
                             "expression": keras.layers.Dense(C, name="expression")(inp)})


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_compile_dict_outputs_evaluate_equals_numpy(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(23, 3)).astype("float32")
    t, _ = va_data(n=23)
    y, _ = class_data(n=23)
    model = tiny_model()
    model.compile(loss={"va": AffectLoss(), "expression": keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-1)},
        metrics={"va": [RMSE(), SAGR(index=0), PCC(index=1), CCC(index=0), CCC()],
                 "expression": [OverallAccuracy(C), AverageAccuracy(C), MacroF1(C), ConfusionMatrix(C)]})
    labels = {"va": t.astype("float32"), "expression": y}
    got = model.evaluate(x, labels, batch_size=5, verbose=0, return_dict=True)  # batches 5,5,5,5,3
    w, b = model.get_layer("va").get_weights()
    we, be = model.get_layer("expression").get_weights()
    tv, pv, pe = labels["va"], x @ w + b, x @ we + be
    want = {"va_rmse": numpy_ref.rmse(tv, pv), "va_sagr_v": numpy_ref.sagr(tv, pv, 0),
            "va_pcc_a": numpy_ref.pcc(tv, pv, 1), "va_ccc_v": numpy_ref.ccc(tv, pv, 0), "va_ccc": numpy_ref.ccc(tv, pv),
            "expression_accuracy": numpy_ref.accuracy(y, pe),
            "expression_average_accuracy": numpy_ref.average_accuracy(y, pe),
            "expression_macro_f1": numpy_ref.macro_f1(y, pe)}
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(got["expression_confusion_matrix"], numpy_ref.confusion_matrix(y, pe, C))
    # the compiled loss and metrics come back from a .keras file
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    restored = keras.saving.load_model(path).get_compile_config()
    assert restored["metrics"] == model.get_compile_config()["metrics"]
    assert restored["loss"]["va"] == model.get_compile_config()["loss"]["va"]


def test_updates_compile_with_xla():
    """Keras compiles train/test steps with XLA on GPU by default: every update must be XLA-compatible."""
    t, p = va_data()
    y, s = class_data()
    metrics = all_metrics()

    @tf.function(jit_compile=True)
    def update(t, p, y, s):
        for m in metrics:
            m.update_state(*((t, p) if isinstance(m, (RMSE, SAGR, PCC, CCC)) else (y, s)))

    for start in range(0, len(t), 8):  # one shape: one XLA compilation
        sl = slice(start, start + 8)
        update(t[sl], p[sl], y[sl], s[sl])
    for m in metrics:
        args = (t, p) if isinstance(m, (RMSE, SAGR, PCC, CCC)) else (y, s)
        np.testing.assert_allclose(np.asarray(m.result()), stream(type(m).from_config(m.get_config()), *args),
                                   rtol=1e-6, atol=1e-7, err_msg=m.name)


# --------------------------------------------------------------------------------------- tf.distribute
MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from ferkeras.losses import AffectLoss, affect_loss
    from ferkeras.metrics import CCC, PCC, RMSE, SAGR, AverageAccuracy, ConfusionMatrix, MacroF1, OverallAccuracy
    from ferkeras.metrics import numpy_ref as ref

    C, N = 4, 25  # global batch 8: the last batch (1 sample) leaves one replica empty
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 3)).astype("float32")
    va = np.clip(x[:, :2] * 0.4 + rng.normal(0, 0.2, (N, 2)), -1, 1).astype("float32")
    va[[2, 9], 0] = np.nan
    va[4, 1] = np.nan
    expr = rng.integers(0, C, N).astype("int32")
    expr[[1, 7]] = -1
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        inp = keras.Input((3,))
        model = keras.Model(inp, {"va": keras.layers.Dense(2, name="va")(inp),
                                  "expression": keras.layers.Dense(C, name="expression")(inp)})
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss={"va": AffectLoss(), "expression": keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True, ignore_class=-1)},
                      metrics={"va": [RMSE(), SAGR(index=0), PCC(index=0), PCC(index=1), CCC(index=0), CCC()],
                               "expression": [OverallAccuracy(C), AverageAccuracy(C), MacroF1(C),
                                              ConfusionMatrix(C)]})
    y = {"va": va, "expression": expr}
    # One SGD step on a batch of 8 split 4 + 4: the "va" layer (which only L_AV reaches) must move by the MEAN of
    # the two replicas' L_AV gradients (AffectLoss scales its scalar loss by 1 / replicas as Keras does for
    # per-sample losses; without that the step would be twice as large).
    w0 = [v.numpy() for v in model.get_layer("va").weights]
    model.fit(x[:8], {k: v[:8] for k, v in y.items()}, batch_size=8, epochs=1, shuffle=False, verbose=0)
    step = [v.numpy() - v0 for v, v0 in zip(model.get_layer("va").weights, w0)]
    grads = []
    for half in (slice(0, 4), slice(4, 8)):
        wt = [tf.Variable(v0) for v0 in w0]
        with tf.GradientTape() as tape:
            loss = affect_loss(va[half], tf.matmul(x[half], wt[0]) + wt[1])
        grads.append([g.numpy() for g in tape.gradient(loss, wt)])
    expected = [-0.1 * (g0 + g1) / 2 for g0, g1 in zip(*grads)]

    got = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    w, b = [v.numpy() for v in model.get_layer("va").weights]
    we, be = [v.numpy() for v in model.get_layer("expression").weights]
    pv, pe = x @ w + b, x @ we + be
    want = {"va_rmse": ref.rmse(va, pv), "va_sagr_v": ref.sagr(va, pv, 0), "va_pcc_v": ref.pcc(va, pv, 0),
            "va_pcc_a": ref.pcc(va, pv, 1), "va_ccc_v": ref.ccc(va, pv, 0), "va_ccc": ref.ccc(va, pv),
            "expression_accuracy": ref.accuracy(expr, pe),
            "expression_average_accuracy": ref.average_accuracy(expr, pe),
            "expression_macro_f1": ref.macro_f1(expr, pe)}
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "got": {k: float(np.asarray(got[k])) for k in want}, "want": want,
        "confusion_got": np.asarray(got["expression_confusion_matrix"]).tolist(),
        "confusion_want": ref.confusion_matrix(expr, pe, C).tolist(),
        "step_error": max(float(np.max(np.abs(s - e))) for s, e in zip(step, expected)),
        "step_size": max(float(np.max(np.abs(e))) for e in expected)}))
""")


def test_mirrored_strategy_two_cpu_replicas():
    """Whole-set metrics and L_AV gradient scaling under MirroredStrategy (own process: logical devices)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for key, value in out["want"].items():
        np.testing.assert_allclose(out["got"][key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(out["confusion_got"], out["confusion_want"])
    assert out["step_size"] > 1e-3
    assert out["step_error"] < 1e-5 * max(1.0, out["step_size"])
