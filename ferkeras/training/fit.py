"""``model.fit`` with a run directory's callbacks, and an exact resume of a killed run.

:class:`ResumableBackup` saves the training state (weights, every optimiser's state, the state of callbacks that
have one, such as the best checkpoint's best value) and the number of steps taken; :func:`fit` restores it and
continues at the next step with the next batch, so a killed run ends like an uninterrupted one (deterministic input
pipelines given).  The last backup of a finished run is kept, marked complete: resuming it trains nothing, unless
more epochs are asked for.
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

    Callbacks with a state of their own (a ``get_state()`` method returning a JSON-serialisable dict and a
    ``set_state(dict)`` method, e.g. :class:`ferkeras.callbacks.BestCheckpoint`'s best value and epoch) are saved
    with each backup and restored with it once :meth:`track` has been given them (:func:`fit` does).  Keras calls
    callbacks in list order, so put the backup last: its state then includes what the other callbacks did in that
    step or epoch.

    Args:
        backup_dir: folder of the backup (created on the first save).
        save_freq: ``"epoch"`` (at every epoch end) or an int ``k`` (every ``k`` training steps, counted over
            the whole run, and at every epoch end).
    """

    STATE = "state.json"
    REQUIRED = ("global_step", "epoch", "weights")

    def __init__(self, backup_dir: str, save_freq="epoch"):
        super().__init__()
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq >= 1):
            raise ValueError(f"ResumableBackup: save_freq must be 'epoch' or an int >= 1, got {save_freq!r}")
        self.backup_dir = backup_dir
        self.save_freq = save_freq
        self.global_step = 0
        self.tracked = {}
        self.info = {}
        self._epoch = 0
        self._epoch_start = 0

    @property
    def state_path(self) -> str:
        return os.path.join(self.backup_dir, self.STATE)

    def read_state(self) -> Optional[dict]:
        """The last backup's state, or None when there is no backup: ``{"global_step", "epoch", "weights"}`` (steps
        taken, epochs completed, the weights file in ``backup_dir``), with ``"callbacks"`` (tracked callbacks'
        states by key), ``"complete": True`` once :func:`fit` finished the run, and :attr:`info`'s entries
        (:func:`fit`: ``steps_per_epoch``) when there are any.  ValueError naming the file if it is damaged."""
        path = self.state_path
        if not os.path.exists(path):
            return None
        what_to_do = (f"the backup cannot be used: delete the folder {self.backup_dir} to train this run again from "
                      "step 0, or start a new run")
        with open(path) as f:
            text = f.read()
        try:
            state = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"the training-state backup {path} is damaged (truncated?): not valid JSON ({e}); "
                             f"{what_to_do}") from e
        missing = [key for key in self.REQUIRED if not isinstance(state, dict) or key not in state]
        if missing:
            raise ValueError(f"the training-state backup {path} is damaged: it lacks {', '.join(missing)}; "
                             f"{what_to_do}")
        return state

    def track(self, callbacks) -> None:
        """Saves the state of each callback of ``callbacks`` that has one (``get_state`` and ``set_state``
        methods; this backup excepted) with every backup, and restores it in :meth:`restore`.  Keys are class
        names (``Name#2`` ... for a second object of a class), so the same callback list finds its states again."""
        self.tracked = {}
        for cb in callbacks:
            stateful = callable(getattr(cb, "get_state", None)) and callable(getattr(cb, "set_state", None))
            if cb is self or not stateful:
                continue
            name = key = type(cb).__name__
            k = 1
            while key in self.tracked:
                k += 1
                key = f"{name}#{k}"
            self.tracked[key] = cb

    def restore(self, model: keras.Model) -> int:
        """Loads the last backup into ``model`` (built, with built optimisers: :func:`build_for_strategy`) and
        the tracked callbacks (:meth:`track`); returns the number of training steps it had taken (0, model
        untouched, if there is no backup)."""
        state = self.read_state()
        if state is None:
            return 0
        weights = os.path.join(self.backup_dir, state["weights"])
        try:
            model.load_weights(weights)
        except Exception as e:  # a backup of another model, or a damaged file
            raise ValueError(f"cannot resume from the backup {weights} (saved at step {state['global_step']}): "
                             f"{e}. Is this the run directory of the same model and flags?") from e
        saved = state.get("callbacks", {})
        for key, cb in self.tracked.items():
            if key in saved:
                cb.set_state(saved[key])
            else:
                logger.warning("the backup %s holds no state for the callback %s; it starts afresh", self.state_path,
                               key)
        self.global_step = int(state["global_step"])
        logger.info("resumed from %s: %d training steps done", weights, self.global_step)
        return self.global_step

    def _write_state(self, state: dict) -> None:
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_path)

    def save(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"step-{self.global_step}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        state = {"global_step": self.global_step, "epoch": self._epoch, "weights": name, **self.info}
        if self.tracked:
            state["callbacks"] = {key: cb.get_state() for key, cb in self.tracked.items()}
        self._write_state(state)
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def mark_complete(self) -> None:
        """Marks the last backup as the final state of a finished run (``"complete": True``)."""
        state = self.read_state()
        if state is not None and not state.get("complete"):
            self._write_state({**state, "complete": True})

    def delete(self) -> None:
        """Removes the backup (e.g. to free its space once a finished run will not be trained further)."""
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
            step count, the best checkpoint's best value and epoch) every ``k`` steps and at every epoch end, in
            the run directory's backup folder.  The backup runs after every other callback.  When training ends,
            the last backup is kept as the run's final state, marked complete.

    Resuming: when ``run_dir`` holds a backup (a run of the same command that was interrupted), the model,
    optimisers and callback states (the best value so far, so a worse epoch after the resume does not overwrite
    a better checkpoint saved before the kill) are restored and training continues at the next step with the next
    batch of the stream: the stream skips the ``n`` batches already trained (``train_data.skip(n)``, or
    ``train_data(n)``).  An interrupted epoch is completed first (its CSV row and logged means then cover only its
    remaining steps); rows that the killed process logged after its last backup are dropped from the CSV log
    before they are trained again, so every epoch has one row.  Work done after the last backup is lost and
    repeated (at most ``backup_freq`` steps, or an epoch).

    The loss trajectory then equals that of an uninterrupted run when the stream is deterministic (seeded
    shuffle and augmentation, ``deterministic`` pipelines).  A seeded ``reshuffle_each_iteration`` dataset
    gives a different order when the *same object* is iterated a second time in a process, so with a
    dataset object, completing an interrupted epoch then continuing (two iterations) is exact only with the
    callable form; :func:`fit` warns in that case.  ``steps_per_epoch`` must be the one the backup was made with
    (ValueError otherwise).

    A finished run (its backup marked complete) with ``epochs`` no more than it trained is left untouched: the
    model gets its final state, and a warning, an empty history and 0 seconds are returned.  With more ``epochs``
    it continues from its final state (learning-rate schedules then follow the new length from the step reached,
    which is not what a run started with that length would have done).

    Without ``validation_data`` the checkpoint monitors the training ``loss``.
    """
    if validation_data is None and monitor.startswith("val_"):
        monitor = monitor[4:]
    is_factory = callable(train_data) and not isinstance(train_data, tf.data.Dataset)
    callbacks = run_dir.callbacks(monitor=monitor, mode=mode, backup_freq=backup_freq) + list(extra_callbacks)
    backup = next(cb for cb in callbacks if isinstance(cb, ResumableBackup))
    callbacks = [cb for cb in callbacks if cb is not backup] + [backup]  # last: it saves what the others did
    backup.track(callbacks)
    backup.info = {"steps_per_epoch": int(steps_per_epoch)} if steps_per_epoch else {}
    state = backup.read_state()
    if state is not None:
        saved_steps = state.get("steps_per_epoch")
        if saved_steps and steps_per_epoch and int(saved_steps) != int(steps_per_epoch):
            raise ValueError(f"cannot resume {run_dir.path}: its backup was made with {saved_steps} steps per epoch, "
                             f"not {steps_per_epoch}; resume with the run's own settings (its flags.cfg)")
    build_for_strategy(model, train_data(0) if is_factory else train_data)
    done = backup.restore(model)
    if state is not None and state.get("complete") and int(state["epoch"]) >= epochs:
        logger.warning("the run in %s is complete (%d epochs, %d steps trained): nothing to train, nothing "
                       "changed", run_dir.path, int(state["epoch"]), done)
        history = keras.callbacks.History()
        history.epoch = []
        return history, 0.0
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
    if phases:
        dropped = run_dir.truncate_log(phases[0][0])
        if dropped:
            logger.info("dropped %d rows of epochs from %d on from %s: logged after the last backup, trained again",
                        dropped, phases[0][0], run_dir.csv_log_path)

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
        history.epoch = []
    backup.mark_complete()
    return history, time.perf_counter() - start_time


__all__ = ("ResumableBackup", "fit")
