"""Exact resume: a training process SIGKILLed mid-epoch and restarted with the same command ends like an
uninterrupted run (ferkeras.training.fit with ResumableBackup; deterministic seeded pipelines).

Each run is a subprocess executing SCRIPT: it trains a small model (the AlexNet baseline, or AVCE with batch
normalisation in its heads and three optimisers) on a seeded, shuffled, augmented, repeated ``from_arrays`` stream
(passed to ``fit`` as ``start_step -> dataset``) for EPOCHS x STEPS steps with a backup every SAVE_FREQ steps.  It
SIGKILLs itself after global step KILL_AT, between two backups, unless the marker file exists (written just before
the kill), so the restart is literally the same command and trains again the steps after the last backup; the
restarted process finishes the run, then trains the uninterrupted reference from scratch and saves both runs' final
weights, optimiser variables and epoch losses.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/training/ -> repo
EPOCHS, STEPS, SAVE_FREQ, KILL_AT = 3, 4, 2, 7  # killed after step 7: 3 steps into the second epoch, 1 after a backup
LAST_BACKUP = KILL_AT // SAVE_FREQ * SAVE_FREQ
TIMEOUT = 150

SCRIPT = textwrap.dedent(r'''
    import json, os, signal, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.path.insert(0, sys.argv[1])
    model_kind, run, kill_at, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    epochs, steps, save_freq = (int(v) for v in sys.argv[6:9])
    import keras
    import numpy as np
    from ferkeras import training
    from ferkeras.augment.spatial import FaceAugment
    from ferkeras.data import pipeline

    rng = np.random.default_rng(0)
    n, size, batch = 24, 64, 6
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.integers(0, 4, n)


    def stream(start):
        # The training stream from batch `start` on, rebuilt from scratch: seeded shuffle and augmentation.
        ds = pipeline.from_arrays(images, *labels, batch_size=batch, shuffle=True, seed=3, drop_remainder=True,
                                  augment=FaceAugment(flip=True, seed=5))
        if model_kind == "avce":
            ds = ds.map(lambda x, y: (x, y["va"]))
        return ds.repeat().skip(start)


    def make_model():
        keras.utils.set_random_seed(0)
        if model_kind == "baseline":
            from ferkeras.models.baseline import build_baseline_model, compile_baseline
            model = build_baseline_model("alexnet", (size, size, 3), task="both", num_classes=4)
            return compile_baseline(model, "both", learning_rate=1e-2, num_classes=4)
        from ferkeras.methods.avce import AVCEModel
        model = AVCEModel(backbone="alexnet", input_shape=(size, size, 3), head_batch_norm=True)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), head_optimizer=keras.optimizers.SGD(1e-1, momentum=0.9))
        return model


    class Kill(keras.callbacks.Callback):
        # SIGKILLs this process after global step `kill_at`, unless the marker file says it already did.
        def on_train_begin(self, logs=None):
            self.step = int(self.model.optimizer.iterations.numpy())

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            marker = os.path.join(run, "killed")
            if self.step == kill_at and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)


    def train(run_path, callbacks):
        model = make_model()
        history, _ = training.fit(model, stream, training.RunDir(run_path), epochs=epochs, steps_per_epoch=steps,
                                  extra_callbacks=callbacks, verbose=0, backup_freq=save_freq)
        optimizers = [model.optimizer] + [getattr(model, k) for k in ("dis_optimizer", "head_optimizer")
                                          if getattr(model, k, None) is not None]
        values = [np.asarray(w) for w in model.weights] + [np.asarray(v) for o in optimizers for v in o.variables]
        return values, {"epoch": history.epoch, "loss": history.history["loss"]}


    resumed, resumed_hist = train(run, [Kill()])
    # The uninterrupted reference, in this process after the resumed run: same seeds, fresh model and stream.
    reference, reference_hist = train(run + "-reference", [])
    np.savez(out, **{f"resumed_{k}": v for k, v in enumerate(resumed)},
             **{f"reference_{k}": v for k, v in enumerate(reference)})
    with open(out + ".json", "w") as f:
        json.dump({"resumed": resumed_hist, "reference": reference_hist}, f)
''')


def _run(tmp_path, kind, run, kill_at, out):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, str(script), ROOT, kind, str(run), str(kill_at), str(out), str(EPOCHS), str(STEPS),
           str(SAVE_FREQ)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"training subprocess {kind} timed out after {TIMEOUT} s")
    return proc.returncode, log


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["baseline", "avce"])
def test_killed_run_resumes_exactly(tmp_path, kind):
    run, out = tmp_path / "run", tmp_path / "out.npz"
    code, log = _run(tmp_path, kind, run, KILL_AT, out)
    assert code == -signal.SIGKILL, f"the run was not killed (exit {code}):\n{log[-3000:]}"
    with open(run / "backup" / "state.json") as f:
        state = json.load(f)
    assert state["global_step"] == LAST_BACKUP < KILL_AT and state["epoch"] == KILL_AT // STEPS
    assert not out.exists()

    code, log = _run(tmp_path, kind, run, KILL_AT, out)  # the same command again
    assert code == 0, log[-3000:]
    with open(run / "backup" / "state.json") as f:  # the final state, kept and marked complete
        state = json.load(f)
    assert state["complete"] is True and state["global_step"] == EPOCHS * STEPS

    saved = np.load(out)
    count = len(saved.files) // 2
    resumed, reference = ([saved[f"{name}_{k}"] for k in range(count)] for name in ("resumed", "reference"))
    # Model weights (with BN moving statistics), then every optimiser's step count, moments / momenta.
    for k, (a, b) in enumerate(zip(resumed, reference, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=f"variable {k}")
    steps = [int(v) for v in reference if v.dtype.kind == "i" and v.ndim == 0]
    assert steps and all(s == EPOCHS * STEPS for s in steps), steps
    with open(str(out) + ".json") as f:
        hist = json.load(f)
    # The restart completes the interrupted epoch, then runs the last one in full: same mean loss as the reference.
    assert hist["resumed"]["epoch"] == list(range(KILL_AT // STEPS, EPOCHS))
    np.testing.assert_allclose(hist["resumed"]["loss"][-1], hist["reference"]["loss"][-1], rtol=1e-4)
    assert hist["reference"]["loss"][0] != hist["reference"]["loss"][-1]  # it trained: the comparison is not vacuous
