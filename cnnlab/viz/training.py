"""Training curves from a run's ``log.csv``."""
import csv
import os

import numpy as np

from ._common import new_figure


def read_log(path):
    """``{column: float array}`` from a ``log.csv`` (or a run directory holding one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "log.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no epochs logged")
    cols = {}
    for key in rows[0]:
        try:
            cols[key] = np.array([float(r[key]) if r[key] not in ("", None) else np.nan for r in rows])
        except ValueError:
            continue
    return cols


def plot_curves(log):
    """Loss and accuracy per epoch, training against validation (and the learning rate if it moved)."""
    cols = read_log(log) if not isinstance(log, dict) else log
    n = len(next(iter(cols.values())))
    epochs = cols["epoch"] + 1 if "epoch" in cols else np.arange(1, n + 1)
    lr = cols.get("learning_rate")
    show_lr = lr is not None and np.nanmax(lr) != np.nanmin(lr)
    panels = [("loss", "loss"), ("accuracy", "accuracy")]
    panels = [p for p in panels if p[0] in cols or f"val_{p[0]}" in cols]
    if not panels:
        raise ValueError(f"log has no loss or accuracy columns: {sorted(cols)}")
    n_ax = len(panels) + (1 if show_lr else 0)
    fig = new_figure(4.5 * n_ax, 3.6)
    axes = [fig.add_subplot(1, n_ax, i + 1) for i in range(n_ax)]
    marker = "o" if n <= 30 else None
    for ax, (key, title) in zip(axes, panels):
        if key in cols:
            ax.plot(epochs, cols[key], marker=marker, ms=3, label="training")
        if f"val_{key}" in cols:
            ax.plot(epochs, cols[f"val_{key}"], marker=marker, ms=3, label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if show_lr:
        ax = axes[-1]
        ax.plot(epochs, lr, color="tab:green", marker=marker, ms=3)
        ax.set_title("learning rate")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.15, top=0.9, wspace=0.25)
    return fig
