"""Run directories and the fit / evaluate steps every ferkeras experiment binary shares.

A run directory holds everything one training run produced::

    runs/<name>-<YYYYmmdd-HHMMSS>/
        flags.cfg            the binary's flags, re-usable as --flagfile=flags.cfg
        train_log.csv        one row per epoch (Keras CSVLogger; appended on resume)
        tensorboard/         TensorBoard event files
        checkpoints/         best.keras (ModelCheckpoint on the monitored metric)
        backup/              BackupAndRestore state, deleted when training finishes
        result.json          every metric over the whole held-out set
        va_scatter.png       predicted vs true valence / arousal and the AV plane
        training_curves.png  the CSV log as curves

Resuming: run the same command with ``RunDir.open(<existing dir>)``;
``BackupAndRestore`` restarts from the last finished epoch.  After training,
:meth:`RunDir.restore_checkpoint` loads the best checkpoint, so that the
evaluated model is the one that gets exported.

Evaluation computes each metric twice: with the model's streaming Keras
metrics (``model.evaluate``) and with the NumPy references of
:mod:`ferkeras.metrics` over the collected predictions of the *whole* held-out
set (the textbook definitions; PCC/CCC are not averaged per batch).
"""

from __future__ import annotations

import csv
import datetime
import importlib.util
import json
import logging
import math
import os
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from ferkeras.metrics import numpy_ref
from ferkeras.viz import plots

logger = logging.getLogger("ferkeras.training")

STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name: str = "default") -> tf.distribute.Strategy:
    """The tf.distribute strategy called ``name``: ``"default"`` (one device), ``"mirrored"``
    (all local GPUs) or ``"multi_worker"`` (``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``).

    Build and compile the model inside ``strategy.scope()``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribution strategy {name!r}; choose one of {STRATEGIES}")


def _flag_line(name: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}=" + ",".join(str(v) for v in value)
    return f"--{name}={value}"


def _jsonable(value: Any) -> Any:
    """Python/NumPy values -> strict JSON values (non-finite floats become null)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


