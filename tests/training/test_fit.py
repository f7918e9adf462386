"""ferkeras.training.fit and ResumableBackup in-process: resume after an interruption, backup frequency, errors.

The exact mid-epoch resume of a SIGKILLed process is tests/training/test_resume.py."""

import numpy as np
import pytest

from ferkeras import training


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
