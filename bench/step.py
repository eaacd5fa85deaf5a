"""One full training step (forward, backward, Adam update) at batch 128, cnnlab
against PyTorch CPU in the same process, alternating, 2 threads each.

    python bench/step.py [--models seed002,seed000,seed001] [--reps 15] [--batch 128]

Prints the median step time of each, the ratio cnnlab / PyTorch, images per
second, the extrapolated time of a 60,000-image epoch, and the peak resident
memory that training steps add above the built model and its batch, measured
in a fresh subprocess per framework (``VmHWM`` minus ``VmRSS`` before the
first step), since a warm process keeps freed pages resident. With
``--processes 2`` cnnlab's is the sum over its two processes, the child's
counted from the RSS it was forked with.

PyTorch runs channels_last (NHWC in memory, as cnnlab's tensors): its faster
CPU layout for these models, and the ratio that counts. Its default NCHW
layout is timed too, for reference (measured: seed001 13.8 vs 7.3 ms, its
3x3 stride-2 max pooling alone 7.7 vs 1.7 ms on one thread).
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
# Timing alternates in blocks: BLOCK steps of one framework, then BLOCK of the
# other, the first step of each block not counted. Step-by-step alternation is
# unfair: each library's worker threads keep spinning after a call and steal the
# cores from the other's next step (measured: PyTorch's seed002 step went from
# 90 ms alone to 160 ms when alternated step by step). Both keep their default
# thread policies.
BLOCK = 4


def pin_malloc():
    """Fix glibc's malloc to serve blocks up to 64 MiB from its heap, for both frameworks.

    By default glibc maps each block over 128 KiB fresh from the kernel (its pages zeroed and
    faulted in on every step) until a freed block raises that threshold, so a framework's
    speed depended on what ran earlier in the process: PyTorch's seed001 step took 11.5-16 ms
    in a fresh process and 7.0-7.6 ms once some 30 MiB array had been freed (seed000: 52-54
    vs 43-45 ms); cnnlab's, whose big buffers are pooled, did not change. Pinning the
    threshold gives each its warm speed whatever the order. Returns False off glibc.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 128 << 20))


PINNED_MALLOC = pin_malloc()

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cnnlab.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D  # noqa: E402
from cnnlab.models import Sequential  # noqa: E402
from cnnlab.optimizers import Adam  # noqa: E402

# The three seed models of issue 2 §7, as (kind, args) rows shared by both builders.
MODELS = {
    "seed002": [("conv", 32, 5, "same", True, "relu"), ("pool", 2, 2, "valid"),
                ("conv", 64, 5, "same", True, "relu"), ("pool", 2, 2, "valid"),
                ("flatten",), ("dense", 1024, "relu"), ("dropout", 0.5), ("dense", 10, None)],
    "seed000": [("conv", 32, 3, "same", False, "relu"), ("pool", 2, 2, "same"),
                ("conv", 64, 3, "same", False, "relu"), ("pool", 2, 2, "same"),
                ("conv", 128, 3, "same", False, "relu"), ("pool", 2, 2, "same"),
                ("flatten",), ("dense", 625, "relu"), ("dense", 10, None)],
    "seed001": [("conv", 12, 3, "same", True, None), ("pool", 3, 2, "valid"),
                ("conv", 16, 3, "same", True, None), ("pool", 3, 2, "valid"),
                ("flatten",), ("dense", 256, "relu"), ("dense", 100, "relu"), ("dense", 10, None)],
}