class RunDir:
    """One run's output directory (see the module docstring for its layout)."""

    FLAGFILE = "flags.cfg"
    CSV_LOG = "train_log.csv"
    RESULT = "result.json"
    VA_SCATTER = "va_scatter.png"
    CURVES = "training_curves.png"

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
        """An existing run directory, to resume training in it."""
        if not os.path.isdir(path):
            raise FileNotFoundError(f"run directory to resume does not exist: {path}")
        return cls(path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def checkpoint_path(self) -> str:
        return self.file(os.path.join("checkpoints", "best.keras"))

    def save_flags(self, flag_values: Mapping[str, Any]) -> str:
        """Writes ``flag_values`` (name -> value) as an absl flagfile; returns its path.

        Booleans become ``--name`` / ``--noname``, sequences are comma-joined,
        ``None`` values are left out (the flag keeps its default).
        """
        lines = [line for name, value in flag_values.items() if (line := _flag_line(name, value))]
        path = self.file(self.FLAGFILE)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def callbacks(self, monitor: str = "val_loss", mode: str = "min", tensorboard: bool = True,
                  checkpoint: bool = True, backup: bool = True, csv_log: bool = True) -> list:
        """TensorBoard, ModelCheckpoint (best ``monitor``), BackupAndRestore and CSVLogger callbacks for ``fit``."""
        cbs = []
        if backup:
            cbs.append(keras.callbacks.BackupAndRestore(self.file("backup")))
        if csv_log:
            cbs.append(keras.callbacks.CSVLogger(self.file(self.CSV_LOG), append=True))
        if checkpoint:
            os.makedirs(os.path.dirname(self.checkpoint_path), exist_ok=True)
            cbs.append(keras.callbacks.ModelCheckpoint(self.checkpoint_path, monitor=monitor, mode=mode,
                                                       save_best_only=True, verbose=0))
        if tensorboard:
            if importlib.util.find_spec("tensorboard") is None:
                logger.warning("the tensorboard package is not installed: no TensorBoard logs in %s "
                               "(pip install tensorboard)", self.path)
            else:
                cbs.append(keras.callbacks.TensorBoard(self.file("tensorboard"), write_graph=False))
        return cbs

    def restore_checkpoint(self, model: keras.Model) -> bool:
        """Loads the weights of ``checkpoints/best.keras`` into ``model``; False (model untouched) if there is none."""
        if not os.path.exists(self.checkpoint_path):
            logger.warning("no checkpoint %s to restore; keeping the model's current weights", self.checkpoint_path)
            return False
        model.load_weights(self.checkpoint_path)
        logger.info("restored the weights of %s", self.checkpoint_path)
        return True

    def read_history(self) -> Dict[str, list]:
        """The CSV log as columns (all epochs, including those before a resume)."""
        path = self.file(self.CSV_LOG)
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

    def write_result(self, result: Mapping[str, Any]) -> str:
        """Writes ``result`` as strict JSON (NaN / inf become null); returns the path."""
        path = self.file(self.RESULT)
        with open(path, "w") as f:
            json.dump(_jsonable(result), f, indent=2, sort_keys=True, allow_nan=False)
        return path


def fit(model: keras.Model, train_data, run_dir: RunDir, epochs: int, validation_data=None,
        steps_per_epoch: Optional[int] = None, validation_steps: Optional[int] = None,
        monitor: str = "val_loss", mode: str = "min", extra_callbacks: Sequence = (), verbose="auto"):
    """``model.fit`` with the run directory's callbacks; returns ``(history, seconds)``.

    Without ``validation_data`` the checkpoint monitors the training ``loss``.  The
    datasets are used as they are (shuffle them in the pipeline).
    """
    if validation_data is None and monitor.startswith("val_"):
        monitor = monitor[4:]
    callbacks = run_dir.callbacks(monitor=monitor, mode=mode) + list(extra_callbacks)
    start = time.perf_counter()
    history = model.fit(train_data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        validation_data=validation_data, validation_steps=validation_steps,
                        callbacks=callbacks, verbose=verbose, shuffle=False)
    return history, time.perf_counter() - start


def collect_predictions(model: keras.Model, dataset: Iterable, steps: Optional[int] = None
                        ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Runs ``model`` over ``(inputs, labels)`` batches of ``dataset`` once; returns ``(labels, predictions)``.

    Both are dicts of stacked NumPy arrays keyed like the model's outputs
    (``"va"``, ``"expression"``); label keys without a matching output are kept
    too.  The dataset must be finite (or ``steps`` given) and not shuffled
    between this and any other pass.
    """
    labels: Dict[str, list] = {}
    preds: Dict[str, list] = {}
    for step, (x, y) in enumerate(dataset):
        if steps is not None and step >= steps:
            break
        out = model.predict_on_batch(x)
        if not isinstance(out, Mapping):
            out = {model.output_names[0]: out}
        for key, value in out.items():
            preds.setdefault(key, []).append(np.asarray(value))
        for key, value in (y.items() if isinstance(y, Mapping) else [(model.output_names[0], y)]):
            labels.setdefault(key, []).append(np.asarray(value))
    if not preds:
        raise ValueError("collect_predictions: the evaluation dataset yielded no batch")
    return ({k: np.concatenate(v) for k, v in labels.items()}, {k: np.concatenate(v) for k, v in preds.items()})


def affect_scores(labels: Mapping[str, np.ndarray], preds: Mapping[str, np.ndarray],
                  num_classes: Optional[int] = None) -> Dict[str, Any]:
    """Whole-set metrics from the NumPy references of :mod:`ferkeras.metrics.numpy_ref`.

    For a ``"va"`` prediction: ``{valence,arousal,mean}_{rmse,sagr,pcc,ccc}``
    (``mean_*`` = mean of the two axes) and ``va_count`` (labelled rows).  For
    an ``"expression"`` prediction (logits): ``expression_{accuracy,
    average_accuracy, macro_f1}``, ``expression_count`` and the confusion
    matrix (rows true, columns predicted).  Unlabelled entries (NaN VA, -1
    class) are left out; a set without labels gives NaN (null in JSON).
    """
    scores: Dict[str, Any] = {}
    if "va" in preds and "va" in labels:
        y_true = np.asarray(labels["va"], np.float64).reshape(-1, 2)
        y_pred = np.asarray(preds["va"], np.float64).reshape(-1, 2)
        for metric in ("rmse", "sagr", "pcc", "ccc"):
            fn = getattr(numpy_ref, metric)
            for index, axis in ((0, "valence"), (1, "arousal"), (None, "mean")):
                scores[f"{axis}_{metric}"] = fn(y_true, y_pred, index=index)
        scores["va_count"] = int(np.all(np.isfinite(y_true), axis=1).sum())
    if "expression" in preds and "expression" in labels:
        logits = np.asarray(preds["expression"])
        y_true = np.asarray(labels["expression"]).reshape(-1)
        classes = num_classes or logits.shape[-1]
        m = numpy_ref.confusion_matrix(y_true, logits, classes)
        scores["expression_accuracy"] = numpy_ref.accuracy_from_confusion(m)
        scores["expression_average_accuracy"] = numpy_ref.average_accuracy_from_confusion(m)
        scores["expression_macro_f1"] = numpy_ref.macro_f1_from_confusion(m)
        scores["expression_count"] = int(m.sum())
        scores["expression_confusion"] = m.tolist()
    return scores


def evaluate_and_report(model: keras.Model, dataset, run_dir: RunDir, extra: Optional[Mapping[str, Any]] = None,
                        title: str = "", class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Evaluates ``model`` on the whole held-out ``dataset`` and writes result.json and the figures.

    result.json holds ``metrics`` (NumPy references over the collected
    predictions, :func:`affect_scores`), ``keras_metrics`` (``model.evaluate``
    with the compiled streaming metrics), the figure file names (in the run
    directory) and ``extra``
    (flags, timings ... from the caller).  Returns the same dict.
    """
    keras_scores = model.evaluate(dataset, return_dict=True, verbose=0)
    labels, preds = collect_predictions(model, dataset)
    scores = affect_scores(labels, preds, num_classes=len(class_names) if class_names else None)
    result: Dict[str, Any] = {"metrics": scores, "keras_metrics": {k: float(v) for k, v in keras_scores.items()},
                              "figures": {}}
    if class_names:
        result["class_names"] = list(class_names)
    if "valence_ccc" in scores:
        plots.plot_va_scatter(labels["va"], preds["va"], run_dir.file(RunDir.VA_SCATTER), scores=scores, title=title)
        result["figures"]["va_scatter"] = RunDir.VA_SCATTER
    history = run_dir.read_history()
    if history:
        plots.plot_training_curves(history, run_dir.file(RunDir.CURVES), title=title)
        result["figures"]["training_curves"] = RunDir.CURVES
    result.update(dict(extra or {}))
    run_dir.write_result(result)
    return result
