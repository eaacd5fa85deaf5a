"""Where dataset files live: the search order, known checksums and verified downloads.

Search order for dataset ``name``: the explicit ``path``, ``$CNNLAB_DATA/<name>/``,
``$XDG_CACHE_HOME/cnnlab/<name>/`` (default ``~/.cache/cnnlab/<name>/``), known system
locations, then a download from the official mirrors into the cache (unless
``download=False`` or ``CNNLAB_OFFLINE=1``).
"""
import gzip
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are nowhere on disk and could not (or may not) be downloaded."""


class ChecksumError(ValueError):
    """A file's size or digest differs from the official one."""


@dataclass(frozen=True)
class Remote:
    """An official file: size in bytes and digests of the file as served by the mirrors.

    ``payload_sha256`` is the SHA-256 of the *decompressed* content of a ``.gz`` file: local copies
    are often re-gzipped (Debian strips the gzip name field, other copies use another level), which
    changes the file's bytes but not its content.
    """
    size: int
    md5: str
    sha256: str = None
    payload_sha256: str = None


@dataclass
class Spec:
    name: str
    title: str
    files: dict                      # official file name -> Remote
    mirrors: tuple
    locate: object                   # callable(dir: Path) -> the thing to load from, or None
    system_dirs: tuple = ()
    layout_help: str = ""            # what to put where, for the not-found message
    extra: dict = field(default_factory=dict)


# --- Known checksums -------------------------------------------------------------------------
# Sizes, MD5 and SHA-256 of the files as served by the official mirrors (the MD5s are the ones
# published by torchvision / the Fashion-MNIST README / the CIFAR page; the SHA-256s agree across
# Keras, torchvision and several independent pinned copies).
# payload_sha256 (decompressed IDX content):
#   MNIST: computed from the original files in the project's shared data folder (their gzip
#     wrapper was rewritten, the IDX content is original; two of these values also match an
#     independent pinned copy).
#   Fashion-MNIST: computed from Debian's dataset-fashion-mnist files, which are the upstream
#     gzip streams with the name field stripped (each file is exactly len(name)+1 bytes shorter).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": Remote(
        9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte.gz": Remote(
        28881, "d53e105ee54ea40749a09fcbcd1e9432",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte.gz": Remote(
        1648877, "9fb629c4189551a2d022fa330f9573f3",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte.gz": Remote(
        4542, "ec29112dd5afa0611ce80d1b7f02629c",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": Remote(
        26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": Remote(
        29515, "25c81989df183df01b3e8a0aad5dffbe",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": Remote(
        4422102, "bef4ecab320f06d8554ea6380940ec79",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": Remote(
        5148, "bb300cfdad3c16e7a12a480ee83cd310",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
