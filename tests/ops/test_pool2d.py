import numpy as np
import pytest

from cnnlab.ops import pool2d
from cnnlab.ops.shape import window_output_shape
from tests.helpers import assert_close, check_backward, needs_torch, nhwc_to_nchw, rand, torch


def naive_pool(x, pool, strides, padding, mode):
    """TensorFlow's definition: each window clipped to the real pixels (padding never counts)."""
    N, H, W, C = x.shape
    out_h, out_w, (pt, pb, pl, pr) = window_output_shape(H, W, pool, strides, (1, 1), padding)
    y = np.zeros((N, out_h, out_w, C))
    for p in range(out_h):
        for q in range(out_w):
            r0, c0 = p * strides[0] - pt, q * strides[1] - pl
            win = x[:, max(r0, 0):min(r0 + pool[0], H), max(c0, 0):min(c0 + pool[1], W)].astype(np.float64)
            if mode == "max":
                y[:, p, q] = win.max(axis=(1, 2))
            elif mode == "avg":
                y[:, p, q] = win.mean(axis=(1, 2))
            else:
                y[:, p, q] = np.sqrt((win ** 2).sum(axis=(1, 2)))
    return y


MODES = ["max", "avg", "l2"]
# (x shape, pool, strides, padding)
CASES = {
    "valid_2x2": ((2, 6, 4, 2), (2, 2), None, "valid"),
    "valid_non_dividing": ((2, 5, 7, 2), (2, 2), None, "valid"),
    "same_odd": ((2, 5, 7, 2), (2, 2), None, "same"),
    "overlap_3s2_valid": ((2, 7, 6, 2), (3, 3), (2, 2), "valid"),
    "overlap_3s2_same": ((2, 6, 7, 2), (3, 3), (2, 2), "same"),
    "rect_2x3_s1_same": ((2, 5, 6, 2), (2, 3), (1, 1), "same"),
    "stride_2_1": ((2, 5, 6, 2), (2, 2), (2, 1), "valid"),
    "gaps_2s3": ((2, 8, 7, 2), (2, 2), (3, 3), "valid"),
    "window_4_s1": ((2, 6, 7, 2), (4, 4), (1, 1), "valid"),
    "window_3x1_s2x1_same": ((2, 7, 5, 2), (3, 1), (2, 1), "same"),
    "wide_3s2": ((1, 5, 90, 2), (3, 3), (2, 2), "valid"),  # window offsets i * W + j past 255
}


def naive_max_pool_backward(x, dy, pool, strides, padding):
    """Each window's gradient to its first maximum in row-major order (PyTorch's and TensorFlow's rule)."""
    N, H, W, C = x.shape
    out_h, out_w, (pt, pb, pl, pr) = window_output_shape(H, W, pool, strides, (1, 1), padding)
    xp_ = np.full((N, H + pt + pb, W + pl + pr, C), -np.inf)
    xp_[:, pt:pt + H, pl:pl + W] = x
    dxp = np.zeros_like(xp_)
    for n in range(N):
        for c in range(C):
            for p in range(out_h):
                for q in range(out_w):
                    r0, c0 = p * strides[0], q * strides[1]
                    win = xp_[n, r0:r0 + pool[0], c0:c0 + pool[1], c]
                    i, j = np.unravel_index(np.argmax(win), win.shape)  # argmax: the first of equals
                    dxp[n, r0 + i, c0 + j, c] += dy[n, p, q, c]
    return dxp[:, pt:pt + H, pl:pl + W]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", CASES)
def test_forward_matches_naive(name, mode):
    shape, pool, strides, padding = CASES[name]
    x = rand(shape, 1)
    y, _ = pool2d.forward(x, pool, strides, padding, mode)
    assert y.dtype == np.float32
    assert_close(y, naive_pool(x, pool, strides or pool, padding, mode), rtol=1e-6, atol=1e-6, name=f"{name} {mode}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", CASES)
def test_gradients(name, mode):
    shape, pool, strides, padding = CASES[name]
    (dx,) = check_backward(pool2d.forward, pool2d.backward, dict(x=rand(shape, 1)), ("x",),
                           pool_size=pool, strides=strides, padding=padding, mode=mode)
    assert dx.dtype == np.float64


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_global_gradients(mode):
    (dx,) = check_backward(pool2d.global_forward, pool2d.global_backward, dict(x=rand((2, 3, 4, 5), 1)), ("x",),
                           mode=mode)
    assert dx.shape == (2, 3, 4, 5)


