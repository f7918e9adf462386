"""The flags and the library underneath the experiment binaries' multi-worker runs (fast, in-process): flag errors,
shard folders, each worker's training shard files, a resumed worker's stream and its copy of the chief's backup.

The binaries themselves run with two worker processes in test_multi_worker_avce.py,
test_multi_worker_avce_resume.py and test_multi_worker_baseline.py (from shards), test_baseline.py (from raw files)
and test_sslfer_pretrain.py; their shared helpers are in tests/experiments/multi_worker.py, the TFRecord shards (the
``shards`` fixture) in tests/experiments/conftest.py.
"""

import json
import os
import sys

import pytest
from absl import app

from tests import helpers
from tests.experiments.multi_worker import worker_shard_files

sys.path.insert(0, helpers.REPO)
from experiments import common  # noqa: E402


def _settings(**over):
    s = dict(dataset="synthetic", data_root=None, fold=0, image_size=32, batch_size=8, epochs=1, steps=None,
             augment="flip", num_train=32, num_val=8, num_test=8, train_identities=4, out_dir="runs", resume=None,
             backup_every=None, seed=3, strategy="default", cpu_replicas=None, shards=None, mixed_precision=False,
             smoke=False, verbose=0)
    s.update(over)
    return s


def _shard_folder(tmp_path, *names):
    for name in names:
        os.makedirs(tmp_path / name)
    return str(tmp_path)


@pytest.mark.parametrize("over, message", [
    (dict(cpu_replicas=2), "--cpu_replicas=2 splits the CPU for --strategy=mirrored only"),
    (dict(cpu_replicas=0, strategy="mirrored"), "--cpu_replicas must be >= 1"),
    (dict(shards="/nonexistent/shards"), "--shards=/nonexistent/shards: shards folder"),
    (dict(dataset="affectnet", shards="SHARDS/only_train"), "has no held-out sub-folder"),
    (dict(shards="SHARDS/with_test", data_root="SHARDS"), "give one"),
    (dict(strategy="multi_worker", resume="/nonexistent/run"), "readable at this path on every machine"),
])
def test_distribution_flag_errors_name_the_flag(tmp_path, over, message):
    for key, value in over.items():
        if isinstance(value, str) and value.startswith("SHARDS"):
            over[key] = value.replace("SHARDS", str(tmp_path))
    _shard_folder(tmp_path / "only_train", "train")
    _shard_folder(tmp_path / "with_test", "train", "test")
    with pytest.raises(app.UsageError, match=message):
        common.check(_settings(**over))


def test_resume_under_multi_worker_is_accepted(tmp_path):
    common.check(_settings(strategy="multi_worker", resume=str(tmp_path)))  # refused until issue 9


def test_shard_split_folders_and_the_checkpoint_they_allow(tmp_path):
    from ferkeras.data import splits

    both = _shard_folder(tmp_path / "both", "train", "val", "test")
    assert splits.shard_split_dirs(both)["val"].endswith("val") and splits.shards_have_own_validation(both)
    assert common.checkpoint_monitor(_settings(shards=both)) == "val_loss"
    test_only = _shard_folder(tmp_path / "test_only", "train", "test")
    dirs = splits.shard_split_dirs(test_only)
    assert dirs["val"] == dirs["test"] and not splits.shards_have_own_validation(test_only)
    assert common.checkpoint_monitor(_settings(shards=test_only)) == "loss"  # no selection on the test split
    val_only = _shard_folder(tmp_path / "val_only", "train", "val")  # e.g. AffectNet: its validation split
    assert splits.shard_split_dirs(val_only, "affectnet")["test"].endswith("val")
    with pytest.raises(FileNotFoundError, match="no train/"):
        splits.shard_split_dirs(_shard_folder(tmp_path / "no_train", "test"))


