"""experiments/common.py: which process writes the run directory in a multi-worker run, the training stream the
binaries hand to ferkeras.training.fit for exact resumes, the flag checks and the terminal summary."""

import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/experiments/ -> repo
sys.path.insert(0, REPO)
from experiments import common  # noqa: E402


@pytest.mark.parametrize("config, chief", [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_only_the_chief_writes_the_run_directory(monkeypatch, tmp_path, config, chief):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert common.is_chief() is chief
    s = {"resume": None, "out_dir": str(tmp_path)}
    run_dir = common.run_directory(s, "probe")
    assert (os.path.dirname(run_dir.path) == str(tmp_path)) is chief


def _settings(**over):
    s = dict(dataset="synthetic", data_root=None, fold=0, image_size=32, batch_size=8, epochs=1, steps=None,
             augment="flip", num_train=32, num_val=8, num_test=8, train_identities=4, out_dir="runs", resume=None,
             backup_every=None, seed=3, strategy="default", mixed_precision=False, smoke=False, verbose=0)
    s.update(over)
    return s


def test_training_stream_restarts_exactly_at_any_step():
    """stream(k) is stream(0) without its first k batches, augmentation included: what an exact resume needs."""
    stream = common.training_stream(_settings(), lambda images, targets: (images, targets["va"]))
    full = [b for b in stream(0).take(7)]
    resumed = [b for b in stream(5).take(2)]
    for (x0, y0), (x1, y1) in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(x0.numpy(), x1.numpy())
        np.testing.assert_array_equal(y0.numpy(), y1.numpy())
    assert not np.array_equal(full[0][0].numpy(), full[4][0].numpy())  # the batches do differ


@pytest.mark.parametrize("over, message", [
    (dict(backup_every=0), "--backup_every"),
    (dict(resume="/nonexistent/run"), "--resume=/nonexistent/run"),
])
def test_user_errors_name_the_flag(over, message):
    from absl import app

    with pytest.raises(app.UsageError, match=message):
        common.check(_settings(**over))


def _result(metrics, **extra):
    return dict({"metrics": metrics, "total_seconds": 12.4, "train_seconds": 7.6}, **extra)


VA = {f"{axis}_{m}": v for axis, base in (("valence", 0.1), ("arousal", 0.2), ("mean", 0.15))
      for m, v in (("ccc", base), ("pcc", base + 0.01), ("rmse", base + 0.02), ("sagr", base + 0.03))}


def test_summary_of_a_valence_arousal_and_expression_result():
    metrics = dict(VA, va_count=48, expression_accuracy=0.5, expression_average_accuracy=0.25,
                   expression_macro_f1=0.125, expression_count=40)
    lines = common.summary(_result(metrics), "/runs/x", "my title").splitlines()
    assert lines[:3] == ["", "=" * 72, "my title"]
    assert lines[3] == "  valence  CCC 0.100  PCC 0.110  RMSE 0.120  SAGR 0.130"
    assert lines[5] == "  mean     CCC 0.150  PCC 0.160  RMSE 0.170  SAGR 0.180"
    assert lines[6] == "  expression accuracy 0.500  average accuracy 0.250  macro-F1 0.125   (N=40)"
    assert lines[7] == "  N=48; time: 12 s total, 8 s training"
    assert lines[8:] == ["  run directory: /runs/x", "=" * 72]


def test_summary_of_an_expression_only_and_an_iterations_result():
    metrics = dict(expression_accuracy=0.5, expression_average_accuracy=0.25, expression_macro_f1=0.125,
                   expression_count=40)
    text = common.summary(_result(metrics), "/runs/x", "t")
    assert "CCC" not in text and "(N=40)" in text and "  time: 12 s total, 8 s training" in text
    text = common.summary(_result(dict(VA, va_count=48), iterations=100), "/runs/y", "t")
    assert "  N=48; 100 iterations; time: 12 s total, 8 s training" in text.splitlines()
    assert "expression" not in text


# --- numeric flags: one table of bounds ---------------------------------------------------------------------------

def test_bound_accepts_and_describes():
    assert common.AT_LEAST_1.accepts(1) and not common.AT_LEAST_1.accepts(0) and common.AT_LEAST_1.accepts(None)
    assert common.POSITIVE.accepts(1e-9) and not common.POSITIVE.accepts(0.0)
    assert not common.POSITIVE.accepts(-0.01) and not common.POSITIVE.accepts(float("nan"))
    assert not common.POSITIVE.accepts(float("inf")) and not common.AT_LEAST_0.accepts(float("nan"))
    fraction = common.Bound(0, 1, high_open=True)
    assert fraction.accepts(0.0) and not fraction.accepts(1.0)
    assert [b.describe() for b in (common.AT_LEAST_1, common.POSITIVE, fraction, common.PROBABILITY)] == \
        [">= 1", "> 0", "in [0, 1)", "in [0, 1]"]


@pytest.mark.parametrize("over, message", [
    (dict(seed=-1), "--seed must be >= 0, got -1"),
    (dict(verbose=3), "--verbose must be in [0, 2], got 3"),
    (dict(image_size=0), "--image_size must be >= 1, got 0"),
    (dict(steps=0), "--steps must be >= 1, got 0"),
])
def test_shared_numeric_flags_are_bounded(over, message):
    from absl import app

    with pytest.raises(app.UsageError) as err:
        common.check(_settings(**over))
    assert message in str(err.value)


def test_a_binary_bound_is_checked_with_the_shared_ones():
    from absl import app

    with pytest.raises(app.UsageError, match=r"--lr must be > 0, got -0.01"):
        common.check(_settings(lr=-0.01), {"lr": common.POSITIVE})


def test_min_image_sizes_are_the_backbones():
    """The pre-import copy of the backbones' smallest inputs equals the library's, and the library's is exact for
    AlexNet: one pixel less is refused, the smallest side builds."""
    from absl import app

    from ferkeras.models import backbones

    assert common.MIN_IMAGE_SIZES == {name: backbones.min_input_size(name) for name in backbones.BACKBONES}
    smallest = backbones.min_input_size("alexnet")
    with pytest.raises(ValueError, match="below the smallest size"):
        backbones.alexnet((smallest - 1, smallest - 1, 3))
    assert backbones.alexnet((smallest, smallest, 3), pooling="avg").output.shape[-1] == 256
    with pytest.raises(app.UsageError, match=f"--image_size=48 is too small for --backbone=alexnet: its smallest "
                                             f"input is {smallest}x{smallest}"):
        common.check_image_size(_settings(image_size=48), "alexnet")
    common.check_image_size(_settings(image_size=32), "resnet18")


# --- --smoke and explicit flags -----------------------------------------------------------------------------------

def _private_flags(*argv):
    """A few shared flags (and --dataset) in a FlagValues of their own (the binaries' are process-global), parsed."""
    from absl import flags

    fv = flags.FlagValues()
    holders = [flags.DEFINE_integer(name, default, "", flag_values=fv)
               for name, default in (("batch_size", 64), ("steps", None), ("epochs", 8), ("num_train", 4000),
                                     ("image_size", 64))]
    holders.append(flags.DEFINE_bool("smoke", False, "", flag_values=fv))
    holders.append(common.define_dataset_flag(("synthetic", "affectnet", "aff_wild2", "raf_db"), flag_values=fv))
    fv(["binary", *argv])
    return holders


def test_smoke_keeps_explicit_flags(tmp_path):
    s = common.settings(_private_flags("--smoke", "--batch_size=32", "--steps=5"), dict(image_size=32))
    assert (s["batch_size"], s["steps"]) == (32, 5)  # given: kept
    assert (s["epochs"], s["num_train"], s["image_size"]) == (1, 64, 32)  # not given: the smoke values
    flagfile = tmp_path / "run.cfg"
    flagfile.write_text("--smoke\n--epochs=3\n--image_size=48\n")
    s = common.settings(_private_flags(f"--flagfile={flagfile}"), dict(image_size=32))
    assert (s["epochs"], s["image_size"], s["batch_size"]) == (3, 48, 16)  # a flagfile's flags are explicit too
    s = common.settings(_private_flags("--batch_size=32"), dict(image_size=32))
    assert (s["batch_size"], s["epochs"], s["steps"]) == (32, 8, None)  # without --smoke: the flags


# --- one name per dataset -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, name", [("aff_wild2", "aff_wild2"), ("affwild2", "aff_wild2"),
                                         ("Aff-Wild2", "aff_wild2"), ("rafdb", "raf_db"), ("RAF-DB", "raf_db"),
                                         ("synthetic", "synthetic")])
