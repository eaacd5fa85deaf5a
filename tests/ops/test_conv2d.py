import numpy as np
import pytest

from cnnlab.ops import conv2d, im2col
from cnnlab.ops.shape import window_output_shape
from tests.helpers import assert_close, check_backward, needs_torch, nhwc_to_nchw, rand, torch


def naive_conv(x, W, b, strides, pads, dilation):
    """Direct definition on the zero-padded input: six nested loops."""
    N, H, Wd, C = x.shape
    kh, kw, _, F = W.shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = strides, dilation, pads
    xp_ = np.zeros((N, H + pt + pb, Wd + pl + pr, C), dtype=np.float64)
    xp_[:, pt:pt + H, pl:pl + Wd] = x
    out_h = (H + pt + pb - (kh - 1) * dh - 1) // sh + 1
    out_w = (Wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((N, out_h, out_w, F))
    for n in range(N):
        for p in range(out_h):
            for q in range(out_w):
                for f in range(F):
                    for i in range(kh):
                        for j in range(kw):
                            y[n, p, q, f] += xp_[n, p * sh + i * dh, q * sw + j * dw] @ W[i, j, :, f]
    return y + (0 if b is None else b)


# (x shape, W shape, kwargs): tiny so the central differences finish fast
CASES = {
    "valid": ((2, 5, 6, 2), (3, 3, 2, 3), dict()),
    "same": ((2, 5, 6, 2), (3, 3, 2, 3), dict(padding="same")),
    "same_stride2_odd": ((2, 5, 7, 2), (3, 3, 2, 3), dict(padding="same", strides=2)),
    "same_even_kernel": ((2, 5, 6, 2), (2, 2, 2, 3), dict(padding="same")),
    "int_padding": ((2, 5, 6, 2), (3, 3, 2, 3), dict(padding=1)),
    "pair_padding": ((2, 5, 6, 2), (3, 3, 2, 3), dict(padding=(2, 0))),
    "explicit_padding": ((2, 5, 6, 2), (3, 3, 2, 3), dict(padding=((0, 2), (1, 0)))),
    "rect_2x3": ((2, 5, 6, 2), (2, 3, 2, 3), dict()),
    "strides_2_1": ((2, 5, 6, 2), (3, 3, 2, 3), dict(strides=(2, 1))),
    "dilation_2": ((2, 6, 6, 2), (2, 3, 2, 3), dict(dilation=2)),
    "1x1": ((2, 5, 6, 2), (1, 1, 2, 3), dict()),
    "1x1_stride2_same": ((2, 5, 6, 2), (1, 1, 2, 3), dict(strides=2, padding="same")),
    "single_channel": ((2, 5, 6, 1), (3, 2, 1, 3), dict(padding="same", strides=(1, 2))),  # K-major columns
}


def spy_transposed_dx(monkeypatch):
    """The list that records each call to conv2d's ``_dx_transposed`` from now on."""
    calls, real = [], conv2d._dx_transposed
    monkeypatch.setattr(conv2d, "_dx_transposed", lambda *a: calls.append(a) or real(*a))
    return calls


@pytest.fixture(params=["per_offset", "transposed"])
def dx_path(request, monkeypatch):
    """Run a test with each input-gradient algorithm (conv2d picks one by C / F; stride 1 only
    for the transposed one). Returns the path and the list of calls to ``_dx_transposed``."""
    monkeypatch.setattr(conv2d, "DX_TRANSPOSED_MIN_C_PER_F", float("inf") if request.param == "per_offset" else 0.0)
    return request.param, spy_transposed_dx(monkeypatch)


def pads_of(x_shape, W_shape, kw):
    strides = kw.get("strides", 1)
    strides = (strides, strides) if isinstance(strides, int) else strides
    dilation = kw.get("dilation", 1)
    dilation = (dilation, dilation) if isinstance(dilation, int) else dilation
    _, _, pads = window_output_shape(x_shape[1], x_shape[2], W_shape[:2], strides, dilation, kw.get("padding", "valid"))
    return strides, pads, dilation


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_naive_loops(name):
    x_shape, W_shape, kw = CASES[name]
    x, W, b = rand(x_shape, 1), rand(W_shape, 2), rand(W_shape[3:], 3)
    y, _ = conv2d.forward(x, W, b, **kw)
    assert y.dtype == np.float32
    strides, pads, dilation = pads_of(x_shape, W_shape, kw)
    assert_close(y, naive_conv(x, W, b, strides, pads, dilation), rtol=1e-5, atol=1e-5, name=name)


def test_same_padding_is_tensorflow_asymmetric():
    # 6 wide, k=3, stride 2: out 3, total pad (3-1)*2+3-6 = 1 -> the odd pixel goes bottom/right
    x, W = rand((1, 6, 6, 1), 1), rand((3, 3, 1, 1), 2)
    y, _ = conv2d.forward(x, W, strides=2, padding="same")
    assert y.shape == (1, 3, 3, 1)
    assert_close(y, naive_conv(x, W, None, (2, 2), (0, 1, 0, 1), (1, 1)), atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_gradients(name, dx_path):
    x_shape, W_shape, kw = CASES[name]
    inputs = dict(x=rand(x_shape, 1), W=rand(W_shape, 2), b=rand(W_shape[3:], 3))
    dx, dW, db = check_backward(conv2d.forward, conv2d.backward, inputs, ("x", "W", "b"), **kw)
    assert dx.dtype == dW.dtype == db.dtype == np.float64  # float64 in, float64 out
    path, calls = dx_path
    strides, pads, _ = pads_of(x_shape, W_shape, kw)
    transposable = strides == (1, 1) and W_shape[:2] != (1, 1) and max(pads) < min(W_shape[:2])
    assert bool(calls) == (path == "transposed" and transposable)


def test_transposed_dx_chosen_by_channels_and_blocks_match(monkeypatch):
    # C >= 0.75 F at stride 1: transposed; one sample per block, odd batch, so blocks are ragged per thread
    x, W, b = rand((7, 6, 5, 4), 1), rand((3, 2, 4, 4), 2), rand((4,), 3)
    y, cache = conv2d.forward(x, W, b, padding="same")
    dy = rand(y.shape, 4)
    calls = spy_transposed_dx(monkeypatch)
    monkeypatch.setattr(conv2d, "DX_BLOCK_BYTES", 1)
    dx = conv2d.backward(dy, cache)[0]
    assert len(calls) == 1
    y8, cache8 = conv2d.forward(x, rand((3, 2, 4, 8), 2), padding="same")
    assert conv2d.backward(rand(y8.shape, 5), cache8)[0].shape == x.shape
    assert len(calls) == 1  # 4 -> 8 channels: per offset
    monkeypatch.setattr(conv2d, "DX_TRANSPOSED_MIN_C_PER_F", float("inf"))
    assert_close(dx, conv2d.backward(dy, cache)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_shape, W_shape, kw", [
    ((2, 5, 6, 2), (2, 3, 2, 3), dict(padding="same", strides=(2, 1))),
    ((2, 5, 6, 1), (3, 3, 1, 3), dict(padding="same")),
    ((2, 5, 6, 2), (1, 1, 2, 3), dict()),                      # x itself is the column matrix
    ((2, 5, 6, 2), (1, 1, 2, 3), dict(strides=2, padding=1)),
])
def test_gradients_without_bias(x_shape, W_shape, kw):
    inputs = dict(x=rand(x_shape, 1), W=rand(W_shape, 2))

    def backward(dy, cache):
        dx, dW, db = conv2d.backward(dy, cache)
        assert db is None
        return dx, dW

    check_backward(conv2d.forward, backward, inputs, ("x", "W"), **kw)
    y, _ = conv2d.forward(inputs["x"], inputs["W"], **kw)
    strides, pads, dilation = pads_of(x_shape, W_shape, kw)
    assert_close(y, naive_conv(inputs["x"], inputs["W"], None, strides, pads, dilation), atol=1e-5)


def test_need_dx_false_skips_dx_and_keeps_dW_db():
    inputs = dict(x=rand((2, 5, 6, 2), 1), W=rand((3, 3, 2, 3), 2), b=rand((3,), 3))

    def backward(dy, cache):
        dx, dW, db = conv2d.backward(dy, cache, need_dx=False)
        assert dx is None
        return dW, db

    check_backward(conv2d.forward, backward, inputs, ("W", "b"), padding="same")


def test_non_contiguous_input():
    base = rand((2, 12, 7, 4), 1)
    x = base[:, ::2, :, 1:3]  # strided in H and C
    W, b = rand((3, 2, 2, 3), 2), rand((3,), 3)
    y, cache = conv2d.forward(x, W, b, padding="same")
    yc, cachec = conv2d.forward(np.ascontiguousarray(x), W, b, padding="same")
    assert_close(y, yc, rtol=0, atol=0)
    dy = rand(y.shape, 4)
    for g, gc in zip(conv2d.backward(dy, cache), conv2d.backward(dy, cachec)):
        assert_close(g, gc, rtol=0, atol=0)


def test_pooled_buffers_are_not_reused_while_referenced(monkeypatch):
    # shapes big enough (> 1 MiB of columns) to go through the workspace pool
    x1, x2 = rand((16, 16, 16, 8), 1), rand((16, 16, 16, 8), 2)
    W = rand((3, 3, 8, 16), 3, scale=0.1)
    dy = rand((16, 16, 16, 16), 4)
    y1, c1 = conv2d.forward(x1, W, padding="same")
    y1_before = y1.copy()
    y2, c2 = conv2d.forward(x2, W, padding="same")          # must not overwrite y1 nor c1's columns
    g1 = conv2d.backward(dy, c1)
    assert len(im2col._POOL) > 0
    assert_close(y1, y1_before, rtol=0, atol=0, name="y1")
    monkeypatch.setattr(im2col, "POOL_MIN_BYTES", 1 << 62)  # reference without the pool
    r1, rc1 = conv2d.forward(x1, W, padding="same")
    r2, _ = conv2d.forward(x2, W, padding="same")
    assert_close(y2, r2, rtol=0, atol=0, name="y2")
    for g, r, name in zip(g1[:2], conv2d.backward(dy, rc1)[:2], ("dx", "dW")):
        assert_close(g, r, rtol=0, atol=0, name=name)


def test_workspace_pool_reuses_idle_buffers_only():
    a = im2col.empty((521, 1031), np.float32)   # 2 MiB: pooled
    b = im2col.empty((521, 1031), np.float32)
    assert not np.shares_memory(a, b)
    view = b[1:]
    del b                                       # the view keeps b busy
    a_ptr = a.__array_interface__["data"][0]
    del a
    c = im2col.empty((1031, 521), np.float32)   # same size: the idle buffer comes back
    assert c.__array_interface__["data"][0] == a_ptr and not np.shares_memory(c, view)


def test_hand_computed_vertical_edge():
    # 6x6 image, bright left half; 3x3 vertical edge filter -> 4x4 with the edge in the middle
    img = np.zeros((6, 6), np.float32)
    img[:, :3] = 10
    k = np.array([[1, 0, -1]] * 3, np.float32)
    y, _ = conv2d.forward(img[None, :, :, None], k[:, :, None, None])
    assert y.shape == (1, 4, 4, 1)
    assert_close(y[0, :, :, 0], np.array([[0, 30, 30, 0]] * 4, np.float32), rtol=0, atol=0)


def test_hand_computed_sum_filter():
    # box filter on arange: each output is 9 times its window's centre value
    img = np.arange(36, dtype=np.float32).reshape(1, 6, 6, 1)
    y, _ = conv2d.forward(img, np.ones((3, 3, 1, 1), np.float32), np.array([1.0], np.float32))
    p, q = np.mgrid[0:4, 0:4]
    assert_close(y[0, :, :, 0], 9 * (6 * (p + 1) + q + 1) + 1.0, rtol=0, atol=0)


def test_output_shape_32x32x3_ten_5x5_pad2():
    y, _ = conv2d.forward(rand((2, 32, 32, 3)), rand((5, 5, 3, 10)), rand((10,)), padding=2)
    assert y.shape == (2, 32, 32, 10)


def test_kernel_too_large_shows_arithmetic():
    with pytest.raises(ValueError, match=r"my_conv.*\(3 - 5 \+ 0\) // 1 \+ 1 = -1"):
        conv2d.forward(rand((1, 3, 3, 1)), rand((5, 5, 1, 2)), where="my_conv")
    with pytest.raises(ValueError, match=r"conv2d"):
        conv2d.forward(rand((1, 3, 8, 1)), rand((5, 5, 1, 2)))


def test_channel_mismatch_shows_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 8, 8, 3\).*\(3, 3, 4, 2\)"):
        conv2d.forward(rand((1, 8, 8, 3)), rand((3, 3, 4, 2)))


