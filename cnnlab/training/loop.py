"""``fit`` and ``evaluate``: mini-batches, callbacks, validation, run directories, exact resume."""
import itertools
import json
import os
import time

import numpy as np

from ..datasets.augment import shift as augment_shift
from ..datasets.pipeline import BatchIterator
from ..io import atomic_write_json
from ..random import get_rng_state, set_rng_state
from . import callbacks as cbks
from .checkpoint import is_run_dir, latest_checkpoint, read_run_config, save_checkpoint, write_run_config


def _check_data(x, y, who):
    x = np.asarray(x)
    if x.size == 0 or len(x) == 0:
        raise ValueError(f"{who}: the dataset is empty (x has shape {x.shape})")
    if y is None:
        raise ValueError(f"{who}: labels `y` are required")
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{who}: x has {len(x)} samples but y has {len(y)}")
    if x.dtype.kind == "f":
        bad = np.count_nonzero(~np.isfinite(x))
        if bad:
            raise ValueError(f"{who}: the inputs contain {bad} NaN or infinite values")
    return x, y


def evaluate(model, x, y, batch_size=32):
    """``{"loss": ..., metric: ...}`` over the whole set, each batch weighted by its size."""
    x, y = _check_data(x, y, "evaluate()")
    if batch_size < 1:
        raise ValueError(f"evaluate(): batch_size must be >= 1, received {batch_size}")
    for m in model.metrics:
        m.reset_state()
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        xs = model._prepare_inputs(xb)
        yb = model._check_labels(yb, len(xb))
        out = model.forward(xs, training=False)[0]
        total += float(model._loss_value(out, yb)) * len(xb)
        for m in model.metrics:
            m.update_state(yb, out)
    result = {"loss": total / len(x) + model.regularization_loss()}
    result.update({m.name: m.result() for m in model.metrics})
    return result


def tta_views(flip=True, shift=0):
    """The views ``predict_tta`` averages, as ``(dy, dx, mirrored)``: the image itself, then moved
    ``shift`` pixels up, down, left and right; each also mirrored left-right when ``flip``."""
    shift = int(shift)
    if shift < 0:
        raise ValueError(f"test-time augmentation: `shift` must be >= 0 pixels, received {shift}")
    moves = [(0, 0)] + ([(-shift, 0), (shift, 0), (0, -shift), (0, shift)] if shift else [])
    return [(dy, dx, m) for dy, dx in moves for m in ((False, True) if flip else (False,))]


def predict_tta(model, x, flip=True, shift=0, batch_size=32):
    """Test-time augmentation: the mean of the model's outputs over views of ``x`` (N, H, W, C):
    the images themselves, their mirror images (``flip``), and copies moved ``shift`` pixels in
    each of four directions (zeros shifted in), mirrored too when ``flip``. Mirroring suits classes
    that a horizontal flip does not change (clothing, objects), not digits or text; shifts suit
    models trained with shift augmentation. ``flip=True, shift=1`` averages 10 views."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"predict_tta(): expected images of shape (N, H, W, C), received {x.shape}")
    views = tta_views(flip, shift)
    out = None
    for (dy, dx), same_move in itertools.groupby(views, key=lambda view: view[:2]):
        moved = x if (dy, dx) == (0, 0) else augment_shift(x, dy, dx)
        for _, _, mirrored in same_move:
            p = model.predict(moved[:, :, ::-1] if mirrored else moved, batch_size=batch_size)
            if out is None:
                out = p
            else:
                out += p
    if len(views) > 1:
        out *= 1.0 / len(views)
    return out


def predict_flip_averaged(model, x, batch_size=32):
    """``predict_tta(model, x, flip=True)``: the mean of the outputs on each image and its mirror image."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"predict_flip_averaged(): expected images of shape (N, H, W, C), received {x.shape}")
    return predict_tta(model, x, flip=True, batch_size=batch_size)


