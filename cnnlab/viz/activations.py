"""Activation functions and their derivatives, computed by the engine's activation ops."""
import numpy as np

from ..ops import activations as act_ops
from ._common import new_figure


def activation_curves(x=None):
    """``{name: (x, f(x), f'(x))}`` for every activation in ``cnnlab.ops.activations.NAMES``.

    Softmax has no elementwise derivative: it is drawn as the first output of
    ``softmax([x, 0])`` and the matching entry of its Jacobian (through ``backward``).
    """
    x = np.linspace(-5, 5, 401) if x is None else np.asarray(x, dtype=np.float64)
    curves = {}
    for name in act_ops.NAMES:
        if name == "softmax":
            z = np.stack([x, np.zeros_like(x)], axis=-1)
            y, cache = act_ops.forward(z, name)
            dy = np.zeros_like(z)
            dy[:, 0] = 1
            d = act_ops.backward(dy, cache)[:, 0]
            curves[name] = (x, y[:, 0], d)
        else:
            y, _ = act_ops.forward(x, name)
            curves[name] = (x, y, act_ops.derivative(x, name))
    return curves


def plot_activations(x=None, cols=4):
    """One panel per activation: the function (solid) and its derivative (dashed)."""
    curves = activation_curves(x)
    n = len(curves)
    n_cols = min(cols, n)
    rows = -(-n // n_cols)
    fig = new_figure(3.2 * n_cols, 2.6 * rows + 0.4)
    axes = [fig.add_subplot(rows, n_cols, i + 1) for i in range(n)]
    for ax, (name, (xs, y, d)) in zip(axes, curves.items()):
        label = "softmax([x, 0])[0]" if name == "softmax" else name
        ax.plot(xs, y, color="tab:blue", lw=2, label=label)
        ax.plot(xs, d, color="tab:orange", lw=1.5, ls="--", label="derivative")
        ax.axhline(0, color="0.7", lw=0.6)
        ax.axvline(0, color="0.7", lw=0.6)
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("activation functions (solid) and derivatives (dashed)", fontsize=11)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.08, top=0.86 if rows == 1 else 0.9, wspace=0.25,
                        hspace=0.45)
    return fig
