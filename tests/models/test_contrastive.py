"""ferkeras.models.contrastive.ContrastivePretrainer: one-pass encoding, the objective on the projections, the
replica all-gather (MirroredStrategy on two logical CPUs), the online probe, the subclass hooks, round-trips."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from ferkeras.losses.objective import ContrastiveObjective
from ferkeras.metrics import numpy_ref
from ferkeras.models.backbones import make_backbone
from ferkeras.models.contrastive import ContrastivePretrainer
from tests import helpers
from tests.models.contrastive_objectives import SimCLRObjective, conv_encoder, numpy_loss, pretraining_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _model(probe_classes=0, probe_va=False, encoder=None, objective=None, **kwargs):
    keras.utils.set_random_seed(0)
    return ContrastivePretrainer(encoder or conv_encoder(), objective or SimCLRObjective(), projection_hidden=(32,),
                                 projection_dim=8, probe_classes=probe_classes, probe_va=probe_va, **kwargs)


def _weights(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def _one_step(model, batch):
    model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1, verbose=0)


# ------------------------------------------------------------------------------------------------ forward pass
def test_views_are_encoded_inone_pass_and_split_back():
    model = _model()
    batch = pretraining_batch(batch=4, hard_negatives=3)
    calls = []
    original = model.encoder.call

    def counting_call(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    model.encoder.call = counting_call
    views = model.views_of(batch)
    features = model.encode_views(views, training=False)
    model.encoder.call = original
    assert len(calls) == 1 and calls[0][0] == 4 + 4 + 4 * 3  # anchor, positive and the 3 hard negatives at once
    assert set(features) == {"anchor", "positive", "hard_negatives"}
    assert tuple(features["hard_negatives"].shape) == (4, 3, 16)
    for key in ("anchor", "positive"):
        np.testing.assert_allclose(features[key], model.encoder(batch[key]), atol=1e-6)
    hn = model.encoder(batch["hard_negatives"].reshape(12, 16, 16, 3)).numpy().reshape(4, 3, 16)
    np.testing.assert_allclose(features["hard_negatives"], hn, atol=1e-6)
    projections = model.project_features(features)
    assert tuple(projections["anchor"].shape) == (4, 8) and tuple(projections["hard_negatives"].shape) == (4, 3, 8)
    np.testing.assert_allclose(projections["hard_negatives"][2, 1], model.projector(hn[2:3, 1])[0], atol=1e-5)
    # call() is the encoder, on images or on a pre-training batch (its anchor)
    np.testing.assert_allclose(model(batch["anchor"]), model.encoder(batch["anchor"]), atol=1e-6)
    np.testing.assert_allclose(model(batch), model.encoder(batch["anchor"]), atol=1e-6)


def test_train_step_is_one_sgd_step_on_the_objective():
    """The logged loss is the objective's (checked against NumPy) on the projections of the step's weights; the
    update is exactly -lr * its gradient on encoder, projection head (the objective has no weights)."""
    lr = 0.1
    model = _model(objective=SimCLRObjective(temperature=0.3, use_weight=True))
    model.compile(optimizer=keras.optimizers.SGD(lr))
    batch = pretraining_batch(batch=4, hard_negatives=2)
    views = model.views_of(batch)
    variables = model.pretrain_variables()
    assert len(variables) == len(model.encoder.trainable_variables) + len(model.projector.trainable_variables)
    with tf.GradientTape() as tape:
        _, proj = model.forward(views, training=True)
        loss = model.objective(proj, {"weight": tf.constant(batch["weight"])})["loss"]
    grads = tape.gradient(loss, variables)
    expected_loss = numpy_loss(proj["anchor"], proj["positive"], proj["hard_negatives"], 0.3, batch["weight"])
    assert abs(float(loss) - expected_loss) < 1e-5
    expected = [v.numpy() - lr * g.numpy() for v, g in zip(variables, grads)]
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    assert abs(history["loss"][0] - expected_loss) < 1e-5
    assert "top1" in history and abs(history["per_step_extra"][0] - 2 * expected_loss) < 1e-4
    for want, got in zip(expected, _weights(variables)):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_test_step_reports_the_loss_without_updating():
    model = _model(probe_classes=3, probe_va=True)
    model.compile()
    batch = pretraining_batch()
    before = _weights(model.weights)
    logs = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
    _, proj = model.forward(model.views_of(batch), training=False)
    assert abs(logs["loss"] - numpy_loss(proj["anchor"], proj["positive"], proj["hard_negatives"])) < 1e-5
    assert {"probe_accuracy", "probe_macro_f1", "probe_ccc", "probe_expression_loss", "probe_va_loss"} <= set(logs)
    for a, b in zip(before, _weights(model.weights)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------ online probe
def test_probe_trains_on_stop_gradient_features_and_reports_masked_metrics():
    batch = pretraining_batch(batch=6)
    plain, probed = _model(), _model(probe_classes=3, probe_va=True)
    for m in (plain, probed):
        m.compile(optimizer=keras.optimizers.SGD(0.1), probe_optimizer=keras.optimizers.SGD(0.5))
    probe_before = _weights(probed.probe_variables())
    features = probed.encoder(batch["anchor"])  # BN-free encoder: the step's training-mode features
    logits = probed.expression_probe(features).numpy()
    va_pred = probed.va_probe(features).numpy()
    history = probed.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    _one_step(plain, batch)
    # the probe never touches the encoder or the projection head: same update as without a probe
    for a, b in zip(_weights(plain.pretrain_variables()), _weights(probed.pretrain_variables())):
        np.testing.assert_allclose(a, b, atol=1e-7)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(probe_before, _weights(probed.probe_variables())))
    labels = batch["expression"]  # the last one is -1 (unknown): masked
    keep = labels >= 0
    assert history["probe_accuracy"][0] == pytest.approx(numpy_ref.accuracy(labels[keep], logits[keep], 3), abs=1e-6)
    assert history["probe_macro_f1"][0] == pytest.approx(numpy_ref.macro_f1(labels[keep], logits[keep], 3), abs=1e-6)
    z = logits[keep] - logits[keep].max(1, keepdims=True)
    ce = -(z[np.arange(keep.sum()), labels[keep]] - np.log(np.exp(z).sum(1)))
    assert history["probe_expression_loss"][0] == pytest.approx(ce.mean(), rel=1e-5)
    va = batch["va"]  # row 0 is NaN (unknown): masked
    assert history["probe_ccc"][0] == pytest.approx(numpy_ref.ccc(va[1:], va_pred[1:]), abs=1e-5)
    assert history["probe_va_loss"][0] == pytest.approx(1 - numpy_ref.ccc(va[1:], va_pred[1:]), abs=1e-5)


def test_probe_without_labels_leaves_the_probe_alone():
    model = _model(probe_classes=3, probe_va=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1), probe_optimizer=keras.optimizers.SGD(0.5))
    probe_before = _weights(model.probe_variables())
    unlabelled = pretraining_batch(labels=False)
    logs = model.fit(tf.data.Dataset.from_tensors(unlabelled), epochs=1, verbose=0).history
    assert not any(k.startswith("probe_") for k in logs)
    all_unknown = dict(pretraining_batch(), expression=np.full(4, -1, "int32"))
    all_unknown.pop("va")
    _one_step(model, all_unknown)
    for a, b in zip(probe_before, _weights(model.probe_variables())):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------ hooks
class _MultiPositive(ContrastiveObjective):
    """RMFER-style: several positives per anchor (B, P, D); mean of -log(sum_pos e^s / sum_all e^s)."""

    seen = {}

    def precompute(self, views, training=False):
        return {"track": views["track"]}

    def call(self, projections, extras, training=False):
        _MultiPositive.seen = {k: tuple(v.shape) for k, v in {**projections, **extras}.items()}
        a = tf.math.l2_normalize(projections["anchor"], -1)
        pos = tf.math.l2_normalize(projections["positives"], -1)
        b, p = tf.shape(pos)[0], tf.shape(pos)[1]
        everything = tf.reshape(pos, (b * p, -1))
        logits = tf.matmul(a, everything, transpose_b=True)  # (B, B * P)
        own = tf.reshape(tf.one_hot(tf.range(b), b)[:, :, None] * tf.ones((1, 1, p)), (b, b * p)) > 0
        pos_sum = tf.reduce_logsumexp(tf.where(own, logits, -1e9), 1)
        return {"loss": tf.reduce_mean(tf.reduce_logsumexp(logits, 1) - pos_sum)}


def test_extra_view_keys_carry_several_positives_per_anchor():
    model = _model(objective=_MultiPositive(name="multi_positive"), view_keys=("anchor", "positives"))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(1)
    batch = {"anchor": rng.random((4, 16, 16, 3), dtype="float32"),
             "positives": rng.random((4, 3, 16, 16, 3), dtype="float32"), "track": np.arange(4, dtype="int32")}
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    assert _MultiPositive.seen == {"anchor": (4, 8), "positives": (4, 3, 8), "track": (4,)}
    assert np.isfinite(history["loss"][0]) and history["loss"][0] > 0


class _BYOL(ContrastivePretrainer):
    """What a BYOL subclass needs (Grill et al., NeurIPS 2020): a predictor, an EMA target network, and three hooks."""

    def __init__(self, *args, momentum=0.9, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum = momentum
        self.predictor = keras.Sequential([keras.Input((self.projection_dim,)), layers.Dense(self.projection_dim)])
        self.target_encoder = keras.models.clone_model(self.encoder)
        self.target_projector = keras.models.clone_model(self.projector)
        self.target_encoder.set_weights(self.encoder.get_weights())
        self.target_projector.set_weights(self.projector.get_weights())
        self.target_encoder.trainable = self.target_projector.trainable = False

    def forward(self, views, training=False):
        features, projections = super().forward(views, training=training)
        online = {"anchor": self.predictor(projections["anchor"])}
        target = self.one_pass(self.target_encoder, {"positive": views["positive"]}, training, item_rank=3)
        target = self.one_pass(self.target_projector, target, training, item_rank=1)
        online["positive"] = tf.stop_gradient(target["positive"])
        return features, online

    def pretrain_variables(self):
        return super().pretrain_variables() + self.predictor.trainable_variables

    def after_train_step(self, batch, features, projections):
        online = self.encoder.weights + self.projector.weights
        target = self.target_encoder.weights + self.target_projector.weights
        for t, o in zip(target, online):
            t.assign(self.momentum * t + (1.0 - self.momentum) * o)


class _BYOLObjective(ContrastiveObjective):
    def call(self, projections, extras, training=False):
        p = tf.math.l2_normalize(projections["anchor"], -1)
        z = tf.math.l2_normalize(projections["positive"], -1)
        return {"loss": tf.reduce_mean(2.0 - 2.0 * tf.reduce_sum(p * z, -1))}


def test_hooks_are_enough_for_a_byol_subclass():
    model = _BYOL(conv_encoder(), _BYOLObjective(name="byol"), projection_hidden=(32,), projection_dim=8, momentum=0.9)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    online0 = _weights(model.encoder.weights)
    predictor0 = _weights(model.predictor.weights)
    _one_step(model, pretraining_batch(hard_negatives=0, labels=False))
    online1 = _weights(model.encoder.weights)
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(online0, online1))
    assert any(np.abs(a - b).max() > 1e-6 for a, b in zip(predictor0, _weights(model.predictor.weights)))
    # target = 0.9 * (its start = the online start) + 0.1 * the updated online network; no gradient reached it
    for t, o0, o1 in zip(_weights(model.target_encoder.weights), online0, online1):
        np.testing.assert_allclose(t, 0.9 * o0 + 0.1 * o1, atol=1e-6)


class _DtypeRecorder(ContrastiveObjective):
    dtypes = []

    def call(self, projections, extras, training=False):
        _DtypeRecorder.dtypes.append({k: v.dtype for k, v in projections.items()})
        return {"loss": tf.reduce_mean(tf.square(projections["anchor"] - projections["positive"]))}


def test_mixed_precision_keeps_the_objective_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model(objective=_DtypeRecorder(name="dtype_recorder"), probe_classes=3,
                       encoder=make_backbone("resnet18", (32, 32, 3), pooling="avg", width=16))
        model.compile()
        assert isinstance(model.probe_optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(tf.data.Dataset.from_tensors(pretraining_batch(size=32)), epochs=1, verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert _DtypeRecorder.dtypes and all(d == tf.float32 for step in _DtypeRecorder.dtypes for d in step.values())
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["probe_expression_loss"][0])


# ------------------------------------------------------------------------------------------------ errors
def test_clear_errors():
    with pytest.raises(ValueError, match="pooled features"):
        ContrastivePretrainer(make_backbone("resnet18", (32, 32, 3), pooling=None, width=16), SimCLRObjective())
    with pytest.raises(TypeError, match="ContrastiveObjective"):
        ContrastivePretrainer(conv_encoder(), keras.losses.MeanSquaredError())
    with pytest.raises(ValueError, match="probe_classes"):
        _model(probe_classes=1)
    model = _model()
    with pytest.raises(ValueError, match="loss="):
        model.compile(loss="mse")
    model.compile()
    with pytest.raises(ValueError, match="no 'anchor' view"):
        model.train_step({"positive": tf.zeros((2, 16, 16, 3))})

    class NoLoss(ContrastiveObjective):
        def call(self, projections, extras, training=False):
            return {"value": tf.reduce_mean(projections["anchor"])}

    bad = _model(objective=NoLoss())
    bad.compile()
    with pytest.raises(ValueError, match="must return a dict with"):
        bad.train_step(pretraining_batch())


# ------------------------------------------------------------------------------------------------ round-trips
def test_config_round_trip():
    model = _model(probe_classes=3, probe_va=True)
    clone = helpers.assert_config_roundtrip(model)
    assert clone.loss_terms == ("top1",) and clone.objective.temperature == 0.5
    custom = ContrastivePretrainer(conv_encoder(), SimCLRObjective(0.2),
                                   projection_head=keras.Sequential([keras.Input((16,)), layers.Dense(4)]))
    assert helpers.assert_config_roundtrip(custom).projector.layers[-1].units == 4


def test_task_model_round_trips_with_resnet18(tmp_path):
    """The model through tests/helpers.run_task_model_test: a training step (probe labels present, so every
    weight moves), .keras reload (a full ContrastivePretrainer with its objective, probe optimiser included) and
    SavedModel export of the encoder."""
    encoder = make_backbone("resnet18", (32, 32, 3), pooling="avg", width=16)
    model = ContrastivePretrainer(encoder, SimCLRObjective(), projection_hidden=(64,), projection_dim=16,
                                  probe_classes=3, probe_va=True)
    model.compile()
    batch = pretraining_batch(batch=4, size=32, hard_negatives=2)
    out = helpers.run_task_model_test(model, batch, tmp_path, inputs=batch["anchor"])
    assert {"loss", "top1", "probe_accuracy", "probe_ccc"} <= set(out["logs"])
    reloaded = out["reloaded"]
    assert isinstance(reloaded.objective, SimCLRObjective) and reloaded.probe_optimizer is not None
    assert tuple(out["saved_model"].serve(batch["anchor"]).shape) == (4, 128)


# ------------------------------------------------------------------------------------------------ MirroredStrategy
MIRRORED_SCRIPT = textwrap.dedent(r'''
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[1])
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from ferkeras import training
from ferkeras.models.contrastive import ContrastivePretrainer
from tests.models.contrastive_objectives import SimCLRObjective, conv_encoder, pretraining_batch

B, LR = 8, 0.5
batch = pretraining_batch(batch=B, size=16, hard_negatives=2, labels=False)
batch["expression"] = np.random.default_rng(3).integers(0, 3, B).astype("int32")  # all labelled: equal counts

def make():
    keras.utils.set_random_seed(0)
    model = ContrastivePretrainer(conv_encoder(), SimCLRObjective(use_weight=True), projection_hidden=(32,),
                                  projection_dim=8, probe_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(LR), probe_optimizer=keras.optimizers.SGD(LR))
    return model

def weights(model):
    return [np.array(v.numpy()) for v in model.trainable_variables]

ds = tf.data.Dataset.from_tensor_slices(batch).batch(B)
one = make()
start = weights(one)
history = one.fit(ds, epochs=1, verbose=0).history
single = weights(one)

strategy = training.get_strategy("mirrored")
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    two = training.build_for_strategy(make())
two_history = two.fit(ds, epochs=1, verbose=0).history
mirrored = weights(two)

# Without the all-gather each replica would contrast its 4 samples with its own 4 only: its loss and update differ.
local = make()
variables = local.pretrain_variables()
with tf.GradientTape() as tape:
    losses = []
    for half in (slice(0, B // 2), slice(B // 2, B)):
        part = {k: v[half] for k, v in batch.items()}
        _, proj = local.forward(local.views_of(part), training=True)
        losses.append(local.objective(proj, local.objective.precompute(part))["loss"])
    loss = tf.add_n(losses) / 2
local.optimizer.apply(tape.gradient(loss, variables), variables)
n = len(variables)

def delta(a, b, upto=None):
    return max(float(np.abs(x - y).max()) for x, y in list(zip(a, b))[:upto])

print(json.dumps({"loss": history["loss"][0], "mirrored_loss": two_history["loss"][0], "local_loss": float(loss),
                  "update": delta(single, start), "delta": delta(single, mirrored),
                  "local_delta": delta(weights(local)[:n], single[:n])}))
''')


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device(tmp_path):
    """One pre-training step under MirroredStrategy on 2 logical CPUs (global batch 8, 4 per replica) equals one
    device's step on the whole batch: the projections are all-gathered, so the replicas' InfoNCE sees all 8 samples
    as negatives, and its gradient is scaled once for the replicas.  The encoder is BatchNorm-free (per-replica
    batch statistics would otherwise make the two differ by design); the probe's loss is a per-sample mean with
    all labels present, so its update is exact too.  A step without the all-gather (negatives of the local 4
    only) gives a clearly different loss and update, so the comparison is not vacuous."""
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    run = subprocess.run([sys.executable, str(script), ROOT], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["update"] > 1e-2, result
    assert result["delta"] < 1e-5, result
    assert abs(result["mirrored_loss"] - result["loss"]) < 1e-5, result
    assert abs(result["local_loss"] - result["loss"]) > 1e-2, result
    assert result["local_delta"] > 0.01 * result["update"], result
