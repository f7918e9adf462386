"""Dataset readers against synthetic copies of each dataset written in its real on-disk format."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkeras.data.readers import READERS, assign_folds, check_image_file, make_reader, vote_label
from ferkeras.data.readers.afew_va import AfewVaReader
from ferkeras.data.readers.voxceleb1 import VoxCeleb1Reader
from ferkeras.data.schema import MISSING_INT
from ferkeras.data.synthetic.formats import BAD_ROW_KINDS, WRITERS, write_fer2013, write_raf_db

REPO = Path(__file__).resolve().parents[2]
NUM = 24
BAD_EACH = 2
WRITER_OPTIONS = {"afew_va": {"frames_per_clip": 3}}  # 8 clips of 4 actors, enough for subject-wise folds
READER_OPTIONS = {"aff_wild2": {"task": "both"}}  # the writers' truth holds every label they wrote


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every dataset written once: NUM good training records + BAD_EACH bad rows of every kind it can hold."""
    base = tmp_path_factory.mktemp("synthetic")
    out = {}
    for name, writer in WRITERS.items():
        bad = {kind: BAD_EACH for kind in BAD_ROW_KINDS[name]}
        out[name] = writer(base / name, num=NUM, seed=3, bad_rows=bad, **WRITER_OPTIONS.get(name, {}))
    return out


