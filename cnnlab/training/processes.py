"""A training step split over processes: data parallelism for the cores that threads use badly.

Threads share one GIL. On a small model such as seed001 much of a step is NumPy calls too short
to release it for long, so a second thread gains little (README, "Speed"). A second process has
a GIL of its own. ``ProcessGroup(model)`` moves the model's weights into shared memory and forks
a child process holding a copy of the model. Each training step then:

- hands the child the second half of the batch, through shared memory;
- runs forward and backward on the first half in this process, on one thread;
- adds the child's gradients (shared memory again) to its own, each half's loss gradient
  weighted by its share of the batch, so that the sum is the whole batch's mean gradient;
- runs the optimizer here; the child sees the new weights through the shared memory.

The gradients are the same sums as one process computes, in another order: results agree to
float32 rounding, and with two processes they do not depend on anything but the data. Dropout
masks are drawn here for the whole batch, from each layer's own generator as one process draws
them, and the child's half is handed over in shared memory: the masks are one process's. Batch
normalization uses the whole batch's statistics: at each of its sums (the mean's and the
variance's in forward, dy's two in backward) the two processes swap their partial sums through
shared memory and a second pair of pipes, and both go on with the totals (``_Exchange``).

Control goes through a pipe each way: a step's header to the child, "done" or an error's text
back. The child ignores Ctrl-C (the parent waits for its half, then raises), and ends when the
parent closes the pipe or dies.
"""
import contextlib
import mmap
import os
import select
import signal
import struct
import time
import traceback
import weakref

import numpy as np

from ..backend import floatx
from ..layers import BatchNormalization, Dropout
from ..ops import dropout as dropout_ops
from ..ops import threads

_OPEN = weakref.WeakSet()               # this process's groups with a child: a new child closes their pipes
_TO_CHILD = struct.Struct("<qqq16sq")   # samples for the child, whole batch, label columns (-1: 1-D), label dtype, step
_SWAP = struct.Struct("<qq")            # an exchange's step and tag; tag -1: the parent gave the step up
_FROM_CHILD = struct.Struct("<cdq")     # b"D" or b"E", the child's loss, the length of an error's text
END_WAIT_S = 5.0                        # close(): how long the child may take to end before it is killed


class CannotSplit(ValueError):
    """A model that cannot train over processes, or a platform that cannot fork (``check_model``)."""


def check_model(model):
    """Raise ``CannotSplit`` unless ``model`` can train over processes (see the module's docstring)."""
    if not hasattr(os, "fork"):
        raise CannotSplit("training over processes forks a child process: this platform has no os.fork")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise CannotSplit(f"model {model.name!r}: training over processes takes one input and one output, "
                          f"received {len(model.inputs)} and {len(model.outputs)}")


