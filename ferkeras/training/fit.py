"""``model.fit`` with a run directory's callbacks, and an exact resume of a killed run.

:class:`ResumableBackup` saves the training state (weights, every optimiser's state) and the number of steps taken;
:func:`fit` restores it and continues at the next step with the next batch, so a killed run ends like an
uninterrupted one (deterministic input pipelines given).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import Optional, Sequence

import keras
import tensorflow as tf

from ferkeras.training.strategy import build_for_strategy

logger = logging.getLogger(__name__)


class ResumableBackup(keras.callbacks.Callback):
    """Backs up the training state (the model's weights and every optimiser's state, through
    ``model.save_weights``) and the number of training steps taken, for an exact resume by :func:`fit`.

    Unlike ``keras.callbacks.BackupAndRestore``, which restarts an interrupted epoch from its first batch even
    when it saved mid-epoch (so those batches are trained twice), the saved step count lets :func:`fit`
    continue at the next batch.  Each save is atomic: the weights go to a new file, then ``state.json``
    naming it replaces the previous one, so a process killed while saving leaves the previous backup intact.

    Args:
        backup_dir: folder of the backup (created on the first save).
        save_freq: ``"epoch"`` (at every epoch end) or an int ``k`` (every ``k`` training steps, counted over
            the whole run, and at every epoch end).
    """

    STATE = "state.json"

    def __init__(self, backup_dir: str, save_freq="epoch"):
        super().__init__()
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq >= 1):
            raise ValueError(f"ResumableBackup: save_freq must be 'epoch' or an int >= 1, got {save_freq!r}")
        self.backup_dir = backup_dir
        self.save_freq = save_freq
        self.global_step = 0
        self._epoch = 0
        self._epoch_start = 0

    @property
    def state_path(self) -> str:
        return os.path.join(self.backup_dir, self.STATE)

    def read_state(self) -> Optional[dict]:
        """The last backup's state: ``{"global_step", "epoch", "weights"}`` (steps taken, epochs completed, the
        weights file in ``backup_dir``), or None when there is no backup."""
        if not os.path.exists(self.state_path):
            return None
        with open(self.state_path) as f:
            return json.load(f)

    def restore(self, model: keras.Model) -> int:
        """Loads the last backup into ``model`` (built, with built optimisers: :func:`build_for_strategy`);
        returns the number of training steps it had taken (0, model untouched, if there is no backup)."""
        state = self.read_state()
        if state is None:
            return 0
        weights = os.path.join(self.backup_dir, state["weights"])
        try:
            model.load_weights(weights)
        except Exception as e:  # a backup of another model, or a damaged file
            raise ValueError(f"cannot resume from the backup {weights} (saved at step {state['global_step']}): "
                             f"{e}. Is this the run directory of the same model and flags?") from e
        self.global_step = int(state["global_step"])
        logger.info("resumed from %s: %d training steps done", weights, self.global_step)
        return self.global_step

    def save(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"step-{self.global_step}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"global_step": self.global_step, "epoch": self._epoch, "weights": name}, f)
        os.replace(tmp, self.state_path)
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def delete(self) -> None:
        """Removes the backup (training finished)."""
        if os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_start = epoch, self.global_step

    def on_train_batch_end(self, batch, logs=None):
        previous, self.global_step = self.global_step, self._epoch_start + batch + 1
        if isinstance(self.save_freq, int) and self.global_step // self.save_freq > previous // self.save_freq:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        self.save()


def fit(model: keras.Model, train_data, run_dir, epochs: int, validation_data=None,
        steps_per_epoch: Optional[int] = None, validation_steps: Optional[int] = None,
        monitor: str = "val_loss", mode: str = "min", extra_callbacks: Sequence = (), verbose="auto",
        backup_freq="epoch"):
    """``model.fit`` with the run directory's callbacks, resuming exactly where a killed run stopped;
    returns ``(history, seconds)``.

    Args:
        model: compiled (inside the strategy's scope, if any); :func:`build_for_strategy` is applied here.
        train_data: the training stream, batch ``k`` feeding training step ``k`` (shuffle in the pipeline with
            a seed, then ``.repeat()``), or a callable ``start_step -> dataset`` returning that stream from
            batch ``start_step`` on (the exact choice for mid-epoch resumes, see below); a finite dataset
            (one pass per epoch) without ``steps_per_epoch`` resumes at epoch ends only.
        run_dir: the :class:`ferkeras.training.RunDir` whose callbacks (:meth:`RunDir.callbacks`) log, checkpoint
            and back up the run.
        backup_freq: ``"epoch"`` or an int ``k``: back up the training state (weights, every optimiser's state,
            step count) every ``k`` steps and at every epoch end, in the run directory's backup folder (deleted
            at the end).

    Resuming: when ``run_dir`` holds a backup (a run of the same command that was interrupted), the model and
    optimisers are restored and training continues at the next step with the next batch of the stream: the
    stream skips the ``n`` batches already trained (``train_data.skip(n)``, or ``train_data(n)``).  An
    interrupted epoch is completed first (its CSV row and logged means then cover only its remaining steps).
    The loss trajectory then equals that of an uninterrupted run when the stream is deterministic (seeded
    shuffle and augmentation, ``deterministic`` pipelines).  A seeded ``reshuffle_each_iteration`` dataset
    gives a different order when the *same object* is iterated a second time in a process, so with a
    dataset object, completing an interrupted epoch then continuing (two iterations) is exact only with the
    callable form; :func:`fit` warns in that case.

    Without ``validation_data`` the checkpoint monitors the training ``loss``.
    """
    if validation_data is None and monitor.startswith("val_"):
        monitor = monitor[4:]
    is_factory = callable(train_data) and not isinstance(train_data, tf.data.Dataset)
    build_for_strategy(model, train_data(0) if is_factory else train_data)
    callbacks = run_dir.callbacks(monitor=monitor, mode=mode, backup_freq=backup_freq) + list(extra_callbacks)
    backup = next(cb for cb in callbacks if isinstance(cb, ResumableBackup))
    done = backup.restore(model)
    if steps_per_epoch is None:
        if done:
            first_epoch = int(backup.read_state()["epoch"])
            logger.info("resuming at epoch %d (no steps_per_epoch: an interrupted epoch restarts)", first_epoch)
        else:
            first_epoch = 0
        phases = [(first_epoch, epochs, None, 0)] if first_epoch < epochs else []
    else:
        first_epoch, in_epoch = divmod(done, steps_per_epoch)
        phases = []
        if in_epoch:  # complete the interrupted epoch
            phases.append((first_epoch, first_epoch + 1, steps_per_epoch - in_epoch, done))
            first_epoch += 1
        if first_epoch < epochs:
            phases.append((first_epoch, epochs, steps_per_epoch, first_epoch * steps_per_epoch))
        if len(phases) > 1 and not is_factory:
            logger.warning("resuming mid-epoch with a dataset object: the epochs after the interrupted one "
                           "iterate it a second time, which reshuffles a seeded reshuffle_each_iteration "
                           "dataset differently from an uninterrupted run; pass a callable start_step -> "
                           "dataset for an exact resume")

    def stream(start):
        if is_factory:
            return train_data(start)
        return train_data.skip(start) if start else train_data

    start_time = time.perf_counter()
    history = None
    for initial_epoch, end_epoch, steps, start in phases:
        backup.global_step = start
        h = model.fit(stream(start), initial_epoch=initial_epoch, epochs=end_epoch, steps_per_epoch=steps,
                      validation_data=validation_data, validation_steps=validation_steps,
                      callbacks=callbacks, verbose=verbose, shuffle=False)
        if history is None:
            history = h
        else:
            history.epoch += h.epoch
            for key, values in h.history.items():
                history.history.setdefault(key, []).extend(values)
    if history is None:
        logger.warning("nothing to train: the backup in %s is at step %d, past %d epochs", run_dir.path, done, epochs)
        history = keras.callbacks.History()
    backup.delete()
    return history, time.perf_counter() - start_time


__all__ = ("ResumableBackup", "fit")
