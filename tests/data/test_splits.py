"""The dataset split policy of ferkeras.data.splits: held-out synthetic identities, evaluation splits, AFEW-VA folds."""

import numpy as np
import pytest

from ferkeras.data import splits
from ferkeras.data.readers import READERS
from ferkeras.data.schema import EXPRESSIONS
from ferkeras.data.synthetic import synthetic_arrays
from ferkeras.data.synthetic.formats import write_afew_va, write_raf_db


def _ids(ranges, split):
    first, count = ranges[split]
    return set(range(first, first + count))


@pytest.mark.parametrize("train_identities", [1, 10, 100])
def test_identity_ranges_are_disjoint_and_contiguous(train_identities):
    ranges = splits.synthetic_identity_ranges(train_identities)
    assert set(ranges) == set(splits.SPLITS)
    train, val, test = (_ids(ranges, s) for s in splits.SPLITS)
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(train_identities + splits.SYNTHETIC_VAL_IDENTITIES
                                           + splits.SYNTHETIC_TEST_IDENTITIES))
    assert len(train) == train_identities and min(train) == 0
    with pytest.raises(ValueError, match="train_identities must be >= 1, got 0"):
        splits.synthetic_identity_ranges(0)


def test_synthetic_train_val_test_identities_are_disjoint():
    """The faces each split actually draws belong to its own identities only."""
    drawn = {split: splits.synthetic_split_arrays(split, 120, train_identities=4, image_size=24, seed=5)
             for split in splits.SPLITS}
    identities = {split: set(a["identity"]) for split, a in drawn.items()}
    assert not (identities["train"] & identities["val"])
    assert not (identities["train"] & identities["test"])
    assert not (identities["val"] & identities["test"])
    ranges = splits.synthetic_identity_ranges(4)
    for split, found in identities.items():
        assert {int(i[2:]) for i in found} <= _ids(ranges, split), split
    assert len(identities["train"]) == 4 and len(identities["test"]) > 4  # draws spread over the pool
    with pytest.raises(ValueError, match="split must be one of"):
        splits.synthetic_split_arrays("holdout", 4, train_identities=4, image_size=24)


def test_synthetic_split_arrays_use_the_split_seed_and_are_remembered():
    a = splits.synthetic_split_arrays("val", 6, train_identities=3, image_size=24, seed=2)
    first, count = splits.synthetic_identity_ranges(3)["val"]
    expected = synthetic_arrays(6, size=24, seed=splits.synthetic_split_seeds(2)["val"], num_identities=count,
                                first_identity=first)
    assert splits.synthetic_split_seeds(2) == {"train": 2, "val": 3, "test": 4}
    for key in expected:
        np.testing.assert_array_equal(a[key], expected[key])
    assert splits.synthetic_split_arrays("val", 6, train_identities=3, image_size=24, seed=2) is a  # cached


def test_synthetic_data_pipelines():
    data = splits.synthetic_data(num_train=10, num_val=6, num_test=7, train_identities=3, image_size=24,
                                 batch_size=4, seed=1)
    assert isinstance(data, splits.DataSplits)
    assert data.classes == EXPRESSIONS and data.num_train == 10

    def collect(ds):
        images, va, expression = [], [], []
        for x, y in ds:
            images.append(x.numpy())
            va.append(y["va"].numpy())
            expression.append(y["expression"].numpy())
        return [len(b) for b in images], np.concatenate(images), np.concatenate(va), np.concatenate(expression)

    sizes, _, _, _ = collect(data.train)
    assert sizes == [4, 4]  # training shuffles and drops the partial batch
    for ds, split, n in ((data.val, "val", 6), (data.test, "test", 7)):
        sizes, images, va, expression = collect(ds)
        assert sizes == [4, n - 4]  # evaluation keeps every face, in order
        a = splits.synthetic_split_arrays(split, n, train_identities=3, image_size=24, seed=1)
        np.testing.assert_allclose(images, a["images"] / 255.0, atol=1e-6)
        np.testing.assert_array_equal(va, np.stack([a["valence"], a["arousal"]], 1))
        np.testing.assert_array_equal(expression, a["expression"])


def test_policy_tables_name_real_readers_and_splits():
    assert set(splits.EVAL_SPLITS) == set(splits.READER_NAMES)
    for dataset, reader_name in splits.READER_NAMES.items():
        assert reader_name in READERS, dataset
        assert splits.EVAL_SPLITS[dataset] in READERS[reader_name].split_names, dataset
        assert "train" in READERS[reader_name].split_names, dataset


def test_reader_options():
    assert splits.reader_options("afew_va", fold=3) == {"fold": 3}
    assert splits.reader_options("affwild2", task="expression") == {"task": "expr"}
    assert splits.reader_options("affwild2") == {"task": "both"}
    assert splits.reader_options("rafdb", fold=3, task="va") == {}
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        splits.reader_options("imagenet")
    with pytest.raises(ValueError, match="task must be one of"):
        splits.reader_options("affwild2", task="au")


def test_real_data_trains_on_train_and_evaluates_on_the_held_out_split(tmp_path):
    written = write_raf_db(tmp_path / "raf_db", num=6, seed=0, size=32, num_val=5)
    data = splits.real_data("rafdb", str(tmp_path / "raf_db"), image_size=24, batch_size=2, seed=0)
    assert data.val is data.test and data.num_train == written["splits"]["train"]["records"] == 6
    assert data.classes is not None and len(data.classes) == 7
    assert sum(int(x.shape[0]) for x, _ in data.train) == 6  # 3 full batches
    expression = np.concatenate([y["expression"].numpy() for _, y in data.test])
    assert expression.tolist() == [t["expression"] for t in written["splits"]["test"]["truth"]]
    # Records are read once per process.
    first = splits.read_split("raf_db", str(tmp_path / "raf_db"), "train")
    assert splits.read_split("raf_db", str(tmp_path / "raf_db"), "train") is first


def test_real_data_afew_va_holds_out_a_subject_disjoint_fold(tmp_path):
    write_afew_va(tmp_path / "afew_va", num=36, seed=1, size=32, frames_per_clip=3)  # 12 clips of 6 actors
    root = str(tmp_path / "afew_va")
    seen = set()
    for fold in (0, 1):
        train, _ = splits.read_split("afew_va", root, "train", **splits.reader_options("afew_va", fold=fold))
        test, _ = splits.read_split("afew_va", root, splits.EVAL_SPLITS["afew_va"],
                                    **splits.reader_options("afew_va", fold=fold))
        assert train and test
        assert not {r.identity for r in train} & {r.identity for r in test}
        assert len(train) + len(test) == 36
        seen.add(frozenset(r.video for r in test))
        data = splits.real_data("afew_va", root, image_size=24, batch_size=2, fold=fold)
        assert data.num_train == len(train)
    assert len(seen) == 2  # another fold holds out other clips


def test_worker_shard_files_split_the_training_files_by_file():
    files = [f"train/shard-{i:05d}-of-00005.tfrecord" for i in range(5)]
    first, second = (splits.worker_shard_files(files, 2, i, "train") for i in (0, 1))
    assert first == files[0::2] and second == files[1::2]  # every file read by exactly one worker
    assert sorted(first + second) == files
    with pytest.raises(ValueError, match=r"training shards 'input/shards/train': 1 shard file\(s\) for 2 workers.*"
                                         r"tools/prepare_dataset.py --shards=N, N >= 2"):
        splits.worker_shard_files(files[:1], 2, 1, "input/shards/train")
    with pytest.raises(ValueError, match="worker_index must be in"):
        splits.worker_shard_files(files, 2, 2)
