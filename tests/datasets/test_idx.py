import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from cnnlab.datasets import _store, idx, load, mnist
from cnnlab.datasets._idxsets import load_folder

from .conftest import make_idx_folder

REAL_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path, gz):
    arrays = make_idx_folder(tmp_path, gz=gz)
    (xt, yt), (xv, yv) = load_folder(tmp_path)
    assert xt.shape == (12, 28, 28, 1) and xt.dtype == np.uint8 and yt.dtype == np.uint8
    np.testing.assert_array_equal(xt[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(yv, arrays["t10k"][1])


def test_round_trip_other_dtypes(tmp_path):
    a = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    idx.write_idx(tmp_path / "a.idx", a)
    b = idx.read_idx(tmp_path / "a.idx")
    assert b.dtype == np.int32
    np.testing.assert_array_equal(a, b)


def test_bad_magic_names_file_and_values(tmp_path):
    make_idx_folder(tmp_path)
    # swap: a labels file where images are expected
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes((tmp_path / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match=r"bad magic number 0x00000801 in train-images-idx3-ubyte.gz: "
                                         r"expected 0x00000803 for images"):
        load_folder(tmp_path)


def test_not_idx_at_all(tmp_path):
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 hello")
    with pytest.raises(ValueError, match="junk: not an IDX file"):
        idx.read_idx(tmp_path / "junk")


def test_truncated_payload(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: truncated payload: header says shape "
                                         r"\(12, 28, 28\) = 9408 bytes, file has 9398"):
        load_folder(tmp_path)


def test_trailing_bytes(tmp_path):
    f = tmp_path / "x.idx"
    idx.write_idx(f, np.zeros(3, np.uint8))
    f.write_bytes(f.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="trailing bytes"):
        idx.read_idx(f)


def test_truncated_gzip(tmp_path):
    make_idx_folder(tmp_path)
    f = tmp_path / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-12])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        load_folder(tmp_path)


def test_count_mismatch(tmp_path):
    make_idx_folder(tmp_path)
    idx.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="count mismatch: t10k-images-idx3-ubyte.gz has 5 images, "
                                         "t10k-labels-idx1-ubyte.gz has 4 labels"):
        load_folder(tmp_path)


def test_wrong_dimensions(tmp_path):
    make_idx_folder(tmp_path)
    raw = struct.pack(">BBBBII", 0, 0, 8, 2, 5, 784) + bytes(5 * 784)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    # the magic number's last byte is the number of dimensions, so 2-D "images" fail there
    with pytest.raises(ValueError, match=r"bad magic number 0x00000802 in t10k-images-idx3-ubyte.gz"):
        load_folder(tmp_path)


needs_mnist = pytest.mark.skipif(not (REAL_MNIST / "train-labels-idx1-ubyte.gz").exists(),
                                 reason="real MNIST not present")


@needs_mnist
def test_real_mnist():
    (xt, yt), (xv, yv) = mnist.load_data(path=REAL_MNIST)
    assert xt.shape == (60000, 28, 28, 1) and xv.shape == (10000, 28, 28, 1)
    assert xt.dtype == np.uint8 and yt.dtype == np.uint8
    assert yt[0] == 5 and yv[0] == 7
    assert np.bincount(yt, minlength=10).sum() == 60000 and np.bincount(yt).size == 10
    assert np.bincount(yt)[1] == 6742  # the well-known count of ones in the training set
    assert xt.max() == 255 and xt.min() == 0


@needs_mnist
def test_real_mnist_checksums_match_table():
    for fname, remote in _store.MNIST_FILES.items():
        f = REAL_MNIST / fname
        with gzip.open(f, "rb") as g:
            assert hashlib.sha256(g.read()).hexdigest() == remote.payload_sha256, fname
        assert _store.check_file(f, remote)


@needs_mnist
def test_real_mnist_via_cnnlab_data(tmp_path, monkeypatch):
    monkeypatch.setattr(_store.SPECS["fashion_mnist"], "system_dirs", ())  # keep report() quick
    (tmp_path / "mnist").symlink_to(REAL_MNIST.resolve())
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    ds = load("mnist")
    assert ds.source == str(tmp_path / "mnist") and ds.class_names[5] == "5"
    assert [r for r in __import__("cnnlab.datasets", fromlist=["report"]).report()
            if r["name"] == "mnist"][0]["checksum_ok"] is True