def test_global_values():
    x = rand((2, 3, 4, 5), 1)
    assert_close(pool2d.global_forward(x, "avg")[0], x.astype(np.float64).mean(axis=(1, 2)), atol=1e-6)
    assert_close(pool2d.global_forward(x, "max")[0], x.max(axis=(1, 2)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="l2"):
        pool2d.global_forward(x, "l2")


def test_max_pool_ties_route_to_first():
    x = np.ones((1, 2, 2, 1), np.float32)
    y, cache = pool2d.forward(x)
    dx = pool2d.backward(np.ones_like(y), cache)
    assert dx[0, :, :, 0].tolist() == [[1, 0], [0, 0]]


@pytest.mark.parametrize("name", CASES)
def test_max_pool_ties_route_like_naive(name):
    shape, pool, strides, padding = CASES[name]
    x = np.random.default_rng(3).integers(0, 3, shape).astype(np.float32)  # ties in most windows
    y, cache = pool2d.forward(x, pool, strides, padding, "max")
    dy = rand(y.shape, 4)
    assert_close(pool2d.backward(dy, cache), naive_max_pool_backward(x, dy, pool, strides or pool, padding),
                 rtol=1e-6, atol=1e-6, name=name)


@needs_torch
def test_max_pool_ties_match_torch():
    F = torch.nn.functional
    x = np.random.default_rng(5).integers(0, 3, (3, 9, 11, 4)).astype(np.float32)
    _compare(x, 3, 2, "valid", "max", lambda t: F.max_pool2d(t, 3, 2), "ties 3/2 valid")
    _compare(x, (2, 3), 1, "valid", "max", lambda t: F.max_pool2d(t, (2, 3), 1), "ties 2x3/1 valid")
    _compare(x, 2, 3, "valid", "max", lambda t: F.max_pool2d(t, 2, 3), "ties 2/3 valid")


def test_non_contiguous_input():
    base = rand((2, 14, 9, 6), 1)
    x = base[:, ::2, :, ::2]
    for mode in MODES:
        y, cache = pool2d.forward(x, 3, 2, "same", mode)
        yc, cachec = pool2d.forward(np.ascontiguousarray(x), 3, 2, "same", mode)
        assert_close(y, yc, rtol=0, atol=0)
        dy = rand(y.shape, 2)
        assert_close(pool2d.backward(dy, cache), pool2d.backward(dy, cachec), rtol=0, atol=0)


def test_hand_computed_max_pool_4x4():
    x = np.array([[1, 1, 2, 4],
                  [5, 6, 7, 8],
                  [3, 2, 1, 0],
                  [1, 2, 3, 4]], np.float32)[None, :, :, None]
    y, cache = pool2d.forward(x, (2, 2), 2)
    assert y[0, :, :, 0].tolist() == [[6, 8], [3, 4]]
    dx = pool2d.backward(np.array([[1, 2], [3, 4]], np.float32)[None, :, :, None], cache)
    assert dx[0, :, :, 0].tolist() == [[0, 0, 0, 0], [0, 1, 0, 2], [3, 0, 0, 0], [0, 0, 0, 4]]


def test_7x7_same_pooling_gives_4x4():
    x = rand((1, 7, 7, 3))
    for mode in MODES:
        assert pool2d.forward(x, 2, padding="same", mode=mode)[0].shape == (1, 4, 4, 3)


def test_errors():
    with pytest.raises(ValueError, match=r"\(3 - 5 \+ 0\) // 5 \+ 1 = 0"):
        pool2d.forward(rand((1, 3, 3, 1)), 5)
    with pytest.raises(ValueError, match="mode"):
        pool2d.forward(rand((1, 4, 4, 1)), mode="min")


def _torch_pool(x, dy, fn):
    xt = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
    yt = fn(xt)
    yt.backward(torch.tensor(nhwc_to_nchw(dy)))
    return yt.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1)


def _compare(x, pool, strides, padding, mode, fn, name):
    y, cache = pool2d.forward(x, pool, strides, padding, mode)
    dy = rand(y.shape, 5)
    dx = pool2d.backward(dy, cache)
    yr, dxr = _torch_pool(x, dy, fn)
    assert_close(y, yr, rtol=1e-5, atol=1e-5 * np.abs(yr).max(), name=f"{name} y")
    assert_close(dx, dxr, rtol=1e-5, atol=1e-5 * np.abs(dxr).max(), name=f"{name} dx")


