"""``model.summary()``: Keras's table, plus FLOPs and activation memory per sample."""
import numpy as np

from ..layers import InputLayer
from ..layers.base import shape_str


def layer_flops(layer, in_shape, out_shape):
    """Forward floating-point operations for one sample (a multiply-add counts 2)."""
    out_size = int(np.prod([d for d in out_shape[1:] if d is not None]))
    kind = type(layer).__name__
    if kind == "Conv2D":
        kh, kw = layer.kernel_size
        flops = 2 * kh * kw * in_shape[-1] * out_size
        return flops + (out_size if layer.use_bias else 0) + (out_size if layer.activation else 0)
    if kind == "Dense":
        n_in = in_shape[-1]
        return 2 * n_in * out_size + (out_size if layer.use_bias else 0) + (out_size if layer.activation else 0)
    if kind in ("MaxPooling2D", "AveragePooling2D", "L2Pooling2D"):
        return out_size * int(np.prod(layer.pool_size))
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return int(np.prod(in_shape[1:]))
    if kind == "BatchNormalization":
        return 2 * out_size
    if kind in ("InputLayer", "Flatten", "Reshape", "Dropout", "ZeroPadding2D", "Concatenate"):
        return 0
    return out_size


def _human(n, unit=""):
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g} {suffix}{unit}".rstrip()
        n /= 1000
    return f"{n:.3g} P{unit}"


def _mib(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:,.0f} {unit}" if unit == "B" else f"{nbytes:,.2f} {unit}"
        nbytes /= 1024


def summary_text(model, batch_size=None, line_length=None):
    functional = not hasattr(model, "_stack")
    rows = []
    total_flops = act_bytes = 0
    for t in model._order:
        layer = t.layer
        if isinstance(layer, InputLayer) and not functional:
            continue
        in_shapes = [u.shape for u in t.inbound] or [t.shape]
        flops = layer_flops(layer, in_shapes[0], t.shape)
        total_flops += flops
        act_bytes += int(np.prod([d for d in t.shape[1:] if d is not None])) * 4
        row = [f"{layer.name} ({type(layer).__name__})", shape_str(t.shape), str(layer.count_params()),
               _human(flops) if flops else "0"]
        if functional:
            row.append(", ".join(u.layer.name for u in t.inbound))
        rows.append(row)
    headers = ["Layer (type)", "Output Shape", "Param #", "FLOPs"] + (["Connected to"] if functional else [])
    widths = [max(len(headers[i]), *(len(r[i]) for r in rows)) + 3 for i in range(len(headers))]
    widths[0] = max(widths[0], 29)
    widths[1] = max(widths[1], 26)
    width = sum(widths)

    def fmt(cols):
        return "".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()

    lines = [f'Model: "{model.name}"', "_" * width, fmt(headers), "=" * width]
    for i, r in enumerate(rows):
        lines.append(fmt(r))
        lines.append("=" * width if i == len(rows) - 1 else "_" * width)
    total = model.count_params()
    trainable = sum(l.count_trainable_params() for l in model._layers)
    lines += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "_" * width,
              f"FLOPs per sample (forward): {_human(total_flops)}",
              f"Activation memory per sample: {_mib(act_bytes)}"]
    if batch_size:
        lines.append(f"Activation memory for a batch of {batch_size}: {_mib(act_bytes * batch_size)} "
                     f"(forward outputs; backward keeps about as much again)")
    lines.append(f"Parameter memory: {_mib(total * 4)}")
    return "\n".join(lines)
