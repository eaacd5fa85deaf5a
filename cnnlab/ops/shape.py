"""Output-size arithmetic shared by convolution, pooling, layers, summary and errors.

One formula, ``(N - F_eff + P_total) // S + 1`` with ``F_eff = (F - 1) * D + 1``,
is the only place the spatial size of a sliding window is computed.
"""
import math


def normalize_tuple(value, n, name):
    """``3 -> (3, 3)``; validates a tuple of ``n`` positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    try:
        value = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"`{name}` must be an int or a tuple of {n} ints. Received: {name}={value!r}") from None
    if len(value) != n or any(v < 1 for v in value):
        raise ValueError(f"`{name}` must be an int or a tuple of {n} positive ints. Received: {name}={value!r}")
    return value


def effective_kernel(k, dilation=1):
    return (k - 1) * dilation + 1


def conv_output_size(n, k, stride=1, pad_total=0, dilation=1):
    """``(N - F + 2P) / S + 1`` with dilation; ``pad_total`` is both sides together."""
    return (n + pad_total - effective_kernel(k, dilation)) // stride + 1


def resolve_padding(n, k, stride, dilation, padding):
    """Return ``(pad_before, pad_after, out)`` for one spatial axis.

    ``'valid'``: no padding. ``'same'``: TensorFlow's rule, ``out = ceil(n / stride)``
    and the odd padded pixel goes after (bottom/right). An int pads both sides
    equally (PyTorch's convention). A pair ``(before, after)`` is taken as is.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            before = after = 0
        elif mode == "same":
            out = math.ceil(n / stride)
            total = max((out - 1) * stride + effective_kernel(k, dilation) - n, 0)
            before = total // 2
            after = total - before
        else:
            raise ValueError(f"`padding` must be 'valid', 'same', an int or a pair of ints. Received: padding={padding!r}")
    elif isinstance(padding, int):
        if padding < 0:
            raise ValueError(f"`padding` must be >= 0. Received: padding={padding}")
        before = after = padding
    else:
        before, after = (int(p) for p in padding)
    out = conv_output_size(n, k, stride, before + after, dilation)
    return before, after, out


def window_output_shape(h, w, kernel, strides, dilation, padding, where="layer"):
    """Spatial output ``(out_h, out_w, (pt, pb, pl, pr))`` of a sliding window op.

    ``padding`` is a string, an int, a pair ``(ph, pw)`` of symmetric pads or
    ``((top, bottom), (left, right))``. Raises a ValueError that shows the
    arithmetic when the kernel does not fit the padded input.
    """
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilation
    if isinstance(padding, (str, int)):
        pad_h = pad_w = padding
    else:
        pad_h, pad_w = padding
    pt, pb, out_h = resolve_padding(h, kh, sh, dh, pad_h)
    pl, pr, out_w = resolve_padding(w, kw, sw, dw, pad_w)
    for axis, n, k, s, d, p0, p1, out in (("height", h, kh, sh, dh, pt, pb, out_h),
                                          ("width", w, kw, sw, dw, pl, pr, out_w)):
        if out < 1:
            fk = effective_kernel(k, d)
            raise ValueError(
                f"{where}: kernel {fk} (size {k}, dilation {d}) is larger than the padded input {axis} "
                f"{n + p0 + p1} (input {n} + padding {p0 + p1}): output {axis} = "
                f"({n} - {fk} + {p0 + p1}) // {s} + 1 = {out}. Use padding='same' or a smaller kernel."
            )
    return out_h, out_w, (pt, pb, pl, pr)
