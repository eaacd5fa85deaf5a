"""Saliency maps and Grad-CAM through the engine's own backward pass.

Both start from the class's pre-softmax score (its logit): the gradient is fed to the
output layer's ``backward_from_logits``, the entry the fused cross-entropy path uses.
"""
from contextlib import ExitStack, contextmanager

import numpy as np

from ..backend import floatx
from ._common import (add_grid, as_batch, conv_layers, display_range, get_layer, new_figure, patched,
                      preserved_training_state, require_graph, resize_bilinear, show_image)


def _output_layer(model):
    require_graph(model)
    return model.outputs[0].layer


def _through_logits(model):
    """True when the output layer has an activation to skip (the score is its pre-activation)."""
    layer = _output_layer(model)
    return getattr(layer, "activation", None) is not None and hasattr(layer, "backward_from_logits")


@contextmanager
def _logit_backward(model):
    """Make the output layer's ``backward`` take the gradient of its logits for the block."""
    layer = _output_layer(model)
    if _through_logits(model):
        with patched(layer, "backward", layer.backward_from_logits):
            yield
    else:
        yield


def _class_indices(model, x, class_index):
    if class_index is None:
        return model.predict_on_batch(x).argmax(axis=-1)
    return np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(x),)).copy()


def _one_hot(model, n, classes):
    k = model.output_shape[-1]
    dout = np.zeros((n, k), dtype=floatx)
    dout[np.arange(n), classes] = 1
    return dout


def class_score_gradient(model, images, class_index=None):
    """d(logit of class) / d(input), shape of ``images``; the class defaults to the predicted one.

    Uses ``model.input_gradient`` with the output layer's activation skipped.
    """
    x = as_batch(model, images)
    classes = _class_indices(model, x, class_index)
    with _logit_backward(model):
        g = model.input_gradient(x, _one_hot(model, len(x), classes))
    return g.reshape(np.shape(images)) if np.ndim(images) == x.ndim else g[0]


def saliency_map(model, images, class_index=None):
    """|d logit / d input|, the maximum over channels: (H, W) per image (Simonyan et al. 2013)."""
    g = class_score_gradient(model, images, class_index)
    return np.abs(g).max(axis=-1)


def gradcam(model, images, class_index=None, layer=None):
    """Grad-CAM (Selvaraju et al. 2017) on ``layer`` (default: the last conv layer).

    Returns a dict: ``cam`` (N, H, W) upsampled to the input and scaled to [0, 1] per image,
    ``raw`` (N, h, w) the ReLU of the weighted sum of the layer's maps before upsampling,
    ``weights`` (N, C) the spatial means of d logit / d map, ``maps`` and ``grads`` (N, h, w, C),
    ``classes`` (N,) and ``layer`` (its name).
    """
    x = as_batch(model, images)
    if layer is None:
        convs = conv_layers(model)
        if not convs:
            raise ValueError(f"model {model.name!r} has no Conv2D layer for Grad-CAM")
        layer = convs[-1]
    layer = get_layer(model, layer)
    classes = _class_indices(model, x, class_index)
    captured = {}
    orig_forward, orig_backward = layer.forward, layer.backward

    def forward(inp, training=False):
        y = orig_forward(inp, training=training)
        captured["maps"] = np.array(y, dtype=np.float64)
        return y

    def backward(dy):
        captured["grads"] = np.array(dy, dtype=np.float64)  # d logit / d (this layer's output)
        return orig_backward(dy)

    out_layer = _output_layer(model)
    if out_layer is layer:
        raise ValueError(f"Grad-CAM needs a layer before the output; {layer.name!r} is the output layer")
    with ExitStack() as stack, preserved_training_state(model):
        stack.enter_context(patched(layer, "forward", forward))
        stack.enter_context(patched(layer, "backward", backward))
        for l in model._layers:
            if hasattr(l, "need_dx"):
                l.need_dx = True
        fused = _through_logits(model)
        model.forward(model._prepare_inputs(x), training=False)
        model.backward([_one_hot(model, len(x), classes)], from_logits=fused)
    maps, grads = captured["maps"], captured.get("grads")
    if maps.ndim != 4:
        raise ValueError(f"Grad-CAM needs a layer with (N, H, W, C) output; {layer.name!r} gives {maps.shape}")
    if grads is None:  # the class score does not depend on this layer
        grads = np.zeros_like(maps)
    weights = grads.mean(axis=(1, 2))                                  # (N, C)
    raw = np.maximum(np.einsum("nhwc,nc->nhw", maps, weights), 0)      # (N, h, w)
    H, W = x.shape[1:3]
    cam = resize_bilinear(raw, (H, W))
    peak = cam.reshape(len(cam), -1).max(axis=1)
    cam = cam / np.where(peak > 0, peak, 1)[:, None, None]
    return {"cam": cam, "raw": raw, "weights": weights, "maps": maps, "grads": grads, "classes": classes,
            "layer": layer.name}


def _names(model, class_names):
    k = model.output_shape[-1]
    return [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]


def _attribution_inputs(model, images, class_names, display):
    """The batch, what to show for it (the raw images when given) with its range, and class names."""
    x = as_batch(model, images)
    display = x if display is None else np.asarray(display).reshape((len(x),) + np.shape(display)[-3:])
    lo, hi = display_range(display)
    return x, display, lo, hi, _names(model, class_names)


def plot_saliency(model, images, class_index=None, class_names=None, display=None):
    """Each image above its saliency map for the (predicted) class."""
    x, display, lo, hi, names = _attribution_inputs(model, images, class_names, display)
    classes = _class_indices(model, x, class_index)
    sal = saliency_map(model, x, classes)
    n = len(x)
    fig = new_figure(max(1.9 * n + 0.3, 4.5), 4.2)
    axes = add_grid(fig, 2 * n, n)
    for i in range(n):
        show_image(axes[i], display[i], lo, hi)
        axes[i].set_title(f"class {names[classes[i]]}", fontsize=8)
        axes[n + i].imshow(sal[i], cmap="hot", interpolation="nearest")
        axes[n + i].set_title("|d logit / d x|", fontsize=7)
    fig.suptitle("saliency", fontsize=10)
    return fig


def plot_gradcam(model, images, class_index=None, class_names=None, layer=None, display=None, alpha=0.5):
    """Each image, its Grad-CAM heat map and the two overlaid."""
    x, display, lo, hi, names = _attribution_inputs(model, images, class_names, display)
    result = gradcam(model, x, class_index, layer)
    n = len(x)
    fig = new_figure(max(1.9 * n + 0.3, 4.5), 6.0)
    axes = add_grid(fig, 3 * n, n)
    for i in range(n):
        show_image(axes[i], display[i], lo, hi)
        axes[i].set_title(f"class {names[result['classes'][i]]}", fontsize=8)
        axes[n + i].imshow(result["cam"][i], cmap="jet", vmin=0, vmax=1, interpolation="bilinear")
        axes[n + i].set_title("Grad-CAM", fontsize=7)
        show_image(axes[2 * n + i], display[i], lo, hi)
        axes[2 * n + i].imshow(result["cam"][i], cmap="jet", vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")
        axes[2 * n + i].set_title("overlay", fontsize=7)
    h, w = result["raw"].shape[1:]
    fig.suptitle(f"Grad-CAM on {result['layer']} ({h}x{w}, upsampled)", fontsize=10)
    return fig
