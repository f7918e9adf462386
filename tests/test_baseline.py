"""experiments/baseline.py end to end (smoke flagfile), its flag errors, and ferkeras.training / ferkeras.viz.plots."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from ferkeras import training
from ferkeras.metrics import numpy_ref
from ferkeras.viz import plots

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(REPO, "experiments", "baseline.py")
SMOKE = os.path.join(REPO, "experiments", "configs", "baseline_smoke.cfg")


def _run(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, BINARY, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = _run(f"--flagfile={SMOKE}", f"--out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = os.listdir(out)
    assert len(runs) == 1 and runs[0].startswith("baseline-resnet18-synthetic-both-")
    return os.path.join(out, runs[0]), proc


def test_smoke_run_directory(smoke_run):
    path, proc = smoke_run
    assert f"run directory: {path}" in proc.stdout
    for name in ("flags.cfg", "result.json", "va_scatter.png", "training_curves.png", "train_log.csv",
                 os.path.join("checkpoints", "best.keras")):
        assert os.path.getsize(os.path.join(path, name)) > 0, name
    assert not os.path.exists(os.path.join(path, "backup")), "BackupAndRestore state must be gone after training"
    flags_text = open(os.path.join(path, "flags.cfg")).read().split()
    assert "--smoke" in flags_text and "--backbone=resnet18" in flags_text


def test_smoke_result_json(smoke_run):
    path, _ = smoke_run
    with open(os.path.join(path, "result.json")) as f:
        result = json.load(f)
    metrics = result["metrics"]
    for axis in ("valence", "arousal", "mean"):
        for metric in ("rmse", "sagr", "pcc", "ccc"):
            value = metrics[f"{axis}_{metric}"]
            assert isinstance(value, float) and math.isfinite(value), (axis, metric, value)
    for key in ("expression_accuracy", "expression_average_accuracy", "expression_macro_f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["va_count"] == metrics["expression_count"] == 48  # the whole smoke test set
    assert np.asarray(metrics["expression_confusion"]).sum() == 48
    assert result["class_names"][:2] == ["neutral", "happy"]
    assert result["figures"] == {"va_scatter": "va_scatter.png", "training_curves": "training_curves.png"}
    # Streaming Keras metrics over the whole set must equal the NumPy references on the collected predictions.
    keras_metrics = result["keras_metrics"]
    assert keras_metrics["va_ccc"] == pytest.approx(metrics["mean_ccc"], abs=1e-5)
    assert keras_metrics["va_ccc_v"] == pytest.approx(metrics["valence_ccc"], abs=1e-5)
    assert keras_metrics["va_rmse"] == pytest.approx(metrics["mean_rmse"], abs=1e-5)
    assert keras_metrics["expression_macro_f1"] == pytest.approx(metrics["expression_macro_f1"], abs=1e-6)
    assert result["flags"]["image_size"] == 32 and result["steps_per_epoch"] == 2


def test_saved_flagfile_parses_back(smoke_run):
    """flags.cfg is a valid flagfile: combined with a bad --epochs, the error is about --epochs, nothing else."""
    path, _ = smoke_run
    proc = _run(f"--flagfile={os.path.join(path, 'flags.cfg')}", "--epochs=0", "--nosmoke")
    assert proc.returncode != 0
    assert "--epochs must be >= 1, got 0" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--backbone=vgg16"], "vgg16"),
    (["--dataset=affectnet"], "--data_root is required for --dataset=affectnet"),
    (["--dataset=rafdb", "--data_root=/nonexistent/raf"], "/nonexistent/raf"),
    (["--backbone=alexnet", "--weights=imagenet"], "--weights=imagenet"),
    (["--task=valence"], "valence"),
])
def test_bad_flags_give_clear_errors(args, message):
    proc = _run(*args, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ library parts


def test_run_dir_flags_results_and_history(tmp_path):
    import datetime

    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = training.RunDir.create(str(tmp_path), "exp", now=now)
    second = training.RunDir.create(str(tmp_path), "exp", now=now)
    assert os.path.basename(first.path) == "exp-20260102-030405"
    assert os.path.basename(second.path) == "exp-20260102-030405-2"
    flagfile = first.save_flags({"lr": 0.01, "smoke": True, "mixed": False, "layers": [1, 2], "unset": None})
    assert open(flagfile).read().split() == ["--lr=0.01", "--smoke", "--nomixed", "--layers=1,2"]
    first.write_result({"a": float("nan"), "b": np.float32(0.5), "c": [np.int64(3), float("inf")]})
    assert json.load(open(first.file("result.json"))) == {"a": None, "b": 0.5, "c": [3, None]}
    with open(first.file("train_log.csv"), "w") as f:
        f.write("epoch,loss,val_loss\n0,2.0,2.5\n1,1.0,1.5\n")
    assert first.read_history() == {"epoch": [0.0, 1.0], "loss": [2.0, 1.0], "val_loss": [2.5, 1.5]}
    with pytest.raises(FileNotFoundError, match="nope"):
        training.RunDir.open(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="tpu"):
        training.get_strategy("tpu")


def test_affect_scores_match_numpy_references():
    rng = np.random.default_rng(0)
    va_true = rng.uniform(-1, 1, (50, 2))
    va_true[:5, 0] = np.nan  # unlabelled valence
    va_pred = np.clip(va_true + rng.normal(0, 0.3, (50, 2)), -1, 1)
    va_pred[:5, 0] = 0.1
    expr_true = rng.integers(-1, 4, 50)
    logits = rng.normal(size=(50, 4))
    scores = training.affect_scores({"va": va_true, "expression": expr_true},
                                    {"va": va_pred, "expression": logits})
    labelled = ~np.isnan(va_true[:, 0])
    t, p = va_true[labelled, 0], va_pred[labelled, 0]
    ccc = 2 * np.mean((t - t.mean()) * (p - p.mean())) / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
    assert scores["valence_ccc"] == pytest.approx(ccc)
    assert scores["arousal_rmse"] == pytest.approx(np.sqrt(np.mean((va_pred[:, 1] - va_true[:, 1]) ** 2)))
    assert scores["mean_pcc"] == pytest.approx(numpy_ref.pcc(va_true, va_pred))
    keep = expr_true >= 0
    assert scores["expression_accuracy"] == pytest.approx(np.mean(logits.argmax(1)[keep] == expr_true[keep]))
    assert scores["expression_count"] == keep.sum()
    assert scores["va_count"] == 45


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, (300, 2))
    y[0] = np.nan
    path = plots.plot_va_scatter(y, 0.8 * y, str(tmp_path / "s.png"), scores={"valence_ccc": 0.9}, title="t")
    curves = plots.plot_training_curves({"epoch": [0, 1, 2], "loss": [3, 2, 1], "val_loss": [3.5, 2.5, 2],
                                         "learning_rate": [1, 1, 1], "va_ccc": [0.1, 0.4, 0.6]},
                                        str(tmp_path / "c.png"))
    for p in (path, curves):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="differ"):
        plots.plot_va_scatter(y, y[:10], str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="no metric"):
        plots.plot_training_curves({"epoch": [0]}, str(tmp_path / "bad2.png"))


def test_fit_resumes_after_interruption(tmp_path):
    """An interrupted fit continues at the next epoch in the same run directory (BackupAndRestore), the CSV log
    holds every epoch once, and the best checkpoint restores into a fresh model."""
    import keras
    import tensorflow as tf

    def make_model():
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(1, name="out")(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        return model

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [0.0]], np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated crash")

    run = training.RunDir.create(str(tmp_path), "resume")
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.fit(make_model(), data, run, epochs=4, validation_data=data, extra_callbacks=[Interrupt()],
                     verbose=0)
    started = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.append(epoch)

    model = make_model()
    history, seconds = training.fit(model, data, training.RunDir.open(run.path), epochs=4, validation_data=data,
                                    extra_callbacks=[Record()], verbose=0)
    assert started[0] in (1, 2) and started[-1] == 3 and seconds > 0
    log = run.read_history()
    assert log["epoch"] == sorted(set(log["epoch"])) and log["epoch"][-1] == 3
    fresh = make_model()
    assert run.restore_checkpoint(fresh)
    best = int(np.argmin(log["val_loss"]))
    np.testing.assert_allclose(fresh.evaluate(data, verbose=0), log["val_loss"][best], rtol=1e-4)
