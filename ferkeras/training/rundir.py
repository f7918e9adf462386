"""A run directory: the one place that knows where a training run keeps its files.

A run directory holds everything one training run produced::

    <out_dir>/<name>-<YYYYmmdd-HHMMSS>/
        flags.cfg            the binary's flags, re-usable as --flagfile=flags.cfg
        train_log.csv        one row per epoch (Keras CSVLogger; appended on resume)
        tensorboard/         TensorBoard event files
        checkpoints/         best.keras and best.json (BestCheckpoint on the monitored metric: the best value and
                             its epoch)
        backup/              ResumableBackup state (weights, optimisers, step, best value so far); when training
                             finishes, the final state, marked complete (delete it to save space: the run then
                             cannot be continued with more epochs)
        result.json          every metric over the whole held-out set, and the expression class names
        va_scatter.png       predicted vs true valence / arousal and the AV plane
        training_curves.png  the CSV log as curves

Code that reads a run (:mod:`ferkeras.export`, the inference tools) goes through :class:`RunDir` -- its path
properties and readers (:meth:`RunDir.read_result`, :meth:`RunDir.read_class_names`,
:meth:`RunDir.has_checkpoint`) -- and never spells these names itself.

Resuming: run the same command with ``RunDir.open(<existing dir>)``; :func:`ferkeras.training.fit` restores the last
backup (every epoch, or every ``backup_freq`` steps) and continues at the next step with the next batch.  After
training, :meth:`RunDir.restore_checkpoint` loads the best checkpoint, so that the evaluated model is the one that
gets exported.  :meth:`RunDir.check_resume` tells a finished run (:class:`RunComplete`) from one with work left,
before anything in the directory is touched.
"""

from __future__ import annotations

import csv
import datetime
import importlib.util
import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional

import keras

from ferkeras.callbacks.checkpoint import BestCheckpoint
from ferkeras.training.evaluation import jsonable
from ferkeras.training.fit import ResumableBackup

logger = logging.getLogger(__name__)


def _flag_line(name: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}=" + ",".join(str(v) for v in value)
    return f"--{name}={value}"


class RunComplete(Exception):
    """Resuming a run that has nothing left to do (:meth:`RunDir.check_resume`); the message says so."""


