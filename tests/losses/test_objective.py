"""ferkeras.losses.objective: the ContrastiveObjective protocol."""

import keras
import numpy as np
import pytest

from ferkeras.losses.objective import ContrastiveObjective
from tests import helpers


def test_base_protocol():
    objective = ContrastiveObjective(name="base")
    assert objective.precompute({"anchor": np.zeros((2, 4, 4, 3))}) == {}
    assert objective.dtype_policy.name == "float32"
    with pytest.raises(NotImplementedError, match="ContrastiveObjective must implement call"):
        objective.call({"anchor": np.zeros((2, 3))}, {})
    clone = helpers.assert_config_roundtrip(objective)
    assert clone.name == "base"


def test_subclass_call_through_keras():
    class MeanSquare(ContrastiveObjective):
        def call(self, projections, extras, training=False):
            diff = projections["anchor"] - projections["positive"]
            return {"loss": keras.ops.mean(diff ** 2), "scale": extras["scale"]}

    out = MeanSquare()({"anchor": np.ones((2, 3), np.float32), "positive": np.zeros((2, 3), np.float32)},
                       {"scale": np.float32(2.0)})
    assert float(out["loss"]) == 1.0 and float(out["scale"]) == 2.0


def test_objectives_declare_their_batch_mean_terms():
    """The terms each objective returns as batch means are declared, so the pre-training model logs them as epoch
    means (an undeclared term would be logged as its last step's value)."""
    from ferkeras.losses.info_nce import InfoNCEObjective
    from ferkeras.methods.sslfer.maskfn import MaskFN
    from ferkeras.methods.sslfer.objective import SSLFERObjective

    assert ContrastiveObjective().loss_terms == ()
    assert InfoNCEObjective().loss_terms == ("info_nce", "accuracy")
    assert SSLFERObjective().loss_terms == ("info_nce", "accuracy")
    encoder = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()])
    with_maskfn = SSLFERObjective(maskfn=MaskFN(encoder=encoder))
    assert with_maskfn.loss_terms == ("info_nce", "accuracy", "maskfn_l2", "maskfn_picked")
