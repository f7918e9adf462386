"""experiments/avce.py end to end (smoke flagfile, in-process), its flag errors (subprocess), and the parsing of every
experiments/configs/avce_*.cfg with the binary's flags."""

import glob
import json
import math
import os
import sys

import numpy as np
import pytest

from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/experiments/ -> repo
sys.path.insert(0, REPO)
BINARY = os.path.join(REPO, "experiments", "avce.py")
CONFIGS = sorted(glob.glob(os.path.join(REPO, "experiments", "configs", "avce_*.cfg")))
SMOKE = os.path.join(REPO, "experiments", "configs", "avce_smoke.cfg")

from experiments import avce  # noqa: E402  (defines the binary's absl flags in this process)
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS


def _parse(*args):
    """Parses argv with the binary's flags, from their defaults."""
    FLAGS.unparse_flags()
    FLAGS(["avce.py", *args])
    return avce.settings()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    s = _parse(f"--flagfile={SMOKE}", f"--out_dir={out}", "--verbose=0")
    avce.check(s)
    try:
        result, path = avce.run(s)
    finally:
        FLAGS.unparse_flags()
    return result, path


@pytest.mark.slow
def test_smoke_run_writes_metrics_and_figures(smoke_run):
    result, path = smoke_run
    assert os.path.basename(path).startswith("avce-resnet18-synthetic-avce-f-")
    with open(os.path.join(path, "result.json")) as f:
        saved = json.load(f)
    metrics = saved["metrics"]
    for axis in ("valence", "arousal", "mean"):
        for metric in ("rmse", "sagr", "pcc", "ccc"):
            value = metrics[f"{axis}_{metric}"]
            assert isinstance(value, float) and math.isfinite(value), (axis, metric, value)
    assert metrics["va_count"] == 48  # the whole smoke test set
    # The streaming Keras metrics of the evaluation model agree with the NumPy references over the whole set.
    assert saved["keras_metrics"]["ccc"] == pytest.approx(metrics["mean_ccc"], abs=1e-5)
    assert saved["keras_metrics"]["rmse"] == pytest.approx(metrics["mean_rmse"], abs=1e-5)
    assert saved["iterations"] == 2 and saved["epochs"] == 1
    assert saved["flags"]["contrastive"] == "avce" and saved["flags"]["image_size"] == 32
    assert avce.summary_title(saved["flags"]) == "AVCE result on the held-out set (avce, similarity f)"

    # Algorithm 1 ran: the contrastive and L_dis terms are logged per epoch.
    header, row = open(os.path.join(path, "train_log.csv")).read().split("\n")[:2]
    log = dict(zip(header.split(","), row.split(",")))
    assert float(log["l_contrastive"]) != 0.0 and math.isfinite(float(log["l_dis"]))

    figures = saved["activation_maps"]
    assert figures["final"] == "activation_maps.png"
    assert figures["during_training"] == [os.path.join("activation_maps", "activation_maps_epoch0001.png")]
    from matplotlib import image as mpimg

    for name in ("va_scatter.png", "training_curves.png", figures["final"], *figures["during_training"]):
        with open(os.path.join(path, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    final = mpimg.imread(os.path.join(path, figures["final"]))
    during = mpimg.imread(os.path.join(path, figures["during_training"][0]))
    # Rows = the 2 smoke faces; columns = input + 4 maps (final) / input + 3 maps (during training).
    assert final.shape[1] > during.shape[1] > final.shape[0]
    assert final.std() > 0.05  # not a blank picture
    flags_text = open(os.path.join(path, "flags.cfg")).read().split()
    assert "--smoke" in flags_text and "--contrastive=avce" in flags_text


def _run_binary(*args):
    return helpers.run_script(BINARY, *args, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--similarity=f3"], "f3"),
    (["--dataset=afew_va"], "--data_root is required for --dataset=afew_va"),
    (["--contrastive=barlow_twins", "--similarity=f2"], "--similarity=f2"),
])
@pytest.mark.slow
def test_bad_flags_give_clear_errors(args, message):
    proc = _run_binary(*args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--iterations=0"], "--iterations must be >= 1, got 0"),
    (["--lr=-1"], "--lr must be > 0, got -1.0"),
    (["--cam_methods=cam,lime"], "unknown ['lime']"),
    (["--dataset=affwild", "--data_root=/nonexistent/affwild"], "--data_root=/nonexistent/affwild"),
    (["--contrastive_weight=-0.5"], "--contrastive_weight must be >= 0, got -0.5"),
    (["--contrastive=none", "--nouse_dis", "--contrastive_weight=0.1"], "--contrastive_weight=0.1 has no effect"),
])
def test_check_names_the_bad_value(args, message):
    from absl import app

    with pytest.raises(app.UsageError) as err:
        avce.check(_parse(*args))
    FLAGS.unparse_flags()
    assert message in str(err.value)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_flagfile_parses(path):
    """A typo in a flag name or an enum value of any avce_*.cfg fails here; the paper configs carry its settings."""
    s = _parse(f"--flagfile={path}")
    FLAGS.unparse_flags()
    name = os.path.basename(path)
    head = open(path).read().splitlines()[:3]  # what it runs, and the command
    assert all(line.startswith("# ") for line in head)
    assert any(f"python experiments/avce.py --flagfile=experiments/configs/{name}" in line for line in head)
    if name in ("avce_smoke.cfg", "avce_synthetic.cfg"):
        assert s["dataset"] == "synthetic"
        return
    dataset, backbone = name[len("avce_"):-len(".cfg")].rsplit("_", 1)
    dataset = {"affwild": "aff_wild", "affwild2": "aff_wild2"}.get(dataset, dataset)  # the file names predate the
    assert (s["dataset"], s["backbone"]) == (dataset, backbone)  # one dataset name (README: dataset names)
    assert s["data_root"] == f"input/{dataset}"  # input/README.md's folder
    assert s["batch_size"] == {"alexnet": 256, "resnet18": 128}[backbone]
    assert s["iterations"] == {"afew_va": 50000, "affectnet": 50000, "aff_wild": 100000, "aff_wild2": 100000}[dataset]
    assert (s["image_size"], s["augment"], s["lr"], s["head_lr"]) == (224, "avce", 1e-4, 1e-2)
    assert (s["lr_first"], s["lr_every"], s["lr_factor"]) == (5000, 20000, 0.8)
    assert s["width"] == 64 or backbone == "alexnet"


