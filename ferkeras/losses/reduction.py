"""Loss reduction under ``tf.distribute``: the one replica-scaling helper every task model and loss uses.

Under a ``tf.distribute`` strategy every replica computes its loss on its own slice of the global batch and the Keras
optimisers all-reduce the replicas' gradients by SUM. A loss that is a mean over the batch or a batch statistic
(L_AV of Kim & Song, "Emotion-aware Multi-view Contrastive Learning for Facial Emotion Recognition", ECCV 2022,
Sec. 4.2; L_AVCE, Eq. 2; InfoNCE; Barlow Twins) must therefore be divided by the number of replicas in sync, so that
the summed gradient is the gradient of the replicas' average. Keras does that for its own per-sample losses (in their
reduction) but skips it for a loss that is already a scalar; a sum over the batch (Eq. 8 as printed) must not be
divided at all, since the sum of the replicas' sums is already the sum over the global batch.
"""

import tensorflow as tf


def scale_for_replicas(loss):
    """``loss / num_replicas_in_sync`` of the current ``tf.distribute`` strategy (``loss`` itself for one replica).

    Call it once on a mean-type loss (a batch mean or a batch statistic) before taking its gradient under a
    strategy; do not call it on a sum over the batch (see the module docstring).
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss
