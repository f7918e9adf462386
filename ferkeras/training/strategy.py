"""tf.distribute strategies for the experiment binaries, and the Keras 3.15 work-arounds that let a ferkeras task
model train under them (:func:`build_for_strategy`)."""

from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

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
    ``num_replicas_in_sync`` (Keras does this for compiled losses; :class:`ferkeras.methods.avce.AVCEModel`
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

    Call it inside ``strategy.scope()`` after ``compile``, and before ``fit`` or a resume
    (:func:`ferkeras.training.fit` calls it with the training data); call it again after recompiling.  It avoids
    three failures seen with Keras 3.15 under tf.distribute: optimisers built lazily inside the replicated train
    step fail under ``MirroredStrategy`` (a placeholder error), and one built before the model's variables exist
    fails with "Unknown variable"; and ``fit`` under ``MultiWorkerMirroredStrategy`` fails ("Attempt to convert a value
    (PerReplica ...) to a Tensor"), because Keras all-reduces a whole input batch to build the model
    symbolically.  With ``data``, that symbolic build is done here from the dataset's ``element_spec`` and
    ``fit``'s own (which under any strategy also iterates the dataset once more than needed, changing the
    order of a reshuffling dataset) is switched off for this model.  Under ``MultiWorkerMirroredStrategy``
    Keras' reduction of the per-step logs fails on scalars: the model's ``train_step`` / ``test_step`` are
    wrapped to return them as vectors of one value.  Handles several optimisers through the
    model's ``build_optimizers`` (:class:`ferkeras.methods.avce.AVCEModel`).  Returns ``model``.
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


__all__ = ("STRATEGIES", "build_for_strategy", "get_strategy")
