"""experiments/baseline.py from TFRecord shards with two worker processes against its single-process reference
(tests/experiments/multi_worker.py describes the set-up and the tolerance).  From raw files: test_baseline.py, whose
smoke run is the reference."""

import time

import pytest

from tests.experiments import multi_worker as mw


@pytest.mark.slow
@pytest.mark.timeout(mw.TIMEOUT + 300)
def test_baseline_two_workers_from_shards(tmp_path, shards):
    flags = ["--flagfile=experiments/configs/baseline_smoke.cfg", f"--shards={shards}"]
    started = time.perf_counter()
    workers, reference, out, ref_out = mw.two_worker_and_reference("experiments/baseline.py", flags, tmp_path,
                                                                   "shards")
    mw.run_all(workers + [reference])
    _, result = mw.one_run(out)
    _, ref = mw.one_run(ref_out)
    assert result["flags"]["strategy"] == "multi_worker" and result["flags"]["shards"] == shards
    mw.check_against_reference(result, ref)
    mw.assert_each_worker_read_its_own_files(workers, shards)
    mw.assert_non_chief_directory_was_temporary(workers, tmp_path)
    print(f"baseline, two workers and reference, shards: {time.perf_counter() - started:.0f} s")
