import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from cnnlab.datasets import cifar10, cifar100, load, safe_pickle


def batch_bytes(d):
    """Pickle ``d`` like the official (Python 2) batches: bytes keys, numpy data, and the
    ``numpy.core.multiarray`` path those files name."""
    raw = pickle.dumps(d, protocol=3)  # protocol 3: GLOBAL opcodes, no _codecs for bytes
    return raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def make_batch(rng, n, label_keys=("labels",), classes=10):
    d = {b"batch_label": b"tiny batch", b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
         b"filenames": [b"img_%d.png" % i for i in range(n)]}
    for k in label_keys:
        d[k.encode()] = [int(v) for v in rng.integers(0, classes, size=n)]
    return d


def make_cifar10(folder, n=4):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = make_batch(rng, n)
        (folder / name).write_bytes(batch_bytes(batches[name]))
    meta = {b"label_names": [n.encode() for n in cifar10.CLASS_NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(batch_bytes(meta))
    return batches


def test_cifar10_folder_layout_and_pixel_order(tmp_path):
    batches = make_cifar10(tmp_path / "cifar-10-batches-py")
    (xt, yt), (xv, yv) = cifar10.load_data(path=tmp_path)
    assert xt.shape == (20, 32, 32, 3) and xv.shape == (4, 32, 32, 3) and xt.dtype == np.uint8
    raw = batches["data_batch_2"][b"data"][1]
    # row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major
    assert xt[5, 0, 1, 0] == raw[1] and xt[5, 2, 3, 1] == raw[1024 + 2 * 32 + 3] and xt[5, 31, 31, 2] == raw[3071]
    np.testing.assert_array_equal(yv, batches["test_batch"][b"labels"])


def test_cifar10_from_archive_via_cnnlab_data(tmp_path, monkeypatch):
    make_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    with tarfile.open(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    ds = load("cifar10")
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.class_names == cifar10.CLASS_NAMES
    assert ds.source.endswith("cifar-10-python.tar.gz")


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        d = make_batch(rng, n, ("fine_labels", "coarse_labels"), classes=20)
        (folder / name).write_bytes(batch_bytes(d))
    meta = {b"fine_label_names": [b"f%d" % i for i in range(100)],
            b"coarse_label_names": [b"c%d" % i for i in range(20)]}
    (folder / "meta").write_bytes(batch_bytes(meta))
    (xt, yt), _ = cifar100.load_data("coarse", path=tmp_path)
    assert xt.shape == (6, 32, 32, 3)
    ds = load("cifar100", path=tmp_path, label_mode="coarse")
    assert ds.class_names[:2] == ["c0", "c1"] and len(ds.class_names) == 20
    with pytest.raises(ValueError, match="label_mode must be 'fine' or 'coarse', got 'medium'"):
        cifar100.load_data("medium", path=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=3)
    assert b"system" in payload
    with pytest.raises(ValueError, match=r"refusing global (posix|os)\.system"):
        safe_pickle.loads(payload, "evil")
    assert not (tmp_path / "PWNED").exists()
    # and through the loader, naming the file
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(ValueError, match="data_batch_3: not a valid CIFAR batch pickle.*refusing global"):
        cifar10.load_data(path=tmp_path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("evil", [
    pickle.dumps(np.array([object()], dtype=object), protocol=3),   # object dtype
    pickle.dumps(np.ma.masked_array([1, 2]), protocol=3),            # ndarray subclass
    b"\x80\x03cbuiltins\neval\nq\x00X\x06\x00\x00\x001 + 1q\x01\x85q\x02Rq\x03.",
])
def test_other_globals_refused(evil):
    with pytest.raises(ValueError, match="refusing"):
        safe_pickle.loads(evil, "x")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop(b"labels"), r"expected keys 'data' and 'labels'"),
    (lambda d: d.update({b"data": d[b"data"][:, :100]}), r"'data' must be a uint8 array of shape \(N, 3072\), "
                                                          r"got uint8 array of shape \(4, 100\)"),
    (lambda d: d.update({b"data": d[b"data"].astype(np.int16)}), r"got int16 array"),
    (lambda d: d.update({b"labels": [1, 2]}), r"'labels' must be 4 integers"),
])
def test_batch_structure_validated(tmp_path, change, message):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    d = make_batch(np.random.default_rng(3), 4)
    change(d)
    (folder / "test_batch").write_bytes(batch_bytes(d))
    with pytest.raises(ValueError, match=message):
        cifar10.load_data(path=tmp_path)


def test_truncated_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    f = folder / "data_batch_1"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(ValueError, match="data_batch_1: not a valid CIFAR batch pickle"):
        cifar10.load_data(path=tmp_path)
