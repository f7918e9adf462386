"""PipelineDropLogger: per-epoch report of the images the input pipelines dropped, in a user's own model.fit (here
under a tf.distribute strategy)."""

import logging

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from ferkeras.callbacks import PipelineDropLogger
from ferkeras.data.elements import FACE_TOO_SMALL, UNDECODABLE, PipelineStats
from ferkeras.data.pipeline import from_records
from ferkeras.data.schema import FaceRecord


def _records(tmp_path):
    records = []
    for i in range(6):
        path = str(tmp_path / f"{i}.jpg")
        cv2.imwrite(path, np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8))
        records.append(FaceRecord(image_path=path, valence=0.1 * i, arousal=-0.1 * i))
    with open(records[0].image_path, "rb") as f:
        (tmp_path / "half.jpg").write_bytes(f.read()[:200])
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    records.insert(1, FaceRecord(image_path=str(tmp_path / "half.jpg"), valence=0.5, arousal=0.5))
    records.insert(4, FaceRecord(image_path=str(tmp_path / "dot.png"), valence=0.5, arousal=0.5))
    return records


def test_drops_are_logged_every_epoch_with_names(tmp_path, caplog):
    records = _records(tmp_path)
    train_stats, val_stats = PipelineStats("train"), PipelineStats("validation")
    select = lambda x, y: (x, y["va"])  # noqa: E731
    train = from_records(records, image_size=16, batch_size=2, stats=train_stats).map(select)
    val = from_records(records[:3], image_size=16, batch_size=2, stats=val_stats).map(select)
    logger = PipelineDropLogger({"train": train_stats, "validation": val_stats, "unused": PipelineStats("unused")})
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                                  keras.layers.Dense(2)])
        model.compile("sgd", "mse")
    with caplog.at_level(logging.INFO, logger="ferkeras.callbacks"):
        model.fit(train, validation_data=val, epochs=2, callbacks=[logger], verbose=0)
    lines = [r.getMessage() for r in caplog.records if "input pipeline" in r.getMessage()]
    assert len(lines) == 4 and not any("unused" in line for line in lines)  # a pipeline never read is left out
    # Keras may read a first batch before epoch 1 (building the model): epoch 1 counts what was read by its end
    first = logger.epoch_drops["train"][0]
    assert first >= 2 and first % 2 == 0
    assert lines[0].startswith(f"epoch 1 input pipeline train: {first} dropped this epoch ({first // 2} {UNDECODABLE}, "
                               f"{first // 2} {FACE_TOO_SMALL}); {3 * first} kept, {first} dropped in total; first: "
                               f"{tmp_path / 'half.jpg'} ({UNDECODABLE}), {tmp_path / 'dot.png'} ({FACE_TOO_SMALL})")
    assert lines[2].startswith(f"epoch 2 input pipeline train: 2 dropped this epoch (1 {UNDECODABLE}, 1 "
                               f"{FACE_TOO_SMALL}); {3 * first + 6} kept, {first + 2} dropped in total")
    # (Keras may read the validation set more than once an epoch: each read of it drops the truncated file again)
    assert all(n >= 1 for n in logger.epoch_drops["validation"]) and len(logger.epoch_drops["validation"]) == 2
    assert lines[3].startswith("epoch 2 input pipeline validation:") and str(tmp_path / "half.jpg") in lines[3]
    assert logger.epoch_drops["train"] == [first, 2] and logger.epoch_drops["unused"] == []
    assert logger.as_dict()["train"]["first_dropped"] == [f"{tmp_path / 'half.jpg'} ({UNDECODABLE})",
                                                          f"{tmp_path / 'dot.png'} ({FACE_TOO_SMALL})"]
    with pytest.raises(TypeError, match="must be PipelineStats"):
        PipelineDropLogger({"train": 3})
