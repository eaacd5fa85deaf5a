"""Losses by Keras's names. ``loss(y_true, y_pred)`` gives the value; the model
uses ``forward``/``backward`` and, for cross-entropy after a softmax output,
the fused ``forward_logits`` path."""
import numpy as np

from .ops import losses as loss_ops
from .utils import unknown_name_error


def _one_hot_if_sparse(y_true, k):
    y_true = np.asarray(y_true)
    if y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1 and k > 1):
        idx = y_true.reshape(-1).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= k):
            bad = idx[(idx < 0) | (idx >= k)][0]
            raise ValueError(f"label {bad} is outside [0, {k}) for a model with {k} outputs")
        out = np.zeros((idx.size, k), dtype=np.float32)
        out[np.arange(idx.size), idx] = 1
        return out
    return y_true


class Loss:
    name = "loss"
    fuses_softmax = False

    def __call__(self, y_true, y_pred):
        return float(self.forward(np.asarray(y_pred, dtype=np.float32), y_true)[0])

    def get_config(self):
        return {"name": self.name}


class SparseCategoricalCrossentropy(Loss):
    """Integer labels ``(N,)``; predictions are probabilities unless ``from_logits``.

    ``label_smoothing`` = e trains against ``(1 - e) * one_hot + e / K`` instead of the one-hot
    targets (Keras's ``CategoricalCrossentropy`` argument; PyTorch's ``cross_entropy`` has it for
    class indices too).
    """
    name = "sparse_categorical_crossentropy"
    fuses_softmax = True

    def __init__(self, from_logits=False, label_smoothing=0.0):
        self.from_logits = from_logits
        self.label_smoothing = float(label_smoothing)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"{self.name}: `label_smoothing` must be in [0, 1). "
                             f"Received: label_smoothing={label_smoothing!r}")

    def _targets(self, y_true, k):
        """The labels as the ops take them: integers, or (N, K) targets once smoothed."""
        y = self._labels(y_true, k)
        if not self.label_smoothing:
            return y
        t = _one_hot_if_sparse(y, k) if y.ndim == 1 else y
        return t * (1.0 - self.label_smoothing) + self.label_smoothing / k  # (N, K) float32

    def _labels(self, y_true, k):
        y = np.asarray(y_true)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{self.name} expects integer labels of shape (N,), received shape {y.shape}; "
                             f"use 'categorical_crossentropy' for one-hot labels")
        return y.astype(np.int64)

    def forward_logits(self, logits, y_true):
        return loss_ops.softmax_cross_entropy_forward(logits, self._targets(y_true, logits.shape[-1]))

    def backward_logits(self, cache):
        return loss_ops.softmax_cross_entropy_backward(1.0, cache)

    def forward(self, y_pred, y_true):
        if self.from_logits:
            return self.forward_logits(y_pred, y_true)
        k = y_pred.shape[-1]
        return loss_ops.categorical_crossentropy_forward(y_pred, _one_hot_if_sparse(self._targets(y_true, k), k))

    def backward(self, cache):
        if self.from_logits:
            return self.backward_logits(cache)
        return loss_ops.categorical_crossentropy_backward(1.0, cache)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(SparseCategoricalCrossentropy):
    """One-hot (or soft) labels ``(N, K)``."""
    name = "categorical_crossentropy"

    def _labels(self, y_true, k):
        y = np.asarray(y_true, dtype=np.float32)
        if y.ndim != 2 or y.shape[1] != k:
            raise ValueError(f"{self.name} expects one-hot labels of shape (N, {k}), received shape {y.shape}; "
                             f"use 'sparse_categorical_crossentropy' for integer labels")
        return y

    def forward(self, y_pred, y_true):
        if self.from_logits:
            return self.forward_logits(y_pred, y_true)
        return loss_ops.categorical_crossentropy_forward(y_pred, self._targets(y_true, y_pred.shape[-1]))


class MulticlassHinge(Loss):
    """The multiclass SVM loss on raw class scores, integer labels."""
    name = "multiclass_hinge"

    def __init__(self, margin=1.0):
        self.margin = margin

    def forward(self, y_pred, y_true):
        y = np.asarray(y_true)
        y = (y.argmax(-1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)).astype(np.int64)
        return loss_ops.hinge_forward(y_pred, y, margin=self.margin)

    def backward(self, cache):
        return loss_ops.hinge_backward(1.0, cache)

    def get_config(self):
        return {"name": self.name, "margin": self.margin}


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def forward(self, y_pred, y_true):
        y = np.asarray(y_true, dtype=np.float32)
        if y.shape != y_pred.shape:
            y = _one_hot_if_sparse(y, y_pred.shape[-1])
        return loss_ops.mse_forward(y_pred, y)

    def backward(self, cache):
        return loss_ops.mse_backward(1.0, cache)


LOSSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "multiclass_hinge": MulticlassHinge, "hinge": MulticlassHinge, "svm": MulticlassHinge,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
}


def get(identifier):
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        name = config.pop("name")
        return get(name).__class__(**config)
    if identifier not in LOSSES:
        raise unknown_name_error("loss", identifier, LOSSES)
    return LOSSES[identifier]()


def serialize(loss):
    return loss.get_config()
