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


def weights_to_bytes(model):
    """safetensors of every named weight; the metadata keeps the layer order, so weights can
    also be matched by position when the same architecture was built under other names."""
    order = [l.name for l in model._layers]  # all of them: RNG state is keyed by layer too
    return st_save({k: np.ascontiguousarray(v) for k, v in model.named_weights().items()},
                   metadata={"layers": json.dumps(order)})


def read_weights(data, source):
    """``(arrays, saved layer order or None)`` from safetensors bytes; refuses unreadable data."""
    try:
        arrays = st_load(data)
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except Exception as e:  # safetensors raises its own error types
        raise CorruptFileError(f"{source}: not a readable safetensors file ({e})") from None
    return arrays, json.loads(meta["layers"]) if "layers" in meta else None


def layer_name_map(model, arrays, saved_layers):
    """Saved layer name -> this model's, where the names differ but the layers line up by position
    (a model rebuilt in the same process is named ``dense_1`` where the saved one said ``dense``)."""
    ours = model._layers
    if {k.partition("/")[0] for k in arrays} <= {l.name for l in ours} or not saved_layers \
            or len(saved_layers) != len(ours):
        return {}
    mapping = dict(zip(saved_layers, (l.name for l in ours)))
    if set(rename_layers(arrays, mapping)) != set(model.named_weights()):
        return {}  # other layers altogether: restore_weights reports the names that differ
    return mapping  # same layers by position; a differing shape is reported as such


def rename_layers(arrays, mapping):
    """Apply a layer-name map to ``layer/...`` keys (keys without a layer, like ``iterations``, stay)."""
    if not mapping:
        return arrays
    out = {}
    for key, value in arrays.items():
        layer, sep, rest = key.partition("/")
        out[f"{mapping.get(layer, layer)}{sep}{rest}"] = value
    return out


def model_files(model, include_optimizer=True):
    """The ``{name: bytes}`` of a saved model (also the core of a training checkpoint)."""
    files = {"config.json": json.dumps({"cnnlab_version": __version__, "model": model_config(model),
                                        "compile": compile_config(model)}, indent=2).encode(),
             "model.safetensors": weights_to_bytes(model)}
    if include_optimizer and model.compiled:
        state = model.optimizer.get_state()
        # np.ascontiguousarray turns 0-d arrays (the step counter) into shape (1,): keep the shape
        files["optimizer.safetensors"] = st_save({k: np.ascontiguousarray(v).reshape(np.shape(v))
                                                  for k, v in state.items()})
    return files


def restore_weights(model, arrays, source, saved_layers=None):
    """Copy named arrays into the model, refusing any architecture mismatch with a clear message.

    Returns the layer-name map that was applied (empty when the names matched)."""
    mapping = layer_name_map(model, arrays, saved_layers)
    arrays = rename_layers(arrays, mapping)
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
    return mapping


def model_from_files(files, source, compile=True):
    config = json.loads(files["config.json"])
    model = model_from_config(config["model"])
    arrays, order = read_weights(files["model.safetensors"], source)
    restore_weights(model, arrays, source, order)
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
    return model_from_files(read_checked_dir(path), path, compile=compile)


def save_weights(model, path):
    from ..io import atomic_write_bytes
    atomic_write_bytes(path, weights_to_bytes(model))


def load_weights(model, path):
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    arrays, order = read_weights(data, path)
    restore_weights(model, arrays, path, order)
