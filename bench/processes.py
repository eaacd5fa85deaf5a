"""What two processes would give: one seed model's training step split over two processes, one
thread each (data parallelism), timed beside cnnlab's own two-thread step in the same run.

    python bench/processes.py [--model seed001] [--reps 40] [--batch 128]

Not part of the engine: a measurement for deciding how it should use a second core. Threads
share one GIL, and seed001's step spends much of its time where only one thread can run Python
(README, "Speed"); two processes do not. Here the parent and a forked child each run forward and
backward on half of the batch with the model's weights in shared memory; the child hands its
gradients over through shared memory, the parent adds them to its own and runs the optimizer,
and the child waits for the next step (process-shared POSIX spinlocks, through ctypes). The
gradients are the same sums in another order, so the two runs' weights are compared within a
float32 tolerance, not bit for bit. Models with dropout or batch normalization are refused:
their halves would draw their own masks and statistics.
"""
import argparse
import ctypes
import mmap
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from step import BLOCK, MODELS, build_cnnlab, pin_malloc  # noqa: E402

PINNED_MALLOC = pin_malloc()

from cnnlab.layers import BatchNormalization, Dropout  # noqa: E402
from cnnlab.ops import threads  # noqa: E402

_libc = ctypes.CDLL(None)
_lock, _unlock, _init = _libc.pthread_spin_lock, _libc.pthread_spin_unlock, _libc.pthread_spin_init
_lock.argtypes = _unlock.argtypes = [ctypes.c_void_p]
_init.argtypes = [ctypes.c_void_p, ctypes.c_int]
_PROCESS_SHARED = 1


class TwoProcessStep:
    """The model's training step over two processes: ``begin(n)`` then ``n`` calls of ``step(x, y)``,
    as often as needed, then ``close()``. Between such runs the child sleeps on a pipe (spinning,
    it would take a core from whatever the parent times meanwhile)."""

    def __init__(self, model, batch):
        if any(isinstance(l, (Dropout, BatchNormalization)) for l in model.layers):
            raise ValueError("bench/processes.py: models with dropout or batch normalization are not split here")
        self.model, self.half = model, batch // 2
        self.keys = list(model._params)
        sizes = [model._params[k].size for k in self.keys]
        n_params, n_x = sum(sizes), self.half * int(np.prod(model.input_shape[1:]))
        # [locks | parameters | child's gradients | child's half of x | of y | child's error flag]
        self._mem = mmap.mmap(-1, 4096 + 4 * (2 * n_params + n_x) + 8 * self.half + 8)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._mem))
        self._go, self._done = base, base + 64  # parent -> child: a half is ready; child -> parent: done
        for lock in (self._go, self._done):
            _init(lock, _PROCESS_SHARED)
            _lock(lock)
        at = 4096
        params = np.frombuffer(self._mem, np.float32, n_params, at)
        at += 4 * n_params
        self._grads = np.frombuffer(self._mem, np.float32, n_params, at)
        at += 4 * n_params
        self._x = np.frombuffer(self._mem, np.float32, n_x, at).reshape((self.half,) + model.input_shape[1:])
        at += 4 * n_x
        self._y = np.frombuffer(self._mem, np.int64, self.half, at)
        self._failed = np.frombuffer(self._mem, np.int64, 1, at + 8 * self.half)
        # the weights move into shared memory: the child, forked below, reads what the parent updates
        off = 0
        for layer in model.layers:
            for k, w in list(layer.params.items()):
                shared = params[off:off + w.size].reshape(w.shape)
                shared[...] = w
                layer.params[k] = shared
                off += w.size
        model._collect_params()
        self._slices = []
        off = 0
        for k, n in zip(self.keys, sizes):
            self._slices.append((k, slice(off, off + n)))
            off += n
        self._r, self._w = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            self._child()

    def _half(self, x, y):
        """Forward and backward over one half, as a mean over the whole batch."""
        model = self.model
        for layer in model.layers:
            layer.mark_grads_stale()
        with threads.background_allowed():
            out = model.forward(model._prepare_inputs(x), training=True)[0]
            value, dout, fused = model._loss_and_grad(out, y)
            dout *= 0.5
            model.backward([dout], from_logits=fused)
        for layer in model.layers:
            layer.zero_stale_grads()
        return value

    def _child(self):
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it ends the child
        threads.set_num_threads(1)
        try:
            while True:
                n = os.read(self._r, 1)
                if not n or not n[0]:
                    os._exit(0)
                for _ in range(n[0]):
                    _lock(self._go)
                    self._half(self._x, self._y)
                    for k, sl in self._slices:
                        self._grads[sl] = self.model._grads[k].reshape(-1)
                    _unlock(self._done)
        except BaseException:
            self._failed[0] = 1
            _unlock(self._done)
            os._exit(1)

    def begin(self, n):
        """The next ``n`` (< 256) calls of ``step`` run back to back."""
        os.write(self._w, bytes([n]))

    def step(self, x, y):
        h, model = self.half, self.model
        self._x[...] = x[h:]
        self._y[...] = y[h:]
        _unlock(self._go)
        value = self._half(x[:h], y[:h])
        _lock(self._done)
        if self._failed[0]:
            raise RuntimeError("bench/processes.py: the child process failed")
        for k, sl in self._slices:
            g = model._grads[k]
            g += self._grads[sl].reshape(g.shape)
        model.optimizer.apply(model._params, model._grads)
        return value

    def close(self):
        os.write(self._w, bytes([0]))
        os.waitpid(self._pid, 0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="seed001", choices=sorted(MODELS))
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    if args.batch % 2:
        p.error(f"--batch must be even, got {args.batch}")

    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)

    def fresh():
        model = build_cnnlab(MODELS[args.model])
        model.set_weights([np.random.default_rng(i).standard_normal(w.shape).astype(np.float32) * 0.05
                           for i, w in enumerate(model.get_weights())])
        return model

    # the same steps both ways from the same weights: the split changes only the sums' order
    threads.set_num_threads(2)
    threaded = fresh()
    for _ in range(5):
        threaded.train_step(x, y)
    threads.set_num_threads(1)
    split = TwoProcessStep(fresh(), args.batch)
    try:
        split.begin(5)
        for _ in range(5):
            split.step(x, y)
        worst = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))
                    for a, b in zip(threaded.get_weights(), split.model.get_weights()))

        times = {"threads": [], "processes": []}
        for _ in range(-(-args.reps // (BLOCK - 1))):
            for name in times:
                threads.set_num_threads(2 if name == "threads" else 1)
                if name == "processes":
                    split.begin(BLOCK)
                run = (lambda: threaded.train_step(x, y)) if name == "threads" else (lambda: split.step(x, y))
                for i in range(BLOCK):
                    t0 = time.perf_counter()
                    run()
                    if i:
                        times[name].append(time.perf_counter() - t0)
    finally:
        split.close()
    mt, mp = (statistics.median(times[k]) for k in ("threads", "processes"))
    print(f"{args.model}, batch {args.batch}, medians of >= {args.reps} steps, alternating in blocks of {BLOCK}")
    print(f"two threads:   {mt * 1e3:6.2f} ms")
    print(f"two processes: {mp * 1e3:6.2f} ms ({mt / mp:.2f}x), one thread each, half the batch each")
    print(f"weights after 5 steps both ways: largest difference {worst:.1e} of the largest weight")
    if worst > 1e-3:
        raise SystemExit("the two ways disagree beyond float32 rounding")


if __name__ == "__main__":
    main()
