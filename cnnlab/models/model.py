"""Models: a graph of layers (the functional API) and ``Sequential`` on top of it.

Forward runs the layers in topological order; backward runs them in reverse,
summing the gradients of tensors that feed several layers (residual blocks).
"""
import contextlib

import numpy as np

from .. import losses as losses_mod
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from ..backend import floatx
from ..layers import Input, InputLayer, Layer, SymbolicTensor, deserialize, serialize
from ..layers.base import shape_str, unique_name
from ..layers.conv import Conv2D
from ..layers.core import ActivationMixin
from ..layers.pooling import MaxPooling2D
from ..ops import activations as act_ops
from ..ops import threads
from ..ops.pool2d import phase_supported


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Model:
    # A ReLU whose output feeds nothing but a max pooling is applied after the pooling instead,
    # on a quarter of the values for 2x2 windows: max(relu(x)) == relu(max(x)), and the
    # gradients agree too (where a window's max is positive both orders pick the same pixel;
    # where it is not, relu's gradient zeroes it either way). Whole steps, same-process A/B:
    # seed000 67.4 -> 61.6 ms, seed002 96.1 -> 92.8 ms.
    # Layers whose forward or backward is patched on the instance (hooks, as cnnlab.viz's)
    # are left alone, so that they see their own output.
    reorder_relu_max_pool = True
    # A Conv2D that needs no input gradient (it reads only the model's inputs) and whose output
    # feeds nothing but a 2x2 stride-2 max pooling hands that output over in phase layout
    # (ops/im2col.to_phase), where each window tap is a whole contiguous plane: the pooling over
    # 128x28x28x32 took 1.42 vs 2.17 ms forward and 1.13 vs 1.67 ms backward (2 threads); whole
    # steps, same-process A/B: seed002 -1.1%, seed000 -1.9%. A convolution that needs dx would
    # have to bring dy back to NHWC first, so it does not.
    phase_pooling = True
    # A Conv2D's weight gradient of at most this many multiply-adds, above a max pooling whose
    # backward scatter-adds (windows that overlap, as seed001's 3x3 stride 2), is computed on the
    # pool thread beside that pooling's backward, which the caller then runs whole
    # (threads.beside). The scatter holds the GIL and its other passes are short: split over two
    # threads, seed001's first pooling's backward took as long as on one (1.05 ms). seed001's
    # step: -2.2%, -2.5% and -4.0% in three same-process A/Bs. A longer product would keep the
    # pool thread from the layers below.
    beside_dW_max_macs = 1 << 26

    def __init__(self, inputs=None, outputs=None, name=None):
        self.name = name or unique_name("functional")
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.compiled = False
        self.stop_training = False
        self.history = None
        self.built = False
        if inputs is not None:
            self._init_graph(inputs, outputs)

    # ----- graph ---------------------------------------------------------
    def _init_graph(self, inputs, outputs):
        self.inputs, self.outputs = _as_list(inputs), _as_list(outputs)
        for t in self.inputs + self.outputs:
            if not isinstance(t, SymbolicTensor):
                raise ValueError(f"Model {self.name!r}: inputs and outputs must come from Input(...) and layer "
                                 f"calls. Received: {t!r}")
        order, seen = [], set()
        stack = [(t, False) for t in reversed(self.outputs)]
        while stack:  # iterative post-order DFS: deep residual nets would overflow recursion
            t, expanded = stack.pop()
            if id(t) in seen:
                continue
            if expanded:
                seen.add(id(t))
                order.append(t)
            else:
                stack.append((t, True))
                stack.extend((u, False) for u in reversed(t.inbound) if id(u) not in seen)
        input_ids = {id(t) for t in self.inputs}
        for t in order:
            if not t.inbound and id(t) not in input_ids:
                raise ValueError(f"Model {self.name!r}: graph disconnected: {t!r} is not one of the model's "
                                 f"inputs {[i.layer.name for i in self.inputs]}")
        layers, names = [], set()
        for t in order:
            if any(t.layer is l for l in layers):
                raise ValueError(f"Model {self.name!r}: layer {t.layer.name!r} is used more than once; "
                                 f"shared layers are not supported")
            if t.layer.name in names:
                raise ValueError(f"Model {self.name!r}: two layers are named {t.layer.name!r}; names must be unique")
            names.add(t.layer.name)
            layers.append(t.layer)
        self._order = order
        self._nodes = [t for t in order if id(t) not in input_ids]
        self._layers = layers
        for t in self._nodes:
            # Layers fed only by the model's inputs need no input gradient: skip that GEMM.
            if hasattr(t.layer, "need_dx"):
                t.layer.need_dx = not all(id(u) in input_ids for u in t.inbound)
        consumers = {}
        for t in self._nodes:
            for u in t.inbound:
                consumers.setdefault(id(u), []).append(t)
        outputs = {id(t) for t in self.outputs}
        self._pool_after = {}  # id(node with an activation) -> the max pooling node that alone reads it
        for t in self._nodes:
            after = consumers.get(id(t), [])
            if (isinstance(t.layer, ActivationMixin) and id(t) not in outputs and len(after) == 1
                    and isinstance(after[0].layer, MaxPooling2D)):
                self._pool_after[id(t)] = after[0]
        self._pool_relu = {}
        self._pack_weights()
        self._collect_params()
        self.built = True

    def _pack_weights(self):
        """Lay the layers' params back to back in one array, in the order the optimizer takes them,
        and their gradients in another: an elementwise optimizer then updates them as one array,
        one pass of each kind instead of one per param (``Optimizer.elementwise_update``; Adam
        alone over seed001's 10 params: 0.43-0.47 vs 0.54-0.65 ms, over 22 params of a model
        with batch normalization 0.10 vs 0.37 ms; seed001's step -1%). A layer that another
        model packed keeps its place there."""
        token = self.__dict__.setdefault("_pack_token", object())
        layers = [l for l in self._layers if l.params and getattr(l, "_packed", token) is token]
        arrays = [(l, k, w) for l in layers for k, w in l.params.items()]
        if len(arrays) < 2 or len({w.dtype for _, _, w in arrays}) != 1:
            return
        n = sum(w.size for _, _, w in arrays)
        W, G = np.empty(n, arrays[0][2].dtype), np.empty(n, arrays[0][2].dtype)
        at = 0
        for l, k, w in arrays:
            for store, buf in ((l.params, W), (l.grads, G)):
                view = buf[at:at + w.size].reshape(w.shape)
                view[...] = store[k]
                store[k] = view
            at += w.size
        for l in layers:
            l._packed = self._pack_token

    def _collect_params(self):
        self._params = {f"{l.name}/{k}": v for l in self._layers if l.trainable for k, v in l.params.items()}
        self._grads = {f"{l.name}/{k}": l.grads[k] for l in self._layers if l.trainable for k in l.params}

    @property
    def layers(self):
        return list(self._layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No layer named {name!r} in model {self.name!r}; layers: {[l.name for l in self.layers]}")

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def _check_input(self, x, index=0):
        expected = self.inputs[index].shape
        got = x.shape
        if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], got[1:])):
            raise ValueError(f"Input {index} of model {self.name!r} is incompatible: expected shape "
                             f"{shape_str(expected)}, received {shape_str(got)}")

    def _prepare_inputs(self, x):
        xs = _as_list(x) if len(self.inputs) > 1 else [x]
        out = []
        for i, xi in enumerate(xs):
            xi = np.asarray(xi)
            if xi.dtype.kind not in "fiub":
                raise ValueError(f"Input {i} of model {self.name!r}: expected numbers, received dtype {xi.dtype}")
            xi = np.asarray(xi, dtype=floatx)
            self._check_input(xi, i)
            out.append(xi)
        return out

    # ----- running -------------------------------------------------------
    def forward(self, xs, training=False):
        """Run the graph on a list of float32 input arrays; returns the list of outputs."""
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        for layer in self._layers:  # nothing from the last pass is needed now: let its buffers be reused
            layer.release()
        self._pool_relu = {}  # id(max pooling node) -> the cache of the ReLU applied after it
        deferred = set()
        with threads.pipeline(len(xs[0])):  # runs of per-sample layers go through it unsynchronized
            for t in self._nodes:
                layer = t.layer
                with self._sync_unless_per_sample(layer):
                    values[id(t)] = self._forward_node(t, values, deferred, training)
        return [values[id(o)] for o in self.outputs]

    def _forward_node(self, t, values, deferred, training):
        """Run node ``t``'s layer; its output (before its ReLU, when that moves after the pooling:
        then ``t`` joins ``deferred``)."""
        layer = t.layer
        ins = [values[id(u)] for u in t.inbound]
        x = ins if layer.multi_input else ins[0]
        pool = self._pool_after.get(id(t))
        defer = pool is not None and self._relu_moves(layer, pool.layer)
        phase = pool is not None and self._phase_moves(layer, pool.layer, x)
        if defer or phase:
            layer._activation_deferred, layer._phase_out = defer, phase
            try:
                y = layer.forward(x, training=training)
            finally:
                del layer._activation_deferred, layer._phase_out
        else:
            y = layer.forward(x, training=training)
        if defer:
            deferred.add(id(t))
            return y
        if t.inbound and id(t.inbound[0]) in deferred:
            y, self._pool_relu[id(t)] = act_ops.forward(y, "relu")
        return y

    def _sync_unless_per_sample(self, layer):
        """A context for running ``layer`` inside the pass's pipeline (threads.pipeline): none for
        a layer that touches each sample on its own, else ``threads.synchronous``."""
        if layer.per_sample and not self._hooked(layer):
            return contextlib.nullcontext()
        return threads.synchronous()

    @staticmethod
    def _hooked(*layers):
        return any(name in vars(l) for l in layers for name in ("forward", "backward"))

    def _relu_moves(self, layer, pool):
        return self.reorder_relu_max_pool and layer.activation == "relu" and not self._hooked(layer, pool)

    def _phase_moves(self, layer, pool, x):
        if not (self.phase_pooling and type(layer) is Conv2D and not layer.need_dx and not self._hooked(layer, pool)):
            return False
        _, h, w, _ = layer.compute_output_shape(x.shape)
        return phase_supported(h, w, pool.pool_size, pool.strides, pool.padding, pool.mode)

    def backward(self, douts, from_logits=False):
        """Backpropagate output gradients; returns the gradients of the inputs (None where not needed).

        ``from_logits``: the first output's gradient is with respect to the output
        layer's pre-softmax logits (the fused cross-entropy path).
        """
        with threads.background_allowed():  # weight gradients may be computed beside the loop
            return self._backward(douts, from_logits)

    def _backward(self, douts, from_logits):
        grads = {id(o): d for o, d in zip(self.outputs, douts)}
        with threads.pipeline(len(douts[0])):  # as in forward
            for t in reversed(self._nodes):
                dy = grads.pop(id(t), None)
                if dy is None:
                    continue
                layer = t.layer
                with self._sync_unless_per_sample(layer):
                    if id(t) in self._pool_relu:
                        dy = act_ops.backward(dy, self._pool_relu[id(t)])
                    beside = self._dW_beside(t)
                    if beside:
                        layer._dW_beside = True
                    try:
                        if from_logits and t is self.outputs[0]:
                            dx = layer.backward_from_logits(dy)
                        else:
                            dx = layer.backward(dy)
                    finally:
                        if beside:
                            del layer._dW_beside
                if dx is None:
                    continue
                for u, d in zip(t.inbound, dx if layer.multi_input else [dx]):
                    if id(u) in grads:  # a tensor read twice: its gradients add up, over every sample
                        threads.drain()
                        grads[id(u)] = grads[id(u)] + d
                    else:
                        grads[id(u)] = d
        return [grads.get(id(t)) for t in self.inputs]

    def _dW_beside(self, t):
        """True when node ``t`` is a Conv2D that needs dx, below it a max pooling whose backward
        scatters (``pool2d.scatters``) and whose weight gradient is at most
        ``beside_dW_max_macs``: that gradient then goes to the pool thread while the caller runs
        the pooling's backward whole (``threads.beside``)."""
        layer = t.layer
        if type(layer) is not Conv2D or not layer.need_dx or layer._cache is None or len(t.inbound) != 1:
            return False
        pool = t.inbound[0].layer
        macs = layer._cache.cols2d.size * layer.filters
        return (isinstance(pool, MaxPooling2D) and pool.scatters and macs <= self.beside_dW_max_macs
                and not self._hooked(layer, pool))

    def __call__(self, x, training=False):
        return self.forward(self._prepare_inputs(x), training=training)[0]

    def input_gradient(self, x, dout, training=False):
        """d(sum(output * dout)) / d input, through the engine's own backward (saliency maps)."""
        need = {l: l.need_dx for l in self._layers if hasattr(l, "need_dx")}
        saved = [(l, {k: g.copy() for k, g in l.grads.items()}) for l in self._layers]
        try:
            for l in need:
                l.need_dx = True
            self.forward(self._prepare_inputs(x), training=training)
            dx = self.backward([np.asarray(dout, dtype=floatx)])[0]
        finally:
            for l, v in need.items():
                l.need_dx = v
            for l, g in saved:  # leave training gradients as they were
                for k, v in g.items():
                    l.grads[k][...] = v
        return dx

    # ----- training ------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        self.optimizer = optimizers_mod.get(optimizer)
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.loss = losses_mod.get(loss)
        self.metrics = [metrics_mod.get(m) for m in (metrics or [])]
        self.compiled = True

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"Model {self.name!r} must be compiled before {what}(): call "
                               f"model.compile(optimizer=..., loss=...)")

    def _fused(self):
        out_layer = self.outputs[0].layer
        return self.loss.fuses_softmax and not getattr(self.loss, "from_logits", False) \
            and getattr(out_layer, "activation", None) == "softmax"

    def _check_labels(self, y, n):
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"model {self.name!r}: {n} inputs but {len(y)} labels")
        k = self.outputs[0].shape[-1]
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
            if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
                raise ValueError("labels contain NaN or infinite values")
            if y.dtype.kind == "f" and np.any(y != np.round(y)):
                bad = y[y != np.round(y)].reshape(-1)[0]
                raise ValueError(f"label {bad.item()} is not an integer class index for model {self.name!r}; "
                                 f"integer labels are expected (one-hot labels need categorical_crossentropy)")
            if y.size and (y.min() < 0 or y.max() >= k):
                bad = y[(y < 0) | (y >= k)].reshape(-1)[0]
                raise ValueError(f"label {bad.item()} is outside [0, {k}) for model {self.name!r} with {k} outputs")
        return y

    def _loss_forward(self, out, y):
        """``(value, cache, fused)``: cross-entropy after a softmax output is taken on the logits."""
        if self._fused():
            return (*self.loss.forward_logits(self.outputs[0].layer.logits, y), True)
        return (*self.loss.forward(out, y), False)

    def _loss_value(self, out, y):
        return self._loss_forward(out, y)[0]

    def _loss_and_grad(self, out, y):
        """Loss value and the gradient to feed backward, fused through softmax where possible."""
        value, cache, fused = self._loss_forward(out, y)
        return value, (self.loss.backward_logits if fused else self.loss.backward)(cache), fused

    def regularization_loss(self):
        return sum(l.regularization_loss() for l in self._layers)

    _processes = 1       # see use_processes
    _process_group = None

    def use_processes(self, n=2):
        """Train on ``n`` processes: 2 splits each training step's batch between this process and
        a forked child, one thread each (see ``cnnlab.training.processes``); 1 goes back to
        threads. Raises ``cnnlab.training.processes.CannotSplit`` (a ValueError) where that cannot
        be: a model of several inputs or outputs, a platform without ``os.fork``."""
        if n not in (1, 2):
            raise ValueError(f"use_processes: n must be 1 or 2, received {n!r}")
        if n == 2:
            from ..training.processes import check_model
            check_model(self)
        elif self._process_group is not None:
            self._process_group.close()
            self._process_group = None
        self._processes = n

    def train_step(self, x, y):
        """One optimizer step on a batch; returns (loss, predictions)."""
        xs = self._prepare_inputs(x)
        y = self._check_labels(y, len(xs[0]))
        if self._processes > 1 and len(xs[0]) > 1:
            return self._process_step(xs[0], y)
        self._collect_params()  # honour `layer.trainable` changed after the model was made
        # a weight gradient may still be computed in the background while the optimizer
        # updates the other parameters (threads.background); it is done when the block ends
        with threads.background_allowed():
            value, out = self._gradients(xs, y, [l for l in self._layers if l.trainable and l.params])
            value = self._regularize(value)
            self.optimizer.apply(self._params, self._grads)
        return float(value), out

    def _gradients(self, xs, y, layers, share=None):
        """Forward and backward on a batch: ``(loss, predictions)``, with ``layers``' gradients
        replaced. ``share``: this batch's fraction of a larger one, whose mean gradient the
        gradients are then a part of (``cnnlab.training.processes``)."""
        for l in layers:  # instead of zeroing: backward's first contribution overwrites
            l.mark_grads_stale()
        try:
            # one pipeline from the first layer to the last: the pool threads it holds for the
            # forward pass are still its own for the backward's first weight gradients
            with threads.pipeline(len(xs[0])):
                out = self.forward(xs, training=True)[0]
                with threads.synchronous():
                    value, dout, fused = self._loss_and_grad(out, y)
                if share is not None:
                    dout *= dout.dtype.type(share)
                self.backward([dout], from_logits=fused)
        finally:
            for l in layers:  # never one a background task writes: that one was written
                l.zero_stale_grads()
        return value, out

    def _regularize(self, value):
        """``value`` plus the regularization losses, whose gradients are added to the layers'."""
        if any(l.regularizers for l in self._layers):
            threads.join_background()
            for l in self._layers:
                if l.regularizers:
                    value += l.regularization_loss()
                    l.add_regularization_grads()
        return value

    def _process_step(self, x, y):
        from ..training.processes import ProcessGroup
        self._collect_params()
        group = self._process_group
        if group is None or group.closed or len(x) > group.capacity or not group.current():
            if group is not None:
                group.close()
            self._process_group = group = ProcessGroup(self, len(x))
        return group.step(x, y)

    def train_on_batch(self, x, y, return_dict=False):
        self._require_compiled("train_on_batch")
        loss, out = self.train_step(x, y)
        return self._batch_result(loss, y, out, return_dict)

    def test_on_batch(self, x, y, return_dict=False):
        self._require_compiled("test_on_batch")
        xs = self._prepare_inputs(x)
        y = self._check_labels(y, len(xs[0]))
        out = self.forward(xs, training=False)[0]
        loss = float(self._loss_value(out, y)) + self.regularization_loss()
        return self._batch_result(loss, y, out, return_dict)

    def _batch_result(self, loss, y, out, return_dict):
        result = {"loss": loss}
        for m in self.metrics:
            m.reset_state()
            m.update_state(y, out)
            result[m.name] = m.result()
        if return_dict:
            return result
        return loss if not self.metrics else list(result.values())

    def predict_on_batch(self, x):
        return self.forward(self._prepare_inputs(x), training=False)[0]

    def predict(self, x, batch_size=32, verbose=0):
        if batch_size < 1:
            raise ValueError(f"predict(): batch_size must be >= 1, received {batch_size}")
        if self.built and len(self.inputs) > 1:  # a list of arrays, one per input, batched together
            xs = [np.asarray(v) for v in _as_list(x)]
            n = len(xs[0])
            if any(len(v) != n for v in xs):
                raise ValueError(f"predict(): the inputs have different numbers of samples {[len(v) for v in xs]}")
            take = lambda i: [v[i:i + batch_size] for v in xs]  # noqa: E731
        else:
            x = np.asarray(x)
            n = len(x)
            take = lambda i: x[i:i + batch_size]  # noqa: E731
        if n == 0:
            raise ValueError("predict(): received an empty input")
        outs = [self.predict_on_batch(take(i)) for i in range(0, n, batch_size)]
        return np.concatenate(outs)

    def evaluate(self, x, y, batch_size=32, verbose=0, return_dict=False):
        """Mean loss and metrics over the whole set, weighting each batch by its size."""
        self._require_compiled("evaluate")
        from ..training.loop import evaluate
        result = evaluate(self, x, y, batch_size=batch_size)
        if return_dict:
            return result
        return result["loss"] if not self.metrics else list(result.values())

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, **kwargs):
        self._require_compiled("fit")
        from ..training.loop import fit
        return fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                   validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
                   initial_epoch=initial_epoch, **kwargs)

    # ----- weights and configuration -------------------------------------
    def get_weights(self):
        return [w for l in self._layers for w in l.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        expected = sum(len(l.weights) for l in self._layers)
        if len(weights) != expected:
            raise ValueError(f"Model {self.name!r} expects {expected} weight arrays, received {len(weights)}")
        i = 0
        for l in self._layers:
            n = len(l.weights)
            l.set_weights(weights[i:i + n])
            i += n

    def named_weights(self):
        """``{"layer/weight": array}`` for every weight, trainable or not (checkpoint order)."""
        self._require_built("named_weights()")
        return {f"{l.name}/{k}": w for l in self._layers for k, w in zip(l.weight_names, l.weights)}

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"Model {self.name!r} has not been built yet, so {what} is unknown: give it an "
                             f"Input(...) or input_shape= on the first layer, call build(input_shape), "
                             f"or run it on a batch first")

    def count_params(self):
        self._require_built("count_params()")
        return sum(l.count_params() for l in self._layers)

    def summary(self, print_fn=print, batch_size=None):
        self._require_built("summary()")
        from .summary import summary_text
        print_fn(summary_text(self, batch_size=batch_size))

    def get_config(self):
        index = {id(t): (t.layer.name, 0) for t in self._order}
        layers = []
        for t in self._order:
            entry = serialize(t.layer)
            entry["name"] = t.layer.name
            entry["inbound"] = [index[id(u)][0] for u in t.inbound]
            layers.append(entry)
        return {"name": self.name, "layers": layers,
                "input_layers": [t.layer.name for t in self.inputs],
                "output_layers": [t.layer.name for t in self.outputs]}

    @classmethod
    def from_config(cls, config):
        tensors = {}
        for entry in config["layers"]:
            layer = deserialize(entry)
            if isinstance(layer, InputLayer):
                tensors[layer.name] = SymbolicTensor(layer.batch_input_shape, layer, ())
                continue
            ins = [tensors[n] for n in entry["inbound"]]
            tensors[layer.name] = layer(ins if layer.multi_input else ins[0])
        return cls([tensors[n] for n in config["input_layers"]],
                   [tensors[n] for n in config["output_layers"]], name=config.get("name"))

    def save(self, path, include_optimizer=True):
        from .saving import save_model
        save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path):
        from .saving import save_weights
        save_weights(self, path)

    def load_weights(self, path):
        from .saving import load_weights
        load_weights(self, path)


