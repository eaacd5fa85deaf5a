"""Every test here runs offline, with its own cache and data folders."""
import numpy as np
import pytest

from cnnlab.datasets.idx import write_idx


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")          # nothing may reach the network
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)


def make_idx_folder(folder, n_train=12, n_test=5, gz=True, seed=0, size=28):
    """Four small IDX files in the official names; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y)
        arrays[prefix] = (x, y)
    return arrays
