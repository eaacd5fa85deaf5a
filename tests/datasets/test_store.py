import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

import cnnlab.datasets as D
from cnnlab.datasets import _store, fashion_mnist, mnist

from .conftest import make_idx_folder


def test_search_order(tmp_path, monkeypatch):
    explicit, data, system = tmp_path / "explicit", tmp_path / "data", tmp_path / "system"
    cache = tmp_path / "xdg" / "cnnlab" / "mnist"
    for folder, n in ((explicit, 1), (data / "mnist", 2), (cache, 3), (system, 4)):
        make_idx_folder(folder, n_train=n)
    monkeypatch.setenv("CNNLAB_DATA", str(data))
    monkeypatch.setattr(_store.SPECS["mnist"], "system_dirs", (str(system),))
    assert _store.search_dirs("mnist", explicit) == [explicit, data / "mnist", cache, system]

    def n_train(**kw):
        return len(mnist.load_data(**kw)[0][0])
    assert n_train(path=explicit) == 1
    assert n_train() == 2
    monkeypatch.delenv("CNNLAB_DATA")
    assert n_train() == 3
    (cache / "train-images-idx3-ubyte.gz").unlink()  # an incomplete folder is passed over
    assert n_train() == 4
    assert n_train(path=tmp_path / "empty") == 4      # a missing explicit path falls through too


def test_cache_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _store.cache_root() == tmp_path / ".cache" / "cnnlab"


def test_debian_fashion_mnist_location_is_known():
    assert "/usr/share/datasets/fashion-mnist" in fashion_mnist.SPEC.system_dirs


def test_offline_not_found_message(tmp_path, monkeypatch):
    with pytest.raises(D.DatasetNotFoundError) as e:
        mnist.load_data()
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert "MNIST not found; not downloading (CNNLAB_OFFLINE is set)" in msg
    assert str(tmp_path / "xdg" / "cnnlab" / "mnist") in msg
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz", "CNNLAB_DATA"):
        assert f in msg
    monkeypatch.delenv("CNNLAB_OFFLINE")
    with pytest.raises(D.DatasetNotFoundError, match=r"download=False"):
        D.load("cifar10", download=False)


def test_unknown_name_suggests(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown dataset: 'mnsit' \(did you mean 'mnist'\?\)"):
        D.load("mnsit")
    with pytest.raises(FileNotFoundError, match="not a known data set or an existing directory"):
        D.load(str(tmp_path / "no" / "such"))
    assert set(D.NAMES) == {"mnist", "fashion_mnist", "cifar10", "cifar100", "digits"}


def test_digits_offline_default():
    ds = D.load("digits")
    assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255
    total = np.bincount(ds.y_train) + np.bincount(ds.y_test)
    assert np.all(np.abs(np.bincount(ds.y_test) - 0.2 * total) <= 1)  # stratified
    again = D.digits.load_data()
    np.testing.assert_array_equal(again[1][0], ds.x_test)  # fixed split


def test_load_directory_detects_idx(tmp_path):
    make_idx_folder(tmp_path / "mine", n_train=7)
    ds = D.load(tmp_path / "mine")
    assert ds.x_train.shape == (7, 28, 28, 1) and ds.name == "mine"


# --- downloads (file:// and a local http.server only) --------------------------------------

def _remote(data, sha=True):
    return _store.Remote(len(data), hashlib.md5(data).hexdigest(),
                         hashlib.sha256(data).hexdigest() if sha else None)


def test_download_file_url_into_cache(tmp_path, monkeypatch, capsys):
    """End to end: mnist.load_data() fetches the four files from a (local) mirror into the cache."""
    server = tmp_path / "mirror"
    make_idx_folder(server, n_train=6)
    files = {f: _remote((server / f).read_bytes()) for f in _store.MNIST_FILES}
    monkeypatch.setattr(_store.SPECS["mnist"], "files", files)
    monkeypatch.setattr(_store.SPECS["mnist"], "mirrors", (server.as_uri() + "/",))
    monkeypatch.delenv("CNNLAB_OFFLINE")
    (xt, _), _ = mnist.load_data()
    assert xt.shape == (6, 28, 28, 1)
    cache = tmp_path / "xdg" / "cnnlab" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)  # no leftover temp files
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "100.0%" in err
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")  # now found in the cache without downloading
    assert mnist.load_data()[0][0].shape == (6, 28, 28, 1)


def test_download_wrong_sha256_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "file.bin"
    src.write_bytes(b"x" * 1000)
    bad = _store.Remote(1000, hashlib.md5(b"x" * 1000).hexdigest(), "0" * 64)
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(D.ChecksumError, match="SHA-256 mismatch.*expected 0000"):
        D.download_file(src.as_uri(), dest, bad, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_download_md5_fallback(tmp_path):
    src = tmp_path / "file.bin"
    src.write_bytes(b"abc" * 100)
    ok = _remote(src.read_bytes(), sha=False)
    D.download_file(src.as_uri(), tmp_path / "out" / "a", ok, progress=False)
    assert (tmp_path / "out" / "a").read_bytes() == src.read_bytes()
    wrong = _store.Remote(ok.size + 1, ok.md5)
    with pytest.raises(D.ChecksumError, match=r"expected 301 bytes with MD5 .*, got 300 bytes"):
        D.download_file(src.as_uri(), tmp_path / "out" / "b", wrong, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a"]


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_http_falls_back_to_next_mirror(tmp_path, http_dir):
    root, url = http_dir
    data = np.random.default_rng(0).bytes(50_000)
    (root / "blob").write_bytes(data)
    dest = tmp_path / "c" / "blob"
    D.download_file([url + "missing", url + "blob"], dest, _remote(data), progress=False)
    assert dest.read_bytes() == data


def test_download_failure_is_not_found_error(tmp_path, monkeypatch, http_dir):
    _, url = http_dir
    monkeypatch.setattr(_store.SPECS["cifar10"], "mirrors", (url,))
    monkeypatch.delenv("CNNLAB_OFFLINE")
    with pytest.raises(D.DatasetNotFoundError, match="download failed.*404"):
        D.cifar10.load_data()
    assert not any((tmp_path / "xdg" / "cnnlab" / "cifar10").iterdir())


def test_report(tmp_path, monkeypatch):
    monkeypatch.setattr(_store.SPECS["fashion_mnist"], "system_dirs", ())
    data = tmp_path / "data"
    make_idx_folder(data / "mnist")
    monkeypatch.setenv("CNNLAB_DATA", str(data))
    rows = {r["name"]: r for r in D.report()}
    assert set(rows) == set(D.NAMES)
    assert rows["mnist"]["found_at"] == str(data / "mnist") and len(rows["mnist"]["files"]) == 4
    assert rows["mnist"]["checksum_ok"] is False  # synthetic files are not the official ones
    assert rows["fashion_mnist"] == {"name": "fashion_mnist", "found_at": None, "files": [], "checksum_ok": None}
