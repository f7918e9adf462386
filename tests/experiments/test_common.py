"""experiments/common.py: which process writes the run directory in a multi-worker run, the training stream the
binaries hand to ferkeras.training.fit for exact resumes, the flag checks and the terminal summary."""

import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/experiments/ -> repo
sys.path.insert(0, REPO)
from experiments import common  # noqa: E402


@pytest.mark.parametrize("config, chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_only_the_chief_writes_the_run_directory(monkeypatch, tmp_path, config, chief):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert common.is_chief() is chief
    s = {"resume": None, "out_dir": str(tmp_path)}
    run_dir = common.run_directory(s, "probe")
    assert (os.path.dirname(run_dir.path) == str(tmp_path)) is chief


def _settings(**over):
    s = dict(dataset="synthetic", data_root=None, fold=0, image_size=32, batch_size=8, epochs=1, steps=None,
             augment="flip", num_train=32, num_val=8, num_test=8, train_identities=4, out_dir="runs", resume=None,
             backup_every=None, seed=3, strategy="default", mixed_precision=False, smoke=False, verbose=0)
    s.update(over)
    return s


def test_training_stream_restarts_exactly_at_any_step():
    """stream(k) is stream(0) without its first k batches, augmentation included: what an exact resume needs."""
    stream = common.training_stream(_settings(), lambda images, targets: (images, targets["va"]))
    full = [b for b in stream(0).take(7)]
    resumed = [b for b in stream(5).take(2)]
    for (x0, y0), (x1, y1) in zip(full[5:], resumed):
        np.testing.assert_array_equal(x0.numpy(), x1.numpy())
        np.testing.assert_array_equal(y0.numpy(), y1.numpy())
    assert not np.array_equal(full[0][0].numpy(), full[4][0].numpy())  # the batches do differ


@pytest.mark.parametrize("over, message", [
    (dict(backup_every=0), "--backup_every"),
    (dict(resume="/nonexistent/run"), "--resume=/nonexistent/run"),
])
def test_user_errors_name_the_flag(over, message):
    from absl import app

    with pytest.raises(app.UsageError, match=message):
        common.check(_settings(**over))


def _result(metrics, **extra):
    return dict({"metrics": metrics, "total_seconds": 12.4, "train_seconds": 7.6}, **extra)


VA = {f"{axis}_{m}": v for axis, base in (("valence", 0.1), ("arousal", 0.2), ("mean", 0.15))
      for m, v in (("ccc", base), ("pcc", base + 0.01), ("rmse", base + 0.02), ("sagr", base + 0.03))}


def test_summary_of_a_valence_arousal_and_expression_result():
    metrics = dict(VA, va_count=48, expression_accuracy=0.5, expression_average_accuracy=0.25,
                   expression_macro_f1=0.125, expression_count=40)
    lines = common.summary(_result(metrics), "/runs/x", "my title").splitlines()
    assert lines[:3] == ["", "=" * 72, "my title"]
    assert lines[3] == "  valence  CCC 0.100  PCC 0.110  RMSE 0.120  SAGR 0.130"
    assert lines[5] == "  mean     CCC 0.150  PCC 0.160  RMSE 0.170  SAGR 0.180"
    assert lines[6] == "  expression accuracy 0.500  average accuracy 0.250  macro-F1 0.125   (N=40)"
    assert lines[7] == "  N=48; time: 12 s total, 8 s training"
    assert lines[8:] == ["  run directory: /runs/x", "=" * 72]


def test_summary_of_an_expression_only_and_an_iterations_result():
    metrics = dict(expression_accuracy=0.5, expression_average_accuracy=0.25, expression_macro_f1=0.125,
                   expression_count=40)
    text = common.summary(_result(metrics), "/runs/x", "t")
    assert "CCC" not in text and "(N=40)" in text and "  time: 12 s total, 8 s training" in text
    text = common.summary(_result(dict(VA, va_count=48), iterations=100), "/runs/y", "t")
    assert "  N=48; 100 iterations; time: 12 s total, 8 s training" in text.splitlines()
    assert "expression" not in text
