"""experiments/baseline.py killed with SIGKILL between two backups, resumed with ``--resume``, then resumed again
once finished (subprocesses, smoke-sized).

The kill comes from inside the binary's own process at an exact training step: a small launcher wraps
``ferkeras.training.fit`` to add one callback (SIGKILL after global step KILL_AT, unless the marker file says it
already did; it also records each training start's step), then runs the unmodified binary as ``__main__``.
"""

import json
import math
import os
import signal
import textwrap

import pytest

from tests import helpers

BINARY = os.path.join(helpers.REPO, "experiments", "baseline.py")
EPOCHS, STEPS, BACKUP_EVERY, KILL_AT = 3, 4, 3, 7  # backups after steps 3, 4 (epoch end), 6, 8 ...: killed after 7
FLAGS = ["--dataset=synthetic", "--backbone=resnet18", "--width=16", "--image_size=32", "--batch_size=16",
         "--num_train=64", "--num_val=32", "--num_test=32", "--train_identities=10", f"--epochs={EPOCHS}",
         f"--steps={STEPS}", f"--backup_every={BACKUP_EVERY}", "--verbose=0", "--seed=1"]

LAUNCHER = textwrap.dedent(r'''
    import os, runpy, signal, sys
    binary, kill_at, marker, starts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    import keras
    from ferkeras import training

    class Kill(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            with open(starts, "a") as f:
                f.write(f"{int(self.model.optimizer.iterations.numpy())}\n")

        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == kill_at and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)

    real_fit = training.fit

    def fit(*args, extra_callbacks=(), **kwargs):
        return real_fit(*args, extra_callbacks=list(extra_callbacks) + [Kill()], **kwargs)

    training.fit = fit
    sys.argv = [binary] + sys.argv[5:]
    runpy.run_path(binary, run_name="__main__")
''')


def test_killed_baseline_resumes_keeps_its_best_model_and_a_finished_run_is_left_alone(tmp_path):
    launcher, marker, starts = tmp_path / "launch.py", tmp_path / "killed", tmp_path / "starts.txt"
    launcher.write_text(LAUNCHER)
    out = tmp_path / "runs"

    def launch(*flags):
        return helpers.run_script(launcher, BINARY, str(KILL_AT), str(marker), str(starts), *FLAGS, *flags,
                                  timeout=300)

    proc = launch(f"--out_dir={out}")
    assert proc.returncode == -signal.SIGKILL, f"not killed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    (name,) = os.listdir(out)
    run = out / name
    state = json.loads((run / "backup" / "state.json").read_text())
    last_backup = KILL_AT // BACKUP_EVERY * BACKUP_EVERY
    assert state["global_step"] == last_backup < KILL_AT and not state.get("complete")
    assert not (run / "result.json").exists()

    proc = launch(f"--resume={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"run directory: {run}" in proc.stdout
    # Training restarted at the step after the last backup (completing the interrupted epoch, then the rest).
    assert [int(v) for v in starts.read_text().split()] == [0, last_backup, STEPS * math.ceil(KILL_AT / STEPS)]
    state = json.loads((run / "backup" / "state.json").read_text())
    assert state["complete"] is True and state["global_step"] == EPOCHS * STEPS
    with open(run / "train_log.csv") as f:
        header, *rows = [line.strip().split(",") for line in f if line.strip()]
    assert [int(r[header.index("epoch")]) for r in rows] == list(range(EPOCHS))  # each epoch once
    val_loss = [float(r[header.index("val_loss")]) for r in rows]
    best_epoch = min(range(EPOCHS), key=val_loss.__getitem__) + 1
    record = json.loads((run / "checkpoints" / "best.json").read_text())
    assert record["epoch"] == best_epoch and record["best"] == pytest.approx(min(val_loss), rel=1e-6)
    result = json.loads((run / "result.json").read_text())
    assert result["checkpoint"]["epoch"] == best_epoch and "best val_loss" in result["evaluated_model"]

    # --resume of the finished run: says so, exits 0, touches nothing (contents and modification times).
    before = helpers.file_tree(run)
    proc = launch(f"--resume={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is complete" in proc.stdout and "nothing changed" in proc.stdout
    assert helpers.file_tree(run) == before
    assert len(starts.read_text().split()) == 3  # no training started
