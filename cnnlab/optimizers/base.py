"""The optimizer contract and what every optimizer shares: clipping, decoupled weight decay,
learning-rate schedules, lazily created slots, state for exact resume.

``apply(params, grads)`` updates float32 arrays in place. Every scalar that meets an array is
a Python float, so NumPy keeps float32 (a NumPy float64 scalar would promote the whole update).
"""
import math
import weakref

import numpy as np

from ..ops import threads
from ..ops.threads import flat, parallel_slices
from ..utils import closest
from . import schedules


def _sq_norm(g):
    g = g.reshape(-1)
    return float(np.dot(g, g))


def _root(a):
    """The 1-D contiguous array whose buffer ``a`` is a view into, and ``a``'s offset in it in
    elements; ``(None, None)`` when there is none."""
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root is a or root.ndim != 1 or not root.flags.c_contiguous or root.dtype != a.dtype:
        return None, None
    start = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return root, start // a.itemsize


def _follows(a, b):
    """Whether ``b`` starts where ``a`` ends, both contiguous views into one buffer."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous) or a.dtype != b.dtype:
        return False
    ra, sa = _root(a)
    rb, sb = _root(b)
    return ra is not None and ra is rb and sa + a.size == sb


def clip_by_norm(g, max_norm):
    """Rescale ``g`` in place to L2 norm at most ``max_norm``; return its norm before clipping."""
    norm = math.sqrt(_sq_norm(g))
    if norm > max_norm:
        g *= max_norm / norm
    return norm


def clip_by_global_norm(grads, max_norm):
    """Rescale every array in ``grads`` (a dict) in place so that their joint L2 norm is at most
    ``max_norm``; return the joint norm before clipping."""
    norm = math.sqrt(sum(_sq_norm(g) for g in grads.values()))
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


class Optimizer:
    """Base class. Subclasses define ``slot_names()``, ``init_slot(name, w)`` and ``update(w, g, slots, lr)``."""

    default_name = "optimizer"
    # True where ``update`` treats every element on its own: params lying back to back in memory
    # (as a model lays them out) are then updated as one array, one pass of each kind per run of
    # them instead of one per param
    elementwise_update = False

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, global_clipnorm=None,
                 clipvalue=None, name=None, **kwargs):
        if kwargs:
            key = next(iter(kwargs))
            allowed = ["learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "name"]
            raise TypeError(f"{type(self).__name__}: unknown argument {key!r}{closest(key, allowed)}.")
        if sum(c is not None for c in (clipnorm, global_clipnorm, clipvalue)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        for arg, value in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm), ("clipvalue", clipvalue)):
            if value is not None and value <= 0:
                raise ValueError(f"`{arg}` must be positive; received {arg}={value}.")
        self.name = name or self.default_name
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)
        self.clipvalue = None if clipvalue is None else float(clipvalue)
        self.iterations = 0
        self.slots = {}          # param key -> {slot name: array}
        self._scratch = {}       # (index, dtype) -> flat buffer reused by every update
        self._exclude_wd = ()
        self._plan = None        # (keys, weak refs to every array, runs): see _runs
        self.learning_rate = learning_rate

    # ----- learning rate --------------------------------------------------
    @property
    def learning_rate(self):
        """The rate the next update will use: the schedule evaluated at ``iterations``, or the float."""
        if self._schedule is not None:
            return float(self._schedule(self.iterations))
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, dict):
            value = schedules.deserialize(value)
        if callable(value):
            self._schedule, self._lr = value, None
        else:
            self._schedule, self._lr = None, float(value)

    @property
    def schedule(self):
        return self._schedule

    # ----- weight decay ---------------------------------------------------
    def exclude_from_weight_decay(self, var_names=()):
        """Skip decoupled weight decay for params whose key contains any of ``var_names`` (e.g. ``"bias"``)."""
        self._exclude_wd = tuple(var_names)

    def _decays(self, key):
        return self.weight_decay and not any(s in key for s in self._exclude_wd)

    # ----- slots ----------------------------------------------------------
    def slot_names(self):
        return ()

    def init_slot(self, name, w):
        return np.zeros_like(w)

    def build(self, params):
        """Create the slots of every param now (they are otherwise created on first ``apply``)."""
        for key, w in params.items():
            self._slots_for(key, w)

    def _slots_for(self, key, w):
        slots = self.slots.get(key)
        if slots is None:
            slots = self.slots[key] = {s: self.init_slot(s, w) for s in self.slot_names()}
        else:
            for s, a in slots.items():
                if a.shape != w.shape:
                    raise ValueError(f"Optimizer slot {key}/{s} has shape {a.shape}, but param {key!r} has "
                                     f"shape {w.shape}.")
        return slots

    def tmp(self, w, i=0):
        """A scratch array shaped like ``w`` (reused between updates: no allocation per step)."""
        buf = self._scratch.get((i, w.dtype))
        if buf is None or buf.size < w.size:
            buf = self._scratch[(i, w.dtype)] = np.empty(w.size, dtype=w.dtype)
        return buf[:w.size].reshape(w.shape)

    @staticmethod
    def elementwise(fn, *arrays):
        """``fn(*arrays)`` for an in-place elementwise update, run on flat chunks over threads when
        every array is contiguous and big enough (bit-identical: no element depends on another)."""
        flats = [flat(a) for a in arrays]
        if any(f is None or f.size != flats[0].size for f in flats):
            fn(*arrays)
            return
        parallel_slices(lambda sl: fn(*(f[sl] for f in flats)), flats[0].size)

    # ----- the step -------------------------------------------------------
    def apply(self, params, grads):
        """One update of every array in ``params`` (in place) from ``grads``, then ``iterations += 1``.

        Clipping rescales the arrays in ``grads`` in place (they are per-step scratch).
        """
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"No gradient for params {missing}.")
        if self.clipnorm is not None or self.global_clipnorm is not None or self.clipvalue is not None:
            threads.join_background()  # clipping reads every gradient
        grads = {k: self._check_grad(k, params[k], grads[k]) for k in params}
        if self.clipnorm is not None:
            for g in grads.values():
                clip_by_norm(g, self.clipnorm)
        elif self.global_clipnorm is not None:
            clip_by_global_norm(grads, self.global_clipnorm)
        elif self.clipvalue is not None:
            for g in grads.values():
                np.clip(g, -self.clipvalue, self.clipvalue, out=g)
        lr = self.learning_rate
        # gradients still being written in the background (threads.background) go last
        ready = [k for k in params if not threads.pending(grads[k])]
        later = [k for k in params if threads.pending(grads[k])]
        for keys, runs in zip((ready, later), self._runs(params, grads, (ready, later))):
            if keys is later and later:
                threads.join_background()
            for run, w, g, slots in runs:
                decays = [self._decays(k) for k in run]
                if all(decays):  # decoupled, before the update, as Keras: w <- w - w * wd * lr
                    w *= 1.0 - self.weight_decay * lr
                elif any(decays):
                    for k, d in zip(run, decays):
                        if d:
                            params[k] *= 1.0 - self.weight_decay * lr
                self.update(w, g, slots, lr)
        self.iterations += 1

    def _runs(self, params, grads, groups):
        """Each group of keys as runs ``(keys, w, g, slots)``: consecutive params whose arrays
        (param, gradient, each slot) lie back to back in one buffer each, as flat views over the
        run, when ``elementwise_update``; otherwise one run per param. Built when the arrays
        change, checked by identity on every step."""
        if self.elementwise_update and any(k not in self.slots for k in params):
            self._pack_slots(params)  # made in place there, not copied in later
        slots = {k: self._slots_for(k, params[k]) for k in params}
        arrays = [a for k in params for a in (params[k], grads[k], *slots[k].values())]
        keys = tuple(tuple(g) for g in groups)
        plan = self._plan
        if plan is not None and plan[0] == keys and len(plan[1]) == len(arrays) and \
                all(r() is a for r, a in zip(plan[1], arrays)):
            return plan[2]
        if self.elementwise_update:
            self._pack_slots(params)
            arrays = [a for k in params for a in (params[k], grads[k], *slots[k].values())]
        runs = []
        for group in groups:
            found = []  # (keys of a run, the arrays of its last param)
            for k in group:
                row = (params[k], grads[k], *slots[k].values())
                if self.elementwise_update and found and all(map(_follows, found[-1][1], row)):
                    found[-1] = (found[-1][0] + [k], row)
                else:
                    found.append(([k], row))
            runs.append([self._run_views(run, params, grads, slots) for run, _ in found])
        self._plan = (keys, [weakref.ref(a) for a in arrays], runs)
        return runs

    @staticmethod
    def _run_views(run, params, grads, slots):
        if len(run) == 1:
            k = run[0]
            return run, params[k], grads[k], slots[k]
        first, last = run[0], run[-1]

        def span(a, b):  # a flat view from the start of a to the end of b, in their shared buffer
            root, start = _root(a)
            return root[start:_root(b)[1] + b.size]

        return (run, span(params[first], params[last]), span(grads[first], grads[last]),
                {s: span(slots[first][s], slots[last][s]) for s in slots[first]})

    def _pack_slots(self, params):
        """Lay each slot name's arrays for ``params`` back to back in one array, in ``params``'
        order: those that exist copied there (slots are made one param at a time, and
        ``set_state`` replaces them), the others made there."""
        dtypes = {w.dtype for w in params.values()}
        if len(params) < 2 or len(dtypes) != 1:
            return
        offsets = np.cumsum([0] + [w.size for w in params.values()])
        for s in self.slot_names():
            arrays = [self.slots.get(k, {}).get(s) for k in params]
            if any(a is not None and a.shape != w.shape for a, w in zip(arrays, params.values())):
                return  # left to _slots_for's error
            if all(a is not None for a in arrays) and all(map(_follows, arrays[:-1], arrays[1:])):
                continue
            arena = np.empty(int(offsets[-1]), next(iter(dtypes)))
            for (k, w), at, old in zip(params.items(), offsets[:-1], arrays):
                view = arena[at:at + w.size].reshape(w.shape)
                view[...] = self.init_slot(s, w) if old is None else old
                self.slots.setdefault(k, {})[s] = view

    @staticmethod
    def _check_grad(key, w, g):
        if g.shape != w.shape:
            raise ValueError(f"Gradient for {key!r} has shape {g.shape}, param has shape {w.shape}.")
        if g.dtype != w.dtype:
            threads.join_background()  # the cast reads it
            g = g.astype(w.dtype)
        return g

    def update(self, w, g, slots, lr):
        raise NotImplementedError

    # ----- state ----------------------------------------------------------
    def get_state(self):
        """Copies of every slot, keyed ``"<param key>/<slot name>"``, plus ``"iterations"`` (0-d int64)."""
        state = {f"{k}/{s}": a.copy() for k, slots in self.slots.items() for s, a in slots.items()}
        state["iterations"] = np.array(self.iterations, dtype=np.int64)
        return state

    def set_state(self, state, params=None):
        """Restore ``get_state()``'s output exactly. Checked against the slots already built, or
        against ``params`` when given; otherwise shapes are checked on the next ``apply``."""
        if "iterations" not in state:
            raise ValueError("Optimizer state has no 'iterations' entry.")
        names = set(self.slot_names())
        new = {}
        for full, value in state.items():
            if full == "iterations":
                continue
            key, _, slot = full.rpartition("/")
            if not key or slot not in names:
                raise ValueError(f"Optimizer state key {full!r} is not '<param key>/<slot>' with a slot of "
                                 f"{type(self).__name__} ({', '.join(sorted(names)) or 'none'}).")
            new.setdefault(key, {})[slot] = np.array(value, copy=True)
        for key, slots in new.items():
            if set(slots) != names:
                raise ValueError(f"Optimizer state for {key!r} has slots {sorted(slots)}, expected {sorted(names)}.")
        reference = {k: w.shape for k, w in params.items()} if params is not None else (
            {k: next(iter(s.values())).shape for k, s in self.slots.items() if s} if self.slots else None)
        if reference is not None and names:
            if set(new) != set(reference):
                extra, absent = sorted(set(new) - set(reference)), sorted(set(reference) - set(new))
                raise ValueError(f"Optimizer state does not match the params: unexpected keys {extra}, "
                                 f"missing keys {absent}.")
            for key, slots in new.items():
                for s, a in slots.items():
                    if a.shape != tuple(reference[key]):
                        raise ValueError(f"Optimizer state {key}/{s} has shape {a.shape}, expected "
                                         f"{tuple(reference[key])}.")
        dtypes = {k: w.dtype for k, w in params.items()} if params is not None else {}
        for key, slots in new.items():
            dtype = dtypes.get(key, np.float32)
            new[key] = {s: np.ascontiguousarray(a, dtype=dtype) for s, a in slots.items()}
        self.slots = new
        self.iterations = int(np.asarray(state["iterations"]))

    # ----- configuration --------------------------------------------------
    def get_config(self):
        lr = schedules.serialize(self._schedule) if isinstance(self._schedule, schedules.LearningRateSchedule) \
            else self.learning_rate
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self.learning_rate:g}>"
