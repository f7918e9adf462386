"""The face tools' defaults are one set (ferkeras.face.defaults), used by the library, the inference API and the
analysis tools, and the inference crop is the training pipelines' crop."""

import ast
import inspect
import types
from pathlib import Path

import numpy as np
import pytest

import ferkeras.face as F
from tests import helpers

ANALYSIS_TOOLS = ("analyze.py", "analyze_video.py", "bench_video.py")


def _flag_defaults(path, name):
    """Defaults of the absl flags called ``name`` defined in a script (read from its source, nothing imported)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")).startswith("DEFINE")
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == name):
            default = node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "default")
            found.append(ast.literal_eval(default))
    return found


def test_detector_default_is_the_measured_one_and_everything_uses_it(monkeypatch):
    default = F.FaceDetector()
    assert (default.method, default.upsample) == (F.DETECTOR_METHOD, F.DETECTOR_UPSAMPLE) == ("hog", 0)
    # The analysis tools: their flags leave the detector to the library (None) or name the same values.
    checked = 0
    for script in ANALYSIS_TOOLS:
        path = Path(helpers.REPO) / "tools" / script
        if not path.exists():  # analyze_video.py may have been folded into analyze.py
            continue
        for flag, value in (("upsample", F.DETECTOR_UPSAMPLE), ("detector", F.DETECTOR_METHOD)):
            for found in _flag_defaults(path, flag):
                assert found in (None, value), f"tools/{script} --{flag}={found!r}, the library's is {value!r}"
                checked += 1
    assert checked >= 2
    # The Python inference API builds the library's default detector when given none.
    import ferkeras.inference as inference

    made = []

    class Recording(F.FaceDetector):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(inference, "FaceDetector", Recording)
    assert list(inference.analyze_frames(iter([]), types.SimpleNamespace(input_size=16))) == []
    assert [(d.method, d.upsample) for d in made] == [(default.method, default.upsample)]


def test_inference_crop_equals_the_training_crop():
    import tensorflow as tf

    from ferkeras.data.pipeline import build_dataset, from_records
    from ferkeras.data.schema import FaceRecord
    from ferkeras.data.tfrecord import CropSettings
    from ferkeras.data.video_views import ViewSampler
    from ferkeras.inference import FaceCropper
    from ferkeras.methods.sslfer.data import sslfer_dataset

    def default(function):
        return inspect.signature(function).parameters["margin"].default

    margins = {"build_dataset": default(build_dataset), "from_records": default(from_records),
               "CropSettings (shards)": CropSettings().margin, "ViewSampler.elements": default(ViewSampler.elements),
               "sslfer_dataset": default(sslfer_dataset), "crop_face": default(F.crop_face),
               "FaceCropper (inference)": FaceCropper(16).margin}
    assert margins == dict.fromkeys(margins, F.FACE_MARGIN) and F.FACE_MARGIN == 0.25, margins
    # Pixels: the inference cropper and the training pipeline cut the same face from the same photo.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120, 3), np.uint8)
    box = np.array([30.5, 12.0, 78.0, 70.0], np.float32)
    record = FaceRecord(dataset="test", image_bytes=tf.io.encode_png(image).numpy(), box=box)
    (trained, _), = build_dataset([record], image_size=32, batch_size=1).take(1)
    inferred = FaceCropper(32)(image, box[None])
    assert inferred.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(inferred[0] / 255.0, trained[0].numpy(), atol=0.5 / 255 + 1e-6)
    assert not np.allclose(FaceCropper(32, margin=0.1)(image, box[None])[0] / 255.0, trained[0].numpy(), atol=0.02)


def test_align_margin_default():
    assert inspect.signature(F.align_face).parameters["margin"].default == F.ALIGN_MARGIN == 0.25
    with pytest.raises(ValueError, match="margin"):
        F.align_face(np.zeros((8, 8), np.uint8), np.random.default_rng(0).random((68, 2)) * 8, margin=-0.1)
