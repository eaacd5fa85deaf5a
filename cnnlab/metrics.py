"""Streaming metrics for fit/evaluate, and the confusion-matrix report."""
import numpy as np

from .utils import unknown_name_error


def _labels(y_true):
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(-1)
    return y.reshape(-1).astype(np.int64)


class Metric:
    name = "metric"

    def __init__(self):
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0

    def result(self):
        return self.total / self.count if self.count else 0.0

    def get_config(self):
        return {"name": self.name}


class Accuracy(Metric):
    """Keras's 'accuracy' for classification: argmax against integer or one-hot labels."""
    name = "accuracy"

    def update_state(self, y_true, y_pred):
        correct = np.asarray(y_pred).argmax(-1) == _labels(y_true)
        self.total += float(correct.sum())
        self.count += correct.size


class TopKCategoricalAccuracy(Metric):
    def __init__(self, k=5):
        self.k = k
        self.name = f"top{k}_accuracy"
        super().__init__()

    def update_state(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        k = min(self.k, y_pred.shape[-1])
        topk = np.argpartition(-y_pred, k - 1, axis=-1)[:, :k]
        hit = (topk == _labels(y_true)[:, None]).any(-1)
        self.total += float(hit.sum())
        self.count += hit.size

    def get_config(self):
        return {"name": "top_k_accuracy", "k": self.k}


def get(identifier):
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        return get(config.pop("name")).__class__(**config)
    if identifier in ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy"):
        return Accuracy()
    if identifier in ("top_k_accuracy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"):
        return TopKCategoricalAccuracy()
    if isinstance(identifier, str) and identifier.startswith("top") and identifier.endswith("_accuracy") \
            and identifier[3:-9].isdigit():
        return TopKCategoricalAccuracy(int(identifier[3:-9]))
    raise unknown_name_error("metric", identifier, ["accuracy", "top_k_accuracy", "top5_accuracy"])


def confusion_matrix(y_true, y_pred, num_classes=None):
    """``cm[i, j]`` counts samples of true class i predicted as j; ``y_pred`` may be scores."""
    t = _labels(y_true)
    p = np.asarray(y_pred)
    p = p.argmax(-1) if p.ndim == 2 else p.astype(np.int64)
    k = num_classes or int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: {t.size} true labels but {p.size} predictions")
    for what, v in (("true label", t), ("predicted label", p)):
        bad = v[(v < 0) | (v >= k)]
        if bad.size:
            raise ValueError(f"confusion_matrix: {what} {bad[0]} is outside [0, {k})")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def precision_recall_f1(cm):
    """Per-class precision, recall, F1 and support from a confusion matrix (0 where undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / cm.sum(0))
        recall = np.nan_to_num(tp / cm.sum(1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return precision, recall, f1, cm.sum(1).astype(np.int64)


def classification_report(y_true, y_pred, class_names=None, num_classes=None):
    cm = confusion_matrix(y_true, y_pred, num_classes)
    precision, recall, f1, support = precision_recall_f1(cm)
    names = class_names or [str(i) for i in range(len(cm))]
    width = max(12, max(len(str(n)) for n in names) + 2)
    lines = [f"{'class':>{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}"]
    for i, name in enumerate(names):
        lines.append(f"{str(name):>{width}} {precision[i]:9.4f} {recall[i]:9.4f} {f1[i]:9.4f} {support[i]:9d}")
    acc = np.trace(cm) / max(cm.sum(), 1)
    lines.append(f"{'accuracy':>{width}} {'':9} {'':9} {acc:9.4f} {int(cm.sum()):9d}")
    lines.append(f"{'macro avg':>{width}} {precision.mean():9.4f} {recall.mean():9.4f} {f1.mean():9.4f} "
                 f"{int(cm.sum()):9d}")
    return "\n".join(lines)
