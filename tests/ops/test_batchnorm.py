"""Batch normalisation: gradient checks, PyTorch's F.batch_norm, Keras moving statistics."""
import numpy as np
import pytest

from cnnlab.ops import batchnorm
from tests.helpers import assert_close, check_backward, needs_torch, nchw_to_nhwc, nhwc_to_nchw, rand, torch


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (6, 4)])
def test_train_gradients(shape):
    C = shape[-1]
    inputs = {"x": rand(shape, 0, scale=2) + 0.5, "gamma": rand((C,), 1), "beta": rand((C,), 2)}
    check_backward(batchnorm.forward_train, batchnorm.backward, inputs, wrt=("x", "gamma", "beta"),
                   rtol=1e-5, atol=1e-7)


def test_inference_gradients():
    C = 3
    inputs = {"x": rand((2, 3, 3, C), 0), "gamma": rand((C,), 1), "beta": rand((C,), 2),
              "moving_mean": rand((C,), 3), "moving_var": np.abs(rand((C,), 4)) + 0.5}
    check_backward(batchnorm.forward_inference, batchnorm.backward, inputs, wrt=("x", "gamma", "beta"))


def test_train_statistics_and_cache():
    x = rand((8, 5, 5, 3), 0, scale=3) + 2
    y, cache = batchnorm.forward_train(x, np.ones(3, np.float32), np.zeros(3, np.float32))
    assert y.dtype == np.float32
    assert_close(cache.mean, x.mean(axis=(0, 1, 2)), rtol=1e-5)
    assert_close(cache.var, x.var(axis=(0, 1, 2)), rtol=1e-4)  # biased
    assert_close(y.mean(axis=(0, 1, 2)), np.zeros(3), atol=1e-5)
    assert_close(y.var(axis=(0, 1, 2)), x.var(axis=(0, 1, 2)) / (x.var(axis=(0, 1, 2)) + 1e-3), rtol=1e-4)


def test_update_moving_keras_semantics():
    moving = np.array([1.0, 2.0], np.float32)
    out = batchnorm.update_moving(moving, np.array([3.0, 4.0], np.float32))
    assert out is moving  # in place
    assert_close(moving, [1.0 * 0.99 + 3.0 * 0.01, 2.0 * 0.99 + 4.0 * 0.01])
    batchnorm.update_moving(moving, np.array([0.0, 0.0], np.float32), momentum=0.5)
    assert_close(moving, [0.51, 0.5 * 2.02])


def test_default_epsilon_is_keras():
    x = np.array([[0.0], [2.0]], np.float32)  # var 1
    y, _ = batchnorm.forward_train(x, np.ones(1, np.float32), np.zeros(1, np.float32))
    assert_close(y[:, 0], [-1 / np.sqrt(1 + 1e-3), 1 / np.sqrt(1 + 1e-3)])


def test_bad_gamma_shape():
    with pytest.raises(ValueError, match=r"\(4,\)"):
        batchnorm.forward_train(rand((2, 4)), np.ones(3, np.float32), np.zeros(3, np.float32))


@needs_torch
def test_train_matches_torch_with_moving_stats():
    F = torch.nn.functional
    C, eps, momentum = 4, 1e-3, 0.99
    gamma, beta = rand((C,), 1) + 1, rand((C,), 2)
    moving_mean, moving_var = np.zeros(C, np.float32), np.ones(C, np.float32)
    moving_var_unbiased, moving_var_ref = np.ones(C, np.float32), np.ones(C)
    t_mean, t_var = torch.zeros(C), torch.ones(C)
    for step in range(3):
        x = rand((5, 6, 7, C), 10 + step, scale=2) + step
        dy = rand((5, 6, 7, C), 20 + step)
        y, cache = batchnorm.forward_train(x, gamma, beta, eps)
        dx, dgamma, dbeta = batchnorm.backward(dy, cache)
        batchnorm.update_moving(moving_mean, cache.mean, momentum)
        batchnorm.update_moving(moving_var, cache.var, momentum)
        M = x.size // C
        batchnorm.update_moving(moving_var_unbiased, cache.var * (M / (M - 1)), momentum)
        moving_var_ref = moving_var_ref * momentum + x.astype(np.float64).var(axis=(0, 1, 2)) * (1 - momentum)

        tx = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
        tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
        ty = F.batch_norm(tx, t_mean, t_var, tg, tb, training=True, momentum=1 - momentum, eps=eps)
        ty.backward(torch.tensor(nhwc_to_nchw(dy)))
        assert_close(y, nchw_to_nhwc(ty.detach().numpy()), rtol=1e-5, atol=1e-5, name="y")
        assert_close(dx, nchw_to_nhwc(tx.grad.numpy()), rtol=1e-5, atol=1e-5, name="dx")
        assert_close(dgamma, tg.grad.numpy(), rtol=1e-5, atol=1e-4, name="dgamma")
        assert_close(dbeta, tb.grad.numpy(), rtol=1e-5, atol=1e-4, name="dbeta")

    assert_close(moving_mean, t_mean.numpy(), rtol=1e-5, name="moving_mean")
    # torch's running_var follows the unbiased batch variance, Keras's (ours) the biased one.
    assert_close(moving_var_unbiased, t_var.numpy(), rtol=1e-5, name="moving_var (unbiased, as torch)")
    assert_close(moving_var, moving_var_ref, rtol=1e-5, name="moving_var (biased, as Keras)")
    assert not np.allclose(moving_var, t_var.numpy(), rtol=1e-4, atol=0)  # the conventions do differ


