"""experiments/avce.py from raw files with two worker processes against its single-process reference
(tests/experiments/multi_worker.py describes the set-up and the tolerance).  From shards, killed and resumed:
test_multi_worker_avce_resume.py."""

import time

import pytest

from tests.experiments import multi_worker as mw

FLAGS = ["--flagfile=experiments/configs/avce_smoke.cfg", "--cam_images=0"]


@pytest.mark.slow
@pytest.mark.timeout(mw.TIMEOUT + 300)
def test_avce_two_workers_from_raw_files(tmp_path):
    started = time.perf_counter()
    workers, reference, out, ref_out = mw.two_worker_and_reference("experiments/avce.py", FLAGS, tmp_path, "raw")
    mw.run_all(workers + [reference])
    _, result = mw.one_run(out)
    _, ref = mw.one_run(ref_out)
    assert result["flags"]["strategy"] == "multi_worker" and not result["flags"]["shards"]
    mw.check_against_reference(result, ref, mw.AVCE_CHECKED)
    mw.assert_non_chief_directory_was_temporary(workers, tmp_path)
    print(f"AVCE, two workers and reference, raw files: {time.perf_counter() - started:.0f} s")