def _read_exact(fd, n):
    chunks = []
    while n:
        b = os.read(fd, n)
        if not b:
            raise EOFError
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ProcessGroup:
    """The model's training step over this process and a forked child; ``capacity``: the largest
    batch it takes. Use ``step(x, y)`` in place of ``model.train_step``, then ``close()``."""

    def __init__(self, model, capacity):
        check_model(model)
        if not model.compiled:
            raise RuntimeError(f"model {model.name!r} must be compiled before it trains over processes")
        self.model, self.capacity = model, int(capacity)
        self._forked = _copied(model)
        layers = [l for l in model.layers if l.params]
        self._keys = [(l, k) for l in layers for k in l.params]
        sizes = [l.params[k].size for l, k in self._keys]
        n_params = sum(sizes)
        sample = int(np.prod(model.input_shape[1:]))
        out_sample = int(np.prod(model.output_shape[1:]))
        half = self.capacity - self.capacity // 2
        itemsize = np.dtype(floatx).itemsize
        # dropout layers and the shape of one sample of their input (masks are bytes: bool)
        self._drops = [(t.layer, tuple(t.shape[1:])) for t in model._nodes
                       if isinstance(t.layer, Dropout) and t.layer.rate > 0]
        parts = [("params", n_params * itemsize), ("grads", n_params * itemsize), ("x", half * sample * itemsize),
                 ("y", half * max(8, out_sample * 8)), ("out", half * out_sample * itemsize)]
        parts += [(f"mask{i}", half * int(np.prod(shape))) for i, (_, shape) in enumerate(self._drops)]
        # batch normalization: each process's slots for its partial sums, one per layer and sum
        self._bns = [l for l in model.layers if isinstance(l, BatchNormalization)]
        widths = [2 * int(l.state["moving_mean"].size) + 1 for l in self._bns]
        parts += [(f"sums{side}", 8 * _SUMS * sum(widths)) for side in (0, 1)]
        self._mem = mmap.mmap(-1, sum(size for _, size in parts))  # anonymous: shared with the forked child
        at, self._at = 0, {}
        for name, size in parts:
            self._at[name] = at
            at += size
        self._params = np.frombuffer(self._mem, floatx, n_params, self._at["params"])
        self._grads = np.frombuffer(self._mem, floatx, n_params, self._at["grads"])
        self._x = np.frombuffer(self._mem, floatx, half * sample,
                                self._at["x"]).reshape((half,) + model.input_shape[1:])
        self._out = np.frombuffer(self._mem, floatx, half * out_sample,
                                  self._at["out"]).reshape((half,) + model.output_shape[1:])
        self._masks = [np.frombuffer(self._mem, np.bool_, half * int(np.prod(shape)),
                                     self._at[f"mask{i}"]).reshape((half,) + shape)
                       for i, (_, shape) in enumerate(self._drops)]
        slots = []
        for side in (0, 1):
            flat = np.frombuffer(self._mem, np.float64, _SUMS * sum(widths), self._at[f"sums{side}"])
            bounds = np.cumsum([0] + [w for w in widths for _ in range(_SUMS)])
            slots.append([flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
        self._slices, off = [], 0
        for (layer, k), n in zip(self._keys, sizes):
            shared = self._params[off:off + n].reshape(layer.params[k].shape)
            shared[...] = layer.params[k]
            layer.params[k] = shared  # the weights now live where the child reads them
            self._slices.append(slice(off, off + n))
            off += n
        model._collect_params()
        to_child, self._to_child = os.pipe()
        self._from_child, from_parent = os.pipe()
        swap_in, swap_out = os.pipe()    # parent -> child
        swap_back, swap_from = os.pipe()  # child -> parent
        self._pid = os.fork()
        if self._pid == 0:  # the child: never returns
            # holding another group's pipe open, it would keep that group's child from ever
            # seeing the end of its input, and that group's close() waiting for it
            others = [fd for g in list(_OPEN) for fd in g._fds()]
            for fd in [self._to_child, self._from_child, swap_out, swap_back] + others:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._exchange = _Exchange(slots[1], slots[0], swap_in, swap_from)
            self._serve(to_child, from_parent)
        for fd in (to_child, from_parent, swap_in, swap_from):
            os.close(fd)
        self._exchange = _Exchange(slots[0], slots[1], swap_back, swap_out, watch=self._from_child)
        self._closed = False
        self._finalizer = weakref.finalize(self, ProcessGroup._end, self._fds(), self._pid)
        _OPEN.add(self)

    def current(self):
        """False when the model changed, since the child was forked, in what the child's copy of
        it does with a batch (its loss, a layer's trainable flag, a dropout rate, batch
        normalization's settings): the model then forks a new child. The weights are shared."""
        return _copied(self.model) == self._forked

    # ----- the child ------------------------------------------------------
    def _serve(self, rfd, wfd):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt ends
        code = 0
        try:
            threads.set_num_threads(1)
            with threads.single_thread():
                self._serve_steps(rfd, wfd)
        except BaseException:
            code = 1
        finally:
            os._exit(code)

    def _serve_steps(self, rfd, wfd):
        while True:
            try:
                n, total, ycols, ydt, self._exchange.step = _TO_CHILD.unpack(_read_exact(rfd, _TO_CHILD.size))
            except EOFError:  # the parent closed the pipe, or died
                return
            try:
                ydt = np.dtype(ydt.rstrip(b"\0").decode())
                shape = (n,) if ycols < 0 else (n, ycols)
                y = np.frombuffer(self._mem, ydt, int(np.prod(shape)), self._at["y"]).reshape(shape)
                with _given_masks(self._drops, [m[:n] for m in self._masks]), \
                        self._exchange.reducing(self._bns):
                    loss, out = _half(self.model, self._x[:n], y, n / total)
                for (layer, k), sl in zip(self._keys, self._slices):
                    self._grads[sl] = layer.grads[k].reshape(-1)
                self._out[:n] = out
                _write_all(wfd, _FROM_CHILD.pack(b"D", loss, 0))
            except Exception:
                text = traceback.format_exc().encode()
                _write_all(wfd, _FROM_CHILD.pack(b"E", 0.0, len(text)) + text)

    # ----- the parent -----------------------------------------------------
    def step(self, xs, y):
        """One optimizer step on the prepared inputs ``xs`` (float32, the model's input shape) and
        checked labels ``y``; returns ``(loss, predictions)`` as ``Model.train_step`` does."""
        if self._closed:
            raise RuntimeError("this ProcessGroup is closed")
        model = self.model
        total = len(xs)
        n0 = total // 2
        n1 = total - n0
        if n1 > len(self._x):
            raise ValueError(f"ProcessGroup: a batch of {total} is more than the {self.capacity} it was made for")
        y = np.asarray(y)
        self._x[:n1] = xs[n0:]
        ys = np.ascontiguousarray(y[n0:])
        np.frombuffer(self._mem, np.uint8, ys.nbytes, self._at["y"])[...] = ys.view(np.uint8).reshape(-1)
        own = []
        for (layer, shape), shared in zip(self._drops, self._masks):  # the whole batch's masks, drawn here
            mask = dropout_ops.draw_mask((total,) + shape, layer.rate, layer.rng)
            shared[:n1] = mask[n0:]
            own.append(mask[:n0])
        swap = self._exchange
        swap.step += 1
        header = _TO_CHILD.pack(n1, total, -1 if ys.ndim == 1 else ys.shape[1], ys.dtype.str.encode(), swap.step)
        try:
            _write_all(self._to_child, header)
        except BrokenPipeError:
            self._child_ended()
        interrupt = None
        try:
            # the other core is the child's
            with threads.single_thread(), _given_masks(self._drops, own), swap.reducing(self._bns):
                loss0, out0 = _half(model, xs[:n0], y[:n0], n0 / total, trained_only=True)
        except BaseException as e:  # the child is still writing its half: collect it first
            interrupt = e
            if not isinstance(e, _PeerGaveUp):
                swap.give_up()  # a child waiting at an exchange must not wait for this process
        status, loss1, text = self._collect()
        # the child's failure explains this process's; a child that finished without the swaps
        # this process waited at cannot be (the two would be out of step)
        if interrupt is not None and (status == b"D" or not isinstance(interrupt, _PeerGaveUp)):
            raise interrupt
        if status != b"D":
            raise RuntimeError(f"model {model.name!r}: the training process for samples {n0}-{total - 1} of the "
                               f"batch failed:\n{text}")
        for (layer, k), sl in zip(self._keys, self._slices):
            if k in layer.grads and layer.trainable:
                g = layer.grads[k]
                g += self._grads[sl].reshape(g.shape)
        value = model._regularize(loss0 + loss1)
        model.optimizer.apply(model._params, model._grads)
        return float(value), np.concatenate([out0, self._out[:n1]])

    def _collect(self):
        """The child's answer, waited for through Ctrl-C: ``(status, loss, error text)``."""
        interrupted = None
        while True:
            try:
                try:
                    status, loss, length = _FROM_CHILD.unpack(_read_exact(self._from_child, _FROM_CHILD.size))
                    text = _read_exact(self._from_child, length).decode(errors="replace") if length else ""
                except EOFError:
                    self._child_ended()
                break
            except KeyboardInterrupt as e:
                interrupted = interrupted or e
        if interrupted is not None:
            raise interrupted
        return status, loss, text

    def _child_ended(self):
        self.close()
        raise RuntimeError(f"model {self.model.name!r}: its training process ended during a step "
                           f"(killed, or out of memory?)") from None

    @property
    def closed(self):
        return self._closed

    def close(self):
        """End the child and move the weights back into this process's own memory."""
        if self._closed:
            return
        self._closed = True
        _OPEN.discard(self)
        for layer, k in self._keys:
            layer.params[k] = layer.params[k].copy()
        self.model._pack_weights()
        self.model._collect_params()
        self._finalizer()

    def _fds(self):
        """The parent's ends of the pipes to this group's child."""
        return self._to_child, self._from_child, self._exchange.rfd, self._exchange.wfd

    @staticmethod
    def _end(fds, pid):
        """Close the pipes, then reap the child: it ends on reading their end, or is killed after
        a few seconds (something else holding a copy of the pipe must not hang the caller)."""
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        deadline = time.monotonic() + END_WAIT_S
        try:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return
                time.sleep(0.001)
        except ChildProcessError:
            pass


def _copied(model):
    """What a forked child's copy of ``model`` keeps of it, besides the weights (see ``current``)."""
    return (model.loss, tuple((l.trainable, getattr(l, "rate", None), getattr(l, "momentum", None),
                               getattr(l, "epsilon", None)) for l in model.layers))


_SUMS = 3  # exchanges per batch normalization layer and step: the mean's, the variance's, backward's


class _PeerGaveUp(Exception):
    """The other process of the step gave it up before an exchange (an error, Ctrl-C)."""


class _Exchange:
    """One process's side of the swaps of batch normalization's sums within a step.

    At each sum, this process writes its partial sums and row count into its slot for that
    layer and sum, tells the other process over a pipe (the step and the slot's tag), waits for
    the other's message, and reads the other's slot: both then hold the same totals (float
    addition commutes). Slots are not reused within a step, so a slow reader never sees the
    next sum. The parent also watches its control pipe while it waits: a child that answered
    there without reaching the exchange has failed. A parent that fails sends tag -1 instead;
    a message of an earlier step (one given up) is skipped.
    """

    def __init__(self, mine, theirs, rfd, wfd, watch=None):
        self.mine, self.theirs, self.rfd, self.wfd, self.watch = mine, theirs, rfd, wfd, watch
        self.step = 0
        self.active = False

    @contextlib.contextmanager
    def reducing(self, bns):
        """Within the block, the layers of ``bns`` sum their statistics over both processes."""
        for i, layer in enumerate(bns):
            layer._reduce = self._reducer(i)
        self.active = True
        try:
            yield
        finally:
            self.active = False
            for layer in bns:
                del layer._reduce

    def _reducer(self, index):
        calls = []

        def reduce(sums, count):
            if not self.active:
                raise RuntimeError("batch normalization: this cache's statistics were summed over the two processes "
                                   "of a training step that has ended; run forward again")
            if len(calls) == _SUMS:
                raise RuntimeError(f"batch normalization: more than {_SUMS} sums in one step")
            tag = index * _SUMS + len(calls)
            calls.append(tag)
            flat = sums.reshape(-1)
            mine = self.mine[tag][:flat.size + 1]
            mine[:-1], mine[-1] = flat, count
            _write_all(self.wfd, _SWAP.pack(self.step, tag))
            self._wait(tag)
            total = mine + self.theirs[tag][:flat.size + 1]
            return total[:-1].reshape(sums.shape), int(total[-1])
        return reduce

    def _wait(self, tag):
        while True:
            if self.watch is not None:
                ready = select.select([self.rfd, self.watch], [], [])[0]
                if self.rfd not in ready:
                    raise _PeerGaveUp(f"the training process answered before batch normalization's sum {tag} of "
                                      f"step {self.step}")
            step, got = _SWAP.unpack(_read_exact(self.rfd, _SWAP.size))
            if step < self.step:
                continue
            if got == -1:
                raise _PeerGaveUp("the parent gave the step up")
            if (step, got) != (self.step, tag):
                raise RuntimeError(f"batch normalization over processes out of step: expected step {self.step} "
                                   f"sum {tag}, received step {step} sum {got}")
            return

    def give_up(self):
        """Tell the other process that this one left the step."""
        try:
            _write_all(self.wfd, _SWAP.pack(self.step, -1))
        except OSError:  # it has ended: nothing waits
            pass


@contextlib.contextmanager
def _given_masks(drops, masks):
    """Within the block, each dropout layer of ``drops`` applies its mask of ``masks``."""
    for (layer, _), mask in zip(drops, masks):
        layer._given_mask = mask
    try:
        yield
    finally:
        for layer, _ in drops:
            layer._given_mask = None


def _half(model, xs, y, share, trained_only=False):
    """Forward and backward over part of a batch, its gradients weighted by ``share`` of it;
    returns ``(loss * share, predictions)``."""
    layers = [l for l in model.layers if l.params and (l.trainable or not trained_only)]
    with threads.background_allowed():
        value, out = model._gradients([xs], y, layers, share)
    return float(value) * share, out
