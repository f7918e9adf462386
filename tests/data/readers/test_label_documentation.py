"""Each reader's class list and label mapping against the dataset's published label documentation, on
hand-written annotation files (see handwritten.py): a swap of two class names, an off-by-one label or valence
read as arousal fails here.  Valence and arousal always differ in these fixtures."""

import pytest

from ferkeras.data.readers import make_reader
from ferkeras.data.schema import MISSING_INT
from tests.data.readers import handwritten as hw


def _name(reader, record):
    return reader.classes[record.expression]


def test_affectnet_labels_follow_the_published_codes(tmp_path):
    # AffectNet (Mollahosseini et al., 2017): 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust,
    # 6 Anger, 7 Contempt, 8 None, 9 Uncertain, 10 No-Face; valence then arousal columns.
    hw.affectnet(tmp_path, "1/a.jpg,1,2,10,12,,3,0.25,-0.5\n"
                           "1/b.jpg,0,0,8,8,,7,-0.75,0.125\n"
                           "2/c.jpg,0,0,8,8,,1,0.5,0.0\n")
    reader = make_reader("affectnet", tmp_path)
    records = reader.records()
    assert reader.classes == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
    assert [(r.expression, _name(reader, r)) for r in records] == [(3, "surprise"), (7, "contempt"), (1, "happy")]
    assert (records[0].valence, records[0].arousal) == (0.25, -0.5)
    assert (records[1].valence, records[1].arousal) == (-0.75, 0.125)
    assert tuple(records[0].box) == (1, 2, 11, 14)  # face_x, face_y, face_x + face_width, face_y + face_height
    seven = make_reader("affectnet", tmp_path, num_classes=7)
    assert seven.classes == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    assert [r.expression for r in seven.records()] == [3, 1] and seven.skips.counts == {"excluded class": 1}


def test_raf_db_labels_follow_the_published_codes(tmp_path):
    # RAF-DB basic (Li, Deng & Du, 2017): 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral.
    hw.raf_db(tmp_path, "train_00001.jpg 4\ntrain_00002.jpg 7\ntrain_00003.jpg 2\ntest_0001.jpg 1\n")
    reader = make_reader("raf_db", tmp_path)
    records = reader.records()
    assert reader.classes == ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    assert [_name(reader, r) for r in records] == ["happiness", "neutral", "fear"]
    assert records[0].image_path.endswith("train_00001_aligned.jpg")
    test = make_reader("raf_db", tmp_path, split="test")
    assert [_name(test, r) for r in test.records()] == ["surprise"]


def test_fer2013_labels_follow_the_published_codes(tmp_path):
    # FER2013 (Goodfellow et al., 2013): 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
    P = hw.PIXELS
    hw.fer2013(tmp_path, f"emotion,pixels,Usage\n3,{P},Training\n1,{P},Training\n0,{P},PublicTest\n"
                         f"6,{P},PrivateTest\n")
    names = {}
    for split in ("train", "val", "test"):
        reader = make_reader("fer2013", tmp_path, split=split)
        assert reader.classes == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
        names[split] = [_name(reader, r) for r in reader.records()]
    assert names == {"train": ["happy", "disgust"], "val": ["angry"], "test": ["neutral"]}


def test_ferplus_labels_follow_the_published_column_order(tmp_path):
    # FERPlus (Barsoum et al., 2016) fer2013new.csv columns: neutral, happiness, surprise, sadness, anger, disgust,
    # fear, contempt, unknown, NF; the label index is the column's place among the eight emotions.
    P = hw.PIXELS
    hw.write(tmp_path / "fer2013new.csv",
             "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
             "Training,fer0000000.png,0,0,0,10,0,0,0,0,0,0\n"
             "Training,fer0000001.png,0,0,0,0,0,0,0,9,1,0\n"
             "Training,fer0000002.png,0,0,8,0,2,0,0,0,0,0\n"
             "Training,fer0000003.png,0,0,0,0,0,0,7,0,3,0\n"
             "Training,fer0000004.png,0,0,0,0,0,0,0,0,2,8\n")
    hw.fer2013(tmp_path, "emotion,pixels,Usage\n" + "".join(f"0,{P},Training\n" for _ in range(5)))
    reader = make_reader("ferplus", tmp_path)
    records = reader.records()
    assert reader.classes == ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    assert [(r.expression, _name(reader, r)) for r in records] == [
        (3, "sadness"), (7, "contempt"), (2, "surprise"), (6, "fear")]
    assert reader.skips.counts == {"unknown or non-face": 1}


def test_aff_wild2_labels_follow_the_abaw_codes_and_va_columns(tmp_path):
    # ABAW (Kollias): EXPR 0 Neutral, 1 Anger, 2 Disgust, 3 Fear, 4 Happiness, 5 Sadness, 6 Surprise, 7 Other,
    # -1 unlabelled; VA lines "valence,arousal", -5 unlabelled.
    hw.aff_wild2(tmp_path, {"12-24-1920x1080": {
        "va": hw.VA_HEADER + "0.25,-0.5\n-5,-5\n0.1,0.9\n0.3,0.4\n",
        "expr": hw.EXPR_HEADER + "1\n6\n-1\n4\n"}})
    reader = make_reader("aff_wild2", tmp_path, task="both")
    records = reader.records()
    assert reader.classes == ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other")
    assert [r.frame for r in records] == [0, 1, 2, 3]
    assert [_name(reader, r) if r.expression != MISSING_INT else None for r in records] == [
        "anger", "surprise", None, "happiness"]
    assert (records[0].valence, records[0].arousal) == (0.25, -0.5)
    assert (records[2].valence, records[2].arousal) == (0.1, 0.9)
    assert not records[1].has_va
    expr = make_reader("aff_wild2", tmp_path, task="expr")
    assert [(r.frame, _name(expr, r)) for r in expr.records()] == [(0, "anger"), (1, "surprise"), (3, "happiness")]


def test_afew_va_valence_and_arousal_keys_and_scale(tmp_path):
    # AFEW-VA (Kossaifi et al., 2017): per-frame "valence" and "arousal" integers in -10..10.
    hw.afew_va_clip(tmp_path, "001", '{"actor": "a", "video_id": "v", "frames": {"00000": {"valence": 5, '
                    '"arousal": -3, "landmarks": ' + str([[i, 2 * i] for i in range(68)]) + "}}}")
    (record,) = make_reader("afew_va", tmp_path).records()
    assert (record.valence, record.arousal) == pytest.approx((0.5, -0.3))
    assert tuple(record.landmarks[5]) == (5, 10)  # [x, y] pairs


def test_aff_wild_valence_and_arousal_files(tmp_path):
    hw.aff_wild(tmp_path, "105", valence="0.25\n-0.5\n", arousal="-0.5\n0.75\n", frames=2)
    records = make_reader("aff_wild", tmp_path).records()
    assert [(r.frame, r.valence, r.arousal) for r in records] == [(0, 0.25, -0.5), (1, -0.5, 0.75)]
