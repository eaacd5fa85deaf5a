"""Time cnnlab's conv2d / pool2d against torch.nn.functional on the tutorial models' shapes.

    python bench/ops.py [--batch 128] [--reps 7] [--models a,b,c] [--stat median|min]

Both run in this process on the same data, alternating rep by rep; torch uses
NCHW and 2 threads. Prints the median ms and the ratio cnnlab / torch for the
forward pass and for forward + backward. A network's first conv skips dx on
both sides (nothing upstream needs it).
"""
import argparse
import os
import statistics
import sys
import time

# torch's OpenMP threads otherwise spin for a while after each call and steal
# the two cores from the next (OpenBLAS) call when the two libraries alternate
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from cnnlab.ops import conv2d, pool2d  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(2)

# (kind, in (H, W, C), params); conv params: k, F, bias; pool params: pool, stride, padding
MODELS = {
    "a": [("conv", (28, 28, 1), dict(k=5, F=32, bias=True)),
          ("pool", (28, 28, 32), dict(pool=2, stride=2, padding="valid")),
          ("conv", (14, 14, 32), dict(k=5, F=64, bias=True)),
          ("pool", (14, 14, 64), dict(pool=2, stride=2, padding="valid"))],
    "b": [("conv", (28, 28, 1), dict(k=3, F=32, bias=False)),
          ("pool", (28, 28, 32), dict(pool=2, stride=2, padding="same")),
          ("conv", (14, 14, 32), dict(k=3, F=64, bias=False)),
          ("pool", (14, 14, 64), dict(pool=2, stride=2, padding="same")),
          ("conv", (7, 7, 64), dict(k=3, F=128, bias=False)),
          ("pool", (7, 7, 128), dict(pool=2, stride=2, padding="same"))],
    "c": [("conv", (28, 28, 1), dict(k=3, F=12, bias=True)),
          ("pool", (28, 28, 12), dict(pool=3, stride=2, padding="valid")),
          ("conv", (13, 13, 12), dict(k=3, F=16, bias=True)),
          ("pool", (13, 13, 16), dict(pool=3, stride=2, padding="valid"))],
}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def make_case(kind, shape, p, batch, first, rng):
    """Return (label, ours_fwd, ours_fb, torch_fwd, torch_fb) closures on shared data."""
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if kind == "conv":
        k, nf = p["k"], p["F"]
        W = (rng.standard_normal((k, k, shape[2], nf)) * 0.1).astype(np.float32)
        b = rng.standard_normal(nf).astype(np.float32) if p["bias"] else None
        Wt = torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1))).requires_grad_()
        bt = torch.from_numpy(b).requires_grad_() if b is not None else None
        y, _ = conv2d.forward(x, W, b, padding="same")
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
        xt.requires_grad_(not first)
        wrt = [t for t in (xt, Wt, bt) if t is not None and t.requires_grad]
        pad = k // 2  # odd kernel, stride 1: TF 'same' is symmetric

        def ours_fwd():
            conv2d.forward(x, W, b, padding="same")

        def ours_fb():
            y, cache = conv2d.forward(x, W, b, padding="same")
            conv2d.backward(dy, cache, need_dx=not first)

        def torch_fwd():
            with torch.no_grad():
                F.conv2d(xt, Wt, bt, padding=pad)

        def torch_fb():
            torch.autograd.grad(F.conv2d(xt, Wt, bt, padding=pad), wrt, dyt)

        label = f"conv {k}x{k} {shape[2]}->{nf} {shape[0]}x{shape[1]}{'' if b is not None else ' nobias'}{' (no dx)' if first else ''}"
    else:
        ps, st, padding = p["pool"], p["stride"], p["padding"]
        y, _ = pool2d.forward(x, ps, st, padding, "max")
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
        xt.requires_grad_()
        ceil = padding == "same"  # TF 'same' with pool == stride pads bottom/right only: ceil_mode

        def ours_fwd():
            pool2d.forward(x, ps, st, padding, "max")

        def ours_fb():
            y, cache = pool2d.forward(x, ps, st, padding, "max")
            pool2d.backward(dy, cache)

        def torch_fwd():
            with torch.no_grad():
                F.max_pool2d(xt, ps, st, ceil_mode=ceil)

        def torch_fb():
            torch.autograd.grad(F.max_pool2d(xt, ps, st, ceil_mode=ceil), [xt], dyt)

        label = f"maxpool {ps}/{st} {padding} {shape[0]}x{shape[1]}x{shape[2]}"
    return label, ours_fwd, ours_fb, torch_fwd, torch_fb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--stat", choices=("median", "min"), default="median",
                    help="min is steadier on a shared machine when tuning")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    stat = statistics.median if args.stat == "median" else min
    print(f"batch {args.batch}, {args.stat} of {args.reps}, torch {torch.__version__} threads {torch.get_num_threads()}")
    print(f"{'op':44s} {'fwd ms':>8s} {'torch':>7s} {'ratio':>6s} | {'f+b ms':>8s} {'torch':>7s} {'ratio':>6s}")
    for m in args.models.split(","):
        print(f"-- model ({m})")
        tot = np.zeros(4)
        for n, (kind, shape, p) in enumerate(MODELS[m]):
            label, *fns = make_case(kind, shape, p, args.batch, n == 0, rng)
            for fn in fns:  # warm-up: allocations, pools, oneDNN primitives
                fn()
            times = [[], [], [], []]
            for _ in range(args.reps):
                for t, fn in zip(times, fns):
                    t.append(timed(fn))
            med = np.array([stat(t) for t in times])
            tot += med
            print(f"{label:44s} {med[0]:8.2f} {med[2]:7.2f} {med[0] / med[2]:6.2f} | "
                  f"{med[1]:8.2f} {med[3]:7.2f} {med[1] / med[3]:6.2f}")
        print(f"{'total':44s} {tot[0]:8.2f} {tot[2]:7.2f} {tot[0] / tot[2]:6.2f} | "
              f"{tot[1]:8.2f} {tot[3]:7.2f} {tot[1] / tot[3]:6.2f}")


if __name__ == "__main__":
    main()