def test_training_shards_are_split_by_file_across_workers(shards, monkeypatch, caplog, tmp_path):
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    read = []
    for index in (0, 1):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "worker", "index": index}}))
        caplog.clear()
        with caplog.at_level("INFO", logger="ferkeras.data.splits"):
            data = common.load_data(_settings(shards=shards, batch_size=16, strategy="multi_worker"))
        read.append(worker_shard_files(caplog.text, index))
        assert data.num_train == 64 and data.val is not data.test and data.classes
        assert data.train.element_spec[0].shape.as_list() == [16, 32, 32, 3]  # the global batch (see shard_data)
        assert set(data.train.element_spec[1]) >= {"va", "expression"}
        # training: this worker's files, not re-sharded by tf.data; held-out: every worker reads all, split by DATA
        assert data.train.options().experimental_distribute.auto_shard_policy == policy.OFF
        for ds in (data.val, data.test):
            assert ds.options().experimental_distribute.auto_shard_policy == policy.DATA
    files = sorted(os.listdir(os.path.join(shards, "train")))
    assert len(read[0]) == len(read[1]) == 2 and not set(read[0]) & set(read[1])
    assert sorted(os.path.basename(f) for f in read[0] + read[1]) == [f for f in files if f.endswith(".tfrecord")]
    one_file = _shard_folder(tmp_path / "one_file", "train", "test")
    open(os.path.join(one_file, "train", "shard-00000-of-00001.tfrecord"), "wb").close()
    with pytest.raises(app.UsageError, match=r"train': 1 shard file\(s\) for 2 workers.*prepare_dataset.py --shards"):
        common.check(_settings(shards=one_file, strategy="multi_worker"))


def test_a_resumed_stream_skips_what_this_worker_used_when_sharded_by_file(shards, monkeypatch):
    """Sharded by file, a step trains on batch_size / 2 faces of each worker's own stream (the batch is the global
    one): resuming at step 3 must start 3 * 16 // 2 faces in, not 3 batches in."""
    import numpy as np

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    s = _settings(shards=shards, batch_size=16, strategy="multi_worker", augment="none")
    stream = common.training_stream(s, lambda images, targets: images)
    fresh = np.concatenate([b.numpy() for b in stream(0).take(4)])
    resumed = next(iter(stream(3))).numpy()
    assert resumed.shape[0] == 16
    np.testing.assert_array_equal(resumed, fresh[24:40])



def test_a_non_chief_worker_resumes_from_the_chiefs_backup(tmp_path, monkeypatch):
    from ferkeras import training

    chief = training.RunDir.create(str(tmp_path / "runs"), "probe")
    os.makedirs(chief.backup_dir)
    with open(os.path.join(chief.backup_dir, "step-7.weights.h5"), "wb") as f:
        f.write(b"weights")
    with open(chief.backup().state_path, "w") as f:
        json.dump({"global_step": 7, "epoch": 0, "weights": "step-7.weights.h5"}, f)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(common.tempfile, "tempdir", None)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    worker = common.run_directory(_settings(strategy="multi_worker", resume=chief.path), "probe")
    assert worker.path != chief.path and worker.path.startswith(str(tmp_path))
    assert worker.backup().read_state()["global_step"] == 7
    with open(os.path.join(worker.backup_dir, "step-7.weights.h5"), "rb") as f:
        assert f.read() == b"weights"


def test_shard_records_give_the_video_pipelines_their_frames(shards):
    """--shards for SSL-FER pre-training: the shards' frames (crops, cached landmarks, labels, tracks) as records."""
    from ferkeras.data import splits
    from ferkeras.data.video_views import TrackTable

    records = splits.shard_records(os.path.join(shards, "train"))
    a = splits.synthetic_split_arrays("train", 64, train_identities=10, image_size=32, seed=0)
    assert len(records) == 64 and [r.identity for r in records] == [str(i) for i in a["identity"]]
    assert [r.expression for r in records] == [int(e) for e in a["expression"]]
    assert records[3].image_bytes[:2] == b"\xff\xd8" and records[3].timestamp == pytest.approx(0.6)
    table = TrackTable.from_records(records)
    assert len(table) == 64 and table.num_tracks == len(set(a["identity"]))
