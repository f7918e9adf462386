"""A byte that is not UTF-8 in an annotation file skips (and counts, naming the first) only its row, line or
file; an empty CSV is an error that says so and names the file."""

import pytest

from ferkeras.data.readers import make_reader
from tests.data.readers import handwritten as hw

BAD = b"\xff"


def _read(name, root, **options):
    reader = make_reader(name, root, **options)
    return reader, reader.records()


def test_affectnet_row(tmp_path):
    hw.affectnet(tmp_path, b"1/a.jpg,1,2,10,12,,3,0.25,-0.5\n"
                           b"1/b.jpg,0,0,8,8,,1,0.5" + BAD + b",0.1\n"
                           b"2/c.jpg,0,0,8,8,,2,0.5,0.0\n")
    reader, records = _read("affectnet", tmp_path)
    assert [r.expression for r in records] == [3, 2]
    assert reader.skips.counts == {"corrupt annotation": 1}
    assert reader.skips.examples["corrupt annotation"] == "training.csv:3 (byte 0xff is not UTF-8)"


def test_affectnet_bad_byte_in_an_image_name_is_skipped_not_passed_on(tmp_path):
    hw.affectnet(tmp_path, b"1/a" + BAD + b".jpg,1,2,10,12,,3,0.25,-0.5\n2/c.jpg,0,0,8,8,,2,0.5,0.0\n")
    reader, records = _read("affectnet", tmp_path)
    assert len(records) == 1 and reader.skips.counts == {"corrupt annotation": 1}


def test_raf_db_line(tmp_path):
    hw.raf_db(tmp_path, b"train_00001.jpg 4\ntrain_00002.jpg " + BAD + b"\ntrain_00003.jpg 2\ntest_0001.jpg 1\n"
                        b"test_0002" + BAD + b".jpg 3\n")
    reader, records = _read("raf_db", tmp_path)
    assert [r.expression for r in records] == [3, 1]
    assert reader.skips.counts == {"corrupt annotation": 1}
    assert reader.skips.examples["corrupt annotation"].startswith("list_patition_label.txt:2 ")
    test, records = _read("raf_db", tmp_path, split="test")  # the test split counts its own bad line
    assert len(records) == 1 and test.skips.counts == {"corrupt annotation": 1}


def test_fer2013_row(tmp_path):
    P = hw.PIXELS.encode()
    hw.fer2013(tmp_path, b"emotion,pixels,Usage\n3," + P + b",Training\n4," + P[:-3] + BAD + b"28,Training\n"
                         b"5," + P + b",PublicTest\n")
    reader, records = _read("fer2013", tmp_path)
    assert [r.expression for r in records] == [3]
    assert reader.skips.counts == {"corrupt annotation": 1}
    assert reader.skips.examples["corrupt annotation"] == "fer2013.csv:3 (byte 0xff is not UTF-8)"
    val, records = _read("fer2013", tmp_path, split="val")
    assert len(records) == 1 and not val.skips.counts


def test_fer2013_row_whose_usage_is_unreadable_is_counted_by_every_split(tmp_path):
    P = hw.PIXELS
    hw.fer2013(tmp_path, f"emotion,pixels,Usage\n3,{P},Training\n4,{P},Trai\xffning\n5,{P},Holdout\n"
               .encode("latin-1"))
    for split in ("train", "val", "test"):
        reader, _ = _read("fer2013", tmp_path, split=split)
        assert reader.skips.counts == {"corrupt annotation": 1, "malformed row": 1}, split


def test_ferplus_row_of_either_file(tmp_path):
    P = hw.PIXELS.encode()
    hw.write(tmp_path / "fer2013new.csv",
             b"Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
             b"Training,fer0000000.png,0,0,0,10,0,0,0,0,0,0\n"
             b"Training,fer0000001.png,0,0,0," + BAD + b",0,0,0,0,0,0\n"
             b"Training,fer0000002.png,0,0,8,0,2,0,0,0,0,0\n")
    hw.fer2013(tmp_path, b"emotion,pixels,Usage\n0," + P + b",Training\n0," + P + b",Training\n"
                         b"0," + BAD + P + b",Training\n")
    reader, records = _read("ferplus", tmp_path)
    assert [r.expression for r in records] == [3]
    assert reader.skips.counts == {"corrupt annotation": 2}
    assert reader.skips.examples["corrupt annotation"] == "fer2013new.csv:3 (byte 0xff is not UTF-8)"


def test_aff_wild2_line(tmp_path):
    hw.aff_wild2(tmp_path, {"v1": {"va": hw.VA_HEADER.encode() + b"0.25,-0.5\n0.1," + BAD + b"\n0.3,0.4\n",
                                   "expr": hw.EXPR_HEADER.encode() + b"1\n2\n" + BAD + b"\n"}})
    reader, records = _read("aff_wild2", tmp_path, task="both")
    assert [r.frame for r in records] == [0]  # frame 2: VA line broken; frame 3: EXPR line broken
    assert reader.skips.counts == {"corrupt annotation": 2}
    assert reader.skips.examples["corrupt annotation"].endswith("VA_Estimation_Challenge/Train_Set/v1.txt:3")
    va, records = _read("aff_wild2", tmp_path, task="va")
    assert [r.frame for r in records] == [0, 2] and va.skips.counts == {"corrupt annotation": 1}


def test_aff_wild_line(tmp_path):
    hw.aff_wild(tmp_path, "105", valence=b"0.25\n-0" + BAD + b"\n0.5\n", arousal=b"-0.5\n0.75\n0.1\n")
    reader, records = _read("aff_wild", tmp_path)
    assert [r.frame for r in records] == [0, 2]
    assert reader.skips.counts == {"corrupt annotation": 1}
    assert reader.skips.examples["corrupt annotation"] == "105 line 2 (byte 0xff is not UTF-8)"


def test_afew_va_file(tmp_path):
    hw.afew_va_clip(tmp_path, "001", hw.afew_va_json("a", {"00000": (5, -3)}))
    broken = hw.afew_va_json("b", {"00000": (1, 2)}).encode().replace(b'"b"', b'"' + BAD + b'"')
    hw.afew_va_clip(tmp_path, "002", broken)
    reader, records = _read("afew_va", tmp_path)
    assert [r.video for r in records] == ["001"]
    assert reader.skips.counts == {"corrupt annotation": 1}
    assert reader.skips.examples["corrupt annotation"].endswith("002.json")


@pytest.mark.parametrize("name,write", [
    ("fer2013", lambda root: hw.fer2013(root, "")),
    ("affectnet", lambda root: hw.affectnet(root, "") and hw.write(
        root / "Manually_Annotated_file_lists" / "training.csv", "")),
    ("raf_db", lambda root: hw.raf_db(root, "\n")),
    ("ferplus", lambda root: hw.fer2013(root, "emotion,pixels,Usage\n") and hw.write(root / "fer2013new.csv", "")),
])
def test_empty_annotation_file_is_named(tmp_path, name, write):
    write(tmp_path)
    with pytest.raises(ValueError, match="is empty") as info:
        make_reader(name, tmp_path).records()
    assert str(tmp_path) in str(info.value)


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    hw.fer2013(tmp_path, "\ufeffemotion,pixels,Usage\n" f"3,{hw.PIXELS},Training\n")
    assert len(make_reader("fer2013", tmp_path).records()) == 1
