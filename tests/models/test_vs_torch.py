"""Whole small models against PyTorch with the same weights: outputs, loss and every gradient."""
import numpy as np
import pytest

from cnnlab import layers as L
from cnnlab.models import Model, Sequential
from cnnlab.optimizers import SGD
from tests.helpers import assert_close, needs_torch, nhwc_to_nchw, rand, torch

pytestmark = needs_torch


def conv_to_torch(kernel):
    return torch.tensor(np.transpose(kernel, (3, 2, 0, 1)).copy())  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)


def torch_grad_conv(g):
    return np.transpose(g.detach().numpy(), (2, 3, 1, 0))


def set_random_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for k in layer.params:
            scale = 0.3 if k != "gamma" else 0.2
            base = 1.0 if k == "gamma" else 0.0
            layer.params[k][...] = base + rng.standard_normal(layer.params[k].shape) * scale


def test_small_cnn_matches_torch():
    L.clear_session()
    model = Sequential([
        L.Input((8, 8, 3)),
        L.Conv2D(4, 3, padding="same", name="c1"),
        L.BatchNormalization(name="bn"),
        L.ReLU(name="relu"),
        L.MaxPooling2D(name="pool"),
        L.Conv2D(6, 3, name="c2"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dense(5, activation="softmax", name="fc"),
    ])
    set_random_weights(model)
    model.compile(optimizer=SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    x = rand((6, 8, 8, 3), 1)
    y = np.array([0, 1, 2, 3, 4, 1])
    weights_before = model.get_weights()

    g = {name: model.get_layer(name) for name in ("c1", "bn", "c2", "fc")}
    c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
    bn = torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.01)
    c2 = torch.nn.Conv2d(4, 6, 3)
    fc = torch.nn.Linear(6, 5)
    with torch.no_grad():
        c1.weight.copy_(conv_to_torch(g["c1"].params["kernel"]))
        c1.bias.copy_(torch.tensor(g["c1"].params["bias"]))
        bn.weight.copy_(torch.tensor(g["bn"].params["gamma"]))
        bn.bias.copy_(torch.tensor(g["bn"].params["beta"]))
        c2.weight.copy_(conv_to_torch(g["c2"].params["kernel"]))
        c2.bias.copy_(torch.tensor(g["c2"].params["bias"]))
        fc.weight.copy_(torch.tensor(g["fc"].params["kernel"].T.copy()))
        fc.bias.copy_(torch.tensor(g["fc"].params["bias"]))
    tmodel = torch.nn.Sequential(c1, bn, torch.nn.ReLU(), torch.nn.MaxPool2d(2), c2,
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), fc)
    tmodel.train()
    logits = tmodel(torch.tensor(nhwc_to_nchw(x)))
    tloss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    tloss.backward()

    loss, out = model.train_step(x, y)
    assert_close(out, torch.softmax(logits, -1).detach().numpy(), rtol=1e-4, atol=1e-6, name="output")
    assert_close(loss, tloss.item(), rtol=1e-5, atol=1e-6, name="loss")
    pairs = {
        "c1/kernel": torch_grad_conv(c1.weight.grad), "c1/bias": c1.bias.grad.numpy(),
        "bn/gamma": bn.weight.grad.numpy(), "bn/beta": bn.bias.grad.numpy(),
        "c2/kernel": torch_grad_conv(c2.weight.grad), "c2/bias": c2.bias.grad.numpy(),
        "fc/kernel": fc.weight.grad.numpy().T, "fc/bias": fc.bias.grad.numpy(),
    }
    assert set(model._grads) == set(pairs)
    for key, expected in pairs.items():
        atol = 1e-4 * max(1.0, float(np.abs(expected).max()))
        assert_close(model._grads[key], expected, rtol=1e-3, atol=atol, name=key)
    # lr = 0: the trainable weights did not move; BN's moving mean did, like torch's running mean
    for before, name in zip(weights_before, model.named_weights()):
        if "moving" not in name:
            np.testing.assert_array_equal(model.named_weights()[name], before, err_msg=name)
    assert_close(g["bn"].state["moving_mean"], bn.running_mean.numpy(), rtol=1e-4, atol=1e-6, name="moving_mean")
    # inference uses the moving statistics, as torch's eval mode does
    tmodel.eval()
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor(g["bn"].state["moving_variance"]))
        expected = torch.softmax(tmodel(torch.tensor(nhwc_to_nchw(x))), -1).numpy()
    assert_close(model.predict(x), expected, rtol=1e-4, atol=1e-6, name="inference output")


def test_residual_block_matches_torch():
    L.clear_session()
    inp = L.Input((6, 6, 4))
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(inp)
    h = L.Conv2D(4, 3, padding="same", name="b")(h)
    h = L.Add(name="add")([h, inp])
    h = L.ReLU(name="r")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(3, name="fc")(h)
    model = Model(inp, out)
    set_random_weights(model, seed=3)
    from cnnlab.losses import SparseCategoricalCrossentropy
    model.compile(optimizer=SGD(learning_rate=0.0), loss=SparseCategoricalCrossentropy(from_logits=True))
    x = rand((3, 6, 6, 4), 5)
    y = np.array([2, 0, 1])

    a = torch.nn.Conv2d(4, 4, 3, padding=1)
    b = torch.nn.Conv2d(4, 4, 3, padding=1)
    fc = torch.nn.Linear(6 * 6 * 4, 3)
    with torch.no_grad():
        for tl, name in ((a, "a"), (b, "b")):
            tl.weight.copy_(conv_to_torch(model.get_layer(name).params["kernel"]))
            tl.bias.copy_(torch.tensor(model.get_layer(name).params["bias"]))
        fc.weight.copy_(torch.tensor(model.get_layer("fc").params["kernel"].T.copy()))
        fc.bias.copy_(torch.tensor(model.get_layer("fc").params["bias"]))
    tx = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
    th = torch.relu(b(torch.relu(a(tx))) + tx)
    th = th.permute(0, 2, 3, 1).reshape(3, -1)  # flatten in NHWC order, as cnnlab does
    logits = fc(th)
    tloss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    tloss.backward()

    loss, out = model.train_step(x, y)
    assert_close(out, logits.detach().numpy(), rtol=1e-4, atol=1e-5, name="logits")
    assert_close(loss, tloss.item(), rtol=1e-5, atol=1e-6, name="loss")
    expected = {"a/kernel": torch_grad_conv(a.weight.grad), "a/bias": a.bias.grad.numpy(),
                "b/kernel": torch_grad_conv(b.weight.grad), "b/bias": b.bias.grad.numpy(),
                "fc/kernel": fc.weight.grad.numpy().T, "fc/bias": fc.bias.grad.numpy()}
    assert set(model._grads) == set(expected)
    for key, e in expected.items():
        assert_close(model._grads[key], e, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(e).max())), name=key)
    # the input gradient sums both branches (the skip connection and the convolutions)
    x_ = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
    dl = torch.zeros(3, 3)
    dl[:, 0] = 1
    th = torch.relu(b(torch.relu(a(x_))) + x_).permute(0, 2, 3, 1).reshape(3, -1)
    (fc(th) * dl).sum().backward()
    dx = model.input_gradient(x, dl.numpy())
    assert_close(dx, np.transpose(x_.grad.numpy(), (0, 2, 3, 1)), rtol=1e-3, atol=1e-5, name="dx")
