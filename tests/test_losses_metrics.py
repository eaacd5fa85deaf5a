"""Loss objects (values, names, configs) and metrics against naive computations."""
import numpy as np
import pytest

from cnnlab import losses, metrics
from tests.helpers import assert_close, needs_torch, rand, torch


def probs(n=6, k=4, seed=0):
    z = rand((n, k), seed, dtype=np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return z, e / e.sum(1, keepdims=True)


# ----- losses ---------------------------------------------------------------------------------

def test_sparse_and_categorical_crossentropy_values():
    z, p = probs()
    y = np.array([0, 1, 2, 3, 1, 0])
    expected = -np.mean(np.log(p[np.arange(6), y]))
    assert_close(losses.SparseCategoricalCrossentropy()(y, p), expected, rtol=1e-5)
    assert_close(losses.SparseCategoricalCrossentropy(from_logits=True)(y, z), expected, rtol=1e-5)
    onehot = np.eye(4)[y]
    assert_close(losses.CategoricalCrossentropy()(onehot, p), expected, rtol=1e-5)
    assert_close(losses.CategoricalCrossentropy(from_logits=True)(onehot, z), expected, rtol=1e-5)
    assert_close(losses.get("sparse_categorical_crossentropy")(y[:, None], p), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="one-hot"):
        losses.CategoricalCrossentropy()(y, p)
    with pytest.raises(ValueError, match="integer labels"):
        losses.SparseCategoricalCrossentropy()(onehot, p)
    with pytest.raises(ValueError, match="outside|out of range"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 1, 2, 3, 4, 0]), p)


def test_crossentropy_clips_zero_probability():
    p = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    value = losses.SparseCategoricalCrossentropy()(np.array([1, 0]), p)
    assert np.isfinite(value)
    assert_close(value, (-np.log(1e-7) - np.log(0.5)) / 2, rtol=1e-4)


def test_hinge_and_mse():
    s = rand((5, 3), 1, dtype=np.float64)
    y = np.array([0, 2, 1, 1, 0])
    naive = 0.0
    for i in range(5):
        for j in range(3):
            if j != y[i]:
                naive += max(0.0, s[i, j] - s[i, y[i]] + 1.0)
    assert_close(losses.get("multiclass_hinge")(y, s), naive / 5, rtol=1e-5)
    assert_close(losses.get("svm")(np.eye(3)[y], s), naive / 5, rtol=1e-5)
    assert_close(losses.MulticlassHinge(margin=0.5)(y, s), sum(
        max(0.0, s[i, j] - s[i, y[i]] + 0.5) for i in range(5) for j in range(3) if j != y[i]) / 5, rtol=1e-5)
    t = rand((5, 3), 2, dtype=np.float64)
    assert_close(losses.get("mse")(t, s), np.mean((s - t) ** 2), rtol=1e-5)
    assert_close(losses.MeanSquaredError()(y, s), np.mean((s - np.eye(3)[y]) ** 2), rtol=1e-5)


def test_loss_backward_finite_differences():
    for loss, y in ((losses.SparseCategoricalCrossentropy(), np.array([0, 2, 1])),
                    (losses.CategoricalCrossentropy(), np.eye(3)[[1, 1, 0]]),
                    (losses.SparseCategoricalCrossentropy(from_logits=True), np.array([2, 0, 1])),
                    (losses.MeanSquaredError(), rand((3, 3), 5, dtype=np.float64))):
        _, p = probs(3, 3, seed=7)
        value, cache = loss.forward(p, y)
        g = loss.backward(cache)
        from tests.helpers import numerical_grad
        num = numerical_grad(lambda: float(loss.forward(p, y)[0]), p)
        assert_close(g, num, rtol=1e-5, atol=1e-7, name=type(loss).__name__)


@pytest.mark.parametrize("sparse", [True, False])
def test_label_smoothing_values_gradients_and_config(sparse):
    z, p = probs(5, 4, seed=3)
    y = np.array([0, 3, 1, 1, 2])
    labels = y if sparse else np.eye(4)[y]
    cls = losses.SparseCategoricalCrossentropy if sparse else losses.CategoricalCrossentropy
    t = 0.8 * np.eye(4)[y] + 0.2 / 4                                        # smoothed targets
    expected = -np.mean(np.sum(t * np.log(p), axis=1))
    assert_close(cls(label_smoothing=0.2)(labels, p), expected, rtol=1e-5)
    assert_close(cls(from_logits=True, label_smoothing=0.2)(labels, z), expected, rtol=1e-5)
    assert abs(cls(label_smoothing=0.2)(labels, p) - cls()(labels, p)) > 1e-3  # not a no-op
    from tests.helpers import numerical_grad
    for loss, x in ((cls(label_smoothing=0.2), p.copy()), (cls(from_logits=True, label_smoothing=0.2), z.copy())):
        _, cache = loss.forward(x, labels)
        num = numerical_grad(lambda: float(loss.forward(x, labels)[0]), x)
        assert_close(loss.backward(cache), num, rtol=1e-5, atol=1e-7,
                     name=f"{cls.__name__} from_logits={loss.from_logits}")
    copy = losses.get(losses.serialize(cls(label_smoothing=0.2)))
    assert type(copy) is cls and copy.label_smoothing == 0.2
    with pytest.raises(ValueError, match=r"label_smoothing.*\[0, 1\).*1\.5"):
        cls(label_smoothing=1.5)


