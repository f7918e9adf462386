"""ferkeras.training.precision: the precision name -> Keras policy map, and one training step of the baseline, AVCE and
the SSL-FER pre-training model under mixed_bfloat16 (losses float32 and finite, variables float32, no loss scaling).

The steps run eagerly (``train_step`` called directly): on tiny models that costs less than tracing them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras import training
from ferkeras.methods.avce import AVCEModel
from ferkeras.methods.sslfer.objective import SSLFERObjective
from ferkeras.models.backbones import make_backbone
from ferkeras.models.baseline import build_baseline_model, compile_baseline
from ferkeras.models.contrastive import ContrastivePretrainer
from tests.models.contrastive_objectives import pretraining_batch

SHAPE = (32, 32, 3)  # ResNet-18 width 16 (>= 16 channels) and even batches: see the oneDNN note in CONTRIBUTING.md
BATCH = 4


def test_precision_names_map_to_keras_policies():
    assert training.PRECISIONS == {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    for name, policy in training.PRECISIONS.items():
        assert training.precision_policy(name) == policy
    for bad in ("bf16", "mixed_bfloat16", "", None, True):
        with pytest.raises(ValueError, match="unknown precision .* none, bfloat16, float16"):
            training.precision_policy(bad)


def test_set_precision_and_scope_restore_the_global_policy():
    previous = keras.mixed_precision.global_policy().name
    try:
        assert training.set_precision("float16") == "mixed_float16"
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        with training.precision_scope("bfloat16") as policy:
            assert policy == "mixed_bfloat16" == keras.mixed_precision.global_policy().name
            layer = keras.layers.Dense(2)
        assert keras.mixed_precision.global_policy().name == "mixed_float16"  # restored
        assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"  # the layer keeps its own
        assert training.set_precision("none") == "float32"  # "none" sets float32: a second run in-process gets it
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _weights(model):
    return [np.array(v.numpy(), copy=True) for v in model.trainable_weights]


def _assert_bf16_model(model, optimizers):
    conv = next(layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == "bfloat16", conv.name
    for opt in optimizers:  # bfloat16 has float32's exponent range: no loss scaling
        assert not isinstance(opt, keras.optimizers.LossScaleOptimizer), type(opt).__name__


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _assert_trained_in_float32(model, before, optimizers):
    """Variables (model and optimiser slots) float32 and finite, and the step changed the trainable weights."""
    for v in model.weights + [v for opt in optimizers for v in opt.variables]:
        assert v.dtype == "float32" or v.dtype in ("int64", "int32"), (v.path, v.dtype)
        if v.dtype == "float32":
            assert np.isfinite(v.numpy()).all(), v.path
    after = _weights(model)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))


def _assert_float32_finite(**values):
    for name, value in values.items():
        assert value.dtype == tf.float32, (name, value.dtype)
        assert np.isfinite(value.numpy()).all(), (name, value.numpy())


@pytest.fixture(scope="module")
def va_batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (BATCH,) + SHAPE).astype("float32")
    va = rng.uniform(-0.9, 0.9, (BATCH, 2)).astype("float32")
    expression = np.array([0, 3, -1, 7], "int32")  # one unlabelled
    return images, va, expression


def _record(obj, method, calls):
    """Wraps ``obj.method`` (on the instance) so that each call's return value is appended to ``calls``."""
    original = getattr(obj, method)

    def recorded(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out)
        return out

    setattr(obj, method, recorded)


def test_baseline_step_under_bfloat16(va_batch):
    images, va, expression = va_batch
    with training.precision_scope("bfloat16"):
        keras.utils.set_random_seed(0)
        model = build_baseline_model("resnet18", SHAPE, task="both", width=16)
        compile_baseline(model, "both", optimizer=keras.optimizers.Adam(1e-3))
    _assert_bf16_model(model, [model.optimizer])
    losses = []
    _record(model, "compute_loss", losses)
    before = _weights(model)
    model.train_step((tf.constant(images), {"va": tf.constant(va), "expression": tf.constant(expression)}))
    assert len(losses) == 1
    _assert_float32_finite(loss=losses[0])
    _assert_trained_in_float32(model, before, [model.optimizer])


def test_avce_step_under_bfloat16(va_batch):
    images, va, _ = va_batch
    with training.precision_scope("bfloat16"):
        keras.utils.set_random_seed(0)
        model = AVCEModel("resnet18", SHAPE, width=16)
        model.compile(jit_compile=False)
    optimizers = [model.optimizer, model.head_optimizer, model.dis_optimizer]
    _assert_bf16_model(model.encoder, optimizers)
    assert model.views.compute_dtype == "bfloat16"  # Sp / Sm compute in float32 inside (ferkeras.ops.sparsemax)
    main, dis = [], []
    _record(model, "main_losses", main)  # pass 1: (x, L_AV, L_AVCE); pass 2: L_dis (Eq. 8)
    _record(model, "dis_loss_value", dis)
    before = _weights(model)
    model.train_step((tf.constant(images), {"va": tf.constant(va)}))
    ((x, l_av, l_con),), (l_dis,) = main, dis
    _assert_float32_finite(x=x, l_av=l_av, l_contrastive=l_con, l_dis=l_dis)
    _assert_trained_in_float32(model, before, optimizers)


def test_sslfer_pretraining_step_under_bfloat16():
    batch = {k: tf.constant(v) for k, v in pretraining_batch(batch=BATCH, size=SHAPE[0], hard_negatives=2).items()}
    with training.precision_scope("bfloat16"):
        keras.utils.set_random_seed(0)
        model = ContrastivePretrainer(make_backbone("resnet18", SHAPE, pooling="avg", width=16), SSLFERObjective(),
                                      projection_hidden=(32,), projection_dim=8, probe_classes=3, probe_va=True)
        model.compile(jit_compile=False)
    optimizers = [model.optimizer, model.probe_optimizer]
    _assert_bf16_model(model.encoder, optimizers)
    terms, probes = [], []
    _record(model, "objective_terms", terms)
    _record(model, "probe_losses", probes)  # the online probe: {task: (loss, labels, predictions)}
    before = _weights(model)
    model.train_step(batch)
    (terms,), (probe,) = terms, probes
    assert set(probe) == {"expression", "va"} and {"loss", "info_nce"} <= set(terms)
    _assert_float32_finite(**terms, **{f"probe_{task}": loss for task, (loss, _, _) in probe.items()})
    _assert_trained_in_float32(model, before, optimizers)