CIFAR10_FILES = {"cifar-10-python.tar.gz": Remote(
    170498071, "c58f30108f718f92721af3b95e74349a",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")}
CIFAR100_FILES = {"cifar-100-python.tar.gz": Remote(
    169001437, "eb9058c3a382ffc7106e4002c42a8d85",
    "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")}

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/")
FASHION_MNIST_MIRRORS = ("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)

SPECS = {}  # name -> Spec, filled by the dataset modules


def register(spec):
    SPECS[spec.name] = spec
    return spec


# --- Search ----------------------------------------------------------------------------------

def offline():
    return os.environ.get("CNNLAB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnlab"


def search_dirs(name, path=None):
    """Candidate directories for dataset ``name``, in the order they are tried."""
    dirs = []
    if path is not None:
        dirs.append(Path(path).expanduser())
    if os.environ.get("CNNLAB_DATA"):
        dirs.append(Path(os.environ["CNNLAB_DATA"]).expanduser() / name)
    dirs.append(cache_root() / name)
    dirs.extend(Path(d) for d in SPECS[name].system_dirs)
    return dirs


def find(name, path=None):
    """``(dir, source)`` of the first candidate directory holding the dataset, or ``(None, None)``."""
    spec = SPECS[name]
    for d in search_dirs(name, path):
        if d.is_dir():
            src = spec.locate(d)
            if src is not None:
                return d, src
    return None, None


def fetch(name, path=None, download=True):
    """Find dataset ``name`` on disk, downloading it into the cache if allowed. Returns ``(dir, source)``."""
    spec = SPECS[name]
    found = find(name, path)
    if found[0] is not None:
        return found
    tried = search_dirs(name, path)
    if not download or offline():
        why = "download=False" if not download else "CNNLAB_OFFLINE is set"
        raise DatasetNotFoundError(_not_found_message(spec, tried, f"not downloading ({why})"))
    target = Path(path).expanduser() if path is not None else cache_root() / name
    try:
        for fname, remote in spec.files.items():
            if not (target / fname).exists():
                download_file([m + fname for m in spec.mirrors], target / fname, remote)
    except (urllib.error.URLError, OSError) as e:
        raise DatasetNotFoundError(_not_found_message(spec, tried, f"download failed: {e}")) from e
    src = spec.locate(target)
    if src is None:
        raise DatasetNotFoundError(_not_found_message(spec, tried, f"downloaded files in {target} are incomplete"))
    return target, src


def _not_found_message(spec, tried, why):
    files = ", ".join(spec.files)
    where = "\n".join(f"  {d}" for d in tried)
    return (f"{spec.title} not found; {why}.\nLooked in:\n{where}\n"
            f"Put {spec.layout_help or files} into one of those folders "
            f"(e.g. set CNNLAB_DATA=/data and use /data/{spec.name}/), "
            f"or allow the download of {files} from {spec.mirrors[0]} "
            f"(download=True and CNNLAB_OFFLINE unset).")


# --- Checksums -------------------------------------------------------------------------------

def file_digest(path, algorithm="sha256", decompress=False):
    h = hashlib.new(algorithm)
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path, remote):
    """True if ``path`` is the official file (same bytes) or has the official content (same payload)."""
    path = Path(path)
    if remote.sha256 and file_digest(path) == remote.sha256:
        return True
    if not remote.sha256 and path.stat().st_size == remote.size and file_digest(path, "md5") == remote.md5:
        return True
    if remote.payload_sha256:
        try:
            return file_digest(path, decompress=_is_gzip(path)) == remote.payload_sha256
        except (OSError, EOFError):
            return False
    return False


def _is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


# --- Download --------------------------------------------------------------------------------

def download_file(urls, dest, remote=None, progress=True):
    """Download the first reachable URL of ``urls`` to ``dest`` and verify it against ``remote``.

    The data goes to a temporary file next to ``dest`` that is moved into place with
    ``os.replace`` only once verified, so an interrupted or corrupt download never leaves a
    file that a later run would take for the dataset.
    """
    if isinstance(urls, str):
        urls = [urls]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            _download_one(url, dest, remote, progress)
            return dest
        except ChecksumError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
    raise urllib.error.URLError("; ".join(errors))


def _download_one(url, dest, remote, progress):
    if not url.startswith(("http://", "https://", "file:")):
        raise ValueError(f"unsupported URL scheme in {url!r}: expected http, https or file")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    sha, md5, done = hashlib.sha256(), hashlib.md5(), 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or (remote.size if remote else 0)
            bar = _Progress(dest.name, total) if progress else None
            for block in iter(lambda: resp.read(1 << 16), b""):
                out.write(block)
                sha.update(block)
                md5.update(block)
                done += len(block)
                if bar:
                    bar.update(done)
            if bar:
                bar.close(done)
        if remote is not None:
            _verify(url, done, sha.hexdigest(), md5.hexdigest(), remote)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _verify(url, size, sha256, md5, remote):
    if remote.sha256:
        if sha256 != remote.sha256:
            raise ChecksumError(f"SHA-256 mismatch for {url}: expected {remote.sha256}, got {sha256}")
    else:  # no SHA-256 known for certain: the published size and MD5 are what we can check
        if size != remote.size or md5 != remote.md5:
            raise ChecksumError(f"checksum mismatch for {url}: expected {remote.size} bytes with MD5 "
                                f"{remote.md5}, got {size} bytes with MD5 {md5}")


class _Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label, total):
        self.label, self.total, self.last = label, total, 0.0

    def update(self, done, force=False):
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            msg = f"\r{self.label} [{bar:<30}] {frac:6.1%} {done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        else:
            msg = f"\r{self.label} {done / 1e6:.1f} MB"
        sys.stderr.write(msg)
        sys.stderr.flush()

    def close(self, done):
        self.update(done, force=True)
        sys.stderr.write("\n")
        sys.stderr.flush()