def test_configs_cover_the_paper_datasets():
    names = {os.path.basename(p) for p in CONFIGS}
    for dataset in ("afew_va", "affwild", "affwild2", "affectnet"):
        for backbone in ("alexnet", "resnet18"):
            assert f"avce_{dataset}_{backbone}.cfg" in names
    assert {"avce_smoke.cfg", "avce_synthetic.cfg"} <= names


def test_run_name_and_smoke_overrides():
    s = _parse("--contrastive=none", "--backbone=alexnet", "--smoke", "--iterations=50000")
    FLAGS.unparse_flags()
    assert avce.run_name(s) == "avce-alexnet-synthetic-none"
    assert s["image_size"] == 64 and s["steps"] == 2
    assert s["iterations"] == 50000  # given explicitly: --smoke does not override it
    assert _parse("--smoke")["iterations"] is None and _parse("--smoke", "--cam_images=3")["cam_images"] == 3
    assert _parse("--smoke")["cam_images"] == 2
    assert np.isclose(s["lr"], 1e-4)
    assert avce.run_name(_parse("--contrastive=avce", "--similarity=f2", "--nouse_dis")) == \
        "avce-resnet18-synthetic-avce-f2-nodis"
    assert avce.run_name(_parse("--contrastive_weight=1e-4", "--compressor=flatten", "--regression_loss=mse")) == \
        "avce-resnet18-synthetic-avce-f-w0.0001-flatten-mse"
    FLAGS.unparse_flags()


@pytest.mark.slow
def test_authors_settings_run_end_to_end(tmp_path):
    """--compressor=flatten --contrastive_weight=1e-4 --regression_loss=mse: the binary trains the model they name
    (checked on the saved checkpoint) and records them."""
    import keras

    s = _parse(f"--flagfile={SMOKE}", f"--out_dir={tmp_path}", "--verbose=0", "--cam_images=0",
               "--compressor=flatten", "--contrastive_weight=1e-4", "--regression_loss=mse")
    avce.check(s)
    try:
        result, path = avce.run(s)
    finally:
        FLAGS.unparse_flags()
    assert os.path.basename(path).startswith("avce-resnet18-synthetic-avce-f-w0.0001-flatten-mse-")
    with open(os.path.join(path, "result.json")) as f:
        saved = json.load(f)
    assert (saved["flags"]["compressor"], saved["flags"]["contrastive_weight"], saved["flags"]["regression_loss"]) \
        == ("flatten", 1e-4, "mse")
    assert math.isfinite(saved["metrics"]["mean_ccc"])
    model = keras.saving.load_model(os.path.join(path, "checkpoints", "best.keras"), compile=False)
    assert model.compressor_kind == "flatten" and model.contrastive_weight == 1e-4
    assert model.regression_loss == "mse" and model.av_loss.mse_weight == 2.0
    assert model.compressor.get_layer("fc").kernel.shape[0] == 36 * model.encoder.output.shape[-1]
