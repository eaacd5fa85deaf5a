"""Crash-safe files: atomic writes, and directories whose every file is checksummed.

A checked directory is written under a temporary name and renamed into place
only once complete, so a crash or Ctrl-C leaves either the old directory or the
new one, never half of one. Its ``manifest.json`` lists each file's SHA-256;
reading verifies them, so truncation or corruption is refused, not loaded.
"""
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

MANIFEST = "manifest.json"


class CorruptFileError(ValueError):
    pass


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_json_bytes(obj):
    return (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode()


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path, obj):
    atomic_write_bytes(path, to_json_bytes(obj))


def write_checked_dir(path, files):
    """Write ``{name: bytes}`` plus a manifest into ``path``, replacing it atomically."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        manifest = {"files": {}}
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            manifest["files"][name] = {"sha256": sha256_bytes(data), "bytes": len(data)}
        with open(os.path.join(tmp, MANIFEST), "wb") as f:
            f.write(to_json_bytes(manifest))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_checked_dir(path, names=None):
    """``{name: bytes}`` from a checked directory, every checksum verified."""
    path = os.fspath(path)
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        raise CorruptFileError(f"{path}: no {MANIFEST}; not a cnnlab checkpoint or an incomplete write")
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read())
        entries = manifest["files"]
    except (ValueError, KeyError) as e:
        raise CorruptFileError(f"{mpath}: unreadable manifest ({e})") from None
    out = {}
    for name, meta in entries.items():
        if names is not None and name not in names:
            continue
        fpath = os.path.join(path, name)
        if not os.path.isfile(fpath):
            raise CorruptFileError(f"{fpath}: listed in the manifest but missing")
        with open(fpath, "rb") as f:
            data = f.read()
        if len(data) != meta["bytes"] or sha256_bytes(data) != meta["sha256"]:
            raise CorruptFileError(f"{fpath}: checksum mismatch ({len(data)} bytes, expected {meta['bytes']}); "
                                   f"the file is truncated or corrupted")
        out[name] = data
    return out
