"""Saving models: JSON for configuration, safetensors for arrays. Never pickle.

A saved model is a checked directory (see ``cnnlab.io``): ``config.json``,
``model.safetensors`` and, when compiled, ``optimizer.safetensors``.
"""
import json
import os

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .. import __version__
from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from ..io import CorruptFileError, read_checked_dir, write_checked_dir


def model_config(model):
    return {"class_name": type(model).__name__, "config": model.get_config()}


def model_from_config(config):
    from .model import Model, Sequential
    classes = {"Sequential": Sequential, "Model": Model, "Functional": Model}
    if config.get("class_name") not in classes:
        raise ValueError(f"unknown model class {config.get('class_name')!r}; expected one of {sorted(classes)}")
    return classes[config["class_name"]].from_config(config["config"])


def compile_config(model):
    if not model.compiled:
        return None
    return {"optimizer": optimizers_mod.serialize(model.optimizer), "loss": losses_mod.serialize(model.loss),
            "metrics": [m.get_config() for m in model.metrics]}


def model_files(model, include_optimizer=True):
    """The ``{name: bytes}`` of a saved model (also the core of a training checkpoint)."""
    files = {"config.json": json.dumps({"cnnlab_version": __version__, "model": model_config(model),
                                        "compile": compile_config(model)}, indent=2).encode(),
             "model.safetensors": st_save({k: np.ascontiguousarray(v) for k, v in model.named_weights().items()})}
    if include_optimizer and model.compiled:
        state = model.optimizer.get_state()
        # np.ascontiguousarray turns 0-d arrays (the step counter) into shape (1,): keep the shape
        files["optimizer.safetensors"] = st_save({k: np.ascontiguousarray(v).reshape(np.shape(v))
                                                  for k, v in state.items()})
    return files


def restore_weights(model, arrays, source):
    """Copy named arrays into the model, refusing any architecture mismatch with a clear message."""
    named = model.named_weights()
    missing = sorted(set(named) - set(arrays))
    extra = sorted(set(arrays) - set(named))
    if missing or extra:
        raise ValueError(f"{source}: the weights do not match model {model.name!r}: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}. "
                         f"Was it saved from a different architecture?")
    for k, w in named.items():
        if arrays[k].shape != w.shape:
            raise ValueError(f"{source}: weight {k!r} has shape {arrays[k].shape}, the model expects {w.shape}; "
                             f"was it saved from a different architecture?")
    for k, w in named.items():
        w[...] = arrays[k]


def model_from_files(files, source, compile=True):
    config = json.loads(files["config.json"])
    model = model_from_config(config["model"])
    restore_weights(model, st_load(files["model.safetensors"]), source)
    if compile and config.get("compile"):
        c = config["compile"]
        model.compile(optimizer=optimizers_mod.get(c["optimizer"]), loss=losses_mod.get(c["loss"]),
                      metrics=[metrics_mod.get(m) for m in c["metrics"]])
        if "optimizer.safetensors" in files:
            model.optimizer.set_state(st_load(files["optimizer.safetensors"]))
    return model


def save_model(model, path, include_optimizer=True):
    write_checked_dir(path, model_files(model, include_optimizer))


def load_model(path, compile=True):
    """Load a saved model directory, or the latest good checkpoint of a training run directory."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such saved model or run directory")
    from ..training.checkpoint import is_run_dir, latest_checkpoint
    if is_run_dir(path):
        path = latest_checkpoint(path)
    try:
        files = read_checked_dir(path)
    except CorruptFileError:
        raise
    return model_from_files(files, path, compile=compile)


def save_weights(model, path):
    from ..io import atomic_write_bytes
    atomic_write_bytes(path, st_save({k: np.ascontiguousarray(v) for k, v in model.named_weights().items()}))


def load_weights(model, path):
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        arrays = st_load(data)
    except Exception as e:  # safetensors raises its own error types
        raise CorruptFileError(f"{path}: not a readable safetensors file ({e})") from None
    restore_weights(model, arrays, path)
