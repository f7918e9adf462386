"""Views from timed face tracks (ferkeras.data.video_views): offsets, hard negatives, skips, freshness, sources."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats as scipy_stats

from ferkeras.data.elements import PipelineStats
from ferkeras.data.readers.voxceleb1 import VoxCeleb1Reader
from ferkeras.data.schema import FaceRecord
from ferkeras.data.synthetic.formats import write_voxceleb1
from ferkeras.data.video_views import (ANCHORS_PER_TRACK_REASON, DUPLICATE_TIMESTAMP, NO_TIMESTAMP, NO_VIDEO,
                                       CrossTrackPositive, OffsetDistribution, SameFrame, TemporalPositive,
                                       TrackTable, ViewSampler, choose_ranks, draw_from_ranges, mashup_tracks,
                                       synthetic_video_tracks)


def timed_table(durations, fps=25.0, identities=None, videos=None, size=4):
    """Tracks t0, t1 ... of the given durations (seconds) at ``fps``, dummy pixels whose value is the row."""
    ts, tracks, ids, vids = [], [], [], []
    for k, d in enumerate(durations):
        n = int(round(d * fps)) + 1
        ts += list(np.arange(n) / fps)
        tracks += [f"t{k}"] * n
        ids += [identities[k] if identities else f"p{k}"] * n
        vids += [videos[k] if videos else f"t{k}"] * n
    pixels = np.zeros((len(ts), size, size, 3), np.uint8)
    pixels[:, :, :, 0] = (np.arange(len(ts)) % 256)[:, None, None]
    return TrackTable(ts, tracks, identity=ids, video=vids, pixels=pixels,
                      expression=np.arange(len(ts)) % 8, valence=np.linspace(-1, 1, len(ts)),
                      arousal=np.zeros(len(ts)))


def offsets_of(table, plan, key):
    return table.timestamp[plan[key]] - table.timestamp[plan["anchor"]][:, None]


# ---------------------------------------------------------------------------------------------- TimeAug offsets
def test_default_offsets_lie_in_range_and_follow_5_4_3_2_1():
    table = timed_table([20.0] * 4)
    sampler = ViewSampler(table, seed=3)
    dts = np.concatenate([offsets_of(table, sampler.plan(e), "positive")[:, 0] for e in range(6)])
    assert np.all(np.abs(dts) <= 1.0 + 1e-9) and np.all(dts != 0)
    steps = np.round(np.abs(dts) / 0.2).astype(int)
    np.testing.assert_allclose(np.abs(dts), steps * 0.2, atol=1e-9)      # on the requested offsets exactly
    observed = np.bincount(steps, minlength=6)[1:]
    expected = np.array([5, 4, 3, 2, 1]) / 15 * len(dts)
    assert scipy_stats.chisquare(observed, expected).pvalue > 1e-3, observed
    # the wrong distribution (uniform) is rejected by the same test: the check has power
    assert scipy_stats.chisquare(observed, np.full(5, len(dts) / 5)).pvalue < 1e-6
    # random sign, about half each
    assert abs(np.mean(dts > 0) - 0.5) < 0.03


@pytest.mark.parametrize("offsets", [
    {0.04: 1.0, 0.4: 3.0},
    OffsetDistribution.from_density(lambda t: np.exp(-t / 0.3), max_offset=0.6, step=0.12),
])
def test_custom_offset_distribution_is_followed(offsets):
    table = timed_table([12.0] * 3)
    sampler = ViewSampler(table, TemporalPositive(offsets), seed=0)
    dist = sampler.positive.offsets
    dts = np.abs(np.concatenate([offsets_of(table, sampler.plan(e), "positive")[:, 0] for e in range(8)]))
    values = np.asarray(dist.offsets)
    idx = np.argmin(np.abs(dts[:, None] - values[None]), axis=1)
    np.testing.assert_allclose(dts, values[idx], atol=1e-9)
    observed = np.bincount(idx, minlength=len(values))
    assert scipy_stats.chisquare(observed, dist.probabilities * len(dts)).pvalue > 1e-3


def test_offset_tables_from_a_callable_and_a_mapping():
    assert OffsetDistribution.linear_decay().offsets == pytest.approx((0.2, 0.4, 0.6, 0.8, 1.0))
    assert OffsetDistribution.linear_decay().weights == pytest.approx(np.array([5, 4, 3, 2, 1]) / 15)
    d = OffsetDistribution.from_density(lambda t: 1.0 - t, max_offset=0.5, step=0.1)
    assert d.offsets == pytest.approx((0.1, 0.2, 0.3, 0.4, 0.5))
    assert d.weights == pytest.approx(np.array([0.9, 0.8, 0.7, 0.6, 0.5]) / 3.5)
    assert d.max_offset == pytest.approx(0.5)
    assert OffsetDistribution.authors_voxceleb1().offsets == pytest.approx((0.48, 0.72, 0.96, 1.2, 1.44))
    rule = TemporalPositive({0.5: 1, 0.1: 3})
    assert rule.offsets.offsets == (0.1, 0.5) and rule.offsets.weights == pytest.approx((0.75, 0.25))
    with pytest.raises(ValueError, match="distinct"):
        OffsetDistribution((0.2, 0.2), (1, 1))
    with pytest.raises(ValueError, match="weights"):
        OffsetDistribution((0.2,), (-1,))
    with pytest.raises(ValueError, match="reflect"):
        TemporalPositive(ends="wrap")


def test_track_ends_reflect_the_sign():
    table = timed_table([3.0])
    sampler = ViewSampler(table, seed=0)
    first, last = 0, len(table) - 1
    for e in range(5):
        plan = sampler.plan(e)
        dt = offsets_of(table, plan, "positive")[:, 0]
        assert np.all(dt[plan["anchor"] == first] > 0)
        assert np.all(dt[plan["anchor"] == last] < 0)
        near_start = table.timestamp[plan["anchor"]] < 0.2 - 1e-9    # closer to the start than the smallest offset
        assert np.all(dt[near_start] > 0)


def test_clip_ends_keep_offsets_in_range_and_use_every_frame():
    table = timed_table([1.6])
    reflect = ViewSampler(table, seed=0)
    clip = ViewSampler(table, TemporalPositive(ends="clip"), seed=0)
    # reflect: anchors need 1 s of track on one side: t <= 0.6 or t >= 1.0 -> 16 + 16 of the 41 frames
    assert reflect.num_anchors == 32
    assert reflect.stats.anchors.counts["less than 1 s of track on either side"] == 41 - 32
    assert clip.num_anchors == len(table)
    dt = offsets_of(table, clip.plan(0), "positive")[:, 0]
    assert np.all(np.abs(dt) <= 1.0 + 1e-9) and np.all(dt != 0)


def test_zero_offset_and_same_frame_give_the_anchor_itself():
    table = timed_table([2.0, 2.0])
    for rule in (SameFrame(), TemporalPositive(OffsetDistribution.zero())):
        plan = ViewSampler(table, rule, seed=0).plan(0)
        np.testing.assert_array_equal(plan["positive"][:, 0], plan["anchor"])


# ---------------------------------------------------------------------------------------------- hard negatives
def test_hard_negatives_are_far_distinct_and_from_the_same_track():
    table = timed_table([10.0, 7.0, 12.0])
    sampler = ViewSampler(table, hard_negatives=3, negative_min_offset=3.0, seed=1)
    plan = sampler.plan(0)
    neg = plan["hard_negatives"]
    dt = offsets_of(table, plan, "hard_negatives")
    assert neg.shape == (sampler.num_anchors, 3)
    assert np.all(np.abs(dt) >= 3.0 - 1e-6)
    assert np.all(table.track[neg] == table.track[plan["anchor"]][:, None])
    assert np.all(np.sort(neg, axis=1)[:, 1:] != np.sort(neg, axis=1)[:, :-1])
    assert np.any(dt > 0) and np.any(dt < 0)
    # every candidate of an anchor gets drawn eventually (uniform over the whole candidate set)
    anchor = int(np.flatnonzero(table.track == 0)[125])                     # t = 5 s in the 10 s track
    seen = set()
    for e in range(200):
        p = sampler.plan(e)
        seen.update(p["hard_negatives"][p["anchor"] == anchor].ravel().tolist())
    candidates = {i for i in np.flatnonzero(table.track == 0) if abs(table.timestamp[i] - 5.0) >= 3.0 - 1e-9}
    assert seen == candidates


def test_hard_negative_window_and_identity_scope():
    table = timed_table([10.0, 10.0, 10.0], identities=["a", "a", "b"])
    bounded = ViewSampler(table, hard_negatives=2, negative_min_offset=3.0, negative_max_offset=4.0, seed=0)
    dt = np.abs(offsets_of(table, bounded.plan(0), "hard_negatives"))
    assert np.all((dt >= 3.0 - 1e-6) & (dt <= 4.0 + 1e-6))
    by_identity = ViewSampler(table, hard_negatives=4, negatives_from="identity", seed=0)
    plan = by_identity.plan(0)
    neg, anchor = plan["hard_negatives"], plan["anchor"]
    assert np.all(table.identity[neg] == table.identity[anchor][:, None])
    same_track = table.track[neg] == table.track[anchor][:, None]
    assert np.all(np.abs(offsets_of(table, plan, "hard_negatives"))[same_track] >= 3.0 - 1e-6)
    a_rows = table.identity[anchor] == table.identity_names.index("a")
    assert np.any(~same_track[a_rows])                                      # other tracks of the same person
    assert np.all(same_track[~a_rows])                                      # "b" has a single track


# ---------------------------------------------------------------------------------------------- skips and counts
def test_short_tracks_are_skipped_and_counted_exactly():
    table = timed_table([0.5, 2.0, 5.0, 8.0])
    sampler = ViewSampler(table, hard_negatives=1, negative_min_offset=3.0)
    tracks = sampler.stats.tracks
    assert tracks.read == 2
    assert dict(tracks.counts) == {"shorter than the largest positive offset (1 s)": 1,
                                   "too short for 1 hard negatives >= 3 s away": 1}
    # 5 s track: frames with 2 < t < 3 have nothing 3 s away (24 frames); the 8 s track loses none
    assert dict(sampler.stats.anchors.counts) == {"fewer than 1 frames of its track >= 3 s away": 24}
    assert sampler.num_anchors == (126 - 24) + 201
    plan = sampler.plan(0)
    assert set(table.track[plan["anchor"]].tolist()) == {2, 3}
    assert len(plan["anchor"]) == len(set(plan["anchor"].tolist())) == sampler.num_anchors
    # without hard negatives the 2 s track is used
    assert ViewSampler(table).stats.tracks.read == 3
    with pytest.raises(ValueError, match="no frame can anchor"):
        ViewSampler(timed_table([0.5]))


def test_table_skips_rows_without_time_and_duplicates():
    ts = [0.0, 0.1, float("nan"), 0.1, 0.3]
    table = TrackTable(ts, ["a"] * 5, pixels=np.zeros((5, 2, 2, 3), np.uint8))
    assert len(table) == 3
    assert dict(table.skips.counts) == {NO_TIMESTAMP: 1, DUPLICATE_TIMESTAMP: 1}
    records = [FaceRecord(image_path="x.jpg", video="v", timestamp=0.0),
               FaceRecord(image_path="y.jpg", timestamp=0.0)]
    table = TrackTable.from_records(records)
    assert len(table) == 1 and dict(table.skips.counts) == {NO_VIDEO: 1}
    with pytest.raises(ValueError, match="mixes identities"):
        TrackTable([0.0, 1.0], ["a", "a"], identity=["p", "q"], pixels=np.zeros((2, 2, 2, 3), np.uint8))


def test_anchors_per_track_caps_each_epoch():
    table = timed_table([4.0, 6.0])
    sampler = ViewSampler(table, anchors_per_track=10, seed=0)
    assert sampler.num_anchors == 20
    assert sampler.stats.anchors.counts[ANCHORS_PER_TRACK_REASON] == len(table) - 20
    p0, p1 = sampler.plan(0), sampler.plan(1)
    assert np.all(np.bincount(table.track[p0["anchor"]]) == 10)
    assert set(p0["anchor"].tolist()) != set(p1["anchor"].tolist())


# ---------------------------------------------------------------------------------------------- cross-track, others
def test_cross_track_positives_are_other_people_nearby():
    table = timed_table([4.0, 4.0, 4.0, 4.0], identities=["a", "b", "c", "d"], videos=["v", "v", "v", "w"])
    sampler = ViewSampler(table, CrossTrackPositive(max_offset=0.2), num_positives=3, hard_negatives=1,
                          negative_min_offset=1.2, seed=0)
    assert dict(sampler.stats.tracks.counts) == {"no other track of its video within 0.2 s": 1}
    plan = sampler.plan(0)
    pos, anchor = plan["positive"], plan["anchor"]
    assert np.all(table.video[pos] == table.video[anchor][:, None])
    assert np.all(table.track[pos] != table.track[anchor][:, None])
    assert np.all(np.abs(offsets_of(table, plan, "positive")) <= 0.2 + 1e-6)
    assert np.all(np.sort(pos, 1)[:, 1:] != np.sort(pos, 1)[:, :-1])       # distinct
    # uniform over the candidate set (Eq. 7): 2 other tracks x 11 frames for an anchor in the middle
    anchor_row = int(np.flatnonzero(table.track == 0)[50])
    counts = {}
    for e in range(150):
        p = sampler.plan(e)
        for r in p["positive"][p["anchor"] == anchor_row].ravel():
            counts[int(r)] = counts.get(int(r), 0) + 1
    assert len(counts) == 22
    assert scipy_stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_others_come_from_other_identities():
    table = timed_table([3.0, 3.0, 3.0], identities=["a", "a", "b"])
    plan = ViewSampler(table, num_others=2, seed=0).plan(0)
    assert np.all(table.identity[plan["others"]] != table.identity[plan["anchor"]][:, None])
    with pytest.raises(ValueError, match="two identities"):
        ViewSampler(timed_table([3.0, 3.0], identities=["a", "a"]), num_others=1)


def test_choose_ranks_is_uniform_over_subsets():
    rng = np.random.default_rng(0)
    ranks = choose_ranks(rng, np.full(30000, 5), 2, replace=False)
    assert np.all(ranks[:, 0] != ranks[:, 1]) and ranks.min() == 0 and ranks.max() == 4
    pairs = [tuple(sorted(r)) for r in ranks.tolist()]
    counts = [pairs.count(c) for c in itertools.combinations(range(5), 2)]
    assert scipy_stats.chisquare(counts).pvalue > 1e-3
    rows = draw_from_ranges(rng, np.array([[10, 50]]), np.array([[2, 3]]), 5, replace=False)
    assert sorted(rows[0].tolist()) == [10, 11, 50, 51, 52]


# ---------------------------------------------------------------------------------------------- epochs and seeds
def test_plans_are_fresh_every_epoch_and_reproducible():
    table = timed_table([6.0, 6.0])
    a, b = ViewSampler(table, hard_negatives=2, seed=5), ViewSampler(table, hard_negatives=2, seed=5)
    for key in ("anchor", "positive", "hard_negatives"):
        np.testing.assert_array_equal(a.plan(0)[key], b.plan(0)[key])
    assert not np.array_equal(a.plan(0)["anchor"], a.plan(1)["anchor"])
    pairs = lambda p: set(zip(p["anchor"].tolist(), p["positive"][:, 0].tolist()))   # noqa: E731
    assert pairs(a.plan(0)) != pairs(a.plan(1))
    assert not np.array_equal(ViewSampler(table, seed=6).plan(0)["anchor"], a.plan(0)["anchor"])


def _pass(ds):
    return [(int(i), float(o)) for b in ds for i, o in zip(b["index"].numpy(), b["positive_offset"].numpy())]


def test_dataset_passes_differ_and_same_seed_repeats_the_first():
    table = timed_table([3.0, 3.0], size=8)
    ds = ViewSampler(table, seed=7).dataset(8, image_size=8)
    first, second = _pass(ds), _pass(ds)
    again = _pass(ViewSampler(table, seed=7).dataset(8, image_size=8))
    assert first == again
    assert first != second
    assert sorted(i for i, _ in first) == sorted(i for i, _ in second)       # every anchor once per epoch
    # the endless stream is the sequence of plans by epoch index
    sampler = ViewSampler(table, seed=7)
    n = sampler.num_anchors
    stream = sampler.elements(image_size=8, epochs=None, first_epoch=2).take(2 * n)
    rows = [int(e["index"]) for e in stream]
    np.testing.assert_array_equal(rows[:n], sampler.plan(2)["anchor"])
    np.testing.assert_array_equal(rows[n:], sampler.plan(3)["anchor"])


# ---------------------------------------------------------------------------------------------- tf.data sources
def test_in_memory_synthetic_videos_end_to_end():
    table = synthetic_video_tracks(num_identities=2, videos_per_identity=1, seconds=5.0, fps=10.0, size=32)
    assert table.num_tracks == 2 and table.has_landmarks and table.has_labels
    sampler = ViewSampler(table, hard_negatives=2, num_others=1, seed=0)
    ds = sampler.dataset(6, image_size=32)
    batch = next(iter(ds))
    assert batch["anchor"].shape == (6, 32, 32, 3) and batch["anchor"].dtype == tf.float32
    assert batch["hard_negatives"].shape == (6, 2, 32, 32, 3) and batch["others"].shape == (6, 1, 32, 32, 3)
    for key in ("anchor", "positive", "hard_negatives", "others"):
        x = batch[key].numpy()
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0.05
    rows = batch["index"].numpy()
    np.testing.assert_array_equal(batch["expression"].numpy(), table.expression[rows])
    np.testing.assert_allclose(batch["va"].numpy()[:, 0], table.valence[rows])
    np.testing.assert_array_equal(batch["identity"].numpy(), table.identity[rows])
    np.testing.assert_allclose(batch["anchor"].numpy(), table.pixels[table.pixel_index[rows]] / 255.0, atol=1e-6)
    np.testing.assert_allclose(batch["anchor_landmarks"].numpy(), table.landmarks[rows])
    assert np.all(np.abs(batch["hard_negatives_offset"].numpy()) >= 3.0 - 1e-5)
    assert np.all(batch["others_identity"].numpy() != batch["identity"].numpy()[:, None])
    # a different output size goes through crop-and-resize, landmarks follow
    small = next(iter(sampler.dataset(4, image_size=16)))
    assert small["anchor"].shape == (4, 16, 16, 3)
    lm = small["anchor_landmarks"].numpy()
    np.testing.assert_allclose(lm, (table.landmarks[small["index"].numpy()] + 0.5) * 0.5 - 0.5, atol=1e-4)


def test_mashup_views_are_cut_by_face_box():
    table = mashup_tracks(num_videos=1, num_people=2, seconds=1.0, fps=10.0, frame_size=(120, 240), seed=0)
    assert table.num_tracks == 2 and len(table.video_names) == 1
    sampler = ViewSampler(table, CrossTrackPositive(0.1), seed=0)
    batch = next(iter(sampler.dataset(4, image_size=24)))
    assert batch["anchor"].shape == (4, 24, 24, 3)
    lm = batch["anchor_landmarks"].numpy()
    assert np.all((lm > 0) & (lm < 24))                                     # the face fills the crop
    assert np.all(batch["positive_track"].numpy() != batch["track"].numpy())


def test_voxceleb1_layout_folder(tmp_path):
    root = tmp_path / "voxceleb1"
    written = write_voxceleb1(root, num=60, frames_per_clip=20, clips_per_identity=1, fps=25.0, frame_step=6,
                              bad_rows=1, size=32)
    reader = VoxCeleb1Reader(root)
    table = TrackTable.from_reader(reader)
    assert len(table) == written["splits"]["train"]["records"] == 60
    assert reader.skips.counts == {"corrupt image": 1}
    assert table.num_tracks == 3 and not table.in_memory and not table.has_labels
    np.testing.assert_allclose(np.diff(table.timestamp[table.track == 0]), 0.24, atol=1e-9)
    sampler = ViewSampler(table, OffsetDistribution.authors_voxceleb1(), hard_negatives=1, seed=0)
    dts = np.abs(offsets_of(table, sampler.plan(0), "positive"))
    assert np.all(np.isin(np.round(dts, 2), [0.48, 0.72, 0.96, 1.2, 1.44]))
    decode = PipelineStats("views")
    batches = list(sampler.dataset(8, image_size=24, stats=decode))
    assert len(batches) == sampler.num_anchors // 8
    batch = batches[0]
    assert batch["anchor"].shape == (8, 24, 24, 3) and batch["hard_negatives"].shape == (8, 1, 24, 24, 3)
    assert "expression" not in batch and np.all(batch["identity"].numpy() >= 0)
    assert np.all(np.isnan(batch["anchor_landmarks"].numpy()))
    assert decode.dropped == 0 and int(decode.decoded.numpy()) == sampler.num_anchors
    # a file that breaks after reading drops its elements, counted
    broken = table.image_path[int(sampler.plan(0)["anchor"][0])]
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8\xff not a jpeg")
    decode = PipelineStats("views")
    n = sum(int(b["anchor"].shape[0]) for b in sampler.dataset(1, image_size=24, stats=decode))
    assert decode.dropped >= 1 and n == sampler.num_anchors - decode.dropped
