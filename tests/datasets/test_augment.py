import json

import numpy as np
import pytest

from cnnlab.datasets import BatchIterator, augment
from cnnlab.datasets.augment import (Compose, RandomAffine, RandomCrop, RandomErasing, RandomFlip,
                                     RandomShift, from_config, parse, shift, warp_affine)


def batch(n=64, h=7, w=9, c=2, seed=0):
    return np.random.default_rng(seed).uniform(1, 2, size=(n, h, w, c)).astype(np.float32)


def shifted(img, dy, dx):
    """Reference for one image, written as a plain pixel loop: moved by (dy, dx), zero fill."""
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    for r in range(h):
        for c in range(w):
            if 0 <= r + dy < h and 0 <= c + dx < w:
                out[r + dy, c + dx] = img[r, c]
    return out


def test_shift_four_moves_one_pixel_with_zero_fill():
    x = batch()
    out = RandomShift(1, "four")(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    seen = set()
    for img, res in zip(x, out):
        matches = [d for d in [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
                   if np.array_equal(res, shifted(img, *d))]
        assert len(matches) == 1, "each image is the original moved by at most one pixel"
        seen.add(matches[0])
    assert len(seen) == 5  # all five choices occur in a batch of 64
    assert np.array_equal(x, batch())  # the input is not modified


def test_shift_any_range():
    x = batch(40)
    out = RandomShift(2, "any")(x, np.random.default_rng(1))
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    for img, res in zip(x, out):
        assert any(np.array_equal(res, shifted(img, *d)) for d in offsets)


def test_flips():
    x = batch(32)
    h = RandomFlip("horizontal")(x, np.random.default_rng(0))
    flipped = [np.array_equal(r, i[:, ::-1]) for i, r in zip(x, h)]
    kept = [np.array_equal(r, i) for i, r in zip(x, h)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 27
    v = RandomFlip("vertical")(x, np.random.default_rng(0))
    assert all(np.array_equal(r, i[::-1]) or np.array_equal(r, i) for i, r in zip(x, v))
    hv = RandomFlip("horizontal_and_vertical")(x, np.random.default_rng(2))
    options = lambda i: [i, i[::-1], i[:, ::-1], i[::-1, ::-1]]
    assert all(any(np.array_equal(r, o) for o in options(i)) for i, r in zip(x, hv))
    with pytest.raises(ValueError, match="did you mean 'horizontal'"):
        RandomFlip("horizontl")


def test_crop_keeps_shape_and_is_a_padded_window():
    x = batch(30)
    out = RandomCrop(2)(x, np.random.default_rng(0))
    assert out.shape == x.shape
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    moved = 0
    for img, res in zip(x, out):
        match = [d for d in offsets if np.array_equal(res, shifted(img, *d))]
        assert match
        moved += match[0] != (0, 0)
    assert moved > 15


def test_erasing_sets_one_rectangle():
    x = batch(50, h=12, w=12, c=3)
    out = RandomErasing(p=0.5, value=0)(x, np.random.default_rng(0))
    erased = 0
    for img, res in zip(x, out):
        changed = np.any(res != img, axis=-1)
        if not changed.any():
            continue
        erased += 1
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        box = changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.all() and changed.sum() == box.size  # exactly a filled rectangle
        assert np.all(res[changed] == 0) and 0.02 * 144 * 0.5 <= box.size <= 0.33 * 144 * 1.5
    assert 12 < erased < 38


def bilinear_reference(img, M, offset, fill):
    """One image warped pixel by pixel: bilinear between the four neighbours, ``fill`` off the image."""
    h, w, _ = img.shape
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    out = np.zeros_like(img, dtype=np.float64)
    for r in range(h):
        for q in range(w):
            sy, sx = M @ (np.array([r, q]) - c) + c + offset
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                    v = img[yy, xx] if 0 <= yy < h and 0 <= xx < w else fill
                    out[r, q] += wy * wx * v
    return out


def test_warp_affine_matches_a_pixel_loop():
    rng = np.random.default_rng(0)
    x = batch(5, 7, 9, 2)
    M = rng.normal(size=(5, 2, 2)) * 0.6 + np.eye(2)
    offset = rng.normal(size=(5, 2)) * 3  # some samples land off the image
    got = warp_affine(x, M, offset, fill=-0.5)
    assert got.shape == x.shape and got.dtype == np.float32
    for k in range(5):
        np.testing.assert_allclose(got[k], bilinear_reference(x[k], M[k], offset[k], -0.5), rtol=1e-5, atol=1e-5)


class Highest:
    """A stand-in generator whose ``uniform`` always draws the top of the range."""

    def uniform(self, low, high, size=None):
        return np.broadcast_to(np.asarray(high, float), size).copy()


def test_affine_identity_rotation_and_translation():
    x = batch(4, 8, 8, 3)
    np.testing.assert_array_equal(RandomAffine()(x, np.random.default_rng(0)), x)
    turned = RandomAffine(rotation=90)(x, Highest())
    # +90 degrees turns the picture counter-clockwise: the top row becomes the left column
    np.testing.assert_allclose(turned, np.rot90(x, 1, axes=(1, 2)), atol=1e-6)
    moved = RandomAffine(translate=0.25)(x, Highest())                 # 2 pixels down and right
    np.testing.assert_allclose(moved, shift(x, 2, 2), atol=1e-6)


def test_affine_zoom_and_shear_follow_the_documented_map():
    x = batch(3, 6, 7, 1)
    got = RandomAffine(zoom=0.5, shear=20)(x, Highest())               # scale 1.5, shear tan(20 deg)
    k = np.tan(np.deg2rad(20))
    A = 1.5 * np.array([[1.0, 0.0], [k, 1.0]])                          # output = A @ (input - c) + c
    for i in range(3):
        np.testing.assert_allclose(got[i], bilinear_reference(x[i], np.linalg.inv(A), np.zeros(2), 0.0),
                                   rtol=1e-5, atol=1e-5)


def test_affine_draws_per_image_and_is_reproducible():
    x = np.repeat(batch(1, 9, 9, 1), 6, axis=0)
    t = RandomAffine(rotation=15, zoom=0.1, translate=0.1)
    a, b = t(x, np.random.default_rng(5)), t(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert len({a[i].tobytes() for i in range(6)}) == 6                 # one draw per image
    with pytest.raises(ValueError, match=r"RandomAffine: zoom must be in \[0, 1\), got 1.5"):
        RandomAffine(zoom=1.5)


def test_compose_parse_and_config():
    t = parse("shift:1,flip:horizontal,crop:4,erase:0.5,affine:10:0.1:0.05")
    assert isinstance(t, Compose) and [type(s) for s in t.transforms] == [RandomShift, RandomFlip, RandomCrop,
                                                                             RandomErasing, RandomAffine]
    assert t.transforms[-1].get_config() == {"name": "affine", "rotation": 10.0, "zoom": 0.1, "translate": 0.05,
                                             "shear": 0.0, "fill": 0.0}
    cfg = json.loads(json.dumps(t.get_config()))
    again = from_config(cfg)
    x = batch(8)
    np.testing.assert_array_equal(t(x, np.random.default_rng(3)), again(x, np.random.default_rng(3)))
    assert parse("shift:2:any").transforms[0].get_config() == {"name": "shift", "max_pixels": 2, "mode": "any"}
    assert len(parse("")) == 0 and len(parse("none")) == 0
    with pytest.raises(ValueError, match=r"Unknown augmentation: 'shfit' \(did you mean 'shift'\?\)"):
        parse("shfit:1")
    with pytest.raises(ValueError, match="augmentation 'crop:big': bad arguments"):
        parse("crop:big")


def test_labels_untouched_and_vectorised_per_batch():
    x = np.random.default_rng(0).integers(0, 256, size=(20, 6, 6, 1), dtype=np.uint8)
    y = np.arange(20)
    calls = []

    class Spy:
        def __call__(self, xb, rng):
            calls.append(xb.shape)
            return augment.RandomShift(1)(xb, rng)

    plain = [yb for _, yb in BatchIterator(x, y, 8, seed=0)]
    augmented = [yb for _, yb in BatchIterator(x, y, 8, seed=0, augment=Spy())]
    # same labels in the same order: augmentation draws from its own stream and leaves labels alone
    assert all(np.array_equal(a, b) for a, b in zip(plain, augmented))
    assert calls == [(8, 6, 6, 1), (8, 6, 6, 1), (4, 6, 6, 1)]  # one call per batch, not per image


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be 'four' or 'any'"):
        RandomShift(1, "diagonal")
    with pytest.raises(ValueError, match="p must be in"):
        RandomErasing(p=2)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, H, W, C\)"):
        RandomCrop(1)(np.zeros((3, 4, 4), np.float32), np.random.default_rng(0))
