"""experiments/sslfer_pretrain.py on its data: the training stream rebuilt at any step (what an exact resume needs),
and a whole run on frames in VoxCeleb1's layout (no labels, corrupt frames counted).  The smoke run, its encoder,
the two-worker run, the flag errors and the flagfiles: test_sslfer_pretrain.py.

Everything runs the binary (or imports it) in a subprocess: the binaries define the same absl flags, so two of them
cannot be imported into one test process."""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers

REPO = helpers.REPO
BINARY = os.path.join(REPO, "experiments", "sslfer_pretrain.py")
SMOKE = os.path.join(REPO, "experiments", "configs", "sslfer_smoke.cfg")

pytestmark = pytest.mark.slow  # every test here runs the binary or imports it in a subprocess


STREAM_SCRIPT = r"""
import json, sys
import numpy as np
from absl import flags
from experiments import sslfer_pretrain as binary
flags.FLAGS(["sslfer_pretrain.py", "--flagfile=" + sys.argv[1]])
s = binary.settings()
table, _, _ = binary.track_tables(s)

def batches(start, n):
    sampler = binary.view_sampler(s, table, s["seed"])
    return [b for b in binary.pretraining_data(s, sampler, epochs=None).skip(start).take(n)]

full, resumed = batches(0, 5), batches(3, 2)
same = all(np.array_equal(np.asarray(a[0][k]), np.asarray(b[0][k]))
           for a, b in zip(full[3:], resumed, strict=True) for k in a[0])
views, labels = full[0]
print(json.dumps({"same": bool(same), "differ": not np.array_equal(full[0][0]["anchor"], full[1][0]["anchor"]),
                  "views": sorted(views), "labels": sorted(labels),
                  "shapes": {k: list(v.shape) for k, v in views.items()}}))
"""


def test_training_stream_restarts_exactly_at_any_step():
    """What an exact mid-epoch resume needs: the stream rebuilt from step k (FaceSwap draws and augmentation
    included) is the full stream without its first k batches; batches come as (views, labels) for Keras."""
    proc = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, SMOKE], capture_output=True, text=True, timeout=600,
                          env=helpers.script_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["same"] and out["differ"]
    assert out["views"] == ["anchor", "hard_negatives", "parts", "parts_valid", "positive"]
    assert out["labels"] == ["expression", "identity", "track", "va"]
    assert out["shapes"]["anchor"] == [16, 32, 32, 3] and out["shapes"]["hard_negatives"] == [16, 1, 32, 32, 3]
    assert out["shapes"]["parts"] == [16, 2, 32, 32, 3]  # --smoke: batches of 16


def test_voxceleb1_layout_end_to_end(tmp_path):
    """--dataset=voxceleb1 on frames written in VoxCeleb1's layout (<identity>/<video>/<clip>/<frame>.jpg, two of
    them corrupt): no labels (no probe), no landmarks - FaceSwap's dlib finds no face in the small synthetic frames
    and every drawn swap falls back, the landmark masking skips every face - and all of it is counted."""
    from ferkeras.data.synthetic import formats

    root = tmp_path / "voxceleb1"
    formats.write_voxceleb1(root, num=200, seed=0, bad_rows=2, size=64, frames_per_clip=20)
    out = tmp_path / "runs"
    proc = helpers.run_script(BINARY, f"--flagfile={SMOKE}", "--dataset=voxceleb1", f"--data_root={root}", f"--out_dir={out}",
                "--checkpoint=last")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "SSL-FER pre-training (timeaug+hardneg+faceswap+maskfn) on voxceleb1" in proc.stdout
    (run,) = os.listdir(out)
    assert run.startswith("sslfer-resnet18-voxceleb1-")
    result = json.load(open(os.path.join(out, run, "result.json")))
    assert result["metrics"] == {} and result["probe"].startswith("no probe")
    assert result["data"]["reader_skipped"] == {"corrupt image": 2}
    train, details = result["data"]["train"], result["data_details"]["train"]
    assert train["tracks_used"] == 10 and train["tracks_skipped"] == 0  # 10 clips of about 4.6 s
    assert train["face_swap_swapped"] + train["face_swap_fallbacks"] == details["face swap drawn"] > 0
    assert train["masking_without_landmarks"] > 0
    assert result["figures"]["saliency"]["scores"] == ["self"]  # no probe: the self-similarity score only
    assert os.path.isfile(os.path.join(out, run, "encoder.keras"))
    # --checkpoint=last: best.json describes what checkpoints/best.keras now holds, the last epoch
    record = json.load(open(os.path.join(out, run, "checkpoints", "best.json")))
    assert record["kept"] == "last" and record["epoch"] == 1 and record["monitor"] is None