def test_dataset_flag_takes_aliases_and_holds_the_one_name(given, name):
    holders = _private_flags(f"--dataset={given}")
    assert common.settings(holders)["dataset"] == name


@pytest.mark.parametrize("given", ["afew_va", "imagenet", "voxceleb1"])
def test_dataset_flag_refuses_datasets_the_binary_has_not(given):
    from absl import flags

    with pytest.raises(flags.IllegalFlagValueError, match=f"dataset '{given}'.*choose from synthetic, affectnet, "
                                                           "aff_wild2, raf_db"):
        _private_flags(f"--dataset={given}")


def test_every_dataset_name_is_accepted_everywhere():
    """Every dataset name a module of the project holds, prints or writes (the readers' registry, the synthetic
    writers = tools/make_synthetic.py's --dataset and output folders, the split policy's tables) and every alias is
    taken by the reader lookup and the split policy, as the one name (the binaries: test_binary_flags)."""
    from ferkeras.data import readers, splits
    from ferkeras.data.readers import aff_wild2, raf_db
    from ferkeras.data.synthetic_datasets import WRITERS

    names = sorted(set(readers.READERS) | set(WRITERS) | set(splits.READER_NAMES) | set(splits.READER_NAMES.values())
                   | set(splits.EVAL_SPLITS) | set(readers.DATASET_ALIASES))
    assert {"raf_db", "rafdb", "aff_wild2", "affwild2", "aff_wild", "affwild", "voxceleb1"} <= set(names)
    for name in names:
        canonical = readers.canonical_name(name)
        assert canonical in readers.READERS and readers.READERS[canonical].name == canonical, name
        assert splits.dataset_name(name) == canonical and canonical in splits.READER_NAMES, name
        assert splits.READER_NAMES[canonical] == canonical and canonical in splits.EVAL_SPLITS, name
        splits.reader_options(name)  # the split policy takes every spelling
    # The one name is the reader's module and what tools/make_synthetic.py writes (its folder).
    assert (raf_db.RafDbReader.name, aff_wild2.AffWild2Reader.name) == ("raf_db", "aff_wild2")
    assert splits.reader_options("affwild2", task="expression") == splits.reader_options("aff_wild2",
                                                                                         task="expression")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*rafdb=raf_db"):
        readers.canonical_name("imagenet")