@needs_torch
def test_label_smoothing_against_torch():
    z = rand((6, 5), 4, dtype=np.float32)
    y = np.array([4, 0, 2, 2, 1, 3])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    value, cache = loss.forward(z, y)
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(zt, torch.tensor(y), label_smoothing=0.1)
    ref.backward()
    assert_close(value, ref.item(), rtol=1e-5)
    assert_close(loss.backward(cache), zt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_loss_lookup_and_config():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("hinge"), losses.MulticlassHinge)
    obj = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert losses.get(obj) is obj
    copy = losses.get(losses.serialize(obj))
    assert type(copy) is type(obj) and copy.from_logits
    h = losses.get(losses.serialize(losses.MulticlassHinge(margin=2.0)))
    assert h.margin == 2.0
    assert losses.get(losses.serialize(losses.MeanSquaredError())).name == "mean_squared_error"
    with pytest.raises(ValueError, match="did you mean 'sparse_categorical_crossentropy'"):
        losses.get("sparse_categorical_crossentropi")


# ----- metrics --------------------------------------------------------------------------------

def test_accuracy_sparse_and_one_hot():
    _, p = probs(8, 4, seed=1)
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    naive = np.mean([np.argmax(p[i]) == y[i] for i in range(8)])
    m = metrics.get("accuracy")
    m.update_state(y, p)
    assert_close(m.result(), naive)
    m2 = metrics.get("categorical_accuracy")
    m2.update_state(np.eye(4)[y], p)
    assert_close(m2.result(), naive)
    # streaming: two halves give the same as one batch, weighted by sample count
    m3 = metrics.Accuracy()
    m3.update_state(y[:3], p[:3])
    m3.update_state(y[3:], p[3:])
    assert_close(m3.result(), naive)
    m3.reset_state()
    assert m3.result() == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy(k):
    _, p = probs(10, 4, seed=2)
    y = np.arange(10) % 4
    naive = np.mean([y[i] in np.argsort(-p[i])[:k] for i in range(10)])
    m = metrics.TopKCategoricalAccuracy(k)
    m.update_state(y, p)
    assert_close(m.result(), naive)
    m1 = metrics.get(f"top{k}_accuracy")
    m1.update_state(np.eye(4)[y], p)
    assert_close(m1.result(), naive)
    assert m1.name == f"top{k}_accuracy"
    copy = metrics.get(m.get_config())
    assert copy.k == k and copy.name == m.name
    if k == 1:
        acc = metrics.Accuracy()
        acc.update_state(y, p)
        assert_close(m.result(), acc.result())


def test_metric_lookup():
    assert metrics.get("top_k_accuracy").k == 5
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        metrics.get("acuracy")


def naive_confusion(t, p, k):
    cm = np.zeros((k, k), dtype=np.int64)
    for a, b in zip(t, p):
        cm[a, b] += 1
    return cm


def test_confusion_matrix_and_prf():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, 50)
    scores = rng.standard_normal((50, 4))
    scores[np.arange(50), t] += 1.0  # better than chance
    p = scores.argmax(1)
    cm = metrics.confusion_matrix(t, scores)
    np.testing.assert_array_equal(cm, naive_confusion(t, p, 4))
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p), cm)
    np.testing.assert_array_equal(metrics.confusion_matrix(np.eye(4)[t], scores), cm)
    assert metrics.confusion_matrix([0, 1], [1, 1], num_classes=3).shape == (3, 3)
    precision, recall, f1, support = metrics.precision_recall_f1(cm)
    for c in range(4):
        tp = np.sum((p == c) & (t == c))
        fp = np.sum((p == c) & (t != c))
        fn = np.sum((p != c) & (t == c))
        pr = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        assert_close(precision[c], pr)
        assert_close(recall[c], rc)
        assert_close(f1[c], 2 * pr * rc / (pr + rc) if pr + rc else 0.0)
        assert support[c] == np.sum(t == c)


def test_prf_undefined_is_zero():
    cm = np.array([[2, 0, 0], [1, 0, 0], [0, 0, 0]])
    precision, recall, f1, support = metrics.precision_recall_f1(cm)
    assert_close(precision, [2 / 3, 0, 0])
    assert_close(recall, [1, 0, 0])
    assert np.all(np.isfinite(f1)) and f1[1] == 0 and f1[2] == 0
    assert support.tolist() == [2, 1, 0]


def test_classification_report_text():
    t = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    text = metrics.classification_report(t, p, class_names=["cat", "dog", "bird"])
    lines = text.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert lines[1].split() == ["cat", "0.5000", "0.5000", "0.5000", "2"]
    assert lines[2].split() == ["dog", "0.6667", "1.0000", "0.8000", "2"]
    assert lines[3].split() == ["bird", "1.0000", "0.5000", "0.6667", "2"]
    assert lines[4].split() == ["accuracy", "0.6667", "6"]
    assert lines[5].split()[:2] == ["macro", "avg"]
    assert_close(float(lines[5].split()[4]), np.mean([0.5, 0.8, 2 / 3]), atol=1e-4)
    default = metrics.classification_report(t, p).splitlines()
    assert [l.split()[0] for l in default[1:4]] == ["0", "1", "2"]


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match=r"true label 3 is outside \[0, 2\)"):
        metrics.confusion_matrix([0, 3], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match=r"predicted label 2 is outside \[0, 2\)"):
        metrics.confusion_matrix([0, 1], [0, 2], num_classes=2)
    with pytest.raises(ValueError, match="-1 is outside"):
        metrics.confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError, match="2 true labels but 3 predictions"):
        metrics.confusion_matrix([0, 1], [0, 1, 1])
