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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="cnnlab's second process is forked")
def test_step_bench_over_two_processes():
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "step.py"), "--models", "seed001,seed002",
                          "--reps", "1", "--warmup", "1", "--batch", "8", "--processes", "2"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert "cnnlab over 2 processes" in out
    assert "# " not in out  # seed002's dropout splits too: no model went back to threads
    rows = [line.split() for line in out.splitlines() if line.startswith("seed")]
    assert [r[0] for r in rows] == ["seed001", "seed002"] and all(float(v) > 0 for r in rows for v in r[1:6])
    assert all(float(r[-2]) > 0 for r in rows)  # cnnlab's peak memory, over both processes
