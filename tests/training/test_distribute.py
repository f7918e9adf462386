"""Training under tf.distribute (ferkeras.training.get_strategy / build_for_strategy), on CPU.

Every scenario runs in a subprocess (logical devices and TF_CONFIG must be set before TensorFlow initialises)
executing SCRIPT, which trains one step on a global batch of 8 with plain SGD (an SGD step is proportional to the
gradient, so a wrong replica scaling shows in the weights; Adam's first step would hide it) and compares it with
one device:

* MirroredStrategy over two logical CPU devices, for the baseline (ResNet-18, L_AV + cross-entropy) and AVCE
  (AlexNet; closed-form sparsemax, and ECOS through tf.py_function; its two passes and three optimisers): the
  loss and the updated weights equal those of one device computing each replica's slice as the replica does
  (batch normalisation and L_AV's PCC / CCC are batch statistics, so they are per replica) and combining the
  slices as the replicas' gradient sum does;
* MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1: the first-step loss and weights equal those of
  one device on the whole global batch (a per-sample loss and no batch normalisation, so the split cannot matter).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/training/ -> repo
TIMEOUT = 240

SCRIPT = textwrap.dedent(r'''
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path.insert(0, sys.argv[1])
mode, out = sys.argv[2], sys.argv[3]
import tensorflow as tf

if mode == "mirrored":  # two logical CPU devices, configured before TensorFlow initialises
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from ferkeras import training
from ferkeras.methods.avce import AVCEModel
from ferkeras.models.baseline import build_baseline_model, compile_baseline

B, SIZE, CLASSES, LR = 8, 32, 4, 0.05
rng = np.random.default_rng(0)
images = rng.random((B, SIZE, SIZE, 3)).astype("float32")
va = rng.uniform(-1, 1, (B, 2)).astype("float32")
expression = rng.integers(0, CLASSES, B).astype("int32")


def sgd():  # plain SGD: its update is proportional to the gradient, so a replica-scaling error would show
    return keras.optimizers.SGD(LR)


def make(kind):
    keras.utils.set_random_seed(0)
    if kind == "baseline":
        model = build_baseline_model("resnet18", (SIZE, SIZE, 3), task="both", num_classes=CLASSES, width=4)
        return compile_baseline(model, "both", optimizer=sgd(), num_classes=CLASSES)
    if kind == "baseline_expression":
        model = build_baseline_model("alexnet", (64, 64, 3), task="expression", num_classes=CLASSES)
        return compile_baseline(model, "expression", optimizer=sgd(), num_classes=CLASSES)
    method = "ecos" if kind == "avce_ecos" else "closed_form"
    model = AVCEModel(backbone="alexnet", input_shape=(64, 64, 3), sparsemax_method=method)
    model.compile(optimizer=sgd(), head_optimizer=sgd(), dis_optimizer=sgd())
    return model


def data(kind):
    x = images if kind == "baseline" else tf.image.resize(images, (64, 64)).numpy()  # AlexNet: 64 x 64
    if kind.startswith("avce"):
        return x, va
    y = {"expression": expression} if kind == "baseline_expression" else {"va": va, "expression": expression}
    return x, y


def distributed_step(strategy, kind):
    """One fit step on the global batch under `strategy`: (logged loss, initial weights, initial and trained
    trainable weights)."""
    ds = tf.data.Dataset.from_tensors(data(kind))
    with strategy.scope():
        model = training.build_for_strategy(make(kind), ds)
    initial = [w.numpy() for w in model.weights]
    initial_trainable = [np.asarray(w.numpy()) for w in model.trainable_weights]
    history = model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    return (history.history["loss"][0], initial, initial_trainable,
            [np.asarray(w.numpy()) for w in model.trainable_weights])


def split(tree, parts):
    return [tf.nest.map_structure(lambda a: a[k * B // parts:(k + 1) * B // parts], tree) for k in range(parts)]


def reference_step(kind, initial, parts):
    """One device; the global batch cut into `parts` contiguous slices (the replicas' slices), each slice's
    losses computed as a replica computes them, combined as the replicas' gradient sum combines them."""
    model = training.build_for_strategy(make(kind))
    model.set_weights(initial)
    x, y = data(kind)
    slices = list(zip(split(x, parts), split(y, parts)))
    if not kind.startswith("avce"):
        with tf.GradientTape() as tape:
            loss = tf.add_n([model.compute_loss(x=xs, y=ys, y_pred=model(xs, training=True)) for xs, ys in slices])
            loss = loss / parts
        model.optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    else:
        ecr, ec = model.main_variables(), model.dis_variables()
        h, h1 = model.head.trainable_variables, model.head1.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            loss = tf.add_n([tf.add_n(model.main_losses(xs, ys)[1:]) for xs, ys in slices]) / parts  # mean
        model.optimizer.apply(tape.gradient(loss, ecr), ecr)
        head_grads = tape.gradient(loss, h)
        with tf.GradientTape(persistent=True) as tape:
            l_dis = tf.add_n([model.dis_loss_value(xs) for xs, _ in slices])  # Eq. 8 is a sum: no division
        model.dis_optimizer.apply(tape.gradient(l_dis, ec), ec)
        model.head_optimizer.apply(head_grads + tape.gradient(l_dis, h1), h + h1)
    return float(loss), [np.asarray(w.numpy()) for w in model.trainable_weights]


def compare(kind, strategy, parts):
    """The distributed step against the reference on the same initial weights; also returns those weights."""
    loss, initial, initial_trainable, weights = distributed_step(strategy, kind)
    ref_loss, ref_weights = reference_step(kind, initial, parts)
    return {"loss": loss, "reference_loss": ref_loss,
            "max_weight_delta": max(float(np.max(np.abs(a - b))) for a, b in zip(weights, ref_weights)),
            "max_update": max(float(np.max(np.abs(b - i))) for b, i in zip(ref_weights, initial_trainable))}, initial


results = {}
if mode == "mirrored":
    strategy = training.get_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    for kind in sys.argv[4].split(","):
        results[kind], initial = compare(kind, strategy, 2)
        if kind == "baseline":  # the same batch uncut on one device: differs by the per-replica batch statistics
            results[kind]["global_loss"] = reference_step(kind, initial, 1)[0]
elif mode == "worker":  # TF_CONFIG names this process's place among the two workers
    strategy = training.get_strategy("multi_worker")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    # A per-sample loss (cross-entropy) and no batch normalisation: the replicas' average is the global batch's.
    results["baseline_expression"] = compare("baseline_expression", strategy, 1)[0]
with open(out, "w") as f:
    json.dump(results, f)
''')


def _start(tmp_path, args, env=None):
    script = tmp_path / "distributed_step.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), ROOT] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _finish(procs):
    """Waits for every process (killing all of them on a timeout); returns their logs."""
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
            proc.communicate()
        pytest.fail(f"distributed training subprocess timed out after {TIMEOUT} s")
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-4000:]
    return logs


def _check(result, loss_rtol, weight_rtol):
    """Loss and weights against the one-device reference; the weight error relative to the step's size."""
    assert abs(result["loss"] - result["reference_loss"]) <= loss_rtol * abs(result["reference_loss"]), result
    assert result["max_update"] > 1e-3, result  # the step moved the weights: the comparison is not vacuous
    assert result["max_weight_delta"] <= weight_rtol * result["max_update"], result


@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    _finish([_start(tmp_path, ["mirrored", out, "baseline,avce,avce_ecos"])])
    with open(out) as f:
        results = json.load(f)
    for kind in ("baseline", "avce", "avce_ecos"):
        _check(results[kind], 1e-5, 1e-3)
    # Batch statistics are per replica: the same batch uncut on one device gives a different L_AV.
    assert abs(results["baseline"]["global_loss"] - results["baseline"]["loss"]) > 1e-3


def test_multi_worker_two_processes_matches_one_device(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in helpers.free_ports(2)]
    procs = []
    try:
        for index in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                         "task": {"type": "worker", "index": index}}))
            procs.append(_start(tmp_path, ["worker", tmp_path / f"worker{index}.json"], env=env))
        _finish(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for index in range(2):
        with open(tmp_path / f"worker{index}.json") as f:
            _check(json.load(f)["baseline_expression"], 1e-5, 1e-3)


def test_user_errors_are_named():
    import keras
    import tensorflow as tf

    from ferkeras import training

    with pytest.raises(ValueError, match="'tpu'"):
        training.get_strategy("tpu")
    with pytest.raises(ValueError, match="save_freq"):
        training.ResumableBackup("unused", save_freq=0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="tiny")
    with pytest.raises(ValueError, match="compile model 'tiny' first"):
        training.build_for_strategy(model)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="inputs, targets"):
        training.build_for_strategy(model, tf.data.Dataset.from_tensors([1.0, 2.0, 3.0]))
    assert training.build_for_strategy(model).optimizer.built  # one device: the slots exist before fit


TOO_LATE_SCRIPT = textwrap.dedent(r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from ferkeras import training

strategy = training.get_strategy("mirrored", cpu_replicas=2)  # first: splits the CPU before TensorFlow initialises
out = {"replicas": strategy.num_replicas_in_sync, "info": training.strategy_info(strategy)}
for name, kwargs in (("cpu_replicas", dict(name="mirrored", cpu_replicas=3)),
                     ("multi_worker", dict(name="multi_worker"))):
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["127.0.0.1:" + sys.argv[2]]},
                                          "task": {"type": "worker", "index": 0}})
    try:
        training.get_strategy(**kwargs)
        out[name] = "no error"
    except training.StrategyTooLateError as e:
        out[name] = str(e)
print("RESULT " + json.dumps(out))
''')


