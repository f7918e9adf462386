"""Records that used to vanish or change without a count: each is now skipped and counted, naming the first."""

import logging

import numpy as np

from ferkeras.data import splits
from ferkeras.data.readers import make_reader
from tests.data.readers import handwritten as hw


def _afew_va(root):
    """Four readable clips of actors a, a, b, c and one clip (004) whose JSON is not JSON."""
    for clip, actor in (("001", "a"), ("002", "a"), ("003", "b"), ("005", "c")):
        hw.afew_va_clip(root, clip, hw.afew_va_json(actor, {"00000": (5, -3), "00001": (1, 2)}),
                        frames=("00000", "00001"))
    hw.afew_va_clip(root, "004", '{"actor": "d", "frames": {', frames=("00000",))
    return root


def test_afew_va_unreadable_clip_is_counted_by_both_sides_of_a_fold(tmp_path):
    root = _afew_va(tmp_path)
    seen = set()
    for split in ("train", "test"):
        reader = make_reader("afew_va", root, split=split, fold=0, num_folds=2)
        records = reader.records()
        assert reader.skips.counts == {"corrupt annotation": 1}, split
        assert reader.skips.examples["corrupt annotation"].endswith("004.json")
        seen |= {r.video for r in records}
    assert seen == {"001", "002", "003", "005"}


def _va_both(root, va_body, expr_body="1\n2\n3\n4\n"):
    return hw.aff_wild2(root, {"v1": {"va": hw.VA_HEADER + va_body, "expr": hw.EXPR_HEADER + expr_body}})


def test_aff_wild2_invalid_va_lines_skip_their_frame_in_task_both(tmp_path):
    _va_both(tmp_path, "abc,0.1\n7.0,0.1\n0.1,0.2,0.3\n0.5,-0.25\n")
    reader = make_reader("aff_wild2", tmp_path, task="both")
    records = reader.records()
    assert [(r.frame, r.expression, r.valence, r.arousal) for r in records] == [(3, 4, 0.5, -0.25)]
    assert reader.skips.counts == {"invalid label": 3}
    assert reader.skips.examples["invalid label"].endswith("VA_Estimation_Challenge/Train_Set/v1.txt:2")


def test_aff_wild2_sentinels_are_not_errors_and_invalid_expr_lines_are(tmp_path):
    _va_both(tmp_path, "-5,-5\n0.1,0.2\n-5,-5\n0.3,0.4\n", expr_body="1\n-1\n-1\n9\n")
    reader = make_reader("aff_wild2", tmp_path, task="both")
    records = reader.records()
    assert [(r.frame, r.expression, r.has_va) for r in records] == [(0, 1, False), (1, -1, True)]
    assert reader.skips.counts == {"invalid label": 2}  # frame 3 unlabelled in both, frame 4's EXPR is 9
    assert reader.skips.examples["invalid label"] == "v1 frame 3 (unlabelled)"


def test_aff_wild2_empty_va_file_is_counted(tmp_path):
    hw.aff_wild2(tmp_path, {"v1": {"va": "", "expr": hw.EXPR_HEADER + "1\n2\n"},
                            "v2": {"va": hw.VA_HEADER, "expr": hw.EXPR_HEADER + "3\n"},
                            "v3": {"va": hw.VA_HEADER + "0.1,0.2\n", "expr": hw.EXPR_HEADER + "4\n"}})
    va = make_reader("aff_wild2", tmp_path, task="va")
    assert [r.video for r in va.records()] == ["v3"]
    assert va.skips.counts == {"empty annotation": 2}
    assert va.skips.examples["empty annotation"].endswith("VA_Estimation_Challenge/Train_Set/v1.txt")
    both = make_reader("aff_wild2", tmp_path, task="both")  # the expression frames stay, without VA
    assert [(r.video, r.frame, r.has_va) for r in both.records()] == [
        ("v1", 0, False), ("v1", 1, False), ("v2", 0, False), ("v3", 0, True)]
    assert both.skips.counts == {"empty annotation": 2}


