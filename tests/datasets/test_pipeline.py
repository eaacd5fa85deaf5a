import json

import numpy as np
import pytest

from cnnlab.datasets import BatchIterator, Normalize, augment


def data(n=10, shape=(4, 4, 1)):
    x = np.arange(n * int(np.prod(shape)), dtype=np.uint8).reshape(n, *shape)
    return x, np.arange(n)


def test_batches_cover_epoch_and_reshuffle():
    x, y = data(10)
    it = BatchIterator(x, y, batch_size=4, seed=0)
    assert len(it) == 3
    e1 = list(it)
    e2 = list(it)
    assert [len(b[1]) for b in e1] == [4, 4, 2]
    assert e1[0][0].dtype == np.float32
    o1, o2 = np.concatenate([b[1] for b in e1]), np.concatenate([b[1] for b in e2])
    assert sorted(o1) == list(range(10)) and sorted(o2) == list(range(10))
    assert not np.array_equal(o1, o2)  # a new order each epoch
    for xb, yb in e1:
        np.testing.assert_array_equal(xb, x[yb].astype(np.float32))  # images stay with their labels


def test_no_shuffle_and_drop_remainder():
    x, y = data(10)
    it = BatchIterator(x, y, 4, shuffle=False, drop_remainder=True)
    assert len(it) == 2
    assert [list(b[1]) for b in it] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    xb = next(iter(BatchIterator(x.astype(np.float32), y, 4, shuffle=False)))[0]
    xb += 1  # a batch is never a view of the data set
    assert x[0, 0, 0, 0] == 0


def test_same_seed_same_batches():
    x, y = data(20)
    a = [b[1] for _ in range(2) for b in BatchIterator(x, y, 3, seed=5)]
    b = [b[1] for _ in range(2) for b in BatchIterator(x, y, 3, seed=5)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))


def _epochs(it, n):
    return [(xb.copy(), yb.copy()) for _ in range(n) for xb, yb in it]


def test_exact_resume_mid_epoch_with_augmentation():
    x = np.random.default_rng(0).integers(0, 256, size=(23, 8, 8, 3), dtype=np.uint8)
    y = np.arange(23)
    kw = dict(batch_size=5, augment=augment.parse("shift:1,flip:horizontal,crop:2,erase:0.5"),
              normalize=Normalize("scale"))
    reference = _epochs(BatchIterator(x, y, seed=1, **kw), 3)

    run = BatchIterator(x, y, seed=1, **kw)
    first = list(run)                             # epoch 0
    for i, b in enumerate(run):                   # epoch 1, interrupted after two batches
        first.append(b)
        if i == 1:
            break
    state = json.loads(json.dumps(run.get_state()))

    resumed = BatchIterator(x, y, seed=999, **kw)  # a different seed: the state must override it
    resumed.set_state(state)
    rest = _epochs(resumed, 2)                    # the rest of epoch 1, then epoch 2
    got = first + rest
    assert len(got) == len(reference) == 15
    for (xa, ya), (xb, yb) in zip(got, reference):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)


def test_state_before_first_epoch():
    x, y = data(9)
    a = BatchIterator(x, y, 2, seed=3)
    b = BatchIterator(x, y, 2, seed=4)
    b.set_state(a.get_state())
    assert all(np.array_equal(p[1], q[1]) for p, q in zip(a, b))


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (dict(batch_size=2.5), "batch_size must be an integer >= 1, got 2.5"),
    (dict(batch_size=20, drop_remainder=True), "batch_size 20 > 10 samples with drop_remainder=True"),
])
def test_argument_validation(kwargs, message):
    x, y = data(10)
    with pytest.raises(ValueError, match=message):
        BatchIterator(x, y, **kwargs)


def test_data_validation():
    x, y = data(10)
    with pytest.raises(ValueError, match="empty dataset"):
        BatchIterator(x[:0], y[:0], 2)
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        BatchIterator(x, y[:9], 2)
    xf = x.astype(np.float32)
    xf[1, 0, 0, 0], xf[3, 1, 1, 0], xf[5, 2, 2, 0] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match="x contains 3 NaN/inf values"):
        BatchIterator(xf, y, 2)


def test_normalize_scale_and_standardize():
    x = np.random.default_rng(0).integers(0, 256, size=(50, 6, 6, 3), dtype=np.uint8)
    np.testing.assert_allclose(Normalize("scale")(x[:2]), x[:2] / 255.0, rtol=1e-6)
    n = Normalize("standardize").fit(x, chunk=7)  # several chunks, one partial
    ref = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(n.mean, ref.mean(0), rtol=1e-6)
    np.testing.assert_allclose(n.std, ref.std(0), rtol=1e-6)
    z = n(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.reshape(-1, 3).mean(0), 0, atol=1e-5)
    cfg = json.loads(json.dumps(n.get_config()))
    np.testing.assert_allclose(Normalize.from_config(cfg)(x[:3]), z[:3], rtol=1e-6)
    with pytest.raises(ValueError, match="call fit"):
        Normalize("standardize")(x)
    with pytest.raises(ValueError, match="mode must be 'scale' or 'standardize', got 'minmax'"):
        Normalize("minmax")
