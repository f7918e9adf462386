"""experiments/sslfer_pretrain.py end to end (smoke flagfile through the real binary, its encoder evaluated by
experiments/linear_eval.py, the same run with two worker processes), its flag errors, and the parsing of every
experiments/configs/sslfer_*.cfg.  The training stream's restart and a run on VoxCeleb1's layout:
test_sslfer_pretrain_data.py.

Everything runs the binary (or imports it) in a subprocess: the binaries define the same absl flags, so two of them
cannot be imported into one test process."""

import glob
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import helpers
from tests.experiments import multi_worker as mw

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/experiments/ -> repo
BINARY = os.path.join(REPO, "experiments", "sslfer_pretrain.py")
LINEAR_EVAL = os.path.join(REPO, "experiments", "linear_eval.py")
CONFIGS = sorted(glob.glob(os.path.join(REPO, "experiments", "configs", "sslfer_*.cfg")))
SMOKE = os.path.join(REPO, "experiments", "configs", "sslfer_smoke.cfg")
LINEAR_EVAL_SMOKE = os.path.join(REPO, "experiments", "configs", "linear_eval_smoke.cfg")

pytestmark = pytest.mark.slow  # every test here runs a binary or the flag parser in a subprocess


def _run(binary, *args, timeout=600):
    return helpers.run_script(binary, *args, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = _run(BINARY, f"--flagfile={SMOKE}", f"--out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = os.listdir(out)
    assert len(runs) == 1 and runs[0].startswith("sslfer-resnet18-synthetic-timeaug+hardneg+faceswap+maskfn-"), runs
    return os.path.join(out, runs[0]), proc


def test_smoke_run_writes_result_encoder_and_figures(smoke_run):
    path, proc = smoke_run
    assert f"run directory: {path}" in proc.stdout
    assert "SSL-FER pre-training (timeaug+hardneg+faceswap+maskfn)" in proc.stdout
    assert "expression accuracy" in proc.stdout  # the online probe scored on held-out faces
    for name in ("flags.cfg", "result.json", "encoder.keras", "training_curves.png", "saliency.png",
                 "train_log.csv", os.path.join("checkpoints", "best.keras")):
        assert os.path.isfile(os.path.join(path, name)), name
    with open(os.path.join(path, "backup", "state.json")) as f:  # the final training state, kept, marked complete
        assert json.load(f)["complete"] is True

    with open(os.path.join(path, "result.json")) as f:
        result = json.load(f)
    for key in ("metrics", "probe", "final_epoch", "strategies", "data", "encoder", "figures", "flags",
                "train_seconds", "total_seconds", "iterations", "steps_per_epoch", "epochs"):
        assert key in result, key
    assert result["iterations"] == 2 and result["epochs"] == 1 and result["steps_per_epoch"] == 2
    assert result["strategies"] == {"name": "timeaug+hardneg+faceswap+maskfn", "time_aug": True, "face_swap": 0.5,
                                    "hard_negatives": 1, "maskfn": True}
    assert result["encoder"] == "encoder.keras" and result["encoder_features"] == 128  # ResNet-18 width 16: 8 x 16
    final = result["final_epoch"]
    for key in ("loss", "info_nce", "accuracy", "maskfn_l2", "maskfn_picked", "probe_accuracy", "probe_macro_f1",
                "probe_ccc", "val_loss", "val_probe_accuracy"):
        assert isinstance(final[key], float) and math.isfinite(final[key]), key
    m = result["metrics"]
    assert m["expression_count"] == 48 and m["va_count"] == 48  # the smoke test set: 48 faces, unseen identities
    for key in ("expression_accuracy", "expression_macro_f1", "valence_ccc", "arousal_ccc", "mean_ccc"):
        assert math.isfinite(m[key]), key
    assert result["data"]["reader_skipped"] == {}
    train = result["data"]["train"]
    # 10 identities x one 4 s video at 5 fps: every track is used; only frames >= 3 s from another one anchor.
    assert train["tracks_used"] == 10 and train["tracks_skipped"] == 0
    assert train["anchors_per_epoch"] == 100 and train["frames_not_anchoring"] == 100
    assert train["face_swap_swapped"] > 0 and train["face_swap_fallbacks"] == 0  # synthetic faces: exact landmarks
    assert result["data"]["val"]["tracks_used"] == 15
    assert result["figures"]["saliency"]["faces"] == 2
    assert result["figures"]["saliency"]["scores"] == ["head", "self"]
    from matplotlib import image as mpimg

    for name in ("training_curves.png", "saliency.png"):
        with open(os.path.join(path, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    grid = mpimg.imread(os.path.join(path, "saliency.png"))
    assert grid.std() > 0.05  # not blank
    flags_text = open(os.path.join(path, "flags.cfg")).read().split()
    assert "--smoke" in flags_text and "--maskfn" in flags_text and "--face_swap=0.5" in flags_text


def test_encoder_file_is_the_checkpoints_encoder(smoke_run):
    """encoder.keras is a bare encoder (images -> (B, 128)) equal to the encoder of checkpoints/best.keras, which is
    what experiments/linear_eval.py --encoder=<run directory> loads."""
    import keras

    from ferkeras.downstream import load_encoder

    path, _ = smoke_run
    bare = keras.saving.load_model(os.path.join(path, "encoder.keras"), compile=False)
    from_run = load_encoder(path)
    images = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    a, b = np.asarray(bare(images, training=False)), np.asarray(from_run(images, training=False))
    assert a.shape == (4, 128) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.timeout(mw.TIMEOUT + 300)
def test_two_workers_match_the_smoke_run(smoke_run, tmp_path):
    """The smoke command under --strategy=multi_worker on two worker processes (tests/experiments/multi_worker.py):
    the chief's probe scores equal the smoke run's (the single-process reference: same flags; the workers draw no
    Grad-CAM figure, made after the probe is scored) within the tolerance."""
    workers, _ = mw.workers(BINARY, [f"--flagfile={SMOKE}", "--saliency_images=0"], tmp_path / "runs", tmp_path,
                            "sslfer")
    mw.run_all(workers)
    _, result = mw.one_run(tmp_path / "runs")
    with open(os.path.join(smoke_run[0], "result.json")) as f:
        reference = json.load(f)
    assert result["iterations"] == reference["iterations"] == 2
    assert result["flags"]["strategy"] == "multi_worker" and reference["flags"]["strategy"] == "default"
    mw.check_against_reference(result, reference, mw.SSLFER_CHECKED)
    mw.assert_non_chief_directory_was_temporary(workers, tmp_path)


def test_linear_eval_evaluates_the_pretrained_encoder(smoke_run, tmp_path):
    path, _ = smoke_run
    proc = _run(LINEAR_EVAL, f"--flagfile={LINEAR_EVAL_SMOKE}", f"--encoder={path}", f"--out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = os.listdir(tmp_path)
    with open(os.path.join(tmp_path, run, "result.json")) as f:
        result = json.load(f)
    metrics = result["metrics"]
    assert math.isfinite(metrics["expression_macro_f1"]) and math.isfinite(metrics["valence_ccc"])
    assert 0.0 <= metrics["identity_knn1_accuracy"] <= 1.0
    assert result["flags"]["image_size"] == 32  # the encoder's input size


@pytest.mark.parametrize("args, message", [
    (["--face_swap=1.5"], "--face_swap must be in [0, 1], got 1.5"),
    (["--t2=0.5"], "--t2=0.5 must exceed --t1=1.0"),
    (["--dataset=voxceleb1"], "--data_root is required for --dataset=voxceleb1"),
    (["--width=16"], "--width=16 only applies to --backbone=resnet18"),
    (["--maskfn_encoder=/nonexistent/part.keras"], "--maskfn_encoder=/nonexistent/part.keras does not exist"),
    (["--maskfn_encoder=part.onnx"], "--maskfn_encoder=part.onnx: give a .keras model or a .weights.h5"),
    (["--augment=flip"], "--augment=flip: SSL-FER pre-training takes --augment=sslfer"),
    (["--video_seconds=2"], "--video_seconds=2.0 leaves no frame --t2=3.0 s away"),
    (["--projection_hidden=wide"], "--projection_hidden=wide: give integer widths"),
    (["--batch_size=1"], "--batch_size=1: a contrastive batch needs at least 2 samples"),
    (["--backbone=alexnet"], "alexnet"),
])
def test_bad_flags_give_clear_errors_fast(args, message, tmp_path):
    start = time.perf_counter()
    proc = _run(BINARY, *args, f"--out_dir={tmp_path / 'runs'}", timeout=60)  # never the repository's runs/
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert time.perf_counter() - start < 20  # before TensorFlow is imported (about a second on an idle machine)


PARSE_SCRIPT = r"""
import json, sys
from absl import flags
from experiments import sslfer_pretrain as binary
out = {}
for path in sys.argv[1:]:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["sslfer_pretrain.py", "--flagfile=" + path])
    s = binary.settings()
    if s["data_root"]:
        s["data_root"] = "."  # the dataset folder need not exist here; everything else must pass the checks
    binary.check(s)
    out[path] = dict(s, run_name=binary.run_name(s), load_size=binary.load_size(s))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed_configs():
    proc = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, *CONFIGS], capture_output=True, text=True,
                          timeout=120, env=helpers.script_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {os.path.basename(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


TABLE1 = {"simclr": (False, 0.0, 0, False), "a": (True, 0.0, 0, False), "b": (True, 0.0, 1, False),
          "d": (True, 0.5, 0, True), "e": (True, 0.5, 1, False), "f": (True, 0.5, 1, True)}
"""Table 1's rows: (TimeAug, FaceSwap probability, hard negatives, MaskFN)."""


def test_configs_cover_table1_smoke_and_synthetic():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {f"sslfer_voxceleb1_{row}.cfg" for row in TABLE1} | {"sslfer_smoke.cfg", "sslfer_synthetic.cfg"} <= names


def test_every_flagfile_parses_and_checks(parsed_configs):
    """A typo in a flag name or value of any sslfer_*.cfg fails here; each header names the command; the VoxCeleb1
    configs carry the paper's settings and their Table 1 row's strategies."""
    assert set(parsed_configs) == {os.path.basename(p) for p in CONFIGS}
    for name, s in parsed_configs.items():
        head = open(os.path.join(REPO, "experiments", "configs", name)).read().splitlines()[:3]
        assert all(line.startswith("# ") for line in head), name
        assert any(f"python experiments/sslfer_pretrain.py --flagfile=experiments/configs/{name}" in line
                   for line in head), name
        if not name.startswith("sslfer_voxceleb1_"):
            assert s["dataset"] == "synthetic" and s["backbone"] == "resnet18", name
            continue
        row = name[len("sslfer_voxceleb1_"):-len(".cfg")]
        assert (s["time_aug"], s["face_swap"], s["hard_negatives"], s["maskfn"]) == TABLE1[row], name
        assert (s["dataset"], s["backbone"], s["image_size"], s["load_size"], s["batch_size"]) == \
            ("voxceleb1", "resnet50", 112, 128, 256), name
        assert (s["lr"], s["weight_decay"], s["weight_decay_mode"], s["cosine_from_epoch"]) == \
            (3e-4, 1e-4, "l2", 10), name
        assert (s["temperature"], s["denominator"], s["projection_hidden"], s["projection_dim"]) == \
            (0.07, "simclr", ["2048"], 128), name
        assert (s["t1"], s["t1_steps"], s["t2"], s["maskfn_weight"], s["maskfn_num"]) == (1.0, 5, 3.0, 0.5, 1), name
        assert s["augment"] == "sslfer" and s["mask_regions"] and s["epochs"] == (50 if row == "simclr" else 210)
    assert parsed_configs["sslfer_voxceleb1_simclr.cfg"]["run_name"] == "sslfer-resnet50-voxceleb1-simclr"
    assert parsed_configs["sslfer_voxceleb1_f.cfg"]["run_name"] == \
        "sslfer-resnet50-voxceleb1-timeaug+hardneg+faceswap+maskfn"
    smoke = parsed_configs["sslfer_smoke.cfg"]
    assert (smoke["image_size"], smoke["width"], smoke["steps"], smoke["batch_size"], smoke["epochs"]) == \
        (32, 16, 2, 16, 1)
