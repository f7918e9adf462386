"""Run directories and the fit / evaluate steps every ferkeras experiment binary shares.

A run directory holds everything one training run produced::

    runs/<name>-<YYYYmmdd-HHMMSS>/
        flags.cfg            the binary's flags, re-usable as --flagfile=flags.cfg
        train_log.csv        one row per epoch (Keras CSVLogger; appended on resume)
        tensorboard/         TensorBoard event files
        checkpoints/         best.keras (ModelCheckpoint on the monitored metric)
        backup/              ResumableBackup state (weights, optimisers, step), deleted when training finishes
        result.json          every metric over the whole held-out set
        va_scatter.png       predicted vs true valence / arousal and the AV plane
        training_curves.png  the CSV log as curves

Resuming: run the same command with ``RunDir.open(<existing dir>)``; :func:`fit` restores the last backup
(every epoch, or every ``backup_freq`` steps) and continues at the next step with the next batch, so a killed
run ends like an uninterrupted one (deterministic input pipelines given).  After training,
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
import shutil
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from ferkeras.metrics import numpy_ref
from ferkeras.viz import plots

logger = logging.getLogger("ferkeras.training")

STRATEGIES = ("default", "mirrored", "multi_worker")


def _local_devices(devices: Optional[Sequence[str]]) -> list:
    """``devices`` as given, else every local GPU, else every logical CPU device (one replica each)."""
    if devices:
        return list(devices)
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def get_strategy(name: str = "default", devices: Optional[Sequence[str]] = None,
                 cross_device_ops: Optional[tf.distribute.CrossDeviceOps] = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy called ``name`` (the binaries' ``--strategy`` flag).

    * ``"default"``: one device;
    * ``"mirrored"``: ``MirroredStrategy`` over ``devices`` (default: every local GPU, else every logical CPU
      device; split a CPU into several with ``tf.config.set_logical_device_configuration`` before TensorFlow
      initialises).  Without GPUs the gradients are reduced with ``ReductionToOneDevice`` (tested here on two
      logical CPU devices): TensorFlow's default all-reduce targets NCCL, and a collective all-reduce between
      logical CPU devices has been seen to fail with "Shape mismatch in the collective instance" (Keras 3.15).
      ``cross_device_ops`` overrides the choice;
    * ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG`` environment variable
      (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``), one process per
      worker, each started with the same command.

    Build, compile and :func:`build_for_strategy` the model inside ``strategy.scope()``.  The batch size of
    the input pipeline is the *global* batch: every replica trains on ``batch / num_replicas_in_sync``
    examples and the gradients are summed over the replicas, with every mean-type loss divided by
    ``num_replicas_in_sync`` (Keras does this for compiled losses; :class:`ferkeras.models.avce.AVCEModel`
    does it in its ``train_step``).  Batch statistics (batch normalisation, the PCC / CCC of L_AV, in-batch
    contrastive terms) are per replica, as in every data-parallel trainer.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = _local_devices(devices)
        if cross_device_ops is None and not any("GPU" in d.upper() for d in devices):
            cross_device_ops = tf.distribute.ReductionToOneDevice()
        strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)
        logger.info("MirroredStrategy over %d replicas: %s", strategy.num_replicas_in_sync, devices)
        return strategy
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            logger.warning("--strategy=multi_worker without TF_CONFIG: training on this process alone")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logger.info("MultiWorkerMirroredStrategy: %d replicas in sync", strategy.num_replicas_in_sync)
        return strategy
    raise ValueError(f"unknown distribution strategy {name!r}; choose one of {STRATEGIES}")


def _vector_logs(step):
    """``step`` (a ``train_step`` / ``test_step``) with its scalar logs reshaped to ``(1,)``."""

    def vector_logs_step(data):
        logs = step(data)
        return {k: tf.reshape(v, (1,)) if getattr(v, "shape", None) is not None and v.shape.rank == 0 else v
                for k, v in logs.items()}

    return vector_logs_step


def _symbolic_build_done(iterator=None, data_batch=None):
    """Replaces ``model._maybe_symbolic_build`` once :func:`build_for_strategy` has built everything it builds."""


def _build_variables(model: keras.Model) -> None:
    """The model's weights (calling it on zeros of its input shape if unbuilt) and its optimisers' slots."""
    if not model.built or not model.weights:
        shapes = [tuple(t.shape) for t in getattr(model, "inputs", None) or []]
        if not shapes:
            raise ValueError(f"build_for_strategy: model {model.name!r} is not built and has no Input; call it on "
                             "a batch first")
        zeros = [np.zeros((1,) + s[1:], "float32") for s in shapes]
        model(zeros[0] if len(zeros) == 1 else zeros, training=False)
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"build_for_strategy: compile model {model.name!r} first")
    if hasattr(model, "build_optimizers"):
        model.build_optimizers()
    elif not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def build_for_strategy(model: keras.Model, data=None) -> keras.Model:
    """Creates every variable of a compiled ``model`` now: its weights (by calling it on zeros of its input
    shape if it is not built), its optimisers' slots (each optimiser built on its own variable list) and, given
    ``data`` (a ``tf.data.Dataset`` of ``(inputs, targets)``, or its ``element_spec``), its compiled metrics
    and losses.

    Call it inside ``strategy.scope()`` after ``compile``, and before ``fit`` or a resume (:func:`fit` calls
    it with the training data); call it again after recompiling.  It avoids three failures seen with Keras 3.15
    under tf.distribute: optimisers built lazily inside the replicated train step fail under
    ``MirroredStrategy`` (a placeholder error), and one built before the model's variables exist fails with
    "Unknown variable"; and ``fit`` under ``MultiWorkerMirroredStrategy`` fails ("Attempt to convert a value
    (PerReplica ...) to a Tensor"), because Keras all-reduces a whole input batch to build the model
    symbolically.  With ``data``, that symbolic build is done here from the dataset's ``element_spec`` and
    ``fit``'s own (which under any strategy also iterates the dataset once more than needed, changing the
    order of a reshuffling dataset) is switched off for this model.  Under ``MultiWorkerMirroredStrategy``
    Keras' reduction of the per-step logs fails on scalars: the model's ``train_step`` / ``test_step`` are
    wrapped to return them as vectors of one value.  Handles several optimisers through the
    model's ``build_optimizers`` (:class:`ferkeras.models.avce.AVCEModel`).  Returns ``model``.
    """
    with model.distribute_strategy.scope():  # the strategy the model was created under (no-op inside it)
        _build_variables(model)
    if (isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and not getattr(model, "_ferkeras_vector_logs", False)):
        # Keras reduces each step's logs across the workers with reduce("MEAN", value, axis=0), which fails on the
        # scalar logs ("Invalid reduction dimension 0"): make them vectors of one value (the mean is unchanged).
        model.train_step, model.test_step = _vector_logs(model.train_step), _vector_logs(model.test_step)
        model._ferkeras_vector_logs = True
    if data is not None:
        spec = data.element_spec if isinstance(data, tf.data.Dataset) else data
        if not isinstance(spec, (tuple, list)) or len(spec) < 2:
            raise ValueError(f"build_for_strategy: data must yield (inputs, targets[, sample_weight]); got {spec}")
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=tuple(spec))
        if getattr(model, "_distribute_strategy", None) is not None:
            model._maybe_symbolic_build = _symbolic_build_done
    return model


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

    def restore(self, model: keras.Model) -> int:
        """Loads the last backup into ``model`` (built, with built optimisers: :func:`build_for_strategy`);
        returns the number of training steps it had taken (0, model untouched, if there is no backup)."""
        if not os.path.exists(self.state_path):
            return 0
        with open(self.state_path) as f:
            state = json.load(f)
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

    def backup(self, save_freq="epoch") -> ResumableBackup:
        """The :class:`ResumableBackup` of this run (folder ``backup/``)."""
        return ResumableBackup(self.file("backup"), save_freq=save_freq)

    def callbacks(self, monitor: str = "val_loss", mode: str = "min", tensorboard: bool = True,
                  checkpoint: bool = True, backup: bool = True, csv_log: bool = True, backup_freq="epoch") -> list:
        """TensorBoard, ModelCheckpoint (best ``monitor``), :class:`ResumableBackup` (every ``backup_freq``:
        ``"epoch"`` or a number of steps) and CSVLogger callbacks for ``model.fit``.

        The backup restores only through :func:`fit` (``ResumableBackup.restore``), not by itself.
        """
        cbs = []
        if backup:
            cbs.append(self.backup(backup_freq))
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
        backup_freq: ``"epoch"`` or an int ``k``: back up the training state (weights, every optimiser's state,
            step count) every ``k`` steps and at every epoch end, in ``run_dir/backup`` (deleted at the end).

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
            with open(backup.state_path) as f:
                first_epoch = int(json.load(f)["epoch"])
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
