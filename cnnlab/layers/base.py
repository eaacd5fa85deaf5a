"""The layer contract.

A layer owns its configuration and its arrays; the arithmetic lives in
``cnnlab.ops``. Shapes carry the batch axis as ``None`` (Keras's habit):
``compute_output_shape((None, 28, 28, 1)) -> (None, 28, 28, 32)``.

Contract, per layer:
- ``build(input_shape)`` creates weights with ``add_weight``;
- ``forward(x, training=False) -> y`` keeps what backward needs on ``self``;
- ``backward(dy) -> dx`` fills ``self.grads`` (same keys as ``self.params``);
- ``compute_output_shape``, ``get_config``/``from_config``, ``count_params``,
  ``get_weights``/``set_weights`` (Keras's order: kernel, bias, then state).
"""
import inspect

import numpy as np

from ..backend import floatx
from ..utils import closest, snake_case

_name_counts = {}


def unique_name(base):
    """``conv2d``, ``conv2d_1``, ``conv2d_2``... as Keras names layers."""
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def clear_session():
    """Reset automatic layer names (``keras.backend.clear_session``)."""
    _name_counts.clear()


def shape_str(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class SymbolicTensor:
    """A placeholder flowing through the functional API: a shape and where it came from."""

    def __init__(self, shape, layer=None, inbound=()):
        self.shape = tuple(shape)
        self.layer = layer          # the layer that produced it
        self.inbound = tuple(inbound)  # the SymbolicTensors that layer consumed

    def __repr__(self):
        src = self.layer.name if self.layer is not None else "?"
        return f"<SymbolicTensor shape={shape_str(self.shape)} from {src}>"


class Layer:
    # Subclasses that take several inputs (Add, Concatenate) set this.
    multi_input = False
    # True where forward and backward touch each sample on its own, every pass over the data
    # inside threads.parallel_samples or after a threads.drain: a model then pipelines a run of
    # such layers over its threads (threads.pipeline), and runs any other layer synchronous.
    per_sample = False

    def __init__(self, name=None, trainable=True, input_shape=None, batch_input_shape=None,
                 dtype="float32", **kwargs):
        if kwargs:
            key = next(iter(kwargs))
            allowed = [p for p in inspect.signature(type(self).__init__).parameters if p not in ("self", "kwargs")]
            allowed += ["name", "trainable", "input_shape"]
            raise TypeError(f"{type(self).__name__}: unknown argument {key!r}{closest(key, allowed)}. "
                            f"Allowed: {', '.join(sorted(set(allowed)))}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.trainable = trainable
        self.built = False
        self.params = {}      # trainable arrays, in Keras's weight order
        self.grads = {}
        self.state = {}       # non-trainable arrays (moving statistics)
        self.regularizers = {}
        self.input_spec = None  # {"ndim": int, "axes": {axis: size}} once known
        if batch_input_shape is not None:
            self.batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self.batch_input_shape = (None,) + tuple(input_shape)
        else:
            self.batch_input_shape = None
        self.input_shape = None
        self.output_shape = None

    # ----- weights -------------------------------------------------------
    def add_weight(self, name, shape, initializer, trainable=True, regularizer=None):
        from .. import initializers
        value = initializers.get(initializer)(tuple(shape), dtype=floatx)
        value = np.ascontiguousarray(value, dtype=floatx)
        if trainable:
            self.params[name] = value
            self.grads[name] = np.zeros_like(value)
            if regularizer is not None:
                from .. import regularizers
                self.regularizers[name] = regularizers.get(regularizer)
        else:
            self.state[name] = value
        return value

    @property
    def weights(self):
        return list(self.params.values()) + list(self.state.values())

    @property
    def weight_names(self):
        return list(self.params) + list(self.state)

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        names = self.weight_names
        if len(weights) != len(names):
            raise ValueError(f"Layer {self.name!r} expects {len(names)} weight arrays ({', '.join(names)}), "
                             f"received {len(weights)}.")
        for key, value in zip(names, weights):
            store = self.params if key in self.params else self.state
            value = np.asarray(value)
            if value.shape != store[key].shape:
                raise ValueError(f"Layer {self.name!r} weight {key!r}: expected shape {store[key].shape}, "
                                 f"received {value.shape}.")
            store[key][...] = value.astype(floatx)

    def release(self):
        """Drop what the last forward kept for backward (``_cache``, ``_act_cache``), so that the
        engine's workspace can hand those buffers to the next forward while they are still warm
        in the CPU caches instead of fresh ones (seed001's 12 -> 16 conv forward in a training step:
        2.1 -> 1.6 ms)."""
        for attr in ("_cache", "_act_cache"):
            if attr in self.__dict__:
                self.__dict__[attr] = None

    def count_params(self):
        return int(sum(w.size for w in self.weights))

    def count_trainable_params(self):
        return int(sum(w.size for w in self.params.values())) if self.trainable else 0

    def regularization_loss(self):
        return float(sum(reg(self.params[k]) for k, reg in self.regularizers.items()))

    def add_regularization_grads(self):
        for k, reg in self.regularizers.items():
            self.grads[k] += reg.gradient(self.params[k])

    # ----- gradients -----------------------------------------------------
    # A training step marks every gradient stale instead of zeroing it; the first contribution
    # then overwrites it (or is computed straight into it), and later ones add. On seed002's
    # 3136 x 1024 dense kernel, zeroing and then adding cost 3.6 ms of a 92 ms step.
    _stale_grads = frozenset()

    def mark_grads_stale(self):
        """The next contribution to each gradient replaces it (see ``add_grad``)."""
        self._stale_grads = set(self.grads)

    def zero_stale_grads(self):
        """Zero the gradients that received nothing since ``mark_grads_stale``."""
        for name in self._stale_grads:
            self.grads[name][...] = 0
        self._stale_grads = frozenset()

    def grad_out(self, name):
        """The gradient buffer to compute ``name``'s contribution straight into, when it is
        stale (it then counts as written); None when the contribution must be added."""
        if name in self._stale_grads:
            self._stale_grads.discard(name)
            return self.grads[name]
        return None

    def add_grad(self, name, value):
        """Add ``value`` to gradient ``name``, or write it there when the gradient is stale."""
        self.write_grad(name, value, self.grad_out(name))

    def write_grad(self, name, value, out):
        """``value`` into gradient ``name``: written to ``out`` (what ``grad_out`` returned), or
        added when that was None. Split from ``add_grad`` so that a background task can write
        while ``grad_out``, which changes the layer's bookkeeping, ran on the caller's thread."""
        if out is None:
            self.grads[name] += value
        else:
            out[...] = value

    # ----- shapes --------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def check_input_shape(self, shape, index=0):
        """Raise the Keras-style error when ``shape`` violates ``input_spec``."""
        spec = self.input_spec
        if spec is None:
            return
        if "ndim" in spec and len(shape) != spec["ndim"]:
            raise ValueError(f"Input {index} of layer {self.name!r} ({type(self).__name__}) is incompatible: "
                             f"expected ndim={spec['ndim']} (shape like {self._expected_shape_hint()}), "
                             f"found ndim={len(shape)}. Full shape received: {shape_str(shape)}")
        if "min_ndim" in spec and len(shape) < spec["min_ndim"]:
            raise ValueError(f"Input {index} of layer {self.name!r} ({type(self).__name__}) is incompatible: "
                             f"expected min_ndim={spec['min_ndim']}, found ndim={len(shape)}. "
                             f"Full shape received: {shape_str(shape)}")
        for axis, size in spec.get("axes", {}).items():
            if shape[axis] is not None and shape[axis] != size:
                raise ValueError(f"Input {index} of layer {self.name!r} ({type(self).__name__}) is incompatible: "
                                 f"expected axis {axis} of the input to be {size}, received {shape[axis]}. "
                                 f"Full shape received: {shape_str(shape)}; expected {self._expected_shape_hint()}")

    def _expected_shape_hint(self):
        if self.input_shape is not None:
            return shape_str(self.input_shape)
        if self.input_spec.get("ndim") == 4:
            return "(batch, height, width, channels)"
        return f"ndim={self.input_spec.get('ndim')}"

    def ensure_built(self, input_shape):
        """Build on first use; validate on every later one."""
        input_shape = tuple(input_shape) if not self.multi_input else [tuple(s) for s in input_shape]
        if not self.built:
            if self.multi_input:
                self.input_shape = [(None,) + s[1:] for s in input_shape]
            else:
                self.check_input_shape(input_shape)  # the rank, before build() unpacks the shape
                self.input_shape = (None,) + input_shape[1:]
            self.build(self.input_shape)
            self.built = True
            self.output_shape = self.compute_output_shape(self.input_shape)
        elif not self.multi_input:
            self.check_input_shape(input_shape)

    # ----- running -------------------------------------------------------
    def __call__(self, inputs, training=False):
        symbolic = isinstance(inputs, SymbolicTensor) or (
            isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, SymbolicTensor) for t in inputs))
        if symbolic:
            if self.multi_input:
                shapes = [t.shape for t in inputs]
                inbound = list(inputs)
            else:
                if not isinstance(inputs, SymbolicTensor):
                    raise ValueError(f"Layer {self.name!r} takes one input, received {len(inputs)}.")
                shapes = inputs.shape
                inbound = [inputs]
            if self.built and not self.multi_input:
                self.check_input_shape(shapes)
            self.ensure_built(shapes)
            return SymbolicTensor(self.compute_output_shape(shapes), self, inbound)
        if self.multi_input:
            inputs = [np.asarray(x, dtype=floatx) for x in inputs]
            self.ensure_built([x.shape for x in inputs])
        else:
            inputs = np.asarray(inputs, dtype=floatx)
            self.ensure_built(inputs.shape)
        return self.forward(inputs, training=training)

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def zero_grads(self):
        for g in self.grads.values():
            g[...] = 0

    # ----- configuration -------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        if self.batch_input_shape is not None:
            config["batch_input_shape"] = list(self.batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "batch_input_shape" in config and config["batch_input_shape"] is not None:
            config["batch_input_shape"] = tuple(config["batch_input_shape"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"
