r"""Exports a trained ferkeras model as a TF Serving SavedModel (preprocessing and class names included).

    python experiments/export.py --model=runs/baseline-20261125-101500 --name=fer
    python experiments/export.py --model=my_model.keras --name=fer --class_names=neutral,happy,sad
    tensorflow_model_server --rest_api_port=8501 --model_name=fer --model_base_path=$PWD/saved_models/fer

--model is a .keras file or a run directory of the experiment binaries (its checkpoints/best.keras is used, and
its result.json gives the class names unless --class_names is set).  The export goes to
<export_dir>/<name>/<version>/ (the next free integer version unless --version is set) and the binary prints its
signatures, like `saved_model_cli show --all`.  See ferkeras/export.py for what the signatures take and return.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: experiments.common
from experiments import common  # noqa: E402

_MODEL = flags.DEFINE_string("model", None, "A .keras file, or a run directory holding checkpoints/best.keras.")
_NAME = flags.DEFINE_string("name", None, "Served model name: the folder <export_dir>/<name> and TF Serving's "
                            "--model_name.")
_VERSION = flags.DEFINE_integer("version", None, "Version folder (integer); default the next free one.")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "saved_models", "Base folder of served models.")
_CLASS_NAMES = flags.DEFINE_list("class_names", None, "Expression class names in logit order; default the run's "
                                 "result.json, else ferkeras' 8 AffectNet classes.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Input side in pixels; default read from the model.")
_WARMUP = flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
_FLAGS = [_MODEL, _NAME, _VERSION, _EXPORT_DIR, _CLASS_NAMES, _IMAGE_SIZE, _WARMUP]
BOUNDS = dict(version=common.AT_LEAST_0, image_size=common.AT_LEAST_1)
"""The accepted values of the numeric flags (:class:`experiments.common.Bound`)."""


def settings():
    """The flag values as a dict."""
    return {holder.name: holder.value for holder in _FLAGS}


def check(s):
    """Errors a user can make with the flags, reported before TensorFlow is imported or the model is loaded."""
    common.check_bounds(s, BOUNDS)
    if not s["model"] or not s["name"]:
        raise app.UsageError("--model and --name are required")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    check(settings())
    from ferkeras.export import describe_export, export_for_serving, load_trained_model

    try:
        model, run_class_names, model_file = load_trained_model(_MODEL.value)
        logging.info("loaded %s from %s", model.name, model_file)
        path = export_for_serving(model, _EXPORT_DIR.value, _NAME.value, version=_VERSION.value,
                                  image_size=_IMAGE_SIZE.value, class_names=_CLASS_NAMES.value or run_class_names,
                                  warmup=_WARMUP.value)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise app.UsageError(str(e)) from e
    print(describe_export(path), flush=True)
    print(f"\nserve with: tensorflow_model_server --rest_api_port=8501 --model_name={_NAME.value} "
          f"--model_base_path={os.path.abspath(os.path.dirname(path))}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
