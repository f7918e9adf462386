"""SSL-FER's pre-training optimiser and learning-rate schedule.

Shu, Gu, Yang, Lo, "Revisiting Self-Supervised Contrastive Learning for Facial Expression Recognition", BMVC 2022,
Sec. 4.1: "The training batch size was 256 with a initialised 3e-4 learning rate and 1e-4 weight decay. We optimized
the network using Adam optimizer ... We applied a cosine annealing schedule from 10 epochs onwards."

**Which weight decay.** The paper does not say whether the decay is an L2 penalty or decoupled (AdamW). The authors'
code builds on the PyTorch SimCLR of T. Silvestri (its README says so) and creates
``torch.optim.Adam(model.parameters(), lr, weight_decay=1e-4)``; PyTorch's ``Adam`` adds ``weight_decay * w`` to the
gradient *before* the moment estimates (a coupled L2 penalty on every parameter, batch-norm scales and biases
included), whereas ``torch.optim.AdamW`` and Keras' ``Adam(weight_decay=...)`` shrink the weights directly (Loshchilov
& Hutter, "Decoupled Weight Decay Regularization", ICLR 2019). So the paper's setting is :class:`AdamL2` (the
default of ``experiments/sslfer_pretrain.py``); ``keras.optimizers.Adam(3e-4, weight_decay=1e-4)`` is the decoupled
alternative. With Adam the two differ: the L2 gradient is divided by the running RMS of the gradient, so weights with
small gradients decay much faster than under decoupled decay.

**Which schedule.** The same code keeps the learning rate constant for 10 epochs and then steps PyTorch's
``CosineAnnealingLR`` once per epoch (``if epoch >= 10: scheduler.step(epoch)``) with a period of ``T_max`` = the
number of batches per epoch - a quirk inherited from that SimCLR code, which on VoxCeleb1 leaves the rate almost
constant. :func:`pretraining_schedule` implements the stated intent instead: constant for ``cosine_from_epoch``
epochs, then one cosine from the base rate to 0 at the last step.
"""

from __future__ import annotations

import keras
from keras import ops

LEARNING_RATE = 3e-4
"""SSL-FER's pre-training learning rate (Sec. 4.1)."""
WEIGHT_DECAY = 1e-4
"""SSL-FER's weight decay (Sec. 4.1), an L2 penalty in the authors' code (see the module docstring)."""
COSINE_FROM_EPOCH = 10
"""Epochs at the constant base rate before the cosine annealing starts (Sec. 4.1)."""


@keras.saving.register_keras_serializable(package="ferkeras")
class AdamL2(keras.optimizers.Adam):
    """Adam with a coupled L2 weight penalty: PyTorch's ``torch.optim.Adam(weight_decay=l2)``.

    Every update uses the gradient ``g + l2 * w`` of ``loss + l2 / 2 * ||w||^2`` for the moment estimates (Kingma &
    Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1, with the penalty's gradient added), for
    every trainable variable. The penalty is added per variable after the gradients are summed across replicas
    (``update_step``), so it is counted once under ``tf.distribute``.

    Args:
        learning_rate: a float or a ``keras.optimizers.schedules.LearningRateSchedule`` (3e-4 in SSL-FER).
        l2: the penalty's coefficient (1e-4 in SSL-FER); 0 gives plain Adam.
        **kwargs: ``keras.optimizers.Adam`` arguments (``beta_1``, ``epsilon``, ``clipnorm``, ...) except
            ``weight_decay`` (the decoupled decay: use ``keras.optimizers.Adam`` for that).
    """

    def __init__(self, learning_rate=LEARNING_RATE, l2=WEIGHT_DECAY, name="adam_l2", **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("AdamL2: weight_decay is Keras' decoupled decay; AdamL2 applies the coupled L2 penalty "
                             "`l2` instead (use keras.optimizers.Adam(weight_decay=...) for decoupled decay)")
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.l2 = float(l2)
        if not self.l2 >= 0:
            raise ValueError(f"AdamL2: l2 must be >= 0, got {l2!r}")

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(gradient, ops.multiply(ops.cast(variable, gradient.dtype), self.l2))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config["l2"] = self.l2
        return config


def pretraining_schedule(learning_rate: float, total_steps: int, hold_steps: int):
    """The learning rate: ``learning_rate`` for ``hold_steps`` steps, then a cosine to 0 at ``total_steps``.

    A ``keras.optimizers.schedules.CosineDecay`` whose linear warm-up runs from ``learning_rate`` to itself (so it
    holds the rate); with ``hold_steps >= total_steps`` the rate stays constant for the whole run.
    """
    total_steps, hold_steps = int(total_steps), int(hold_steps)
    if not learning_rate > 0 or total_steps < 1 or hold_steps < 0:
        raise ValueError(f"pretraining_schedule: need learning_rate > 0, total_steps >= 1 and hold_steps >= 0, got "
                         f"{learning_rate}, {total_steps}, {hold_steps}")
    hold = min(hold_steps, total_steps)
    return keras.optimizers.schedules.CosineDecay(
        float(learning_rate), decay_steps=max(total_steps - hold, 1), alpha=0.0, warmup_target=float(learning_rate),
        warmup_steps=hold, name="sslfer_cosine")


def pretraining_optimizer(learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, decay: str = "l2"):
    """SSL-FER's optimiser: :class:`AdamL2` (``decay="l2"``, the authors' code) or Keras' Adam with decoupled weight
    decay (``decay="decoupled"``, as AdamW). ``learning_rate``: a float or a schedule (:func:`pretraining_schedule`).
    """
    if decay == "l2":
        return AdamL2(learning_rate, l2=weight_decay)
    if decay == "decoupled":
        return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None)
    raise ValueError(f"decay must be 'l2' or 'decoupled', got {decay!r}")


__all__ = ("COSINE_FROM_EPOCH", "LEARNING_RATE", "WEIGHT_DECAY", "AdamL2", "pretraining_optimizer",
           "pretraining_schedule")