def _assert_record_matches(record, truth, root: Path, name: str):
    if truth["image"] is None:
        decoded = cv2.imdecode(np.frombuffer(record.image_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(decoded, truth["pixels"])
    else:
        assert record.image_path == str(root / truth["image"])
    assert record.expression == truth["expression"]
    for field in ("valence", "arousal", "timestamp"):
        np.testing.assert_allclose(getattr(record, field), truth[field], rtol=0, atol=1e-6, err_msg=field)
    np.testing.assert_allclose(record.box, truth["box"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(record.landmarks, truth["landmarks"], rtol=0, atol=1e-4)
    assert (record.identity, record.video, record.frame) == (truth["identity"], truth["video"], truth["frame"])
    assert record.dataset == name


CASES = [(name, split) for name, splits in {
    "affectnet": ("train", "val"), "afew_va": ("train",), "aff_wild2": ("train", "val"),
    "aff_wild": ("train", "test"), "raf_db": ("train", "test"), "fer2013": ("train", "val", "test"),
    "ferplus": ("train", "val", "test"), "voxceleb1": ("train",)}.items() for split in splits]


def test_every_reader_has_a_writer_and_a_case():
    assert set(READERS) == set(WRITERS) == {name for name, _ in CASES}


@pytest.mark.parametrize("name,split", CASES)
def test_round_trip(written, name, split):
    expected = written[name]["splits"][split]
    root = Path(written[name]["root"])
    reader = make_reader(name, root, split=split, **READER_OPTIONS.get(name, {}))
    records = reader.records()
    assert dict(reader.skips.counts) == expected["skips"]
    assert reader.skips.read == len(records) == expected["records"]
    if split == "train":  # bad rows of every kind the dataset can hold were injected and skipped
        assert expected["skips"] == {kind: BAD_EACH for kind in BAD_ROW_KINDS[name]}
        assert expected["records"] == NUM
    for record, truth in zip(records, expected["truth"], strict=True):
        _assert_record_matches(record, truth, root, name)
    if reader.classes:
        assert all(0 <= r.expression < len(reader.classes) for r in records)
    assert all(r.has_va for r in records) == (name in ("affectnet", "afew_va", "aff_wild2", "aff_wild"))


@pytest.mark.parametrize("name", sorted(READERS))
def test_missing_root_is_one_clear_error(tmp_path, name):
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(FileNotFoundError) as info:
        make_reader(name, missing)
    message = str(info.value)
    assert str(missing) in message and READERS[name].layout in message


def test_missing_annotation_file_is_named(tmp_path):
    (tmp_path / "Manually_Annotated_Images").mkdir()
    with pytest.raises(FileNotFoundError, match="training.csv"):
        make_reader("affectnet", tmp_path)


def test_unknown_reader_and_split():
    with pytest.raises(ValueError, match="affectnet"):
        make_reader("affectnot", "input")
    with pytest.raises(ValueError, match="split"):
        make_reader("affectnet", REPO, split="holdout")
    with pytest.raises(ValueError, match="num_classes"):  # the message lists the reader's real options
        make_reader("affectnet", REPO, num_class=7)


def test_iterating_twice_counts_afresh(written):
    reader = make_reader("raf_db", written["raf_db"]["root"])
    first = (len(reader.records()), dict(reader.skips.counts))
    assert (len(reader.records()), dict(reader.skips.counts)) == first


# ---------------------------------------------------------------------------------------- AffectNet
def test_affectnet_seven_classes_and_va_only_rows(written):
    root, train = written["affectnet"]["root"], written["affectnet"]["splits"]["train"]
    contempt = sum(t["expression"] == 7 for t in train["truth"])
    assert contempt > 0
    seven = make_reader("affectnet", root, num_classes=7)
    records = seven.records()
    assert seven.classes == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    assert len(records) == NUM - contempt and seven.skips.counts["excluded class"] == contempt
    assert all(r.expression < 7 for r in records)

    keep = make_reader("affectnet", root, keep_va_only=True)
    records = keep.records()
    va_only = [r for r in records if r.expression == MISSING_INT]
    assert train["va_only_rows"] > 0 and len(va_only) == train["va_only_rows"]
    assert all(r.has_va for r in va_only)
    assert keep.skips.counts["invalid label"] == BAD_EACH - train["va_only_rows"]


# ---------------------------------------------------------------------------------------- AFEW-VA
def test_afew_va_folds_are_subject_disjoint_and_cover_all_clips(written):
    root = written["afew_va"]["root"]
    everything = make_reader("afew_va", root).records()
    all_clips = {r.video for r in everything}
    num_folds = 3
    test_clips = []
    for fold in range(num_folds):
        train = make_reader("afew_va", root, split="train", fold=fold, num_folds=num_folds).records()
        test = make_reader("afew_va", root, split="test", fold=fold, num_folds=num_folds).records()
        assert train and test
        assert not {r.identity for r in train} & {r.identity for r in test}
        assert len(train) + len(test) == len(everything)
        test_clips.append({r.video for r in test})
    assert set().union(*test_clips) == all_clips
    assert sum(len(c) for c in test_clips) == len(all_clips)  # each clip is tested exactly once
    assert {clip: k for k, clips in enumerate(test_clips) for clip in clips} == \
        AfewVaReader(root, num_folds=num_folds).folds()


def test_assign_folds_balances_groups_and_checks_count():
    groups = {f"{c:03d}": f"actor{c // 2}" for c in range(12)}  # 6 actors x 2 clips
    folds = assign_folds(groups, 3)
    assert sorted(np.bincount(list(folds.values()))) == [4, 4, 4]
    assert all(folds[f"{2 * a:03d}"] == folds[f"{2 * a + 1:03d}"] for a in range(6))
    with pytest.raises(ValueError, match="subjects"):
        assign_folds(groups, 7)
    with pytest.raises(ValueError, match="fold"):
        make_reader("afew_va", REPO / "tests", split="test")


# ---------------------------------------------------------------------------------------- Aff-Wild2
def _affwild2_video(root: Path, va_lines, expr_lines, frames_with_image):
    """One video '7-x'; frame i's image is a flat grey of value 10 * i (1-based i)."""
    for task, lines, header in (("VA_Estimation_Challenge", va_lines, "valence,arousal"),
                                ("EXPR_Classification_Challenge", expr_lines,
                                 "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other")):
        if lines is not None:
            folder = root / "annotations" / task / "Train_Set"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "7-x.txt").write_text("\n".join([header] + lines) + "\n")
    (root / "cropped_aligned" / "7-x").mkdir(parents=True)
    for i in frames_with_image:
        cv2.imwrite(str(root / "cropped_aligned" / "7-x" / f"{i:05d}.jpg"), np.full((16, 16), 10 * i, np.uint8))


def test_aff_wild2_frame_index_follows_line_number(tmp_path):
    va = ["0.1,0.2", "-5,-5", "0.3,0.4", "0.5,0.6", "0.7,0.8", "nan,0.1"]
    _affwild2_video(tmp_path, va, None, frames_with_image=[1, 2, 4, 5, 6])  # frame 3: face not detected
    reader = make_reader("aff_wild2", tmp_path, task="va")
    records = reader.records()
    assert [r.frame for r in records] == [0, 3, 4]
    assert dict(reader.skips.counts) == {"invalid label": 1, "missing image": 1, "nan value": 1}
    for r in records:
        line = va[r.frame].split(",")
        assert (r.valence, r.arousal) == (float(line[0]), float(line[1]))
        assert Path(r.image_path).name == f"{r.frame + 1:05d}.jpg"
        grey = cv2.imread(r.image_path, cv2.IMREAD_GRAYSCALE)
        assert abs(int(grey.mean()) - 10 * (r.frame + 1)) <= 2


def test_aff_wild2_tasks_join_per_frame(tmp_path):
    va = ["0.1,0.2", "0.3,0.4", "-5,-5", "-5,-5"]
    expr = ["-1", "4", "7", "-1", "2"]
    _affwild2_video(tmp_path, va, expr, frames_with_image=range(1, 6))
    both = make_reader("aff_wild2", tmp_path, task="both").records()
    assert [(r.frame, r.expression, r.has_va) for r in both] == [
        (0, MISSING_INT, True), (1, 4, True), (2, 7, False), (4, 2, False)]
    assert [r.frame for r in make_reader("aff_wild2", tmp_path, task="va").records()] == [0, 1]
    assert [r.frame for r in make_reader("aff_wild2", tmp_path, task="expr").records()] == [1, 2, 4]
    with pytest.raises(ValueError, match="task"):
        make_reader("aff_wild2", tmp_path, task="au")


# ---------------------------------------------------------------------------------------- FERPlus
@pytest.mark.parametrize("votes,mode,expected", [
    ([5, 1, 1, 1, 1, 1, 0, 0, 0, 0], "majority", (0, None)),   # single votes are outliers: 5 of 5 kept
    ([4, 3, 3, 0, 0, 0, 0, 0, 0, 0], "majority", (None, "no majority")),
    ([4, 3, 3, 0, 0, 0, 0, 0, 0, 0], "plurality", (0, None)),
    ([0, 4, 4, 2, 0, 0, 0, 0, 0, 0], "majority", (None, "no majority")),
    ([0, 4, 4, 2, 0, 0, 0, 0, 0, 0], "plurality", (None, "tied votes")),
    ([0, 0, 0, 0, 0, 0, 0, 6, 4, 0], "majority", (7, None)),   # contempt is a class
    ([2, 0, 0, 0, 0, 0, 0, 0, 8, 0], "majority", (None, "unknown or non-face")),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "plurality", (None, "unknown or non-face")),
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "majority", (None, "no majority")),
])
def test_ferplus_vote_rules(votes, mode, expected):
    assert vote_label(votes, mode) == expected


def test_ferplus_plurality_mode_and_alignment_check(written, tmp_path):
    root = Path(written["ferplus"]["root"])
    reader = make_reader("ferplus", root, mode="plurality")
    records = reader.records()
    expected = dict(written["ferplus"]["splits"]["train"]["skips"])
    expected["tied votes"] = expected.pop("no majority")
    assert len(records) == NUM and dict(reader.skips.counts) == expected

    (tmp_path / "fer2013new.csv").write_text((root / "fer2013new.csv").read_text())
    pixels = (root / "fer2013.csv").read_text().splitlines()
    (tmp_path / "fer2013.csv").write_text("\n".join(pixels[:-1]) + "\n")  # one row short
    with pytest.raises(ValueError, match="row-aligned"):
        make_reader("ferplus", tmp_path, split="test").records()


# ---------------------------------------------------------------------------------------- VoxCeleb1
def test_voxceleb1_tracks_are_timed_and_ordered(written):
    root = written["voxceleb1"]["root"]
    reader = VoxCeleb1Reader(root, fps=30.0)
    tracks = reader.tracks()
    assert sum(len(t) for t in tracks.values()) == NUM and reader.skips.counts["corrupt image"] == BAD_EACH
    for video, track in tracks.items():
        identity, ytid, clip = video.split("/")
        assert len(ytid) == 11
        frames = [r.frame for r in track]
        assert frames == sorted(frames) and all(r.identity == identity and r.video == video for r in track)
        np.testing.assert_allclose([r.timestamp for r in track], np.array(frames) / 30.0)
        assert np.all(np.diff(frames) % 6 == 0)


# ---------------------------------------------------------------------------------------- image checks
def test_full_verification_catches_truncated_images(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    for ext in (".jpg", ".png"):
        good, cut = tmp_path / f"good{ext}", tmp_path / f"cut{ext}"
        cv2.imwrite(str(good), image)
        data = good.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        assert check_image_file(good, "full") is None and check_image_file(cut, "header") is None
        assert check_image_file(cut, "full") == "corrupt image"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert check_image_file(tmp_path / "empty.jpg") == "corrupt image"
    assert check_image_file(tmp_path / "absent.jpg") == "missing image"
    assert check_image_file(tmp_path / "absent.jpg", "none") is None

    out = write_raf_db(tmp_path / "raf", num=6, seed=1)
    victim = tmp_path / "raf" / out["splits"]["train"]["truth"][2]["image"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    assert len(make_reader("raf_db", tmp_path / "raf").records()) == 6
    full = make_reader("raf_db", tmp_path / "raf", verify="full")
    assert len(full.records()) == 5 and dict(full.skips.counts) == {"corrupt image": 1}


def test_writer_rejects_bad_rows_it_cannot_hold_and_used_folders(tmp_path):
    with pytest.raises(ValueError, match="corrupt image"):
        write_fer2013(tmp_path / "a", num=2, bad_rows={"missing image": 1})
    write_fer2013(tmp_path / "b", num=2)
    with pytest.raises(FileExistsError, match="not empty"):
        write_fer2013(tmp_path / "b", num=2)


@pytest.mark.slow
def test_make_synthetic_tool(tmp_path):
    subprocess.run([sys.executable, str(REPO / "tools" / "make_synthetic.py"), "--dataset=raf_db",
                    f"--out={tmp_path}", "--num=5", "--bad_rows=missing image=1,invalid label=2"],
                   check=True, capture_output=True, cwd=REPO)
    counts = json.loads((tmp_path / "raf_db" / "expected_counts.json").read_text())
    reader = make_reader("raf_db", tmp_path / "raf_db")
    assert len(reader.records()) == counts["train"]["records"] == 5
    assert dict(reader.skips.counts) == counts["train"]["skips"] == {"missing image": 1, "invalid label": 2}
