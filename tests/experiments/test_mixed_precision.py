"""``--mixed_precision=none|bfloat16|float16`` (experiments/common.py): its spellings, the old boolean ones, its errors,
and one baseline smoke run under bfloat16 that records the precision and trains in it."""

import csv
import json
import math
import os
import zipfile

import pytest
from absl import flags

from experiments import common
from ferkeras import training
from tests import helpers

BASELINE = os.path.join(helpers.REPO, "experiments", "baseline.py")
BASELINE_SMOKE = os.path.join(helpers.REPO, "experiments", "configs", "baseline_smoke.cfg")


def _parse(*args):
    """``(value, leftover argv)`` of the flag on a fresh FlagValues (not the process-global one)."""
    flag_values = flags.FlagValues()
    holder = flags.DEFINE_flag(common.PrecisionFlag(), flag_values=flag_values)
    rest = flag_values(["binary", *args])
    return holder.value, rest[1:]


def test_flag_values_are_the_library_precisions():
    assert common.PRECISIONS == tuple(training.PRECISIONS)


@pytest.mark.parametrize("args, value", [
    ((), "none"),
    (("--mixed_precision=none",), "none"),
    (("--mixed_precision=bfloat16",), "bfloat16"),
    (("--mixed_precision=float16",), "float16"),
    (("--mixed_precision=BFloat16",), "bfloat16"),
    # the old boolean flag (mixed_float16 or not), as command lines and old flagfiles / flags.cfg spell it
    (("--mixed_precision",), "float16"),
    (("--nomixed_precision",), "none"),
    (("--mixed_precision=true",), "float16"),
    (("--mixed_precision=False",), "none"),
    (("--mixed_precision", "--nomixed_precision"), "none"),
])
def test_spellings(args, value):
    assert _parse(*args) == (value, [])


def test_flag_writes_itself_with_its_value(tmp_path):
    """flags.cfg (RunDir.save_flags) and absl's own serialisation give --mixed_precision=VALUE, which parses back."""
    flag = common.PrecisionFlag()
    flag.parse("bfloat16")
    assert flag.serialize() == "--mixed_precision=bfloat16"
    run_dir = training.RunDir(str(tmp_path / "run"))
    with open(run_dir.save_flags({"mixed_precision": "bfloat16"})) as f:
        line = f.read().strip()
    assert line == "--mixed_precision=bfloat16" and _parse(line) == ("bfloat16", [])


def test_errors_tell_the_new_spelling():
    for bad in ("bf16", "mixed_float16", "yes"):
        with pytest.raises(flags.IllegalFlagValueError, match=r"none \| bfloat16 \| float16 .*--mixed_precision="):
            _parse(f"--mixed_precision={bad}")
    # "--mixed_precision bfloat16" (a space): the bare flag is the old boolean, "bfloat16" is left over
    value, rest = _parse("--mixed_precision", "bfloat16")
    assert (value, rest) == ("float16", ["bfloat16"])
    assert "write --mixed_precision=bfloat16" in common.unexpected_arguments(rest)
    assert common.unexpected_arguments(["extra"]) == "unexpected arguments: extra"


@pytest.mark.slow
def test_baseline_smoke_run_under_bfloat16(tmp_path):
    """The cheapest binary trains under mixed_bfloat16 end to end: flags.cfg and result.json record the precision,
    the saved model's layers compute in bfloat16 (its last layers in float32) and the logged losses are finite."""
    proc = helpers.run_script(BASELINE, f"--flagfile={BASELINE_SMOKE}", "--mixed_precision=bfloat16", "--task=va",
                              "--steps=1", "--num_val=16", "--num_test=16", f"--out_dir={tmp_path}", "--verbose=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = os.listdir(tmp_path)
    path = tmp_path / run
    assert "--mixed_precision=bfloat16" in (path / "flags.cfg").read_text().splitlines()
    result = json.loads((path / "result.json").read_text())
    assert result["flags"]["mixed_precision"] == "bfloat16"
    assert math.isfinite(result["metrics"]["mean_ccc"])
    with open(path / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(math.isfinite(float(row[key])) for row in rows for key in ("loss", "val_loss"))
    with zipfile.ZipFile(path / "checkpoints" / "best.keras") as z:
        config = z.read("config.json").decode()
    assert '"mixed_bfloat16"' in config and '"float32"' in config  # bf16 layers, float32 heads' last layers
