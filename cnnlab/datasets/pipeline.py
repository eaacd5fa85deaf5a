"""Mini-batches for training: per-epoch shuffling, on-the-fly augmentation and normalisation.

Only the current batch is ever converted to float32; the dataset stays as it is (usually uint8).
``BatchIterator.get_state()`` is JSON-safe, so a resumed run draws exactly the same batches and
augmentations as an uninterrupted one.
"""
import math

import numpy as np

from ..random import get_rng_state, make_rng, set_rng_state


def _count_nonfinite(x, chunk=4096):
    """Non-finite values in float ``x``, checked in chunks to avoid a dataset-sized mask."""
    if not np.issubdtype(x.dtype, np.floating):
        return 0
    return sum(int(x[i:i + chunk].size - np.count_nonzero(np.isfinite(x[i:i + chunk])))
               for i in range(0, len(x), chunk))


class Normalize:
    """``'scale'``: x / 255. ``'standardize'``: (x - mean) / std per channel (last axis).

    For ``'standardize'`` give ``mean``/``std`` or call ``fit(x_train)``.
    """

    def __init__(self, mode="scale", mean=None, std=None):
        if mode not in ("scale", "standardize"):
            raise ValueError(f"Normalize: mode must be 'scale' or 'standardize', got {mode!r}")
        self.mode = mode
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)

    def fit(self, x, chunk=4096):
        """Per-channel mean and std of ``x``, accumulated chunk by chunk (Chan et al.'s pairwise
        update) so that only one chunk at a time is converted to float64."""
        if len(x) == 0:
            raise ValueError("Normalize.fit: empty dataset")
        n, mean, m2 = 0, 0.0, 0.0
        for i in range(0, len(x), chunk):
            c = np.asarray(x[i:i + chunk], dtype=np.float64).reshape(-1, x.shape[-1])
            cn, cmean = len(c), c.mean(axis=0)
            cm2 = ((c - cmean) ** 2).sum(axis=0)
            delta = cmean - mean
            total = n + cn
            mean = mean + delta * (cn / total)
            m2 = m2 + cm2 + delta ** 2 * (n * cn / total)
            n = total
        std = np.sqrt(m2 / n)
        self.mean = mean.astype(np.float32)
        self.std = np.where(std > 1e-12, std, 1.0).astype(np.float32)  # constant channel: leave unscaled
        return self

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float32)
        if self.mode == "scale":
            return x * np.float32(1 / 255)
        if self.mean is None or self.std is None:
            raise ValueError("Normalize('standardize'): no mean/std; pass them or call fit(x_train) first")
        return (x - self.mean) / self.std

    def get_config(self):
        tolist = lambda a: None if a is None else [float(v) for v in np.ravel(a)]
        return {"mode": self.mode, "mean": tolist(self.mean), "std": tolist(self.std)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class BatchIterator:
    """Iterate over ``(x_batch float32, y_batch)`` for one epoch per ``for`` loop.

    ``shuffle``: a new permutation every epoch, from the iterator's own Generator (``seed``, or
    drawn from ``cnnlab.random``'s global one). ``augment(x, rng)`` and ``normalize(x)`` are
    applied to each batch, in that order (so augmentation fills with raw-pixel zeros).
    Breaking out of a loop and iterating again resumes the same epoch.
    """

    def __init__(self, x, y, batch_size, shuffle=True, seed=None, augment=None, normalize=None,
                 drop_remainder=False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if len(x) == 0:
            raise ValueError("BatchIterator: empty dataset (x has 0 samples)")
        if len(x) != len(y):
            raise ValueError(f"BatchIterator: x has {len(x)} samples but y has {len(y)}")
        for name, a in (("x", x), ("y", y)):
            bad = _count_nonfinite(np.asarray(a))
            if bad:
                raise ValueError(f"BatchIterator: {name} contains {bad} NaN/inf values")
        if drop_remainder and len(x) < batch_size:
            raise ValueError(f"BatchIterator: batch_size {batch_size} > {len(x)} samples with drop_remainder=True "
                             "gives no batches")
        if isinstance(augment, str):
            from .augment import parse
            augment = parse(augment)
        if isinstance(normalize, str):
            normalize = Normalize(normalize)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_remainder = int(batch_size), shuffle, drop_remainder
        self.augment, self.normalize = augment, normalize
        base = make_rng(seed)
        # Separate streams: the order of batches does not depend on what augmentation draws.
        self._shuffle_rng = np.random.default_rng(int(base.integers(0, 2**63 - 1)))
        self._augment_rng = np.random.default_rng(int(base.integers(0, 2**63 - 1)))
        self.epoch = 0          # index of the current epoch
        self._batch = 0         # next batch of the current epoch
        self._perm = None       # this epoch's order; None before the first epoch starts
        self._epoch_start = None

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_remainder else math.ceil(n / self.batch_size)

    def _start_epoch(self):
        # Remember the shuffle state this epoch's permutation came from: the state then stays
        # small (no stored permutation) and set_state redraws the same one.
        self._epoch_start = get_rng_state(self._shuffle_rng)
        n = len(self.x)
        self._perm = self._shuffle_rng.permutation(n) if self.shuffle else np.arange(n)
        self._batch = 0

    def __iter__(self):
        if self._perm is None:
            self._start_epoch()
        elif self._batch >= len(self):
            self.epoch += 1
            self._start_epoch()
        while self._batch < len(self):
            i = self._batch
            self._batch += 1  # counted before yielding: get_state() then means "batch i consumed"
            yield self._make_batch(i)

    def _make_batch(self, i):
        idx = self._perm[i * self.batch_size:(i + 1) * self.batch_size]
        if self.shuffle:
            xb, yb = self.x[idx], self.y[idx]
        else:  # contiguous: a slice, no index gather
            xb, yb = self.x[idx[0]:idx[-1] + 1], self.y[idx[0]:idx[-1] + 1]
        xb = xb.astype(np.float32, copy=not self.shuffle)  # a gather is already a copy; a slice is a view
        if self.augment is not None:
            xb = self.augment(xb, self._augment_rng)
        if self.normalize is not None:
            xb = self.normalize(xb)
        return xb, yb

    def get_state(self):
        """JSON-safe position and random state."""
        started = self._perm is not None
        return {"epoch": self.epoch, "batch": self._batch, "started": started,
                "shuffle_rng": self._epoch_start if started else get_rng_state(self._shuffle_rng),
                "augment_rng": get_rng_state(self._augment_rng)}

    def set_state(self, state):
        set_rng_state(self._shuffle_rng, state["shuffle_rng"])
        set_rng_state(self._augment_rng, state["augment_rng"])
        self.epoch = int(state["epoch"])
        if state["started"]:
            self._start_epoch()
            self._batch = int(state["batch"])
        else:
            self._perm, self._epoch_start, self._batch = None, None, 0