def test_blank_annotation_lines_keep_the_frame_alignment(tmp_path):
    hw.aff_wild2(tmp_path / "a2", {"v1": {"va": hw.VA_HEADER + "0.1,0.2\n\n0.3,0.4\n\n\n"}})
    reader = make_reader("aff_wild2", tmp_path / "a2", task="va")
    assert [(r.frame, r.valence) for r in reader.records()] == [(0, 0.1), (2, 0.3)]
    assert reader.skips.counts == {"invalid label": 1}
    hw.aff_wild(tmp_path / "a1", "105", valence="0.1\n\n0.3\n", arousal="0.2\n\n0.4\n")
    reader = make_reader("aff_wild", tmp_path / "a1")
    assert [(r.frame, r.valence, r.arousal) for r in reader.records()] == [(0, 0.1, 0.2), (2, 0.3, 0.4)]
    assert reader.skips.counts == {"invalid label": 1}


def test_aff_wild_empty_file_is_counted(tmp_path):
    hw.aff_wild(tmp_path, "105", valence="0.1\n", arousal="")
    reader = make_reader("aff_wild", tmp_path)
    assert reader.records() == [] and reader.skips.counts == {"empty annotation": 1, "invalid label": 1}


def test_voxceleb1_stray_file_is_skipped_and_the_clip_keeps_its_times(tmp_path):
    clip = tmp_path / "id10001" / "1zcIwhmdeo4" / "00001"
    for name in ("0000010.jpg", "0000016.jpg", "abc.jpg", "0000022.png"):
        hw.image(clip / name)
    hw.write(clip / "notes.txt", "not a frame")
    reader = make_reader("voxceleb1", tmp_path, fps=25.0)
    records = reader.records()
    assert [r.frame for r in records] == [10, 16, 22]
    np.testing.assert_allclose([r.timestamp for r in records], [0.4, 0.64, 0.88])
    assert reader.skips.counts == {"unnumbered frame": 1}
    assert reader.skips.examples["unnumbered frame"] == str(clip / "abc.jpg")


def test_raf_db_lines_of_no_split_and_bad_boxes_are_counted(tmp_path):
    hw.raf_db(tmp_path, "train_00001.jpg 4\nval_00002.jpg 7\ntrain_00002.jpg 1\ntrain_00003.jpg 2\n")
    for name in ("train_00001", "train_00002", "train_00003"):
        hw.image(tmp_path / "Image" / "original" / f"{name}.jpg")
    boxes = tmp_path / "Annotation" / "boundingbox"
    hw.write(boxes / "train_00001_boundingbox.txt", "1.0 2.0 30.0 40.0\n")
    hw.write(boxes / "train_00002_boundingbox.txt", "1.0 2.0\n")  # train_00003 has no box file
    reader = make_reader("raf_db", tmp_path, aligned=False)
    records = reader.records()
    assert [r.expression for r in records] == [3, 1]
    assert tuple(records[0].box) == (1, 2, 30, 40) and np.isnan(records[1].box).all()
    assert reader.skips.counts == {"malformed row": 1, "bad box": 1}
    assert reader.skips.examples["malformed row"] == "list_patition_label.txt:2 (no split prefix)"


def test_new_counts_reach_the_binaries_log(tmp_path, caplog):
    """The binaries read real datasets through splits.read_split, which logs the reader's skip summary."""
    _va_both(tmp_path, "abc,0.1\n0.5,-0.25\n", expr_body="1\n4\n")
    with caplog.at_level(logging.INFO, logger="ferkeras.data"):
        records, classes = splits.read_split("aff_wild2", str(tmp_path), "train", task="both")
    assert len(records) == 1 and classes[4] == "happiness"
    assert "aff_wild2: 1 records read, 1 skipped" in caplog.text
    assert "1 x invalid label (first: " in caplog.text and "v1.txt:2)" in caplog.text