@needs_torch
def test_inference_matches_torch():
    F = torch.nn.functional
    C = 3
    x, dy = rand((2, 4, 4, C), 0), rand((2, 4, 4, C), 1)
    gamma, beta, mm, mv = rand((C,), 2), rand((C,), 3), rand((C,), 4), np.abs(rand((C,), 5)) + 0.5
    y, cache = batchnorm.forward_inference(x, gamma, beta, mm, mv)
    dx, dgamma, dbeta = batchnorm.backward(dy, cache)
    tx = torch.tensor(nhwc_to_nchw(x), requires_grad=True)
    tg, tb = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    ty = F.batch_norm(tx, torch.tensor(mm), torch.tensor(mv), tg, tb, training=False, eps=1e-3)
    ty.backward(torch.tensor(nhwc_to_nchw(dy)))
    assert_close(y, nchw_to_nhwc(ty.detach().numpy()), rtol=1e-5, name="y")
    assert_close(dx, nchw_to_nhwc(tx.grad.numpy()), rtol=1e-5, name="dx")
    assert_close(dgamma, tg.grad.numpy(), rtol=1e-5, atol=1e-5, name="dgamma")
    assert_close(dbeta, tb.grad.numpy(), rtol=1e-5, atol=1e-5, name="dbeta")


def _reference(x, dy, gamma, beta, eps=1e-3):
    """Batch norm and its gradients straight from the definitions, in float64."""
    C = x.shape[-1]
    x2, dy2 = x.reshape(-1, C).astype(np.float64), dy.reshape(-1, C).astype(np.float64)
    M = x2.shape[0]
    mean, var = x2.mean(0), x2.var(0)
    xhat = (x2 - mean) / np.sqrt(var + eps)
    y = gamma * xhat + beta
    dxhat = dy2 * gamma
    dx = (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0)) / np.sqrt(var + eps)
    assert M > 1
    return y.reshape(x.shape), dx.reshape(x.shape), (dy2 * xhat).sum(0), dy2.sum(0), mean, var


@pytest.mark.parametrize("rows, C", [(7 * 11 * 13, 5), (2048 + 37, 3), (512, 16)])
def test_many_blocks_and_odd_rows_match_float64(monkeypatch, rows, C):
    # small blocks: many of them, a ragged last one, and row counts with no power-of-two fold
    monkeypatch.setattr(batchnorm, "BLOCK_VALUES", 256)
    x = rand((rows, C), 0, scale=3) + 4
    dy = rand((rows, C), 1)
    gamma, beta = rand((C,), 2) + 1, rand((C,), 3)
    y, cache = batchnorm.forward_train(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm.backward(dy, cache)
    ry, rdx, rdgamma, rdbeta, rmean, rvar = _reference(x, dy, gamma, beta)
    assert_close(cache.mean, rmean, rtol=1e-6, name="mean")
    assert_close(cache.var, rvar, rtol=1e-5, name="var")
    assert_close(y, ry, rtol=1e-5, atol=1e-5, name="y")
    assert_close(dx, rdx, rtol=1e-4, atol=1e-5, name="dx")
    assert_close(dgamma, rdgamma, rtol=1e-5, atol=1e-4, name="dgamma")
    assert_close(dbeta, rdbeta, rtol=1e-5, atol=1e-4, name="dbeta")
    assert_close(cache.xhat, (x - rmean) / np.sqrt(rvar + 1e-3), rtol=1e-4, atol=1e-5, name="xhat")


@pytest.mark.parametrize("shape", [(6, 3, 3, 4), (7, 5)])
def test_reduce_makes_a_part_of_the_batch_use_the_whole_batchs_statistics(shape):
    # what two processes do with a batch split between them (cnnlab.training.processes), here two
    # threads: at each sum, each part adds the other's partial sums to its own
    import threading
    x, dy = rand(shape, 1), rand(shape, 2)
    gamma, beta = rand(shape[-1:], 3) + 1.5, rand(shape[-1:], 4)
    y, c = batchnorm.forward_train(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm.backward(dy, c)
    k = 2
    rows = [slice(0, k), slice(k, None)]
    barrier, box, results = threading.Barrier(2, timeout=10), [{}, {}], [None, None]

    def part(i):
        calls = []

        def reduce(sums, count):
            n = len(calls)
            calls.append(n)
            box[i][n] = sums.copy(), count
            barrier.wait()
            other_sums, other_count = box[1 - i][n]
            return sums + other_sums, count + other_count

        yp, cp = batchnorm.forward_train(x[rows[i]], gamma, beta, reduce=reduce)
        results[i] = (yp, cp) + batchnorm.backward(dy[rows[i]], cp) + (len(calls),)

    threads = [threading.Thread(target=part, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (yp, cp, dxp, _, _, n_calls) in enumerate(results):
        assert n_calls == 3  # the mean's, the variance's, backward's
        assert_close(yp, y[rows[i]], rtol=1e-5, atol=1e-5)
        assert_close(cp.mean, c.mean, rtol=1e-5, atol=1e-6)
        assert_close(cp.var, c.var, rtol=1e-5, atol=1e-6)
        assert_close(dxp, dx[rows[i]], rtol=1e-4, atol=1e-5)
    # gamma's and beta's gradients are each part's own: they add up to the whole batch's
    assert_close(results[0][3] + results[1][3], dgamma, rtol=1e-5, atol=1e-5)
    assert_close(results[0][4] + results[1][4], dbeta, rtol=1e-5, atol=1e-5)
    # without reduce, a part's statistics are its own
    assert np.abs(batchnorm.forward_train(x[rows[0]], gamma, beta)[0] - y[rows[0]]).max() > 1e-2