class RunDir:
    """One run's output directory (see the module docstring for its layout).

    The class attributes are the file names relative to :attr:`path`; the ``*_path`` / ``*_dir`` properties are
    the absolute paths.
    """

    FLAGFILE = "flags.cfg"
    CSV_LOG = "train_log.csv"
    RESULT = "result.json"
    VA_SCATTER = "va_scatter.png"
    CURVES = "training_curves.png"
    CHECKPOINT = os.path.join("checkpoints", "best.keras")
    CHECKPOINT_RECORD = os.path.join("checkpoints", "best.json")
    BACKUP = "backup"
    TENSORBOARD = "tensorboard"

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        os.makedirs(self.path, exist_ok=True)

    @classmethod
    def create(cls, out_dir: str, name: str, now: Optional[datetime.datetime] = None) -> "RunDir":
        """A new ``<out_dir>/<name>-<YYYYmmdd-HHMMSS>`` directory (``-2``, ``-3`` ... appended on a clash)."""
        stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
        base = os.path.join(out_dir, f"{name}-{stamp}")
        path, k = base, 1
        while os.path.exists(path):
            k += 1
            path = f"{base}-{k}"
        run = cls(path)
        logger.info("run directory %s", run.path)
        return run

    @classmethod
    def open(cls, path: str) -> "RunDir":
        """An existing run directory, to resume training in it or to read it; FileNotFoundError if it is not a
        folder."""
        if not os.path.isdir(path):
            raise FileNotFoundError(f"run directory does not exist: {path}")
        return cls(path)

    def file(self, name: str) -> str:
        """The absolute path of ``name`` (relative to the run directory)."""
        return os.path.join(self.path, name)

    # --- the layout --------------------------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> str:
        """The best model, ``checkpoints/best.keras``."""
        return self.file(self.CHECKPOINT)

    @property
    def backup_dir(self) -> str:
        """The :class:`ResumableBackup` folder."""
        return self.file(self.BACKUP)

    @property
    def tensorboard_dir(self) -> str:
        return self.file(self.TENSORBOARD)

    @property
    def flags_path(self) -> str:
        """The absl flagfile of the run (:meth:`save_flags`)."""
        return self.file(self.FLAGFILE)

    @property
    def csv_log_path(self) -> str:
        return self.file(self.CSV_LOG)

    @property
    def result_path(self) -> str:
        """The evaluation report (:meth:`write_result`)."""
        return self.file(self.RESULT)

    # --- writing -----------------------------------------------------------------------------------------------

    def save_flags(self, flag_values: Mapping[str, Any]) -> str:
        """Writes ``flag_values`` (name -> value) as an absl flagfile; returns its path.

        Booleans become ``--name`` / ``--noname``, sequences are comma-joined,
        ``None`` values are left out (the flag keeps its default).
        """
        lines = [line for name, value in flag_values.items() if (line := _flag_line(name, value))]
        path = self.flags_path
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def backup(self, save_freq="epoch") -> ResumableBackup:
        """The :class:`ResumableBackup` of this run (folder :attr:`backup_dir`)."""
        return ResumableBackup(self.backup_dir, save_freq=save_freq)

    def callbacks(self, monitor: str = "val_loss", mode: str = "min", tensorboard: bool = True,
                  checkpoint: bool = True, backup: bool = True, csv_log: bool = True, backup_freq="epoch") -> list:
        """CSVLogger, :class:`ferkeras.callbacks.BestCheckpoint` (best ``monitor``; :attr:`checkpoint_path` and
        :attr:`CHECKPOINT_RECORD`), TensorBoard and, last, :class:`ResumableBackup` (every ``backup_freq``:
        ``"epoch"`` or a number of steps) callbacks for ``model.fit``.

        The backup restores only through :func:`ferkeras.training.fit` (``ResumableBackup.restore``, which also
        gives the checkpoint its best value back), not by itself.
        """
        cbs = []
        if csv_log:
            cbs.append(keras.callbacks.CSVLogger(self.csv_log_path, append=True))
        if checkpoint:
            cbs.append(BestCheckpoint(self.checkpoint_path, monitor=monitor, mode=mode))
        if tensorboard:
            if importlib.util.find_spec("tensorboard") is None:
                logger.warning("the tensorboard package is not installed: no TensorBoard logs in %s "
                               "(pip install tensorboard)", self.path)
            else:
                cbs.append(keras.callbacks.TensorBoard(self.tensorboard_dir, write_graph=False))
        if backup:
            cbs.append(self.backup(backup_freq))
        return cbs

    def truncate_log(self, epoch: int) -> int:
        """Drops the CSV log's rows of epochs ``epoch`` and later (a resumed run trains them again); returns how
        many it dropped (0 without a log)."""
        path = self.csv_log_path
        if not os.path.exists(path):
            return 0
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return 0
        header, body = rows[0], rows[1:]
        column = header.index("epoch") if "epoch" in header else None
        if column is None:
            return 0

        def keep(row):
            try:
                return float(row[column]) < epoch
            except (IndexError, ValueError):
                return True  # not an epoch row: left alone

        kept = [row for row in body if keep(row)]
        if len(kept) == len(body):
            return 0
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows([header] + kept)
        os.replace(tmp, path)
        return len(body) - len(kept)

    def write_result(self, result: Mapping[str, Any]) -> str:
        """Writes ``result`` as strict JSON (NaN / inf become null); returns the path."""
        path = self.result_path
        with open(path, "w") as f:
            json.dump(jsonable(result), f, indent=2, sort_keys=True, allow_nan=False)
        return path

    # --- reading -----------------------------------------------------------------------------------------------

    def training_state(self) -> Optional[dict]:
        """The backup's state (:meth:`ResumableBackup.read_state`): None without a backup, ValueError naming the
        file when it is damaged."""
        return self.backup().read_state()

    def check_resume(self, epochs: Optional[int] = None, steps: Optional[int] = None) -> None:
        """Before resuming: raises :class:`RunComplete` when the run has nothing left to do, without touching it.

        A run is complete when its training finished (its backup is marked complete, or -- a run whose backup was
        deleted or that an older ferkeras finished -- it has no backup) and it has its result.json, and neither
        ``epochs`` (epochs to train in all) nor ``steps`` (training steps in all) asks for more than it trained
        (without a backup: the epochs of its CSV log, the ``iterations`` of its result.json).  A finished run
        without result.json (killed while being evaluated) is not complete: resuming trains nothing and evaluates
        it.  Asking a finished run without a backup for more raises ValueError: there is no state to continue from.
        """
        state = self.training_state()
        if not self.has_result() or (state is not None and not state.get("complete")):
            return
        if state is None:
            trained_epochs = int(max(self.read_history().get("epoch", [-1.0]))) + 1
            trained_steps = self.read_result().get("iterations")
            if (epochs is not None and epochs > trained_epochs) or \
                    (steps is not None and trained_steps is not None and steps > int(trained_steps)):
                raise ValueError(f"cannot train the run {self.path} further: it finished ({trained_epochs} epochs "
                                 f"logged) and has no {self.BACKUP}/ folder (deleted, or written by an older "
                                 "ferkeras), so there is no training state to continue from; start a new run")
            raise RunComplete(f"the run {self.path} is complete ({trained_epochs} epochs trained and evaluated: "
                              f"{self.RESULT}); nothing to resume, nothing changed")
        trained_epochs, trained_steps = int(state["epoch"]), int(state["global_step"])
        more = (epochs is not None and epochs > trained_epochs) or (steps is not None and steps > trained_steps)
        if not more:
            raise RunComplete(f"the run {self.path} is complete: {trained_epochs} epochs ({trained_steps} steps) "
                              f"trained and evaluated ({self.RESULT}); nothing to resume, nothing changed. Ask for "
                              "more epochs to train it further")

    def checkpoint_record(self) -> Optional[Dict[str, Any]]:
        """What the best checkpoint is (:attr:`CHECKPOINT_RECORD`: ``monitor``, ``mode``, ``best``, ``epoch``
        counted from 1, and that epoch's logs), or None when the run has no record."""
        path = self.file(self.CHECKPOINT_RECORD)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from e

    def has_checkpoint(self) -> bool:
        """Whether the run saved a best model (:attr:`checkpoint_path`)."""
        return os.path.isfile(self.checkpoint_path)

    def restore_checkpoint(self, model: keras.Model) -> bool:
        """Loads the weights of ``checkpoints/best.keras`` into ``model``; False (model untouched) if there is none."""
        if not os.path.exists(self.checkpoint_path):
            logger.warning("no checkpoint %s to restore; keeping the model's current weights", self.checkpoint_path)
            return False
        model.load_weights(self.checkpoint_path)
        logger.info("restored the weights of %s", self.checkpoint_path)
        return True

    def read_history(self) -> Dict[str, list]:
        """The CSV log as columns (all epochs, including those before a resume); {} without a log."""
        path = self.csv_log_path
        if not os.path.exists(path):
            return {}
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        columns: Dict[str, list] = {}
        for row in rows:
            for key, value in row.items():
                try:
                    columns.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    continue
        return columns

    def has_result(self) -> bool:
        """Whether the run wrote its evaluation report (:attr:`result_path`)."""
        return os.path.isfile(self.result_path)

    def read_result(self) -> Dict[str, Any]:
        """The run's result.json as a dict.  FileNotFoundError if the run has none (not evaluated yet),
        ValueError naming the file if it is not a JSON object."""
        path = self.result_path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"run directory {self.path} has no {self.RESULT} (the run has not been "
                                    "evaluated yet)")
        with open(path) as f:
            try:
                result = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(result, dict):
            raise ValueError(f"{path} holds a JSON {type(result).__name__}, not an object")
        return result

    def read_class_names(self) -> Optional[List[str]]:
        """The expression class names the run was evaluated with (``class_names`` of result.json, in logit
        order), or None when there is no result.json or it names none."""
        if not self.has_result():
            return None
        names = self.read_result().get("class_names")
        return [str(n) for n in names] if names else None


__all__ = ("RunComplete", "RunDir")
