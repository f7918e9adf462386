"""tools/compare_sslfer.py: its argument errors, and a whole comparison at smoke size (2 variants x 2 seeds) through
the real tool - runs, downstream probe and identity leakage per encoder, the markdown table and the Grad-CAM figure.
Subprocesses: the tool defines experiments/sslfer_pretrain.py's absl flags."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/tools/ -> repo
TOOL = os.path.join(REPO, "tools", "compare_sslfer.py")

pytestmark = pytest.mark.slow


def _run(*args, timeout=1200):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO)


@pytest.mark.parametrize("args, message", [
    (["--seeds=0"], "give at least two different seeds"),
    (["--seeds=1,1"], "give at least two different seeds"),
    (["--variants=simclr,cutmix"], "unknown ['cutmix']"),
    (["--dataset=voxceleb1", "--data_root=."], "runs on synthetic videos only"),
    (["--face_swap=0"], "must be > 0 here"),
    (["--t2=0.5"], "--t2=0.5 must exceed --t1=1.0"),
])
def test_argument_errors(args, message, tmp_path):
    proc = _run(*args, f"--out_dir={tmp_path / 'runs'}", timeout=60)  # never the repository's runs/
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_smoke_comparison_writes_the_table(tmp_path):
    proc = _run("--smoke", "--variants=simclr,hardneg", "--seeds=0,1", f"--out_dir={tmp_path}", "--eval_epochs=2",
                "--identity_identities=6", "--identity_faces=60", "--identity_pairs=100", "--verbose=0")
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = open(tmp_path / "compare_sslfer.md").read()
    assert "Command: `python tools/compare_sslfer.py --smoke --variants=simclr,hardneg --seeds=0,1" in table
    assert "| SimCLR | 2 |" in table and "| + HardNeg | 2 |" in table  # mean +- spread rows
    assert table.count("| SimCLR | 0 |") == 1 and table.count("| + HardNeg | 1 |") == 1  # every run
    assert " ± " in table
    rows = json.load(open(tmp_path / "compare_sslfer.json"))
    assert [(r["name"], r["seed"]) for r in rows] == [("simclr", 0), ("hardneg", 0), ("simclr", 1), ("hardneg", 1)]
    for r in rows:
        m = r["metrics"]
        for key in ("expression_macro_f1", "expression_accuracy", "valence_ccc", "arousal_ccc", "mean_ccc",
                    "identity_knn1_accuracy", "identity_verification_accuracy"):
            assert key in m and (m[key] is None or -1.0 <= m[key] <= 1.0), (key, m.get(key))
        flags_text = open(os.path.join(r["run_dir"], "flags.cfg")).read().split()
        assert ("--hard_negatives=1" in flags_text) == (r["name"] == "hardneg")
        assert "--nomaskfn" in flags_text and "--notime_aug" in flags_text and "--face_swap=0.0" in flags_text
        assert "--checkpoint=last" in flags_text  # equal budgets: the last epoch's encoder
    with open(tmp_path / "compare_sslfer_saliency.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
