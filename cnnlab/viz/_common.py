"""Figures, image display, grids and temporary hooks into a model's layers."""
import base64
import io
import math
import os
from contextlib import contextmanager

import numpy as np
from matplotlib.figure import Figure

from ..backend import floatx
from ..layers import Conv2D

_MISSING = object()


# ----- figures -----------------------------------------------------------
def new_figure(width, height, **kwargs):
    """A pyplot-free figure (no global state, nothing to close); sizes in inches."""
    return Figure(figsize=(max(float(width), 1.0), max(float(height), 1.0)), **kwargs)


def save(fig, path, dpi=100):
    """Write ``fig`` as PNG to ``path`` (parent folders created); returns the path."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    return path


def png_bytes(fig, dpi=100):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def data_uri(fig, dpi=100):
    """``data:image/png;base64,...`` for embedding a figure in HTML."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


def grid_shape(n, max_cols=8):
    cols = max(1, min(n, max_cols))
    return max(1, math.ceil(n / cols)), cols


def add_grid(fig, n, cols):
    """Exactly ``n`` axes on a grid with ``cols`` columns, ticks off."""
    rows = max(1, math.ceil(n / cols))
    axes = []
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        axes.append(ax)
    return axes


# ----- images ------------------------------------------------------------
def display_range(images):
    """``(lo, hi)`` mapping a set of images to [0, 1] for display (uint8: 0..255)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = float(np.min(images)), float(np.max(images))
    if 0.0 <= lo and hi <= 1.0:
        return 0.0, 1.0
    return lo, (hi if hi > lo else lo + 1.0)


def to_display(image, lo=None, hi=None):
    """An (H, W) or (H, W, 3) float image in [0, 1] for ``imshow``."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[-1] != 3:
        img = img.mean(axis=-1)
    if lo is None or hi is None:
        lo, hi = display_range(image)
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def show_image(ax, image, lo=None, hi=None, **kwargs):
    img = to_display(image, lo, hi)
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest", **kwargs)
    else:
        ax.imshow(img, interpolation="nearest", **kwargs)
    return img


def minmax(a):
    a = np.asarray(a, dtype=np.float64)
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def resize_bilinear(a, size):
    """Resize (h, w) or (N, h, w) to ``size = (H, W)``, half-pixel centres (as image libraries do)."""
    a = np.asarray(a, dtype=np.float64)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[None]
    _, h, w = a.shape
    H, W = size

    def coords(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = coords(H, h)
    x0, x1, fx = coords(W, w)
    top = a[:, y0][:, :, x0] * (1 - fx) + a[:, y0][:, :, x1] * fx
    bottom = a[:, y1][:, :, x0] * (1 - fx) + a[:, y1][:, :, x1] * fx
    out = top * (1 - fy)[:, None] + bottom * fy[:, None]
    return out[0] if squeeze else out


# ----- models ------------------------------------------------------------
def require_graph(model):
    if not getattr(model, "built", False) or not hasattr(model, "_nodes"):
        raise ValueError(f"model {model.name!r} has no graph yet: give it an Input or call it on data first")
    if len(model.inputs) != 1:
        raise ValueError(f"cnnlab.viz handles single-input models; {model.name!r} has {len(model.inputs)}")


def conv_layers(model):
    require_graph(model)
    return [t.layer for t in model._nodes if isinstance(t.layer, Conv2D)]


def get_layer(model, layer):
    return layer if not isinstance(layer, str) else model.get_layer(layer)


def tensor_of(model, layer):
    for t in model._nodes:
        if t.layer is layer:
            return t
    raise ValueError(f"layer {layer.name!r} is not in model {model.name!r}")


def as_batch(model, images):
    """Images as a float32 NHWC batch (a single image gets a batch axis)."""
    x = np.asarray(images, dtype=floatx)
    if x.ndim == len(model.input_shape) - 1:
        x = x[None]
    return x


@contextmanager
def patched(obj, name, value):
    """Set an instance attribute for the duration of the block, then restore it."""
    old = obj.__dict__.get(name, _MISSING)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if old is _MISSING:
            delattr(obj, name)
        else:
            setattr(obj, name, old)


@contextmanager
def preserved_training_state(model):
    """Run extra backward passes without touching the gradients or ``need_dx`` flags training uses."""
    need = {l: l.need_dx for l in model._layers if hasattr(l, "need_dx")}
    saved = [(l, {k: g.copy() for k, g in l.grads.items()}) for l in model._layers]
    try:
        yield
    finally:
        for l, v in need.items():
            l.need_dx = v
        for l, g in saved:
            for k, v in g.items():
                l.grads[k][...] = v


def layer_outputs(model, images, layers, batch_size=64):
    """``{layer name: output array}`` of the given layers for ``images`` (inference mode)."""
    require_graph(model)
    layers = [get_layer(model, l) for l in layers]
    x = as_batch(model, images)
    chunks = {l.name: [] for l in layers}

    def hook(layer):
        orig = layer.forward

        def forward(inp, training=False):
            y = orig(inp, training=training)
            chunks[layer.name].append(np.array(y, copy=True))
            return y
        return forward

    from contextlib import ExitStack
    with ExitStack() as stack:
        for l in layers:
            stack.enter_context(patched(l, "forward", hook(l)))
        for i in range(0, len(x), batch_size):
            model.forward(model._prepare_inputs(x[i:i + batch_size]), training=False)
    return {k: np.concatenate(v) for k, v in chunks.items()}