def test_make_reader_takes_an_alias(tmp_path):
    from ferkeras.data.readers import make_reader
    from ferkeras.data.synthetic_datasets import WRITERS

    WRITERS["raf_db"](tmp_path / "raf_db", num=4, seed=0, bad_rows=0)
    reader = make_reader("RAF-DB", tmp_path / "raf_db", split="train")
    assert reader.name == "raf_db" and len(reader.records()) == 4


# --- a failed start leaves no run directory -----------------------------------------------------------------------

def test_a_run_that_fails_before_training_leaves_no_run_directory(tmp_path):
    s = {"resume": None, "out_dir": str(tmp_path)}
    with pytest.raises(RuntimeError, match="no images"):
        with common.discard_unstarted_run_directory():
            run_dir = common.run_directory(s, "failed")
            run_dir.save_flags({"lr": 0.1})
            raise RuntimeError("no images")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="diverged"):
        with common.discard_unstarted_run_directory():
            run_dir = common.run_directory(s, "started")
            run_dir.save_flags({"lr": 0.1})
            with open(run_dir.csv_log_path, "w") as f:
                f.write("epoch,loss\n0,1.0\n")
            raise RuntimeError("diverged")
    (kept,) = os.listdir(tmp_path)  # a run that trained keeps its logs
    assert kept.startswith("started-")


# --- every binary, in a subprocess each (their absl flags are process-global) -------------------------------------

BINARIES = ("baseline", "avce", "sslfer_pretrain", "linear_eval", "export")

