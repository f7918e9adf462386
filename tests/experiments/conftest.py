"""Set-up shared by the experiment tests."""

import pytest

from tests.experiments import multi_worker


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """The smoke run's synthetic faces as TFRecord shards (:func:`tests.experiments.multi_worker.write_shards`),
    written once per test process."""
    return multi_worker.write_shards(tmp_path_factory.mktemp("shards"))