@needs_torch
def test_max_pool_against_torch():
    F = torch.nn.functional
    x = rand((4, 9, 11, 3), 1)
    _compare(x, 2, None, "valid", "max", lambda t: F.max_pool2d(t, 2), "max 2 valid")
    _compare(x, 3, 2, "valid", "max", lambda t: F.max_pool2d(t, 3, 2), "max 3/2 valid")
    # TF 'same', 3/2 on 9x11: pads (1, 1) rows, (1, 1) cols; 2/2 on 9x11: (0, 1), (0, 1)
    _compare(x, 3, 2, "same", "max", lambda t: F.max_pool2d(F.pad(t, (1, 1, 1, 1), value=-np.inf), 3, 2), "max 3/2 same")
    _compare(x, 2, 2, "same", "max", lambda t: F.max_pool2d(F.pad(t, (0, 1, 0, 1), value=-np.inf), 2, 2), "max 2 same")


@needs_torch
def test_avg_pool_against_torch():
    F = torch.nn.functional
    x = rand((4, 9, 11, 3), 1)
    _compare(x, 2, None, "valid", "avg", lambda t: F.avg_pool2d(t, 2), "avg 2 valid")
    _compare(x, 3, 2, "valid", "avg", lambda t: F.avg_pool2d(t, 3, 2), "avg 3/2 valid")
    # symmetric TF 'same' (3/2 on 9x11 pads 1 each side): padding excluded from the mean
    _compare(x, 3, 2, "same", "avg", lambda t: F.avg_pool2d(t, 3, 2, padding=1, count_include_pad=False),
             "avg 3/2 same")


@needs_torch
def test_l2_pool_against_torch():
    F = torch.nn.functional
    x = rand((4, 9, 11, 3), 1)
    _compare(x, 2, None, "valid", "l2", lambda t: F.lp_pool2d(t, 2, 2), "l2 2 valid")
    _compare(x, 3, 2, "valid", "l2", lambda t: F.lp_pool2d(t, 2, 3, 2), "l2 3/2 valid")


@needs_torch
def test_global_against_torch():
    x = rand((4, 5, 6, 3), 1)
    dy = rand((4, 3), 2)
    for mode, fn in (("avg", lambda t: t.mean(dim=(2, 3))), ("max", lambda t: t.amax(dim=(2, 3)))):
        y, cache = pool2d.global_forward(x, mode)
        dx = pool2d.global_backward(dy, cache)
        xt = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
        yt = fn(xt)
        yt.backward(torch.tensor(dy))
        assert_close(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6, name=f"global {mode} y")
        assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-7, name=f"global {mode} dx")


def test_max_pool_window_over_256_offsets():
    # 17 x 17 = 289 offsets no longer fit the uint8 index
    x = rand((2, 17, 17, 3), 1)
    y, cache = pool2d.forward(x, 17)
    assert_close(y[:, 0, 0], x.max(axis=(1, 2)), rtol=0, atol=0)
    dy = rand(y.shape, 2)
    dx = pool2d.backward(dy, cache)
    expected = np.zeros_like(x)
    flat = x.reshape(2, -1, 3).argmax(axis=1)
    for n in range(2):
        for ch in range(3):
            expected[n, flat[n, ch] // 17, flat[n, ch] % 17, ch] = dy[n, 0, 0, ch]
    assert_close(dx, expected, rtol=0, atol=0)


def test_max_pool_backward_offsets_past_uint16():
    # a window's farthest pixel, (2 * 660 + 2) * 50 floats from its first, no longer fits uint16
    x = rand((1, 5, 660, 50), 3)
    y, cache = pool2d.forward(x, 3, 2)
    dy = rand(y.shape, 4)
    expected = naive_max_pool_backward(x, dy, (3, 3), (2, 2), "valid")
    assert_close(pool2d.backward(dy, cache), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("pool, strides, padding, mode, phased", [
    (2, None, "valid", "max", True), (2, 2, "same", "max", True),
    (3, 2, "valid", "max", False), (2, None, "valid", "avg", False), (2, 1, "valid", "max", False)])
@pytest.mark.parametrize("ties", [False, True])
def test_phase_input(pool, strides, padding, mode, phased, ties):
    """An input in phase layout pools to the same y; dx comes back in phase layout. Settings the
    phase path does not cover go through the NHWC path."""
    from cnnlab.ops.im2col import to_phase
    x = np.random.default_rng(3).integers(0, 3, (3, 8, 10, 4)).astype(np.float32) if ties else rand((3, 8, 10, 4), 1)
    y, cache = pool2d.forward(x, pool, strides, padding, mode)
    y6, cache6 = pool2d.forward(to_phase(x), pool, strides, padding, mode)
    assert (cache6.mode == "phase") == phased
    assert_close(y6, y, rtol=0, atol=0)
    dy = rand(y.shape, 4)
    assert_close(pool2d.backward(dy, cache6), to_phase(pool2d.backward(dy, cache)), rtol=0, atol=0)