def _fit_arguments(batch_size, epochs, shuffle, seed, augment, validation_split, monitor, steps_per_epoch):
    aug = augment.get_config() if augment is not None and hasattr(augment, "get_config") else None
    return {"batch_size": batch_size, "epochs": epochs, "shuffle": shuffle, "seed": seed, "augment": aug,
            "validation_split": validation_split, "monitor": monitor, "steps_per_epoch": steps_per_epoch}


class RunCheckpoint(cbks.Callback):
    """Checkpoint everything a run needs into ``run_dir`` after every epoch (and the best one)."""

    def __init__(self, run_dir, monitor="val_loss", mode="auto", keep=3):
        super().__init__()
        self.run_dir, self.monitor, self.keep = run_dir, monitor, keep
        self.op, self.best = cbks._monitor_op(mode, monitor)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        monitor = self.monitor if self.monitor in logs else self.monitor.replace("val_", "")
        current = logs.get(monitor)
        is_best = current is not None and bool(self.op(current, self.best))
        if is_best:
            self.best = float(current)
        state = self.params["collect_state"](epoch + 1)
        save_checkpoint(self.run_dir, self.model, state, keep=self.keep, best=is_best)

    def get_state(self):
        return {"best": float(self.best)}

    def set_state(self, state):
        self.best = state["best"]