class Sequential(Model):
    """A stack of single-input layers; the graph is made once the input shape is known."""

    def __init__(self, layers=None, name=None):
        super().__init__(name=name or unique_name("sequential"))
        self._stack = []
        self._input = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            if self._stack or self._input is not None:
                raise ValueError("Sequential: an Input can only be the first element")
            self._input = layer
            return
        if isinstance(layer, InputLayer):
            self._input = SymbolicTensor(layer.batch_input_shape, layer, ())
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() takes a Layer, received {layer!r}")
        if layer.multi_input:
            raise ValueError(f"Sequential: {type(layer).__name__} takes several inputs; use the functional API")
        if self._input is None and not self._stack and layer.batch_input_shape is not None:
            self._input = Input(layer.batch_input_shape[1:], name=None)
        self._stack.append(layer)
        self.built = False
        if self._input is not None:
            self._build_graph()

    def build(self, input_shape):
        if self._input is None:
            self._input = Input(tuple(input_shape)[1:])
        self._build_graph()

    def _build_graph(self):
        t = self._input
        for layer in self._stack:
            t = layer(t)
        self._init_graph(self._input, t)

    def _ensure_graph(self, x):
        if not self.built:
            if not self._stack:
                raise ValueError("Sequential model has no layers")
            self.build((None,) + np.shape(_as_list(x)[0] if isinstance(x, (list, tuple)) else x)[1:])

    @property
    def layers(self):
        return [l for l in self._stack]

    def _prepare_inputs(self, x):
        self._ensure_graph(x)
        return super()._prepare_inputs(x)

    def get_config(self):
        config = {"name": self.name, "layers": [serialize(l) for l in self._stack]}
        if self._input is not None:
            config["input_shape"] = list(self._input.shape)
        return config

    @classmethod
    def from_config(cls, config):
        model = cls(name=config.get("name"))
        if config.get("input_shape"):
            model.add(Input(tuple(config["input_shape"])[1:]))
        for entry in config["layers"]:
            model.add(deserialize(entry))
        return model
