"""The benchmarks run (their numbers are not checked here: speed is measured, never a test)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_bench_prints_a_row_per_model():
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "step.py"), "--models", "seed001",
                          "--reps", "1", "--warmup", "1", "--batch", "8", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    assert "malloc pinned" in lines[0] or "malloc as the platform" in lines[0]
    row = lines[2].split()
    assert row[0] == "seed001"
    # cnnlab ms, torch ms, ratio, torch NCHW ms, ratio (the printed times are rounded: no cross-check)
    assert all(float(v) > 0 for v in row[1:6])
    assert lines[-1].startswith("geometric mean ratio")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks, with POSIX spinlocks in shared memory")
def test_process_probe_agrees_with_the_threaded_step():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "processes.py"), "--reps", "3",
                          "--batch", "8"], capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[1].startswith("two threads:") and lines[2].startswith("two processes:")
    assert float(lines[3].split("largest difference ")[1].split()[0]) <= 1e-3