def fit(model, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, initial_epoch=0, augment=None, seed=None, run_dir=None,
        resume=False, monitor="val_loss", steps_per_epoch=None):
    """Train ``model``; returns its ``History``.

    ``run_dir``: checkpoint every epoch there (weights, optimizer, RNG and callback
    state, history) and log ``log.csv``; with ``resume=True`` continue from its
    latest good checkpoint, bit for bit as if never interrupted.
    """
    if batch_size is None or batch_size < 1:
        raise ValueError(f"fit(): batch_size must be >= 1, received {batch_size}")
    x, y = _check_data(x, y, "fit()")
    if validation_data is None and validation_split:
        if not 0 < validation_split < 1:
            raise ValueError(f"fit(): validation_split must be in (0, 1), received {validation_split}")
        n_val = int(len(x) * validation_split)
        if n_val == 0 or n_val == len(x):
            raise ValueError(f"fit(): validation_split={validation_split} leaves an empty set for {len(x)} samples")
        x, x_val, y, y_val = x[:-n_val], x[-n_val:], y[:-n_val], y[-n_val:]
        validation_data = (x_val, y_val)
    if validation_data is not None:
        validation_data = _check_data(validation_data[0], validation_data[1], "fit(validation_data)")
    model._prepare_inputs(x[:1])  # builds a lazy Sequential and validates the shape before any work
    model._check_labels(y, len(y))

    iterator = BatchIterator(x, y, batch_size, shuffle=shuffle, seed=seed, augment=augment)
    steps = len(iterator) if steps_per_epoch is None else min(steps_per_epoch, len(iterator))
    history = cbks.History()
    user_callbacks = list(callbacks or [])
    run_callbacks = []
    if run_dir is not None:
        os.makedirs(run_dir, exist_ok=True)
        csv_logger = cbks.CSVLogger(os.path.join(run_dir, "log.csv"), append=resume)
        run_callbacks = [csv_logger, RunCheckpoint(run_dir, monitor=monitor)]
    all_callbacks = [history] + user_callbacks + run_callbacks + [cbks.ProgbarLogger(verbose)]
    dropout_layers = [l for l in model._layers if hasattr(l, "rng")]
    step_counter = {"global": 0}

    def collect_state(epochs_done):
        return {"epoch": epochs_done, "step": step_counter["global"], "iterator": iterator.get_state(),
                "layer_rngs": {l.name: get_rng_state(l.rng) for l in dropout_layers},
                "callbacks": {f"{i}:{type(c).__name__}": c.get_state() for i, c in enumerate(all_callbacks)},
                "learning_rate": None if model.optimizer.schedule is not None
                else float(model.optimizer.learning_rate),
                "fit": {"batch_size": batch_size, "epochs": epochs, "shuffle": shuffle, "seed": seed}}

    if run_dir is not None:  # how the run was made, for ``cnnlab.training.resume`` (kept when present)
        run_config = read_run_config(run_dir)
        if "fit" not in run_config:
            run_config["fit"] = _fit_arguments(batch_size, epochs, shuffle, seed, augment,
                                               validation_split, monitor, steps_per_epoch)
            write_run_config(run_dir, run_config)

    if resume and run_dir is not None and is_run_dir(run_dir):
        from ..models.saving import read_weights, rename_layers, restore_weights
        from ..io import read_checked_dir
        from safetensors.numpy import load as st_load
        path = latest_checkpoint(run_dir)
        files = read_checked_dir(path)
        state = json.loads(files["training_state.json"])
        arrays, order = read_weights(files["model.safetensors"], path)
        renamed = restore_weights(model, arrays, path, order)
        state["layer_rngs"] = {renamed.get(k, k): v for k, v in state["layer_rngs"].items()}
        if "optimizer.safetensors" in files:
            model.optimizer.set_state(rename_layers(st_load(files["optimizer.safetensors"]), renamed))
        if state.get("learning_rate") is not None and model.optimizer.schedule is None:
            model.optimizer.learning_rate = state["learning_rate"]  # as a callback left it (ReduceLROnPlateau)
        initial_epoch = state["epoch"]
        step_counter["global"] = state["step"]
        iterator.set_state(state["iterator"])
        for l in dropout_layers:
            if l.name in state["layer_rngs"]:
                set_rng_state(l.rng, state["layer_rngs"][l.name])
        saved = state["callbacks"]
        for i, c in enumerate(all_callbacks):
            key = f"{i}:{type(c).__name__}"
            if key in saved:
                c.set_state(saved[key])
        if run_callbacks:
            run_callbacks[0].truncate_after(initial_epoch)
        if verbose:
            print(f"Resuming from {path} (epoch {initial_epoch}/{epochs})")

    params = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "verbose": verbose,
              "samples": len(x), "collect_state": collect_state, "epoch": initial_epoch}
    callback_list = cbks.CallbackList(all_callbacks, model, params)
    model.stop_training = False
    model.stop_reason = None
    model.history = history
    callback_list.on_train_begin()
    start = time.perf_counter()
    try:
        for epoch in range(initial_epoch, epochs):
            params["epoch"] = epoch
            callback_list.on_epoch_begin(epoch)
            for m in model.metrics:
                m.reset_state()
            loss_sum, seen = 0.0, 0
            # islice: never draw (and waste) a batch beyond ``steps``
            for step, (xb, yb) in enumerate(itertools.islice(iterator, steps)):
                callback_list.on_train_batch_begin(step)
                loss, out = model.train_step(xb, yb)
                step_counter["global"] += 1
                n = len(xb)
                loss_sum += loss * n
                seen += n
                for m in model.metrics:
                    m.update_state(yb, out)
                logs = {"loss": loss_sum / seen, **{m.name: m.result() for m in model.metrics}, "size": n}
                if not np.isfinite(loss):
                    logs["loss"] = loss
                callback_list.on_train_batch_end(step, logs)
                if model.stop_training:
                    break
            epoch_logs = {"loss": loss_sum / max(seen, 1), **{m.name: m.result() for m in model.metrics}}
            if validation_data is not None and not model.stop_reason:
                val = evaluate(model, *validation_data, batch_size=max(batch_size, 256))
                epoch_logs.update({f"val_{k}": v for k, v in val.items()})
            epoch_logs["learning_rate"] = float(model.optimizer.learning_rate)
            if model.stop_reason:  # a NaN loss: never checkpoint a broken model over a good one
                break
            callback_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
    finally:
        callback_list.on_train_end({"seconds": time.perf_counter() - start})
    return history
