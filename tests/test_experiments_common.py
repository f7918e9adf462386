"""experiments/common.py: which process writes the run directory in a multi-worker run, and the training stream
the binaries hand to ferkeras.training.fit for exact resumes."""

import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
