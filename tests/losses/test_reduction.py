"""scale_for_replicas (ferkeras.losses.reduction): a mean-type loss divided by the replicas in sync, once.

The real two-replica behaviour of AVCE's train_step is checked in tests/methods/avce/test_model.py (a MirroredStrategy
over two logical CPUs in a fresh process); here the helper itself, against the strategy it reads."""

import types

import numpy as np
import pytest
import tensorflow as tf

from ferkeras.losses import affect, reduction
from ferkeras.losses.reduction import scale_for_replicas


def test_one_replica_leaves_the_loss_alone():
    loss = tf.constant([1.5, -2.0])
    assert scale_for_replicas(loss) is loss  # the default strategy: not even a division by 1
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        np.testing.assert_array_equal(scale_for_replicas(loss).numpy(), [1.5, -2.0])


@pytest.mark.parametrize("replicas", [2, 3, 8])
def test_divides_by_the_replicas_in_sync(monkeypatch, replicas):
    strategy = types.SimpleNamespace(num_replicas_in_sync=replicas)
    monkeypatch.setattr(reduction.tf.distribute, "get_strategy", lambda: strategy)
    np.testing.assert_allclose(scale_for_replicas(tf.constant(6.0)).numpy(), 6.0 / replicas, rtol=1e-7)
    np.testing.assert_allclose(scale_for_replicas(np.array([3.0, 9.0])), np.array([3.0, 9.0]) / replicas)


def test_affect_loss_uses_the_one_helper(monkeypatch):
    """AffectLoss.__call__ divides by the replicas (through scale_for_replicas); AffectLoss.call does not."""
    t = np.array([[0.1, 0.2], [0.4, -0.3], [-0.5, 0.6], [0.2, 0.0]], np.float32)
    p = np.array([[0.0, 0.1], [0.5, -0.1], [-0.3, 0.4], [0.1, 0.2]], np.float32)
    loss = affect.AffectLoss()
    single = float(loss(t, p))
    monkeypatch.setattr(reduction.tf.distribute, "get_strategy", lambda: types.SimpleNamespace(num_replicas_in_sync=4))
    assert float(loss(t, p)) == pytest.approx(single / 4, rel=1e-6)
    assert float(loss.call(t, p)) == pytest.approx(single, rel=1e-6)
