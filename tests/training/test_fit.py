"""ferkeras.training.fit and ResumableBackup in-process: resume after an interruption, backup frequency, errors.

The exact mid-epoch resume of a SIGKILLed process is tests/training/test_resume.py."""

import numpy as np
import pytest

from ferkeras import training
from tests import helpers


def test_fit_resumes_after_interruption(tmp_path):
    """An interrupted fit continues at the next epoch in the same run directory (ResumableBackup), the CSV log
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


def test_backup_every_k_steps_keeps_only_the_last(tmp_path):
    import os

    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    backup = training.ResumableBackup(str(tmp_path / "backup"), save_freq=3)
    saved = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            state = backup.read_state()
            saved.append(None if state is None else state["global_step"])

    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=0, callbacks=[backup, Watch()])
    # 4 steps an epoch: saves after steps 3 and 6, and at both epoch ends (4 and 8).
    assert saved == [None, None, 3, 3, 4, 6, 6, 6]
    assert backup.read_state() == {"global_step": 8, "epoch": 2, "weights": "step-8.weights.h5"}
    assert [f for f in os.listdir(backup.backup_dir) if f.endswith(".h5")] == ["step-8.weights.h5"]
    fresh = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    assert training.ResumableBackup(backup.backup_dir).restore(fresh) == 8
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    backup.delete()
    assert backup.read_state() is None and training.ResumableBackup(backup.backup_dir).restore(fresh) == 0


def test_user_errors_are_named(tmp_path):
    import keras

    with pytest.raises(ValueError, match="save_freq"):
        training.ResumableBackup("unused", save_freq=0)
    backup = training.ResumableBackup(str(tmp_path / "backup"))
    inputs = keras.Input((3,))
    small = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    small.compile(optimizer="sgd", loss="mse")
    backup.set_model(small)
    backup.save()
    other = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    with pytest.raises(ValueError, match="Is this the run directory of the same model"):
        backup.restore(other)


# --- resume: the best checkpoint, the CSV log, finished runs, a damaged backup -------------------------------------
EPOCHS, STEPS = 3, 4


def _drifting_problem():
    """A linear model initialised at the validation optimum and trained towards other targets: the validation loss
    rises every epoch, so the best epoch is the first and every later one is worse."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    w_val = np.array([[1.0], [-2.0], [0.5], [0.0]], np.float32)
    train = tf.data.Dataset.from_tensor_slices((x, x @ -w_val)).batch(8, drop_remainder=True)
    val = tf.data.Dataset.from_tensor_slices((x, x @ w_val)).batch(16)

    def make_model():
        inputs = keras.Input((4,))
        dense = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(w_val))
        model = keras.Model(inputs, dense(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5), loss="mse")
        return model

    def stream(start):
        return train.repeat().skip(start)

    return make_model, stream, val


def _fit(run, make_model, stream, val, callbacks=(), epochs=EPOCHS, backup_freq=2):
    model = make_model()
    history, _ = training.fit(model, stream, run, epochs=epochs, steps_per_epoch=STEPS, validation_data=val,
                              extra_callbacks=list(callbacks), verbose=0, backup_freq=backup_freq)
    return model, history


class _Crash(Exception):
    pass


def _crash_after_step(k):
    """A callback that stops training with an exception after global step ``k`` (what a kill looks like to the
    next process: the last backup is the one before)."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == k:
                raise _Crash(f"killed after step {k}")

    return Crash()


def _crash_at_epoch_end(epoch):
    """Stops training at the end of ``epoch`` after the CSV log and the checkpoint saw it, before the backup did."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            if e == epoch:
                raise _Crash(f"killed at the end of epoch {epoch}")

    return Crash()


@pytest.mark.parametrize("crash, backup_freq, last_backup", [
    (_crash_after_step(7), 2, 6),            # mid-epoch 1, between the backups of steps 6 and 8
    (_crash_at_epoch_end(1), "epoch", 4),    # epoch 1 logged and checked, not backed up: trained again
], ids=["between-backups", "after-the-log-before-the-backup"])
def test_resume_keeps_the_best_checkpoint_and_logs_each_epoch_once(tmp_path, crash, backup_freq, last_backup):
    """Killed after the best epoch (the first) and resumed: later, worse epochs must not overwrite best.keras (the
    best value and its epoch come back from the backup), and train_log.csv has one row per epoch."""
    make_model, stream, val = _drifting_problem()
    run = training.RunDir(str(tmp_path / "run"))
    with pytest.raises(_Crash):
        _fit(run, make_model, stream, val, [crash], backup_freq=backup_freq)
    state = run.training_state()
    assert state["global_step"] == last_backup and not state.get("complete")
    assert state["callbacks"]["BestCheckpoint"]["epoch"] == 1  # the backup carries the best epoch

    model, _ = _fit(run, make_model, stream, val, backup_freq=backup_freq)
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    log = run.read_history()
    assert log["epoch"] == [0.0, 1.0, 2.0], log["epoch"]
    assert log["val_loss"][0] < log["val_loss"][1] < log["val_loss"][2]  # the problem drifts as designed
    record = run.checkpoint_record()
    assert record["epoch"] == 1 and record["best"] == pytest.approx(log["val_loss"][0])
    best = make_model()
    assert run.restore_checkpoint(best)
    np.testing.assert_allclose(best.evaluate(val, verbose=0), log["val_loss"][0], rtol=1e-5)
    assert run.training_state()["complete"] is True


def test_resuming_a_finished_run_changes_nothing_unless_asked_for_more_epochs(tmp_path):
    make_model, stream, val = _drifting_problem()
    run = training.RunDir(str(tmp_path / "run"))
    _fit(run, make_model, stream, val, epochs=2)
    run.write_result({"metrics": {}})
    assert run.training_state()["complete"] is True
    before = helpers.file_tree(run.path)

    with pytest.raises(training.RunComplete, match="is complete: 2 epochs .8 steps.*nothing changed"):
        run.check_resume(epochs=2)
    model, history = _fit(run, make_model, stream, val, epochs=2)  # the library call itself trains nothing ...
    assert history.epoch == [] and int(model.optimizer.iterations.numpy()) == 2 * STEPS  # ... and restores the end
    assert helpers.file_tree(run.path) == before

    run.check_resume(epochs=3)  # more epochs: no error, it continues from the final state
    run.check_resume(steps=2 * STEPS + 1)
    model, history = _fit(run, make_model, stream, val, epochs=3)
    assert history.epoch == [2] and int(model.optimizer.iterations.numpy()) == 3 * STEPS
    assert run.read_history()["epoch"] == [0.0, 1.0, 2.0]
    assert run.training_state()["complete"] is True and run.training_state()["global_step"] == 3 * STEPS


def test_check_resume_tells_finished_runs_from_unfinished_ones(tmp_path):
    import json
    import os

    run = training.RunDir(str(tmp_path / "run"))
    run.check_resume(epochs=2)  # nothing yet: a run killed before its first backup starts again
    os.makedirs(run.backup_dir)
    state = {"global_step": 8, "epoch": 2, "weights": "step-8.weights.h5"}
    with open(run.backup().state_path, "w") as f:
        json.dump(state, f)
    run.write_result({"metrics": {}})
    run.check_resume(epochs=2)  # not marked complete: killed after its last backup, the rest still runs
    with open(run.backup().state_path, "w") as f:
        json.dump({**state, "complete": True}, f)
    os.remove(run.result_path)
    run.check_resume(epochs=2)  # trained but not evaluated (killed during the evaluation): evaluation still runs
    run.write_result({"metrics": {}})
    with pytest.raises(training.RunComplete):
        run.check_resume(epochs=2)
    with pytest.raises(training.RunComplete):
        run.check_resume(steps=8)
    # Finished without a backup (deleted, or an older ferkeras): complete as far as its log goes; more epochs
    # cannot be trained.
    run.backup().delete()
    with open(run.csv_log_path, "w") as f:
        f.write("epoch,loss\n0,1.5\n1,1.2\n")
    for epochs in (None, 1, 2):
        with pytest.raises(training.RunComplete, match="2 epochs trained and evaluated"):
            run.check_resume(epochs=epochs)
    with pytest.raises(ValueError, match="2 epochs logged.*no backup/ folder.*start a new run"):
        run.check_resume(epochs=3)


def test_a_damaged_backup_is_named(tmp_path):
    import os

    make_model, stream, val = _drifting_problem()
    run = training.RunDir(str(tmp_path / "run"))
    os.makedirs(run.backup_dir)
    path = run.backup().state_path
    with open(path, "w") as f:
        f.write('{"global_step": 6, "epo')  # truncated
    for call in (run.training_state, lambda: _fit(run, make_model, stream, val)):
        with pytest.raises(ValueError, match=f"{path}.*damaged.*not valid JSON.*delete the folder"):
            call()
    with open(path, "w") as f:
        f.write('{"global_step": 6}')
    with pytest.raises(ValueError, match="lacks epoch, weights"):
        run.training_state()


def test_resume_with_other_steps_per_epoch_is_refused(tmp_path):
    make_model, stream, val = _drifting_problem()
    run = training.RunDir(str(tmp_path / "run"))
    with pytest.raises(_Crash):
        _fit(run, make_model, stream, val, [_crash_after_step(3)])
    model = make_model()
    with pytest.raises(ValueError, match="made with 4 steps per epoch, not 5"):
        training.fit(model, stream, run, epochs=EPOCHS, steps_per_epoch=5, validation_data=val, verbose=0)
