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

_TOO_LATE = ("the {what} must be set up before TensorFlow runs its first operation, and this process has already run "
             "some (data loading, synthetic rendering, model building or any tensor op). Call "
             "ferkeras.training.get_strategy(...) first thing in your script, before building any dataset or model "
             "(the experiment binaries do). TensorFlow said: {error}")


class StrategyTooLateError(RuntimeError):
    """:func:`get_strategy` (or :func:`configure_cpu_replicas`) was called after TensorFlow had already initialised
    its runtime: ``MultiWorkerMirroredStrategy`` and logical CPU devices must be configured at program start."""


def configure_cpu_replicas(n: int) -> None:
    """Splits the (first) physical CPU into ``n`` logical devices, so ``MirroredStrategy`` has ``n`` replicas on a
    machine without GPUs (useful to test data-parallel training on a laptop; the replicas share the same cores, so
    it is not faster).  Must run before TensorFlow initialises: :class:`StrategyTooLateError` otherwise."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"cpu_replicas must be an int >= 1, got {n!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as e:
        raise StrategyTooLateError(_TOO_LATE.format(what=f"split of the CPU into {n} logical devices "
                                                         f"(cpu_replicas={n})", error=e)) from e


def _local_devices(devices: Optional[Sequence[str]]) -> list:
    """``devices`` as given, else every local GPU, else every logical CPU device (one replica each)."""
    if devices:
        return list(devices)
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def get_strategy(name: str = "default", devices: Optional[Sequence[str]] = None,
                 cross_device_ops: Optional[tf.distribute.CrossDeviceOps] = None,
                 cpu_replicas: Optional[int] = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy called ``name`` (the binaries' ``--strategy`` flag).

    **Call it first**, before anything runs a TensorFlow op (reading or rendering data, building a model, even
    ``tf.constant``): ``MultiWorkerMirroredStrategy`` must configure the collective ops and ``cpu_replicas`` the
    logical devices at program start.  Called too late, it raises :class:`StrategyTooLateError` naming the cause
    (TensorFlow's own message is "Collective ops must be configured at program startup").  A user script::

        from ferkeras import training
        strategy = training.get_strategy("multi_worker")      # first
        data = ...                                             # then the data
        with strategy.scope():
            model = ...                                        # and the model

    * ``"default"``: one device;
    * ``"mirrored"``: ``MirroredStrategy`` over ``devices`` (default: every local GPU, else every logical CPU
      device).  A CPU is ONE logical device unless split: without GPUs and without ``cpu_replicas`` this trains
      one replica (and logs so); ``cpu_replicas=N`` splits the CPU into N logical devices first
      (:func:`configure_cpu_replicas`).  Without GPUs the gradients are reduced with ``ReductionToOneDevice``
      (tested here on two logical CPU devices): TensorFlow's default all-reduce targets NCCL, and a collective
      all-reduce between logical CPU devices has been seen to fail with "Shape mismatch in the collective
      instance" (Keras 3.15).  ``cross_device_ops`` overrides the choice;
    * ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` configured by the ``TF_CONFIG`` environment variable
      (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``), one process per
      worker, each started with the same command; each worker trains one replica (its GPUs, else its CPU).

    Build, compile and :func:`build_for_strategy` the model inside ``strategy.scope()``.  The batch size of
    the input pipeline is the *global* batch: every replica trains on ``batch / num_replicas_in_sync``
    examples and the gradients are summed over the replicas, with every mean-type loss divided by
    ``num_replicas_in_sync`` (Keras does this for compiled losses; :class:`ferkeras.methods.avce.AVCEModel`
    does it in its ``train_step``).  Batch statistics (batch normalisation, the PCC / CCC of L_AV, in-batch
    contrastive terms) are per replica, as in every data-parallel trainer.
    """
    if cpu_replicas is not None and name != "mirrored":
        raise ValueError(f"cpu_replicas={cpu_replicas} applies to the 'mirrored' strategy only, not {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if cpu_replicas is not None:
            configure_cpu_replicas(cpu_replicas)
        devices = _local_devices(devices)
        if cross_device_ops is None and not any("GPU" in d.upper() for d in devices):
            cross_device_ops = tf.distribute.ReductionToOneDevice()
        strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)
        if strategy.num_replicas_in_sync == 1:
            logger.warning("MirroredStrategy: ONE replica on %s (no GPU, and the CPU is one device); to train "
                           "N replicas on the CPU split it with --cpu_replicas=N (cpu_replicas=N)", devices[0])
        else:
            logger.info("MirroredStrategy over %d replicas: %s", strategy.num_replicas_in_sync, devices)
        return strategy
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            logger.warning("--strategy=multi_worker without TF_CONFIG: training on this process alone")
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            if "program startup" in str(e) or "at program start" in str(e):
                raise StrategyTooLateError(_TOO_LATE.format(what="MultiWorkerMirroredStrategy", error=e)) from e
            raise
        info = strategy_info(strategy)
        logger.info("MultiWorkerMirroredStrategy: %d workers, %d replicas in sync", info["num_workers"],
                    info["num_replicas"])
        return strategy
    raise ValueError(f"unknown distribution strategy {name!r}; choose one of {STRATEGIES}")


def strategy_info(strategy: tf.distribute.Strategy) -> dict:
    """What a run's result.json records of its distribution: ``{"strategy": class name, "num_workers": worker
    processes (1 unless multi-worker), "num_replicas": replicas in sync over all workers, "replicas_per_worker"}``."""
    workers = 1
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
        workers = max(1, sum(len(cluster.get(job, ())) for job in ("chief", "worker")))
    replicas = int(strategy.num_replicas_in_sync)
    return {"strategy": type(strategy).__name__, "num_workers": workers, "num_replicas": replicas,
            "replicas_per_worker": replicas // workers}


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


__all__ = ("STRATEGIES", "StrategyTooLateError", "build_for_strategy", "configure_cpu_replicas", "get_strategy",
           "strategy_info")
