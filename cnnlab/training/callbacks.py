"""Callbacks with Keras's names. Each one that keeps state across epochs can
``get_state``/``set_state`` it (JSON-safe), so a resumed run behaves exactly
as an uninterrupted one."""
import csv
import math
import os
import sys
import time

import numpy as np


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass

    def get_state(self):
        return {}

    def set_state(self, state):
        pass


class CallbackList(Callback):
    def __init__(self, callbacks, model, params):
        super().__init__()
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(params)

    def _call(self, name, *args):
        for c in self.callbacks:
            getattr(c, name)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)


class History(Callback):
    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))

    def get_state(self):
        return {"history": self.history, "epoch": self.epoch}

    def set_state(self, state):
        self.history = {k: list(v) for k, v in state.get("history", {}).items()}
        self.epoch = list(state.get("epoch", []))


def _fmt_logs(logs, keys=None):
    return " - ".join(f"{k}: {logs[k]:.4f}" for k in (keys or logs) if k in logs and k != "learning_rate") + \
        (f" - learning_rate: {logs['learning_rate']:.3g}" if "learning_rate" in logs else "")


def _fmt_time(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


class ProgbarLogger(Callback):
    """``verbose=1``: a live bar per epoch (samples/s, ETA, running metrics); ``2``: one line per epoch."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.last_draw = time.perf_counter()
        self.seen = 0
        if self.verbose == 1:
            print(f"Epoch {epoch + 1}/{self.params['epochs']}", file=self.stream, flush=True)

    def on_train_batch_end(self, batch, logs=None):
        self.seen += logs.get("size", 0)
        if self.verbose != 1:
            return
        now = time.perf_counter()
        steps = self.params["steps"]
        if now - self.last_draw < 0.1 and batch + 1 < steps:
            return
        self.last_draw = now
        elapsed = now - self.epoch_start
        rate = self.seen / max(elapsed, 1e-9)
        eta = elapsed / (batch + 1) * (steps - batch - 1)
        width = 30
        done = int(width * (batch + 1) / steps)
        bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
        metrics = _fmt_logs({k: v for k, v in logs.items() if k not in ("size", "batch")})
        line = f"\r{batch + 1}/{steps} [{bar}] - ETA {_fmt_time(eta)} - {rate:,.0f} samples/s - {metrics}"
        print(line, end="", file=self.stream, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.epoch_start
        rate = self.seen / max(elapsed, 1e-9)
        summary = f"{_fmt_time(elapsed)} {rate:,.0f} samples/s - {_fmt_logs(logs or {})}"
        if self.verbose == 1:
            print(f"\r{self.params['steps']}/{self.params['steps']} - {summary}" + " " * 10,
                  file=self.stream, flush=True)
        elif self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.params['epochs']} - {summary}", file=self.stream, flush=True)


def _monitor_op(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max', received {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.startswith("top")) else "min"
    return (np.greater, -np.inf) if mode == "max" else (np.less, np.inf)


def _get_monitored(logs, monitor, who):
    if monitor not in (logs or {}):
        raise ValueError(f"{who}: monitored metric {monitor!r} is not available; available: {sorted(logs or {})}. "
                         f"(val_* metrics need validation data.)")
    return float(logs[monitor])


class EarlyStopping(Callback):
    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.baseline = monitor, patience, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.op, self.initial = _monitor_op(mode, monitor)
        self.min_delta = abs(min_delta) if self.op is np.greater else -abs(min_delta)
        self.best_weights = None
        self.reset()

    def reset(self):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = self.initial if self.baseline is None else self.baseline

    def on_train_begin(self, logs=None):
        if getattr(self, "_resumed", False):  # state restored from a checkpoint: keep it
            self._resumed = False
            return
        if self.best_weights is None:
            self.reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _get_monitored(logs, self.monitor, "EarlyStopping")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self.op(current - self.min_delta, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self.op(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.params.get("verbose", 0):
            print(f"Epoch {self.stopped_epoch + 1}: early stopping (best {self.monitor} "
                  f"{self.best:.4f} at epoch {self.best_epoch + 1})")

    def get_state(self):
        return {"wait": self.wait, "best": float(self.best), "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch}

    def set_state(self, state):
        self.wait, self.best = state["wait"], state["best"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        self._resumed = True


class LearningRateScheduler(Callback):
    """``schedule(epoch, lr) -> new lr``, applied at the start of each epoch."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, float(self.model.optimizer.learning_rate)))
        if not math.isfinite(lr):
            raise ValueError(f"LearningRateScheduler: the schedule returned {lr} at epoch {epoch + 1}")
        self.model.optimizer.learning_rate = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr:.6g}.")


class ReduceLROnPlateau(Callback):
    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: `factor` must be < 1, received {factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.op, self.initial = _monitor_op(mode, monitor)
        self.best, self.wait, self.cooldown_counter = self.initial, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        current = _get_monitored(logs, self.monitor, "ReduceLROnPlateau")
        better = current > self.best + self.min_delta if self.op is np.greater else current < self.best - self.min_delta
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if better:
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(self.model.optimizer.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new:.6g}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self):
        return {"best": float(self.best), "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        self.best, self.wait, self.cooldown_counter = state["best"], state["wait"], state["cooldown_counter"]


class CSVLogger(Callback):
    """One row per epoch; the file is flushed after every row so a crash loses nothing written."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self.keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0
        if exists:
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.sep), None)
            self.keys = header[1:] if header else None
        os.makedirs(os.path.dirname(os.path.abspath(self.filename)), exist_ok=True)
        self.file = open(self.filename, "a" if exists else "w", newline="")
        self.writer = csv.writer(self.file, delimiter=self.sep)

    def truncate_after(self, epoch):
        """Drop rows for epochs after ``epoch`` (1-based count of finished epochs) before resuming."""
        if not os.path.isfile(self.filename):
            return
        with open(self.filename, newline="") as f:
            rows = list(csv.reader(f, delimiter=self.sep))
        keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) < epoch]
        from ..io import atomic_write_bytes
        import io
        buf = io.StringIO()
        csv.writer(buf, delimiter=self.sep).writerows(keep)
        atomic_write_bytes(self.filename, buf.getvalue().encode())

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self.writer.writerow(["epoch"] + self.keys)
        self.writer.writerow([epoch] + [logs.get(k, "") for k in self.keys])
        self.file.flush()
        os.fsync(self.file.fileno())

    def on_train_end(self, logs=None):
        if getattr(self, "file", None):
            self.file.close()
            self.file = None


class TerminateOnNaN(Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True
            self.model.stop_reason = (f"TerminateOnNaN: loss became {loss} at epoch {self.params['epoch'] + 1}, "
                                      f"step {batch + 1}; training stopped")
            print(self.model.stop_reason, file=sys.stderr)


class ModelCheckpoint(Callback):
    """Save the model every epoch (``{epoch:02d}`` and metric names may appear in
    ``filepath``), or only when ``monitor`` improves with ``save_best_only``.
    Each save is atomic: a crash leaves the previous file intact."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto"):
        super().__init__()
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.op, self.best = _monitor_op(mode, monitor)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _get_monitored(logs, self.monitor, "ModelCheckpoint")
            if not self.op(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)

    def get_state(self):
        return {"best": float(self.best)}

    def set_state(self, state):
        self.best = state["best"]
