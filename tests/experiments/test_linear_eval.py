"""experiments/linear_eval.py end to end (subprocess, smoke flagfile) on tiny encoders saved here, and its flag
errors (reported before the encoder or any data is loaded)."""

import json
import math
import os

import pytest

from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/experiments/ -> repo
BINARY = os.path.join(REPO, "experiments", "linear_eval.py")
SMOKE = os.path.join(REPO, "experiments", "configs", "linear_eval_smoke.cfg")

pytestmark = pytest.mark.slow  # every test here runs the binary in a subprocess


def _run(*args, timeout=400):
    return helpers.run_script(BINARY, *args, timeout=timeout)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """A bare ResNet-18 encoder (32 x 32) and a run directory holding a ContrastivePretrainer checkpoint."""
    from ferkeras.models.backbones import make_backbone
    from ferkeras.models.contrastive import ContrastivePretrainer
    from ferkeras.training import RunDir
    from tests.models.contrastive_objectives import SimCLRObjective

    folder = tmp_path_factory.mktemp("encoders")
    bare = make_backbone("resnet18", (32, 32, 3), pooling="avg", width=16)
    bare.save(folder / "encoder.keras")
    pretrainer = ContrastivePretrainer(make_backbone("resnet18", (32, 32, 3), pooling="avg", width=16),
                                       SimCLRObjective(), projection_hidden=(16,), projection_dim=8)
    pretrainer.compile()
    run = RunDir.create(str(folder), "sslfer")
    os.makedirs(os.path.dirname(run.checkpoint_path), exist_ok=True)
    pretrainer.save(run.checkpoint_path)
    return {"bare": str(folder / "encoder.keras"), "run": run.path}


@pytest.fixture(scope="module")
def smoke_run(encoders, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = _run(f"--flagfile={SMOKE}", f"--encoder={encoders['bare']}", f"--out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = os.listdir(out)
    assert len(runs) == 1 and runs[0].startswith("linear_eval-linear-both-synthetic-")
    return os.path.join(out, runs[0]), proc


def test_smoke_run_writes_every_metric(smoke_run, encoders):
    path, proc = smoke_run
    assert f"run directory: {path}" in proc.stdout and "identity leakage" in proc.stdout
    for name in ("flags.cfg", "result.json", "expression_linear.keras", "va_linear.keras"):
        assert os.path.getsize(os.path.join(path, name)) > 0, name
    with open(os.path.join(path, "result.json")) as f:
        result = json.load(f)
    m = result["metrics"]
    for key in ("expression_macro_f1", "expression_accuracy", "identity_knn1_accuracy",
                "identity_verification_accuracy", "identity_verification_auc"):
        assert 0.0 <= m[key] <= 1.0, key
    for key in ("valence_ccc", "arousal_ccc", "mean_ccc", "valence_rmse", "mean_rmse"):
        assert isinstance(m[key], float) and math.isfinite(m[key]), key
    assert m["expression_count"] == m["va_count"] == 48  # the whole smoke test set
    assert m["identity_count"] == 6 and m["identity_faces"] == 60
    assert result["details"]["expression"]["cached_features"] and result["details"]["va"]["mode"] == "linear"
    assert sum(result["details"]["expression"]["class_counts"]) == 64  # balanced softmax prior of the train set
    assert result["flags"]["image_size"] == 32  # the encoder's
    assert result["encoder"] == os.path.abspath(encoders["bare"])
    flags_text = open(os.path.join(path, "flags.cfg")).read().split()
    assert "--encoder=" + encoders["bare"] in flags_text
    assert {"--batch_size=16", "--steps=2", "--epochs=1", "--image_size=32"} <= set(flags_text)  # what ran


def test_finetune_from_a_run_directory(encoders, tmp_path):
    proc = _run(f"--flagfile={SMOKE}", f"--encoder={encoders['run']}", f"--out_dir={tmp_path}", "--mode=finetune",
                "--task=expression", "--noidentity_leakage", "--import_modules=tests.models.contrastive_objectives")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = os.listdir(tmp_path)
    with open(os.path.join(tmp_path, run, "result.json")) as f:
        result = json.load(f)
    assert "valence_ccc" not in result["metrics"] and "identity_knn1_accuracy" not in result["metrics"]
    details = result["details"]["expression"]
    assert details["mode"] == "finetune" and not details["cached_features"] and 1 <= details["best_epoch"] <= 1


@pytest.mark.parametrize("args, message", [
    ([], "--encoder is required"),
    (["--encoder=/nonexistent/encoder.keras"], "does not exist"),
    (["--encoder={bare}", "--dataset=fer2013", "--data_root={folder}", "--task=va"], "needs va labels"),
    (["--encoder={bare}", "--head_hidden=64,x"], "--head_hidden=64,x must be comma-separated integers"),
    (["--encoder={bare}", "--dropout=1.0"], "--dropout must be in [0, 1)"),
    (["--encoder={bare}", "--dataset=affectnet"], "--data_root is required"),
    (["--encoder={folder}"], "checkpoints/best.keras"),
    (["--encoder={bare}", "--import_modules=no_such_module"], "cannot import no_such_module"),
    (["--encoder={bare}", "--image_size=48"], "the encoder"),
])
def test_flag_errors_are_clear_and_early(encoders, tmp_path, args, message):
    args = [a.format(bare=encoders["bare"], folder=str(tmp_path)) for a in args]
    proc = _run(f"--out_dir={tmp_path}", "--verbose=0", *args, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "synthetic faces:" not in proc.stderr  # no data was loaded
    assert not [p for p in os.listdir(tmp_path) if p.startswith("linear_eval")]  # no run directory either
