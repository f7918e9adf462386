"""Where the dlib model files come from.

dlib's 68-point shape predictor and its CNN (MMOD) face detector are shipped by
the ``face-recognition-models`` package (a declared dependency of ferkeras).
That package's ``__init__`` imports ``pkg_resources``, so it is never imported
here: its folder is located with :func:`importlib.util.find_spec`, which reads
no module code.
"""

from __future__ import annotations

import importlib.util
import os
from typing import List, Optional

MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
CNN_FACE_DETECTOR = "mmod_human_face_detector.dat"


def _package_models_dir() -> Optional[str]:
    """The ``models/`` folder of the installed face-recognition-models, or None."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [os.path.dirname(spec.origin)]
    for folder in folders:
        candidate = os.path.join(folder, "models")
        if os.path.isdir(candidate):
            return candidate
    return None


def find_model_file(filename: str, path: Optional[str] = None) -> str:
    """Returns the path of a dlib model file, or raises a FileNotFoundError that says how to fix it.

    Args:
      filename: the model's file name, e.g. :data:`SHAPE_PREDICTOR_68`.
      path: a file the caller names.  When given it is the only place looked at
        (a wrong explicit path is an error, never silently replaced).

    Searched, in order, when ``path`` is None: the folder named by the
    environment variable ``FERKERAS_DLIB_MODELS``, then the ``models/`` folder
    of the installed ``face-recognition-models`` package.
    """
    if path is not None:
        path = os.fspath(path)
        if os.path.isfile(path):
            return path
        raise FileNotFoundError(f"dlib model file {path!r} does not exist (expected {filename})")
    searched: List[str] = []
    env_dir = os.environ.get("FERKERAS_DLIB_MODELS")
    if env_dir:
        candidate = os.path.join(env_dir, filename)
        searched.append(f"{candidate} (from $FERKERAS_DLIB_MODELS)")
        if os.path.isfile(candidate):
            return candidate
    pkg_dir = _package_models_dir()
    if pkg_dir is None:
        searched.append(f"the {MODELS_PACKAGE} package: not installed")
    else:
        candidate = os.path.join(pkg_dir, filename)
        searched.append(candidate)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"dlib model file {filename} not found. Searched: {'; '.join(searched)}. "
        "Fix: `pip install face-recognition-models==0.3.0`, or pass the file's path "
        "(model_path=...), or set FERKERAS_DLIB_MODELS to the folder holding it."
    )
