"""The training binaries count the images their pipelines drop (a JPEG truncated to half passes the readers' header
check but does not decode): reported at every epoch end and in result.json, with the file names."""

import json
import os

import pytest

from tests import helpers


@pytest.mark.slow
def test_baseline_reports_undecodable_images_per_epoch_and_in_result_json(tmp_path):
    from ferkeras.data.readers import make_reader
    from ferkeras.data.synthetic.formats import write_affectnet

    root = tmp_path / "affectnet"
    write_affectnet(str(root), num=20, size=48, num_val=10)
    truncated = []
    for split in ("train", "val"):
        path = make_reader("affectnet", str(root), split=split).records()[3].image_path
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        truncated.append(path)
    missing = make_reader("affectnet", str(root), split="train").records()[5].image_path
    os.remove(missing)  # a reader skip (counted by the reader, not the pipeline): also in result.json
    proc = helpers.run_script("experiments/baseline.py", "--smoke", "--dataset=affectnet", f"--data_root={root}",
                              f"--out_dir={tmp_path / 'runs'}", "--verbose=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = os.listdir(tmp_path / "runs")
    with open(tmp_path / "runs" / run / "result.json") as f:
        result = json.load(f)
    drops = result["input_drops"]
    skipped = result["reader_skipped"]["train"]
    assert skipped["skipped_by_reason"] == {"missing image": 1} and skipped["skipped"] == 1
    assert os.path.basename(missing) in skipped["first_skipped"]["missing image"]
    assert result["reader_skipped"]["val"]["skipped"] == 0
    assert set(drops) == {"train", "test"}  # the held-out split is both validation and test on AffectNet
    for split, path in zip(("train", "test"), truncated, strict=True):
        assert drops[split]["dropped"] >= 1 and drops[split]["dropped_by_reason"]["undecodable image"] >= 1
        assert drops[split]["first_dropped"] == [f"{path} (undecodable image)"], split
        assert drops[split]["kept"] > 0
    assert "epoch 1 input pipeline train:" in proc.stderr and f"first: {truncated[0]}" in proc.stderr
    assert "input: images dropped (train" in proc.stdout  # the terminal summary points to result.json
    # evaluation N: every other validation image counted
    assert json.load(open(tmp_path / "runs" / run / "result.json"))["metrics"]["va_count"] == 9
