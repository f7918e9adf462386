"""What the evaluation callbacks share: evaluation data, choosing one model output and its labels, and the
epoch hook that writes whole-set metrics into Keras ``logs`` and TensorBoard.

Evaluation data
    A ``tf.data.Dataset`` or any re-iterable of ``(inputs, labels)`` batches (a third element, sample weights, is
    ignored), or a tuple ``(inputs, labels)`` of arrays, batched here.  ``labels`` is a tensor, a list or a dict
    such as the ``{"va": (B, 2), "expression": (B,)}`` of :mod:`ferkeras.data.pipeline`.  The data is read once
    per evaluation, so it must be finite (or ``steps`` given) and re-iterable (not a generator).

Choosing an output
    A model may return one tensor, a list of tensors or a dict.  ``output=None`` takes the single tensor, or the
    callback's default key (``"va"`` / ``"expression"``) of a dict; a string names a dict key (or a list entry
    by the model's ``output_names``); an integer indexes a list.  Labels are chosen the same way with
    ``label_key``; by default the dict key named by ``output`` if the labels hold it, else the default key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("ferkeras.callbacks")

Key = Optional[Union[str, int]]


def _is_array_like(value) -> bool:
    if isinstance(value, Mapping):
        return bool(value) and all(_is_array_like(v) for v in value.values())
    return isinstance(value, (np.ndarray, tf.Tensor))


class EvalData:
    """A re-iterable view of evaluation data (see the module docstring) yielding ``(inputs, labels)`` batches.

    Args:
        data: a ``tf.data.Dataset``, a re-iterable of batches, or an ``(inputs, labels)`` tuple of arrays.
        batch_size: batch size for an array tuple.
        steps: read at most this many batches per pass (``None`` = all; required for an infinite dataset).
        owner: name used in error messages.
    """

    def __init__(self, data, batch_size: int = 32, steps: Optional[int] = None, owner: str = "callback"):
        if steps is not None and int(steps) < 1:
            raise ValueError(f"{owner}: steps must be >= 1 or None, got {steps!r}")
        if isinstance(data, tuple) and len(data) in (2, 3) and _is_array_like(data[0]):
            data = tf.data.Dataset.from_tensor_slices(tuple(data[:2])).batch(int(batch_size))
        elif isinstance(data, tf.data.Dataset):
            if steps is None and int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
                raise ValueError(f"{owner}: the evaluation dataset is infinite (repeat()); pass steps= or a "
                                 f"finite dataset")
        else:
            try:
                iterator = iter(data)
            except TypeError:
                raise TypeError(f"{owner}: evaluation data must be a tf.data.Dataset, a re-iterable of "
                                f"(inputs, labels) batches or an (inputs, labels) tuple of arrays; got "
                                f"{type(data).__name__}") from None
            if iterator is data:
                raise TypeError(f"{owner}: evaluation data is a one-shot iterator ({type(data).__name__}); it "
                                f"would be empty after the first evaluation. Pass a tf.data.Dataset or a list")
        self.data = data
        self.steps = None if steps is None else int(steps)
        self.owner = owner

    def __iter__(self):
        for step, batch in enumerate(self.data):
            if self.steps is not None and step >= self.steps:
                return
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                raise ValueError(f"{self.owner}: evaluation batches must be (inputs, labels) or (inputs, labels, "
                                 f"weights) tuples; got {type(batch).__name__}")
            yield batch[0], batch[1]


def select(value, key: Key, default: Optional[str], what: str, arg: str,
           names: Optional[Sequence[str]] = None):
    """Picks one tensor out of ``value`` (a tensor, list or dict) by ``key``; see the module docstring.

    ``default`` is the dict key used when ``key`` is None; ``names`` are the list entries' names
    (a model's ``output_names``); ``what`` names the value and ``arg`` the argument that chooses it, in errors.
    """
    if isinstance(value, Mapping):
        key = default if key is None else key
        if key not in value:
            raise ValueError(f"{what} has no entry {key!r} among the keys {sorted(value)}; choose one with {arg}=")
        return value[key]
    if isinstance(value, (list, tuple)):
        if isinstance(key, str) and names is not None and key in list(names):
            key = list(names).index(key)
        elif key is None and len(value) == 1:
            key = 0
        if not isinstance(key, int) or not -len(value) <= key < len(value):
            raise ValueError(f"{what} is {len(value)} tensors (names {list(names or [])}); pick one by index or "
                             f"name with {arg}=, got {key!r}")
        return value[key]
    if isinstance(key, int) and key != 0:
        raise ValueError(f"{what} is a single tensor, {arg}={key} does not exist")
    return value


def encode(fn, x):
    """``fn(x)`` as NumPy: ``predict_on_batch`` for a Keras model (its compiled predict function), else a call."""
    out = fn.predict_on_batch(x) if isinstance(fn, keras.Model) else fn(x)
    if isinstance(out, Mapping):
        return {k: np.asarray(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [np.asarray(v) for v in out]
    return np.asarray(out)


def collect(fn: Callable, data: EvalData, output: Key, label_key: Key, default: Optional[str],
            names: Optional[Sequence[str]] = None, default_label: Optional[str] = None,
            label_like_output: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Runs ``fn`` over every batch of ``data``; returns ``(labels, outputs)`` of the chosen output, stacked.

    ``default`` is the dict key of the output (and of the labels unless ``default_label`` is given) used when
    ``output`` (``label_key``) is None.  With ``label_like_output`` and no ``label_key``, labels are taken under
    the output's key when the label dict has it.
    """
    owner = data.owner
    default_label = default if default_label is None else default_label
    labels, preds = [], []
    for x, y in data:
        preds.append(np.asarray(select(encode(fn, x), output, default, f"{owner}: model output", "output", names)))
        lkey = label_key
        if lkey is None and label_like_output and isinstance(output, str) and isinstance(y, Mapping) and output in y:
            lkey = output
        labels.append(np.asarray(select(y, lkey, default_label, f"{owner}: labels", "label_key")))
    if not preds:
        raise ValueError(f"{owner}: the evaluation dataset yielded no batch")
    return np.concatenate(labels), np.concatenate(preds)


class EpochEvaluation(keras.callbacks.Callback):
    """Base of the callbacks that compute whole-set metrics after epochs ``n, 2n, ...``.

    Subclasses implement :meth:`evaluate` (``step`` -> ``{name: value}``).  Each value goes into the epoch's
    ``logs`` as ``prefix + name`` (callbacks later in the ``callbacks`` list, ``History`` and the progress bar see
    it) and, with ``log_dir``, to TensorBoard as a scalar with that tag at step = epoch number counted from 1
    (the steps of :class:`ActivationMapLogger`; Keras's own TensorBoard callback counts from 0).
    ``last_results`` holds the latest values (without prefix) and ``history`` one ``(epoch, results)`` per run.
    """

    def __init__(self, every_n_epochs: int = 1, prefix: str = "val_", log_dir: Optional[str] = None):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"{type(self).__name__}: every_n_epochs must be >= 1, got {every_n_epochs!r}")
        self.every_n_epochs = int(every_n_epochs)
        self.prefix = prefix
        self.log_dir = log_dir
        self.last_results: Dict[str, float] = {}
        self.history = []
        self._writer = None
        self._warned_keys = set()

    def evaluate(self, step: int) -> Dict[str, float]:
        raise NotImplementedError

    @property
    def model_output_names(self) -> Optional[Sequence[str]]:
        return getattr(self.model, "output_names", None)

    def writer(self):
        """The TensorBoard file writer of ``log_dir`` (created on first use), or None without ``log_dir``."""
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        step = epoch + 1
        results = {k: float(v) for k, v in self.evaluate(step).items()}
        self.last_results = results
        self.history.append((step, results))
        if logs is not None:
            for name, value in results.items():
                key = self.prefix + name
                if key in logs and key not in self._warned_keys:
                    self._warned_keys.add(key)
                    logger.warning("%s overwrites %r already in the epoch logs (another metric of that name); "
                                   "use a different prefix= to keep both", type(self).__name__, key)
                logs[key] = value
        writer = self.writer()
        if writer is not None:
            with writer.as_default():
                for name, value in results.items():
                    tf.summary.scalar(self.prefix + name, value, step=step)
            writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