TORCH_CASES = {
    "valid": dict(),
    "same": dict(padding="same"),
    "same_stride2_odd": dict(padding="same", strides=2),
    "stride2": dict(strides=2),
    "dilation": dict(dilation=(2, 1), padding="same"),
    "rect": dict(),
    "explicit": dict(padding=((1, 2), (0, 1))),
    "1x1": dict(),
}


@needs_torch
@pytest.mark.parametrize("name", TORCH_CASES)
def test_against_torch(name, dx_path):
    F_ = torch.nn.functional
    kw = TORCH_CASES[name]
    kh, kwid = {"rect": (2, 3), "1x1": (1, 1)}.get(name, (3, 3))
    x, W, b = rand((4, 9, 11, 3), 1), rand((kh, kwid, 3, 5), 2), rand((5,), 3)
    y, cache = conv2d.forward(x, W, b, **kw)
    dy = rand(y.shape, 4)
    dx, dW, db = conv2d.backward(dy, cache)

    strides, (pt, pb, pl, pr), dilation = pads_of(x.shape, W.shape, kw)
    xt = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
    Wt = torch.tensor(np.ascontiguousarray(W.transpose(3, 2, 0, 1)), requires_grad=True)  # (F, C, kh, kw)
    bt = torch.tensor(b, requires_grad=True)
    yt = F_.conv2d(F_.pad(xt, (pl, pr, pt, pb)), Wt, bt, stride=strides, dilation=dilation)
    yt.backward(torch.tensor(nhwc_to_nchw(dy)))

    def close(a, ref, what):
        ref = np.asarray(ref)
        assert_close(a, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(), name=f"{name} {what}")

    close(y, yt.detach().numpy().transpose(0, 2, 3, 1), "y")
    close(dx, xt.grad.numpy().transpose(0, 2, 3, 1), "dx")
    close(dW, Wt.grad.numpy().transpose(2, 3, 1, 0), "dW")
    close(db, bt.grad.numpy(), "db")