BINARY_SCRIPT = r"""
import importlib, json, sys
from absl import app, flags
from experiments import common

name = sys.argv[1]
binary = importlib.import_module("experiments." + name)
FLAGS = flags.FLAGS
shared = "dataset" in FLAGS and FLAGS.find_module_defining_flag("dataset") == "experiments.common"
bounds = dict(common.SHARED_BOUNDS if shared else {}, **binary.BOUNDS)


def check(*args):
    FLAGS.unparse_flags()
    FLAGS([name + ".py", *args])
    s = binary.settings()
    try:
        binary.check(s)
    except app.UsageError as e:
        return s, str(e)
    return s, None


out = {"unbounded": [], "refused": {}, "datasets": {}}
for flag in sorted(FLAGS):
    if not FLAGS.find_module_defining_flag(flag, "").startswith("experiments.") or \
            FLAGS[flag].flag_type() not in ("int", "float"):
        continue
    if flag not in bounds:
        out["unbounded"].append(flag)
        continue
    b = bounds[flag]
    bad = (b.low if b.low_open else b.low - 1) if b.low is not None else (b.high if b.high_open else b.high + 1)
    out["refused"][flag] = [bad, check(f"--{flag}={bad}")[1]]
if shared:
    s, _ = check("--smoke", "--batch_size=32", "--steps=3", "--epochs=2")
    out["smoke"] = [s["batch_size"], s["steps"], s["epochs"], s["num_train"]]
    for dataset in binary.DATASETS:
        for alias in (dataset, dataset.replace("_", ""), dataset.upper().replace("_", "-")):
            FLAGS.unparse_flags()
            FLAGS([name + ".py", "--dataset=" + alias])
            out["datasets"][alias] = binary.settings()["dataset"]
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("binary", BINARIES)
def test_binary_flags(binary):
    """Every numeric flag of the binary has a bound and a value outside it is refused by check() (before any data
    or model is loaded), naming the flag; explicit flags win over --smoke; --dataset takes the dataset names and
    their aliases and holds the one name."""
    import subprocess

    from tests import helpers

    proc = subprocess.run([sys.executable, "-c", BINARY_SCRIPT, binary], capture_output=True, text=True, timeout=120,
                          env=helpers.script_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["unbounded"] == []
    assert len(out["refused"]) >= 2
    for flag, (bad, error) in out["refused"].items():
        assert error and error.startswith(f"--{flag}") and f"got {bad}" in error, (flag, bad, error)
    if binary != "export":
        assert out["smoke"] == [32, 3, 2, 64]
        assert "synthetic" in out["datasets"]
        for alias, name in out["datasets"].items():
            assert name.replace("_", "") == alias.lower().replace("-", "").replace("_", ""), (alias, name)


@pytest.mark.slow
@pytest.mark.parametrize("binary, args, message", [
    ("baseline", ["--lr=-0.01"], "--lr must be > 0, got -0.01"),
    ("avce", ["--lr=-0.01"], "--lr must be > 0, got -0.01"),
    ("sslfer_pretrain", ["--lr=-0.01"], "--lr must be > 0, got -0.01"),
    ("linear_eval", ["--lr=-0.01"], "--lr must be > 0, got -0.01"),
    ("export", ["--version=-1", "--model=m.keras", "--name=fer"], "--version must be >= 0, got -1"),
    ("baseline", ["--backbone=alexnet", "--image_size=48"], "--image_size=48 is too small for --backbone=alexnet"),
    ("avce", ["--dataset=rafdb"], "dataset 'rafdb' (= raf_db) is not one of this binary's"),
])
def test_bad_flags_are_refused_fast_and_leave_no_run_directory(tmp_path, binary, args, message):
    import time

    from tests import helpers

    start = time.perf_counter()
    out = f"--export_dir={tmp_path}" if binary == "export" else f"--out_dir={tmp_path}"
    proc = helpers.run_script(os.path.join(REPO, "experiments", f"{binary}.py"), *args, out, timeout=60)
    seconds = time.perf_counter() - start
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []
    assert seconds < 20  # before TensorFlow is imported (about a second on an idle machine)


@pytest.mark.slow
def test_make_synthetic_and_prepare_dataset_take_aliases(tmp_path):
    from tests import helpers

    proc = helpers.run_script(os.path.join(REPO, "tools", "make_synthetic.py"), "--dataset=RAF-DB",
                              f"--out={tmp_path}", "--num=4", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.listdir(tmp_path) == ["raf_db"]  # the one name, which every binary's --dataset takes
    for tool, args in (("make_synthetic.py", [f"--out={tmp_path}"]),
                       ("prepare_dataset.py", [f"--root={tmp_path}", f"--out={tmp_path / 'shards'}"])):
        proc = helpers.run_script(os.path.join(REPO, "tools", tool), "--dataset=imagenet", *args, timeout=120)
        assert proc.returncode != 0 and "--dataset=imagenet: unknown dataset 'imagenet'" in proc.stderr, tool
        assert "rafdb=raf_db" in proc.stderr and "Traceback" not in proc.stderr, tool
