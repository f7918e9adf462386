"""BestCheckpoint: saves the model whenever a monitored metric improves, with the best value and epoch in JSON."""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from typing import Optional

import keras

from ferkeras.training.evaluation import jsonable

logger = logging.getLogger("ferkeras.callbacks")

SUFFIXES = (".weights.h5", ".keras")


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` after every epoch whose ``logs[monitor]`` beats the best value so far.

    ``path`` ending in ``.keras`` saves the whole model (``model.save``), ``.weights.h5`` the weights only.  Next to
    it, ``<path without suffix>.json`` records ``monitor``, ``mode``, ``best`` (the value), ``epoch`` (counted from
    1), the file name and every numeric log value of that epoch; it is rewritten with each save.

    The monitored value must be in the epoch ``logs`` when this callback runs: a Keras metric (``val_loss``,
    ``val_accuracy`` ...) is always there, but a metric of :class:`AffectEvaluation`, :class:`ExpressionEvaluation`
    or :class:`LinearProbe` (``val_ccc``, ``val_macro_f1``, ``probe_macro_f1`` ...) only if that callback comes
    **earlier in the callbacks list** (Keras calls callbacks in list order).  An epoch without the value (the wrong
    order, or an evaluation that runs every n epochs only) is skipped; the first such epoch logs a warning listing
    the keys that are there.  A non-finite value never counts as an improvement.

    Args:
        path: where to save; must end with ``.keras`` or ``.weights.h5``.  Its folder is created.
        monitor: the log key to watch.
        mode: ``"max"`` (higher is better: CCC, F1, accuracy) or ``"min"`` (loss, RMSE).
        min_delta: an improvement must exceed the best value by more than this.
        resume: start from the best value recorded in an existing JSON (same ``monitor`` and ``mode``), so a
            resumed run saves only when it beats the earlier run; otherwise the first evaluated epoch always saves.

    ``best``, ``best_epoch`` and ``saved_epochs`` (epochs saved by this object, counted from 1) are kept as
    attributes.  Like ``keras.callbacks.ModelCheckpoint``, one object remembers its best value across ``model.fit``
    calls (a run continued in several calls keeps its best model); use a new object for an unrelated run.
    :meth:`get_state` / :meth:`set_state` carry the best value and epoch through a training-state backup
    (:class:`ferkeras.training.ResumableBackup` saves and restores them), so a run killed and resumed from its
    backup saves only when it beats the best epoch trained before the kill.

    Example::

        model.fit(train, epochs=30, callbacks=[
            AffectEvaluation(val),                                      # writes val_ccc into the logs ...
            BestCheckpoint("runs/best.keras", monitor="val_ccc")])      # ... which this one reads: keep this order
        best = keras.models.load_model("runs/best.keras")
    """

    def __init__(self, path: str, monitor: str = "val_ccc", mode: str = "max", min_delta: float = 0.0,
                 resume: bool = False):
        super().__init__()
        path = os.fspath(path)
        suffix = next((s for s in SUFFIXES if path.endswith(s)), None)
        if suffix is None:
            raise ValueError(f"BestCheckpoint: path must end with .keras (whole model) or .weights.h5 (weights "
                             f"only), got {path!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpoint: mode must be 'max' or 'min', got {mode!r}")
        if not float(min_delta) >= 0:
            raise ValueError(f"BestCheckpoint: min_delta must be >= 0, got {min_delta!r}")
        self.path = path
        self.json_path = path[: -len(suffix)] + ".json"
        self.weights_only = suffix == ".weights.h5"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.resume = resume
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.saved_epochs = []
        self._warned_missing = False

    def get_state(self) -> dict:
        """What a resumed run needs to keep its best model: ``{"monitor", "mode", "best", "epoch"}`` (``best`` and
        ``epoch`` None before any save), JSON-serialisable."""
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best, "epoch": self.best_epoch}

    def set_state(self, state: dict) -> None:
        """Restores :meth:`get_state`'s best value and epoch; a state recorded for another ``monitor`` or ``mode``
        is ignored with a warning (the first evaluated epoch then saves)."""
        if state.get("monitor") != self.monitor or state.get("mode") != self.mode:
            logger.warning("BestCheckpoint: the restored state is for %s/%s, not %s/%s; starting afresh",
                           state.get("monitor"), state.get("mode"), self.monitor, self.mode)
            return
        best, epoch = state.get("best"), state.get("epoch")
        self.best = None if best is None else float(best)
        self.best_epoch = None if epoch is None else int(epoch)
        if self.best is not None:
            logger.info("BestCheckpoint: restored best %s = %g (epoch %d)", self.monitor, self.best, self.best_epoch)

    def on_train_begin(self, logs=None):
        if self.resume and self.best is None and os.path.exists(self.json_path):
            with open(self.json_path) as f:
                record = json.load(f)
            if record.get("monitor") == self.monitor and record.get("mode") == self.mode and \
                    record.get("best") is not None:
                self.best, self.best_epoch = float(record["best"]), int(record["epoch"])
                logger.info("BestCheckpoint resumes from %s = %g (epoch %d) of %s", self.monitor, self.best,
                            self.best_epoch, self.json_path)
            else:
                logger.warning("BestCheckpoint: %s records %s/%s, not %s/%s; starting afresh", self.json_path,
                               record.get("monitor"), record.get("mode"), self.monitor, self.mode)

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta`` (always, before any best)."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            if not self._warned_missing:
                self._warned_missing = True
                logger.warning("BestCheckpoint: %r is not in the logs of epoch %d (keys: %s); if another callback "
                               "computes it, put that callback before BestCheckpoint in the callbacks list",
                               self.monitor, epoch + 1, sorted(logs))
            return
        value = float(logs[self.monitor])
        if not math.isfinite(value):
            logger.warning("BestCheckpoint: %s is %s at epoch %d; not saved", self.monitor, value, epoch + 1)
            return
        if not self.improved(value):
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if self.weights_only:
            self.model.save_weights(self.path)
        else:
            self.model.save(self.path)
        previous = self.best
        self.best, self.best_epoch = value, epoch + 1
        self.saved_epochs.append(epoch + 1)
        record = {"monitor": self.monitor, "mode": self.mode, "best": value, "epoch": epoch + 1,
                  "path": os.path.basename(self.path),
                  "logs": {k: float(v) for k, v in logs.items() if isinstance(v, numbers.Real)}}
        tmp = self.json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(jsonable(record), f, indent=2, sort_keys=True, allow_nan=False)
        os.replace(tmp, self.json_path)
        logger.info("BestCheckpoint: %s improved from %s to %g at epoch %d; saved %s", self.monitor, previous, value,
                    epoch + 1, self.path)
