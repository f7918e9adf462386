"""SSL-FER's pre-training pipeline (ferkeras.methods.sslfer.data) end to end on synthetic videos."""

import numpy as np
import pytest

from ferkeras.augment.faceswap import FaceSwap
from ferkeras.data.video_views import TrackTable, ViewSampler, synthetic_video_tracks
from ferkeras.methods.sslfer import SSLFERDataStats, sslfer_dataset

B, S = 4, 32


@pytest.fixture(scope="module")
def table():
    return synthetic_video_tracks(num_identities=3, videos_per_identity=1, seconds=5.0, fps=10.0, size=40, seed=1)


def first(ds):
    return {k: v.numpy() for k, v in next(iter(ds)).items()}


def test_every_strategy_on(table):
    stats = SSLFERDataStats()
    ds = sslfer_dataset(table, batch_size=B, image_size=S, face_swap=1.0, hard_negatives=2, maskfn=True,
                        part_size=16, metadata=True, stats=stats, seed=0)
    b = first(ds)
    assert set(b) == {"anchor", "positive", "hard_negatives", "parts", "parts_valid", "identity", "track",
                      "expression", "va", "timestamp", "positive_offset", "hard_negatives_offset", "face_swapped"}
    assert b["anchor"].shape == b["positive"].shape == (B, S, S, 3)
    assert b["hard_negatives"].shape == (B, 2, S, S, 3)
    assert b["parts"].shape == (B, 2, 16, 16, 3) and b["parts"].dtype == np.float32
    for key in ("anchor", "positive", "hard_negatives", "parts"):
        assert b[key].dtype == np.float32 and b[key].min() >= 0.0 and b[key].max() <= 1.0
    assert b["parts_valid"].dtype == bool and b["parts_valid"].all()
    assert b["identity"].dtype == np.int32 and b["track"].dtype == np.int32 and b["expression"].dtype == np.int32
    assert b["va"].shape == (B, 2) and np.all(np.abs(b["va"]) <= 1)
    dt = b["positive_offset"]
    assert np.all((np.abs(dt) <= 1.0 + 1e-6) & (dt != 0))
    assert np.all(np.abs(b["hard_negatives_offset"]) >= 3.0 - 1e-5)
    assert b["face_swapped"].all()
    counts = stats.as_dict()
    assert counts["face swap drawn"] == counts["face swap swapped"] == counts["face swap examined"] >= B
    assert counts["tracks used"] == 3 and counts["anchors per epoch"] > 0
    assert counts["masking skipped: no landmarks"] == 0


def test_simclr_baseline_is_the_same_pipeline_with_every_strategy_off(table):
    off = dict(time_aug=False, face_swap=0.0, hard_negatives=0, maskfn=False)
    plain = first(sslfer_dataset(table, batch_size=B, image_size=S, augment=None, metadata=True, **off))
    assert set(plain) == {"anchor", "positive", "identity", "track", "expression", "va", "timestamp",
                          "positive_offset", "face_swapped"}
    np.testing.assert_array_equal(plain["positive"], plain["anchor"])     # the anchor frame itself ...
    assert np.all(plain["positive_offset"] == 0) and not plain["face_swapped"].any()
    augmented = first(sslfer_dataset(table, batch_size=B, image_size=S, metadata=True, **off))
    assert augmented["anchor"].shape == (B, S, S, 3)
    difference = np.abs(augmented["positive"] - augmented["anchor"]).mean(axis=(1, 2, 3))
    assert np.all(difference > 1e-3)                                        # ... augmented twice


def test_switches_one_by_one(table):
    timeaug = first(sslfer_dataset(table, batch_size=B, image_size=S, face_swap=0.0, hard_negatives=0,
                                   maskfn=False, metadata=True))
    assert np.all(timeaug["positive_offset"] != 0) and "hard_negatives" not in timeaug and "parts" not in timeaug
    hardneg = first(sslfer_dataset(table, batch_size=B, image_size=S, time_aug=False, face_swap=0.0,
                                   hard_negatives=3, maskfn=False, metadata=True))
    assert hardneg["hard_negatives"].shape == (B, 3, S, S, 3) and np.all(hardneg["positive_offset"] == 0)
    maskfn = first(sslfer_dataset(table, batch_size=B, image_size=S, time_aug=False, face_swap=0.0,
                                  hard_negatives=0, maskfn=True))
    assert maskfn["parts"].shape == (B, 2, 64, 64, 3)


def test_faces_without_landmarks_fall_back_and_are_counted(table):
    bare = TrackTable(table.timestamp, [table.track_names[k] for k in table.track],
                      identity=[table.identity_names[i] for i in table.identity], pixels=table.pixels,
                      pixel_index=table.pixel_index)
    stats = SSLFERDataStats()
    ds = sslfer_dataset(bare, batch_size=B, image_size=S, face_swap=FaceSwap(1.0, detect=False, seed=0),
                        hard_negatives=0, maskfn=True, part_size=16, metadata=True, stats=stats)
    b = first(ds)
    assert not b["face_swapped"].any() and not b["parts_valid"].any() and "expression" not in b
    counts = stats.as_dict()
    assert counts["face swap swapped"] == 0 and counts["face swap fallback: no landmarks"] == counts[
        "face swap drawn"] >= B
    assert counts["masking skipped: no landmarks"] > 0


def test_seeded_pipeline_is_reproducible_and_epochs_differ(table):
    def build():
        return sslfer_dataset(table, batch_size=B, image_size=S, face_swap=0.5, hard_negatives=1, part_size=16,
                              anchors_per_track=4, metadata=True, seed=11)
    one, two = first(build()), first(build())
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    ds = build()
    epoch1 = np.concatenate([b["timestamp"].numpy() for b in ds])
    epoch2 = np.concatenate([b["timestamp"].numpy() for b in ds])
    assert not np.array_equal(epoch1, epoch2)


def test_arguments_are_checked(table):
    with pytest.raises(ValueError, match="face_swap"):
        sslfer_dataset(table, face_swap=1.5)
    with pytest.raises(ValueError, match="num_others"):
        sslfer_dataset(ViewSampler(table), face_swap=0.5)
    with pytest.raises(ValueError, match="nothing crops"):
        sslfer_dataset(table, augment=None, image_size=32, load_size=40)
    with pytest.raises(TypeError, match="TrackTable"):
        sslfer_dataset([1, 2, 3])