def build_cnnlab(rows, input_shape=(28, 28, 1)):
    layers = [Input(input_shape)]
    for row in rows:
        kind = row[0]
        if kind == "conv":
            _, f, k, pad, bias, act = row
            layers.append(Conv2D(f, k, padding=pad, use_bias=bias, activation=act))
        elif kind == "pool":
            layers.append(MaxPooling2D(row[1], strides=row[2], padding=row[3]))
        elif kind == "flatten":
            layers.append(Flatten())
        elif kind == "dense":
            layers.append(Dense(row[1], activation=row[2] or "softmax") if row is rows[-1] else
                          Dense(row[1], activation=row[2]))
        elif kind == "dropout":
            layers.append(Dropout(row[1]))
    model = Sequential(layers)
    model.compile(Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def build_torch(rows, input_shape=(28, 28, 1)):
    import torch
    from torch import nn
    import torch.nn.functional as F

    class SamePool(nn.Module):
        """TensorFlow's 'same' max pooling: pad bottom/right with -inf as needed."""

        def __init__(self, k, s):
            super().__init__()
            self.k, self.s = k, s

        def forward(self, x):
            h, w = x.shape[-2:]
            ph = max((-(-h // self.s) - 1) * self.s + self.k - h, 0)
            pw = max((-(-w // self.s) - 1) * self.s + self.k - w, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
            return F.max_pool2d(x, self.k, self.s)

    mods, c = [], input_shape[-1]
    h, w = input_shape[:2]
    flat = None
    for row in rows:
        kind = row[0]
        if kind == "conv":
            _, f, k, pad, bias, act = row
            mods.append(nn.Conv2d(c, f, k, padding=k // 2, bias=bias))
            if act:
                mods.append(nn.ReLU())
            c = f
        elif kind == "pool":
            k, s, pad = row[1:]
            if pad == "same":
                mods.append(SamePool(k, s))
                h, w = -(-h // s), -(-w // s)
            else:
                mods.append(nn.MaxPool2d(k, s))
                h, w = (h - k) // s + 1, (w - k) // s + 1
        elif kind == "flatten":
            mods.append(nn.Flatten())
            flat = c * h * w
        elif kind == "dense":
            mods.append(nn.Linear(flat, row[1]))
            if row[2]:
                mods.append(nn.ReLU())
            flat = row[1]
        elif kind == "dropout":
            mods.append(nn.Dropout(row[1]))
    model = nn.Sequential(*mods)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _status(key, pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def peak_step_memory(framework, name, batch, threads, processes=1):
    """Run 3 steps in a fresh process; MiB of peak RSS above the RSS before the first one (over
    cnnlab's two processes, each one's own: the child's from the RSS it was forked with)."""
    import subprocess
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_memory", framework, "--models", name,
                          "--batch", str(batch), "--threads", str(threads), "--processes", str(processes)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _make_steps(name, batch, threads, processes=1, with_model=False):
    import torch
    from cnnlab.ops import threads as cnnlab_threads
    torch.set_num_threads(threads)
    cnnlab_threads.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    # channels_last: the NHWC array itself, seen as NCHW (stride 1 along C); every layer keeps it
    xt_nhwc = torch.from_numpy(x).permute(0, 3, 1, 2)
    # NCHW: with one input channel the same bytes, but strides that make PyTorch choose NCHW
    xt_nchw = torch.as_strided(torch.from_numpy(x.copy()), xt_nhwc.shape, (28 * 28, 28 * 28, 28, 1))
    yt = torch.from_numpy(y)
    spec = MODELS[name]
    model = build_cnnlab(spec)
    if processes > 1:
        from cnnlab.training.processes import CannotSplit
        try:
            model.use_processes(processes)
        except CannotSplit as e:  # no os.fork on this platform: threads, as without the option
            print(f"# {name}: {e}; on {threads} threads instead", flush=True)

    def torch_step(xt):
        tmodel, topt = build_torch(spec)
        tmodel.train()

        def step():
            topt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(tmodel(xt), yt)
            loss.backward()
            topt.step()
        return step

    def step_cnnlab():
        model.train_step(x, y)

    steps = step_cnnlab, torch_step(xt_nhwc), torch_step(xt_nchw)
    return steps + (model,) if with_model else steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="seed002,seed000,seed001")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--processes", type=int, default=1, choices=(1, 2),
                   help="2: cnnlab splits each step over two processes, one thread each "
                        "(Model.use_processes); PyTorch keeps its threads")
    p.add_argument("--_memory", choices=["cnnlab", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch
    if args._memory:
        processes = args.processes if args._memory == "cnnlab" else 1
        step_cnnlab, step_torch, _, model = _make_steps(args.models, args.batch, args.threads, processes,
                                                        with_model=True)
        step = step_cnnlab if args._memory == "cnnlab" else step_torch
        child = None
        if model._processes > 1:  # fork the child now, and measure it from the RSS it starts with
            from cnnlab.training.processes import ProcessGroup
            model._collect_params()
            model._process_group = ProcessGroup(model, args.batch)
            child = model._process_group._pid
            child_base = _status("VmRSS", child)
        base = _status("VmRSS")
        for _ in range(3):
            step()
        grown = _status("VmHWM") - base
        if child is not None:
            grown += _status("VmHWM", child) - child_base
        print(grown / 2**20)
        return

    from cnnlab.ops import gemm
    print(f"numpy {np.__version__}, cnnlab GEMM {gemm.backend()}, torch {torch.__version__}, batch {args.batch}, "
          f"threads {args.threads}, "
          f"{'cnnlab over 2 processes of 1 thread (peak memory over both), ' if args.processes > 1 else ''}"
          f"medians of >= {args.reps} steps each, alternating in blocks of {BLOCK}, "
          f"malloc {'pinned to its heap up to 64 MiB' if PINNED_MALLOC else 'as the platform has it'}")
    header = f"{'model':10} {'cnnlab ms':>10} {'torch ms':>10} {'ratio':>7} {'NCHW ms':>9} {'ratio':>7} " \
             f"{'cnnlab img/s':>13} {'epoch 60k':>10} {'cnnlab MiB':>11} {'torch MiB':>10}"
    print(header)
    rows = []
    for name in args.models.split(","):
        steps = _make_steps(name, args.batch, args.threads, args.processes)
        for _ in range(args.warmup):
            for step in steps:
                step()
        times = [[] for _ in steps]
        for _ in range(-(-args.reps // (BLOCK - 1))):
            for step, ts in zip(steps, times):
                for i in range(BLOCK):
                    t0 = time.perf_counter()
                    step()
                    if i:
                        ts.append(time.perf_counter() - t0)
        mc, mt, mn = (statistics.median(ts) for ts in times)
        mem_c = peak_step_memory("cnnlab", name, args.batch, args.threads, args.processes)
        mem_t = peak_step_memory("torch", name, args.batch, args.threads)
        epoch = 60000 / args.batch * mc
        print(f"{name:10} {mc * 1e3:10.1f} {mt * 1e3:10.1f} {mc / mt:7.2f} {mn * 1e3:9.1f} {mc / mn:7.2f} "
              f"{args.batch / mc:13,.0f} {epoch:9.0f}s {mem_c:11.1f} {mem_t:10.1f}", flush=True)
        rows.append((name, mc, mt))
    geo = float(np.exp(np.mean([np.log(c / t) for _, c, t in rows])))
    print(f"geometric mean ratio cnnlab / PyTorch (channels_last): {geo:.2f}")


if __name__ == "__main__":
    main()