@pytest.mark.slow
def test_cpu_replicas_and_strategies_requested_too_late(tmp_path):
    """--cpu_replicas=2 gives two replicas on a CPU-only machine; a CPU split or a MultiWorkerMirroredStrategy asked
    for after TensorFlow ran (here: after the first strategy) raises StrategyTooLateError naming the cause."""
    script = tmp_path / "too_late.py"
    script.write_text(TOO_LATE_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), ROOT, str(helpers.free_ports(1)[0])], capture_output=True,
                          text=True, timeout=TIMEOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT "):])
    assert out["replicas"] == 2
    assert out["info"] == {"strategy": "MirroredStrategy", "num_workers": 1, "num_replicas": 2,
                           "replicas_per_worker": 2}
    assert "cpu_replicas=3" in out["cpu_replicas"] and "get_strategy(...) first" in out["cpu_replicas"]
    assert "MultiWorkerMirroredStrategy" in out["multi_worker"]
    assert "Collective ops must be configured at program startup" in out["multi_worker"]


def test_mirrored_on_one_cpu_says_it_trains_one_replica(caplog):
    import tensorflow as tf

    from ferkeras import training

    if tf.config.list_logical_devices("GPU") or len(tf.config.list_logical_devices("CPU")) > 1:
        pytest.skip("this process has several devices")
    with caplog.at_level("WARNING", logger="ferkeras.training.strategy"):
        strategy = training.get_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 1
    assert "ONE replica" in caplog.text and "--cpu_replicas=N" in caplog.text
    assert training.strategy_info(strategy)["num_replicas"] == 1
    with pytest.raises(ValueError, match="cpu_replicas=2 applies to the 'mirrored' strategy only"):
        training.get_strategy("multi_worker", cpu_replicas=2)
    with pytest.raises(ValueError, match="cpu_replicas must be an int >= 1"):
        training.configure_cpu_replicas(0)
