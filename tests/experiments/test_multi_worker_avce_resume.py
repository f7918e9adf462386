"""experiments/avce.py from TFRecord shards with two worker processes, killed mid-training and resumed, against its
single-process reference (tests/experiments/multi_worker.py describes the set-up and the tolerance): both workers
are killed once the chief has backed up a training step, restarted with the same command plus --resume, and must
continue at the backed-up step (they then finish with exactly the run's step count)."""

import json
import os
import time

import pytest

from tests.experiments import multi_worker as mw

STEPS = 24
FLAGS = ["--flagfile=experiments/configs/avce_smoke.cfg", "--cam_images=0"]


@pytest.mark.slow
@pytest.mark.timeout(mw.TIMEOUT + 300)
def test_avce_two_workers_from_shards_killed_and_resumed(tmp_path, shards):
    shard_flags = FLAGS + [f"--shards={shards}", f"--steps={STEPS}", "--backup_every=1"]
    started = time.perf_counter()
    out = tmp_path / "shards_runs"
    workers, ports = mw.workers("experiments/avce.py", shard_flags, out, tmp_path, "shards")
    reference = mw.start("experiments/avce.py", [*shard_flags, f"--out_dir={tmp_path / 'shards_reference'}"],
                         tmp_path / "shards_reference.log", tmp_path)
    everything = [reference]
    killed = workers
    try:
        # Kill both workers once the chief has backed up a training step (state.json in its run's backup/).
        deadline = time.monotonic() + mw.TIMEOUT
        state = None
        while state is None and time.monotonic() < deadline:
            for proc in workers:
                assert proc.poll() is None, mw.tail(proc)
            runs = os.listdir(out) if os.path.isdir(out) else []
            path = os.path.join(out, runs[0], "backup", "state.json") if runs else ""
            if path and os.path.exists(path):
                mw.kill(workers)
                with open(path) as f:
                    state = json.load(f)
            time.sleep(0.05)
        assert state is not None, "the chief wrote no backup in time"
        backed_up = state["global_step"]
        assert 1 <= backed_up < STEPS, state
        run_dir = os.path.join(out, runs[0])
        # The same command again, plus --resume=<the chief's run directory>, on the same ports.
        workers, _ = mw.workers("experiments/avce.py", shard_flags + [f"--resume={run_dir}"], out, tmp_path,
                                "resumed", ports=ports)
        everything += workers
        mw.wait(everything)
    finally:
        mw.kill(everything + killed)
    # Both workers restored the chief's backup (the step the kill left; it may have saved one more before dying).
    resumed = [mw.resumed_steps(proc.log_path) for proc in workers]
    assert resumed[0] == resumed[1] and len(resumed[0]) == 1 and resumed[0][0] >= backed_up, resumed
    mw.assert_each_worker_read_its_own_files(workers, shards)
    path, result = mw.one_run(out)
    assert path == run_dir  # the resumed run finished in the chief's run directory
    assert result["iterations"] == STEPS  # continued at the backed-up step: none trained twice, none skipped
    _, ref = mw.one_run(tmp_path / "shards_reference")
    assert ref["iterations"] == STEPS
    mw.check_against_reference(result, ref, mw.AVCE_CHECKED)
    print(f"AVCE, two workers from shards killed + resumed, and reference: {time.perf_counter() - started:.0f} s")