def test_workspace_pool_drops_idle_buffers_over_the_cap(monkeypatch):
    im2col.clear_workspace()
    monkeypatch.setattr(im2col, "POOL_MAX_IDLE_BYTES", 0)
    a = im2col.empty((1 << 18,), np.float32)
    keep = im2col.empty((1 << 19,), np.float32)
    assert len(im2col._POOL) == 2
    del a                                        # idle, over a zero cap: dropped at the next allocation
    b = im2col.empty((3 << 18,), np.float32)
    assert len(im2col._POOL) == 2 and not np.shares_memory(b, keep)
    im2col.clear_workspace()
    assert im2col._POOL == []


@pytest.mark.parametrize("x_shape, W_shape, kw", [
    ((3, 8, 6, 1), (3, 3, 1, 4), dict(padding="same")),      # one channel: the K-major columns
    ((3, 8, 6, 2), (3, 3, 2, 4), dict(padding="same")),
    ((2, 9, 7, 2), (2, 2, 2, 3), dict(strides=1)),            # 'valid' 2x2: an 8x6 output
    ((2, 8, 12, 3), (3, 3, 3, 2), dict(padding="same", strides=2, use_b=False)),  # stride 2: 4x6
])
def test_phase_output_is_the_phase_layout_and_backward_takes_it(x_shape, W_shape, kw):
    kw = dict(kw)
    b = None if kw.pop("use_b", True) is False else rand((W_shape[3],), 3)
    x, W = rand(x_shape, 1), rand(W_shape, 2)
    y, cache = conv2d.forward(x, W, b, **kw)
    y6, cache6 = conv2d.forward(x, W, b, phase=True, **kw)
    assert cache6.phase and y6.shape == (y.shape[0], 2, 2, y.shape[1] // 2, y.shape[2] // 2, y.shape[3])
    assert_close(y6, im2col.to_phase(y), rtol=1e-6, atol=1e-6)
    dy = rand(y.shape, 4)
    dx, dW, db = conv2d.backward(dy, cache)
    dx6, dW6, db6 = conv2d.backward(im2col.to_phase(dy), cache6)
    assert_close(dx6, dx, rtol=1e-5, atol=1e-6, name="dx (normal layout)")
    # the same sums over the output pixels, in another order
    assert_close(dW6, dW, rtol=1e-5, atol=1e-5, name="dW")
    if b is not None:
        assert_close(db6, db, rtol=1e-5, atol=1e-5, name="db")


def test_phase_ignored_for_an_odd_output():
    x, W = rand((2, 7, 6, 2), 1), rand((3, 3, 2, 3), 2)
    y, cache = conv2d.forward(x, W, padding="same", phase=True)
    assert not cache.phase and y.shape == (2, 7, 6, 3)
