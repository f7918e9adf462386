"""ferkeras.training.RunDir: creation, flags, results, history, and the layout readers other modules use."""

import datetime
import json
import os

import numpy as np
import pytest

from ferkeras import training
from ferkeras.training import RunDir


def test_run_dir_flags_results_and_history(tmp_path):
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = RunDir.create(str(tmp_path), "exp", now=now)
    second = RunDir.create(str(tmp_path), "exp", now=now)
    assert os.path.basename(first.path) == "exp-20260102-030405"
    assert os.path.basename(second.path) == "exp-20260102-030405-2"
    flagfile = first.save_flags({"lr": 0.01, "smoke": True, "mixed": False, "layers": [1, 2], "unset": None})
    assert flagfile == first.flags_path
    assert open(flagfile).read().split() == ["--lr=0.01", "--smoke", "--nomixed", "--layers=1,2"]
    first.write_result({"a": float("nan"), "b": np.float32(0.5), "c": [np.int64(3), float("inf")]})
    assert json.load(open(first.file("result.json"))) == {"a": None, "b": 0.5, "c": [3, None]}
    with open(first.file("train_log.csv"), "w") as f:
        f.write("epoch,loss,val_loss\n0,2.0,2.5\n1,1.0,1.5\n")
    assert first.read_history() == {"epoch": [0.0, 1.0], "loss": [2.0, 1.0], "val_loss": [2.5, 1.5]}
    assert second.read_history() == {}
    with pytest.raises(FileNotFoundError, match="nope"):
        RunDir.open(str(tmp_path / "nope"))


def test_layout_paths(tmp_path):
    """The documented layout: every path a reader needs comes from RunDir, under its folder."""
    run = RunDir(str(tmp_path / "run"))
    expected = {"flags_path": "flags.cfg", "csv_log_path": "train_log.csv", "result_path": "result.json",
                "checkpoint_path": os.path.join("checkpoints", "best.keras"), "backup_dir": "backup",
                "tensorboard_dir": "tensorboard"}
    for attribute, relative in expected.items():
        assert getattr(run, attribute) == os.path.join(str(tmp_path / "run"), relative), attribute
    assert run.checkpoint_path == run.file(RunDir.CHECKPOINT)
    assert run.backup().backup_dir == run.backup_dir
    assert run.backup().state_path == os.path.join(run.backup_dir, "state.json")
    assert RunDir(os.path.relpath(run.path)).path == run.path  # always absolute


def test_callbacks_write_where_the_layout_says(tmp_path):
    """The callbacks RunDir hands to model.fit write the files its readers read."""
    import keras

    run = RunDir(str(tmp_path / "run"))
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    assert not run.has_checkpoint()
    model.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=0, callbacks=run.callbacks(monitor="loss"))
    assert run.has_checkpoint() and os.path.isfile(run.checkpoint_path)
    assert run.backup().read_state() == {"global_step": 4, "epoch": 2, "weights": "step-4.weights.h5"}
    assert run.read_history()["epoch"] == [0.0, 1.0]
    assert os.listdir(run.tensorboard_dir)


def test_read_result_and_class_names(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    assert not run.has_result() and run.read_class_names() is None
    with pytest.raises(FileNotFoundError, match="has no result.json"):
        run.read_result()
    run.write_result({"metrics": {"valence_ccc": np.float64(0.5)}})
    assert run.has_result()
    assert run.read_result() == {"metrics": {"valence_ccc": 0.5}}
    assert run.read_class_names() is None  # a result without class names (a valence-arousal model)
    run.write_result({"metrics": {}, "class_names": ("neutral", "happy")})
    assert run.read_class_names() == ["neutral", "happy"]
    assert RunDir.open(run.path).read_class_names() == ["neutral", "happy"]


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ("[1, 2]", "JSON list, not an object")])
def test_read_result_names_a_bad_file(tmp_path, text, message):
    run = RunDir(str(tmp_path / "run"))
    with open(run.result_path, "w") as f:
        f.write(text)
    with pytest.raises(ValueError, match=message) as err:
        run.read_result()
    assert run.result_path in str(err.value)


def test_package_reexports_the_old_module_api():
    """``from ferkeras import training`` gives every name the single-module ferkeras.training had."""
    import inspect

    for name in ("RunDir", "ResumableBackup", "STRATEGIES", "affect_scores", "build_for_strategy",
                 "collect_predictions", "evaluate_and_report", "fit", "get_strategy", "jsonable"):
        assert hasattr(training, name), name
    assert inspect.isfunction(training.fit)  # the function, not the submodule ferkeras.training.fit
    assert training.STRATEGIES == ("default", "mirrored", "multi_worker")
    with pytest.raises(ValueError, match="'tpu'"):
        training.get_strategy("tpu")
