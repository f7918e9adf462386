"""The binaries' synthetic train / validation / test faces come from disjoint identities (the README's held-out result
depends on it): asserted on the identity of every face the pipelines yield, with the arguments the binaries pass."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
from experiments import common  # noqa: E402
from ferkeras.data import splits  # noqa: E402


def _binary_arguments(monkeypatch, s):
    """The keyword arguments experiments.common.synthetic_data (what every binary calls) hands the library."""
    seen = {}
    monkeypatch.setattr(splits, "synthetic_data", lambda **kwargs: seen.update(kwargs))
    common.synthetic_data(s)
    monkeypatch.undo()
    return seen


@pytest.mark.parametrize("over", [dict(common.SMOKE_DATA, image_size=24),
                                  dict(num_train=40, num_val=30, num_test=40, train_identities=1, image_size=24)])
def test_binaries_synthetic_splits_have_disjoint_identities(monkeypatch, over):
    s = dict(num_train=4000, num_val=500, num_test=1000, train_identities=100, image_size=64, batch_size=16, seed=2,
             dataset="synthetic")
    s.update((k, v) for k, v in over.items() if k not in ("epochs", "steps"))
    kwargs = _binary_arguments(monkeypatch, s)
    data = splits.synthetic_data(**kwargs, extras=("identity",))
    found = {}
    for split in ("train", "val", "test"):
        ids = [i.decode() for _, y in getattr(data, split) for i in y["identity"].numpy()]
        assert ids and all(ids), split
        found[split] = set(ids)
    assert not found["train"] & found["val"], found
    assert not found["train"] & found["test"], found
    assert not found["val"] & found["test"], found
    assert len(found["train"]) == s["train_identities"]  # every training identity is drawn (and only those)
