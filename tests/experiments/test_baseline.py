"""experiments/baseline.py end to end (smoke flagfile, subprocess), the same run with two worker processes (the smoke
run is its single-process reference), and its flag errors."""

import json
import math
import os

import numpy as np
import pytest

from tests import helpers
from tests.experiments import multi_worker as mw

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/experiments/ -> repo
BINARY = os.path.join(REPO, "experiments", "baseline.py")
SMOKE = os.path.join(REPO, "experiments", "configs", "baseline_smoke.cfg")

pytestmark = pytest.mark.slow  # every test here runs the binary in a subprocess


def _run(*args, timeout=300):
    return helpers.run_script(BINARY, *args, timeout=timeout)


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
    assert "baseline result on the held-out set" in proc.stdout and "expression accuracy" in proc.stdout
    for name in ("flags.cfg", "result.json", "va_scatter.png", "training_curves.png", "train_log.csv",
                 os.path.join("checkpoints", "best.keras")):
        assert os.path.getsize(os.path.join(path, name)) > 0, name
    with open(os.path.join(path, "backup", "state.json")) as f:  # the final training state, kept, marked complete
        assert json.load(f)["complete"] is True
    flags_text = open(os.path.join(path, "flags.cfg")).read().split()
    assert "--smoke" in flags_text and "--backbone=resnet18" in flags_text
    # What ran (--smoke's values), not the flags' defaults: the flagfile reruns the same run.
    assert {"--batch_size=16", "--steps=2", "--epochs=1", "--image_size=32", "--num_train=64"} <= set(flags_text)


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


@pytest.mark.timeout(mw.TIMEOUT + 300)
def test_two_workers_from_raw_files_match_the_smoke_run(smoke_run, tmp_path):
    """The smoke command under --strategy=multi_worker on two worker processes (tests/experiments/multi_worker.py):
    the chief's held-out metrics equal the smoke run's (the single-process reference: same flags) within
    the tolerance."""
    flags = [f"--flagfile={SMOKE}"]
    workers, _ = mw.workers(BINARY, flags, tmp_path / "runs", tmp_path, "raw")
    mw.run_all(workers)
    _, result = mw.one_run(tmp_path / "runs")
    with open(os.path.join(smoke_run[0], "result.json")) as f:
        reference = json.load(f)
    assert result["flags"]["strategy"] == "multi_worker" and not result["flags"]["shards"]
    assert reference["flags"]["strategy"] == "default"
    mw.check_against_reference(result, reference)
    mw.assert_non_chief_directory_was_temporary(workers, tmp_path)


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
