"""Activation maps of conv layers for one image."""
import math

import numpy as np

from ._common import add_grid, as_batch, conv_layers, get_layer, layer_outputs, new_figure, show_image


def plot_feature_maps(model, image, layer=None, max_channels=32, cols=8, show_input=True):
    """The output channels of every conv layer (or only ``layer``) for one input image.

    One block per layer, one cell per channel (at most ``max_channels``), each cell on its
    own grey scale; the input image is shown first when ``show_input``.
    """
    x = as_batch(model, image)[:1]
    layers = conv_layers(model) if layer is None else [get_layer(model, layer)]
    if not layers:
        raise ValueError(f"model {model.name!r} has no Conv2D layer")
    maps = layer_outputs(model, x, layers)
    blocks = []
    for l in layers:
        a = maps[l.name][0]
        if a.ndim != 3:
            raise ValueError(f"layer {l.name!r} output has shape {a.shape}; feature maps need (H, W, C)")
        n = min(a.shape[-1], max_channels)
        blocks.append((l, a, n, min(cols, n), math.ceil(n / min(cols, n))))
    width = 1.2 * max(b[3] for b in blocks) + 0.4
    heights = [1.2 * b[4] + 0.5 for b in blocks]
    extra = 1.8 if show_input else 0.0
    fig = new_figure(max(width, 3.0), sum(heights) + extra)
    ratios = ([extra] if show_input else []) + heights
    subs = fig.subfigures(len(ratios), 1, height_ratios=ratios)
    subs = list(np.atleast_1d(subs))
    if show_input:
        ax = subs.pop(0).add_subplot(1, 1, 1)
        show_image(ax, x[0])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("input", fontsize=8)
    for sub, (l, a, n, c, _) in zip(subs, blocks):
        for ch, ax in enumerate(add_grid(sub, n, c)):
            ax.imshow(a[:, :, ch], cmap="viridis", interpolation="nearest")
            ax.set_title(str(ch), fontsize=6, pad=1)
        shown = "" if n == a.shape[-1] else f", first {n} shown"
        sub.suptitle(f"{l.name}: {a.shape[0]}x{a.shape[1]}x{a.shape[2]}{shown}", fontsize=9)
    return fig
