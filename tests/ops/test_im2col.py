"""pad2d's kept buffers: reused with their border intact, never while someone holds one."""
import os

import numpy as np
import pytest

from cnnlab.ops import im2col
from tests.helpers import rand


def reference_pad(x, pads, value):
    pt, pb, pl, pr = pads
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)


@pytest.mark.parametrize("value", [0.0, -np.inf])
def test_pad_reuses_idle_buffers_and_keeps_the_border(value):
    im2col.clear_workspace()
    pads = (1, 2, 0, 3)
    x1, x2 = rand((3, 4, 5, 2), 1), rand((3, 4, 5, 2), 2)
    a = im2col.pad2d(x1, pads, value)
    np.testing.assert_array_equal(a, reference_pad(x1, pads, value))
    held = a                                       # busy: the next call must not write into it
    b = im2col.pad2d(x2, pads, value)
    assert not np.shares_memory(held, b)
    np.testing.assert_array_equal(held, reference_pad(x1, pads, value))
    np.testing.assert_array_equal(b, reference_pad(x2, pads, value))
    ida = id(a)
    del a, held, b
    c = im2col.pad2d(x1 * 3, pads, value)          # an idle buffer comes back, border untouched
    assert id(c) == ida
    np.testing.assert_array_equal(c, reference_pad(x1 * 3, pads, value))


def test_pad_buffers_are_kept_per_value_and_shape():
    im2col.clear_workspace()
    x = rand((2, 3, 3, 1), 3)
    z = im2col.pad2d(x, (1, 1, 1, 1), 0.0)
    del z
    m = im2col.pad2d(x, (1, 1, 1, 1), -np.inf)     # same shape, other value: not the zero-bordered one
    np.testing.assert_array_equal(m, reference_pad(x, (1, 1, 1, 1), -np.inf))
    del m
    z = im2col.pad2d(x, (1, 1, 1, 1), 0.0)
    np.testing.assert_array_equal(z, reference_pad(x, (1, 1, 1, 1), 0.0))


def test_no_padding_returns_the_input():
    x = rand((2, 3, 3, 1), 4)
    assert im2col.pad2d(x, (0, 0, 0, 0)) is x


def test_pad_keeps_a_few_buffers_per_shape():
    im2col.clear_workspace()
    x = rand((2, 3, 3, 1), 5)
    held = [im2col.pad2d(x, (1, 1, 1, 1)) for _ in range(im2col._PADDED_PER_KEY + 3)]
    assert len({id(h) for h in held}) == len(held)                  # all held: all distinct
    assert sum(len(v) for v in im2col._PADDED.values()) == im2col._PADDED_PER_KEY
    for h in held:
        np.testing.assert_array_equal(h, reference_pad(x, (1, 1, 1, 1), 0.0))


def test_phase_layout_round_trip():
    x = rand((3, 6, 8, 5), 1)
    x6 = im2col.to_phase(x)
    assert x6.shape == (3, 2, 2, 3, 4, 5)
    for a in range(2):
        for b in range(2):
            assert (x6[:, a, b] == x[:, a::2, b::2]).all()
    assert (im2col.from_phase(x6) == x).all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_use_the_workspace_while_another_thread_holds_its_lock():
    import threading
    import time
    taken, release = threading.Event(), threading.Event()

    def hold():
        with im2col._LOCK:
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: the holder thread is not here; its lock must not be either
        try:
            im2col.empty((1 << 20,), np.float32)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the child hung on the workspace's lock")
            time.sleep(0.01)
    finally:
        release.set()
        holder.join()
