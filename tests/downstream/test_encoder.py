"""ferkeras.downstream.load_encoder: from a ContrastivePretrainer / bare encoder / baseline .keras file or a run
directory, always a pooled encoder with the stored weights."""

import os

import numpy as np
import pytest

from ferkeras import downstream
from ferkeras.models.backbones import make_backbone
from ferkeras.models.baseline import build_baseline_model
from ferkeras.models.contrastive import ContrastivePretrainer
from ferkeras.training import RunDir
from tests.models.contrastive_objectives import SimCLRObjective

IMAGES = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")


def _same_features(loaded, encoder):
    np.testing.assert_allclose(loaded(IMAGES), encoder(IMAGES), atol=1e-6)


def test_from_a_pretrainer_file_and_a_run_directory(tmp_path):
    encoder = make_backbone("resnet18", (32, 32, 3), pooling="avg", width=16)
    model = ContrastivePretrainer(encoder, SimCLRObjective(), projection_hidden=(16,), projection_dim=8,
                                  probe_classes=3)
    model.compile()
    for w in encoder.weights:  # weights a fresh encoder would not have
        w.assign(w.numpy() + 0.01)
    path = tmp_path / "pretrainer.keras"
    model.save(path)
    loaded = downstream.load_encoder(str(path))
    assert tuple(loaded.output.shape) == (None, 128)
    _same_features(loaded, encoder)

    run = RunDir.create(str(tmp_path / "runs"), "sslfer")
    os.makedirs(os.path.dirname(run.checkpoint_path), exist_ok=True)
    model.save(run.checkpoint_path)  # what ModelCheckpoint of a pre-training run writes
    _same_features(downstream.load_encoder(run.path), encoder)


def test_from_a_bare_encoder_a_feature_map_and_a_baseline(tmp_path):
    encoder = make_backbone("resnet18", (32, 32, 3), pooling="avg", width=16)
    encoder.save(tmp_path / "encoder.keras")
    _same_features(downstream.load_encoder(str(tmp_path / "encoder.keras")), encoder)

    fmap = make_backbone("resnet18", (64, 64, 3), pooling=None, width=16)
    fmap.save(tmp_path / "fmap.keras")
    pooled = downstream.load_encoder(str(tmp_path / "fmap.keras"))
    x = np.random.default_rng(1).random((2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(pooled(x), np.asarray(fmap(x)).mean(axis=(1, 2)), atol=1e-6)

    baseline = build_baseline_model("resnet18", (32, 32, 3), task="both", num_classes=4, width=16)
    baseline.save(tmp_path / "baseline.keras")
    _same_features(downstream.load_encoder(str(tmp_path / "baseline.keras")), baseline.get_layer("resnet18"))


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        downstream.load_encoder(str(tmp_path / "missing.keras"))
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="not a .keras file"):
        downstream.load_encoder(str(tmp_path / "weights.h5"))
    with pytest.raises(FileNotFoundError, match="best.keras"):
        downstream.load_encoder(str(tmp_path))
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not load"):
        downstream.load_encoder(str(tmp_path / "broken.keras"))
