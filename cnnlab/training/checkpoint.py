"""Training run directories: every epoch a complete, checksummed checkpoint.

Layout::

    RUN_DIR/run.json                 how the run was made (model, data, fit arguments)
    RUN_DIR/log.csv                  one row per epoch
    RUN_DIR/latest.json              pointer to the newest good checkpoint, replaced atomically
    RUN_DIR/checkpoints/epoch-0003/  config.json, model.safetensors, optimizer.safetensors,
                                     training_state.json, manifest.json (SHA-256 of each)
    RUN_DIR/best/                    the best epoch on the monitored metric

A checkpoint directory is renamed into place only when complete and the
pointer moves only after that, so a crash or Ctrl-C at any moment leaves the
last good checkpoint loadable.
"""
import json
import os
import shutil
import warnings

from ..io import CorruptFileError, atomic_write_json, read_checked_dir, to_json_bytes, write_checked_dir

LATEST = "latest.json"
CHECKPOINTS = "checkpoints"


def is_run_dir(path):
    return os.path.isfile(os.path.join(path, LATEST)) or os.path.isdir(os.path.join(path, CHECKPOINTS))


def checkpoint_name(epoch):
    return f"epoch-{epoch:04d}"


def save_checkpoint(run_dir, model, training_state, keep=3, best=False):
    """Write the checkpoint after ``training_state['epoch']`` finished epochs and move the pointer."""
    from ..models.saving import model_files
    files = model_files(model, include_optimizer=True)
    files["training_state.json"] = to_json_bytes(training_state)
    epoch = training_state["epoch"]
    rel = os.path.join(CHECKPOINTS, checkpoint_name(epoch))
    write_checked_dir(os.path.join(run_dir, rel), files)
    atomic_write_json(os.path.join(run_dir, LATEST), {"checkpoint": rel, "epoch": epoch})
    if best:
        write_checked_dir(os.path.join(run_dir, "best"), files)
    _prune(run_dir, keep)


def _prune(run_dir, keep):
    if not keep:
        return
    folder = os.path.join(run_dir, CHECKPOINTS)
    for n in os.listdir(folder):  # half-written directories left by a killed process
        if n.startswith(".epoch-") and (".tmp-" in n or ".old-" in n):
            shutil.rmtree(os.path.join(folder, n), ignore_errors=True)
    names = sorted(n for n in os.listdir(folder) if n.startswith("epoch-") and "." not in n)
    for name in names[:-keep]:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def list_checkpoints(run_dir):
    folder = os.path.join(run_dir, CHECKPOINTS)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder), reverse=True)
            if n.startswith("epoch-") and "." not in n]


def latest_checkpoint(run_dir):
    """The newest checkpoint whose checksums verify; a corrupt one is reported and skipped."""
    candidates = []
    pointer = os.path.join(run_dir, LATEST)
    if os.path.isfile(pointer):
        try:
            with open(pointer) as f:
                candidates.append(os.path.join(run_dir, json.load(f)["checkpoint"]))
        except (ValueError, KeyError):
            warnings.warn(f"{pointer} is unreadable; looking for checkpoints directly")
    candidates += [c for c in list_checkpoints(run_dir) if c not in candidates]
    problems = []
    for path in candidates:
        try:
            read_checked_dir(path)
        except (CorruptFileError, OSError) as e:
            problems.append(str(e))
            continue
        for p in problems:
            warnings.warn(f"skipping a bad checkpoint: {p}; using {path}")
        return path
    detail = ("; ".join(problems)) if problems else "no checkpoints were written"
    raise CorruptFileError(f"{run_dir}: no loadable checkpoint ({detail})")


def load_checkpoint(path, compile=True):
    """``(model, training_state)`` from a checkpoint or run directory."""
    from ..models.saving import model_from_files
    if is_run_dir(path):
        path = latest_checkpoint(path)
    files = read_checked_dir(path)
    model = model_from_files(files, path, compile=compile)
    state = json.loads(files["training_state.json"]) if "training_state.json" in files else {}
    return model, state


def read_run_config(run_dir):
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_run_config(run_dir, config):
    atomic_write_json(os.path.join(run_dir, "run.json"), config)
