"""Receptive fields and the dataset patches that excite a channel most."""
import numpy as np

from ..layers import Conv2D, ZeroPadding2D
from ..layers.pooling import _Pooling2D
from ..ops.shape import effective_kernel, window_output_shape
from ._common import (add_grid, as_batch, display_range, get_layer, layer_outputs, new_figure, require_graph,
                      show_image, tensor_of)


def _window(layer):
    """``(kernel, strides, dilation, padding)`` of a sliding-window layer, or None."""
    if isinstance(layer, Conv2D):
        return layer.kernel_size, layer.strides, layer.dilation_rate, layer.padding
    if isinstance(layer, _Pooling2D):
        return layer.pool_size, layer.strides, (1, 1), layer.padding
    if isinstance(layer, ZeroPadding2D):
        (t, b), (l, r) = layer.padding
        return (1, 1), (1, 1), (1, 1), ((t, b), (l, r))
    return None


def receptive_fields(model):
    """``{layer name: (start, jump, size)}`` per spatial axis, each an (h, w) pair.

    Output position ``(i, j)`` of a layer sees input rows ``start[0] + i*jump[0]`` to
    ``... + size[0] - 1`` (and likewise columns); ``start`` may be negative (padding).
    Layers without a spatial map (Flatten, Dense, global pooling) are left out.
    """
    require_graph(model)
    info = {id(t): ((0, 0), (1, 1), (1, 1)) for t in model.inputs}
    names = {}
    for t in model._nodes:
        ins = [info.get(id(u)) for u in t.inbound]
        ins = [i for i in ins if i is not None]
        if not ins or len(t.shape) != 4:
            continue
        start, jump, size = max(ins, key=lambda v: v[2][0] * v[2][1])
        win = _window(t.layer)
        u = t.inbound[0]
        if win is not None:
            kernel, strides, dilation, padding = win
            _, _, (pt, _, pl, _) = window_output_shape(u.shape[1], u.shape[2], kernel, strides, dilation, padding)
            k_eff = [effective_kernel(k, d) for k, d in zip(kernel, dilation)]
            start = (start[0] - pt * jump[0], start[1] - pl * jump[1])
            size = (size[0] + (k_eff[0] - 1) * jump[0], size[1] + (k_eff[1] - 1) * jump[1])
            jump = (jump[0] * strides[0], jump[1] * strides[1])
        elif len(u.shape) != 4 or tuple(u.shape[1:3]) != tuple(t.shape[1:3]):
            continue  # a reshape or other non-local map: no receptive field
        info[id(t)] = (start, jump, size)
        names[t.layer.name] = (start, jump, size)
    return names


def receptive_field(model, layer, i=0, j=0):
    """``(top, left, height, width)`` in input pixels of position (i, j) of ``layer``'s output."""
    layer = get_layer(model, layer)
    fields = receptive_fields(model)
    if layer.name not in fields:
        raise ValueError(f"layer {layer.name!r} has no spatial output map, so no receptive field")
    (s0, s1), (j0, j1), (r0, r1) = fields[layer.name]
    return s0 + i * j0, s1 + j * j1, r0, r1


def _crop(images, top, left, h, w, fill):
    """A (h, w, C) crop of one (H, W, C) image that may reach outside it (filled with ``fill``)."""
    H, W, C = images.shape
    out = np.full((h, w, C), fill, dtype=np.float64)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, H), min(left + w, W)
    if t1 > t0 and l1 > l0:
        out[t0 - top:t1 - top, l0 - left:l1 - left] = images[t0:t1, l0:l1]
    return out


def top_patches(model, images, layer, channels=None, k=8, batch_size=64, display=None):
    """For each channel, the ``k`` input patches (receptive fields) that activate it most.

    One patch per image (its strongest position). Returns ``{channel: [dict(index, position,
    activation, patch), ...]}``, best first; patches are cut from ``display`` (default
    ``images``) so they can be drawn as the user sees the data.
    """
    require_graph(model)
    layer = get_layer(model, layer)
    x = as_batch(model, images)
    t = tensor_of(model, layer)
    if len(t.shape) != 4:
        raise ValueError(f"layer {layer.name!r} output {t.shape} is not a spatial map")
    n_ch = t.shape[-1]
    channels = list(range(min(n_ch, 8))) if channels is None else [int(c) for c in channels]
    for c in channels:
        if not 0 <= c < n_ch:
            raise ValueError(f"channel {c} is outside [0, {n_ch}) for layer {layer.name!r}")
    best_val = np.empty((len(x), len(channels)))
    best_pos = np.empty((len(x), len(channels)), dtype=np.int64)
    for i in range(0, len(x), batch_size):
        a = layer_outputs(model, x[i:i + batch_size], [layer])[layer.name][..., channels]  # (b, h, w, c)
        flat = a.reshape(len(a), -1, len(channels))
        best_pos[i:i + len(a)] = flat.argmax(axis=1)
        best_val[i:i + len(a)] = flat.max(axis=1)
    w_out = t.shape[2]
    display = x if display is None else np.asarray(display)
    if display.ndim == 3:
        display = display[..., None]
    fill = display_range(display)[0]
    result = {}
    for ci, c in enumerate(channels):
        order = np.argsort(-best_val[:, ci], kind="stable")[:k]
        entries = []
        for n in order:
            pi, pj = divmod(int(best_pos[n, ci]), w_out)
            top, left, h, w = receptive_field(model, layer, pi, pj)
            entries.append({"index": int(n), "position": (pi, pj), "activation": float(best_val[n, ci]),
                            "box": (top, left, h, w), "patch": _crop(display[n], top, left, h, w, fill)})
        result[c] = entries
    return result


def plot_top_patches(model, images, layer, channels=None, k=8, display=None):
    """A grid: one row per channel, its ``k`` most activating receptive-field patches."""
    layer = get_layer(model, layer)
    patches = top_patches(model, images, layer, channels, k, display=display)
    display_src = as_batch(model, images) if display is None else np.asarray(display)
    lo, hi = display_range(display_src)
    rows = len(patches)
    n_cols = max((len(v) for v in patches.values()), default=1)
    fig = new_figure(1.0 * n_cols + 0.9, 1.05 * rows + 0.7)
    axes = add_grid(fig, rows * n_cols, n_cols)
    for r, (c, entries) in enumerate(patches.items()):
        for col in range(n_cols):
            ax = axes[r * n_cols + col]
            if col < len(entries):
                show_image(ax, entries[col]["patch"], lo, hi)
                ax.set_title(f"{entries[col]['activation']:.2g}", fontsize=6, pad=1)
            if col == 0:
                ax.set_ylabel(f"ch {c}", fontsize=7)
    (_, _, h, w) = receptive_field(model, layer)
    fig.suptitle(f"{layer.name}: top-{n_cols} patches per channel (receptive field {h}x{w})", fontsize=9)
    return fig
