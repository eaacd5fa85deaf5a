"""Learned convolution kernels as pictures."""
import numpy as np

from ._common import add_grid, conv_layers, get_layer, minmax, new_figure


def plot_filters(model, layer=None, max_filters=64, max_channels=16, cols=8):
    """The kernels of a conv layer (default: the first one) as a grid.

    A layer that sees 1 or 3 input channels gets one cell per filter: grey, or colour for
    RGB inputs, each kernel min-max normalised on its own. A deeper layer gets one row per
    filter and one column per input channel (``W[:, :, c, f]``), each row on a shared
    symmetric scale (red positive, blue negative) so the channels of one filter compare.
    """
    convs = conv_layers(model)
    if layer is None:
        if not convs:
            raise ValueError(f"model {model.name!r} has no Conv2D layer")
        layer = convs[0]
    layer = get_layer(model, layer)
    if "kernel" not in layer.params or layer.params["kernel"].ndim != 4:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no 2-D convolution kernel")
    W = np.asarray(layer.params["kernel"], dtype=np.float64)  # (kh, kw, c_in, c_out)
    kh, kw, c_in, c_out = W.shape
    n_f = min(c_out, max_filters)
    title = f"{layer.name}: {c_out} filters {kh}x{kw}x{c_in}"
    if c_out > n_f:
        title += f" (first {n_f} shown)"

    if c_in in (1, 3):
        n_cols = min(cols, n_f)
        rows = -(-n_f // n_cols)
        fig = new_figure(1.1 * n_cols, 1.1 * rows + 0.6)
        for f, ax in enumerate(add_grid(fig, n_f, n_cols)):
            k = minmax(W[:, :, :, f])
            if c_in == 3:
                ax.imshow(k, interpolation="nearest")
            else:
                ax.imshow(k[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(str(f), fontsize=7, pad=2)
        fig.suptitle(title, fontsize=10)
        return fig

    n_c = min(c_in, max_channels)
    fig = new_figure(0.8 * n_c + 0.8, 0.8 * n_f + 0.8)
    for i, ax in enumerate(add_grid(fig, n_f * n_c, n_c)):
        f, c = divmod(i, n_c)
        lim = np.abs(W[:, :, :n_c, f]).max() or 1.0
        ax.imshow(W[:, :, c, f], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        if f == 0:
            ax.set_title(f"in {c}", fontsize=6, pad=2)
        if c == 0:
            ax.set_ylabel(f"f{f}", fontsize=6, rotation=0, labelpad=10)
    if c_in > n_c:
        title += f", first {n_c} input channels"
    fig.suptitle(title + "\nrows: filters, columns: input channels", fontsize=9)
    return fig
