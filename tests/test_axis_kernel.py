"""cross_entropy along a class axis that is not the last one (PyTorch's (N, C, d...)
layout) runs a strided kernel with no input-sized copies: it must agree with the
classes-last path and with PyTorch on special values, ignored positions, options,
out=input and any thread count."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastloss as fl
from tests.conftest import assert_close


def _special(dtype, shape=(3, 6, 5, 70)):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    x[0, :, 0, 0] = -np.inf  # all -inf column
    x[0, :, 0, 1] = -np.inf  # all -inf column, ignored below
    x[1, 2, 1, 3] = np.inf
    x[1, 2, 1, 4] = np.inf  # +inf, ignored below
    x[2, 4, 2, 5] = np.nan
    x[2, 4, 2, 6] = np.nan  # NaN, ignored below
    x[1, 0, 3, :] = -np.inf  # a masked class
    y = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    y[0, 0, 1] = y[1, 1, 4] = y[2, 2, 6] = -100
    y[2, 3, ::3] = -100
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kw",
    [{}, {"label_smoothing": 0.15}, {"weight": "w"}, {"weight": "w", "label_smoothing": 0.3},
     {"z_loss": 1e-3}],
)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_axis1_equals_moveaxis_on_special_values(dtype, kw, reduction):
    x, y = _special(dtype)
    kw = dict(kw)
    if kw.get("weight") == "w":
        kw["weight"] = np.linspace(-0.5, 2.0, x.shape[1])
    res = fl.cross_entropy(x, y, axis=1, reduction=reduction, **kw)
    ref = fl.cross_entropy(np.moveaxis(x, 1, -1).copy(), y, axis=-1, reduction=reduction, **kw)
    assert_close(res.loss, ref.loss, dtype)
    assert_close(res.grad, np.moveaxis(ref.grad, -1, 1), dtype)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_axis1_matches_torch_on_special_values(reduction):
    x, y = _special(np.float64)
    res = fl.cross_entropy(x, y, axis=1, reduction=reduction)
    xt = torch.tensor(x, requires_grad=True)
    lt = F.cross_entropy(xt, torch.tensor(y), reduction=reduction)
    lt.sum().backward()
    assert_close(res.loss, lt.detach().numpy(), np.float64)
    assert_close(res.grad, xt.grad.numpy(), np.float64)


def test_axis1_out_is_input_threads_and_no_grad(threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 50, 4100)).astype(np.float32)  # > 64 positions: parallel
    y = rng.integers(0, 50, (8, 4100))
    fresh = fl.cross_entropy(x, y, axis=1)
    threads.set_num_threads(1)  # the fixture restores the thread count
    one = fl.cross_entropy(x, y, axis=1)
    assert np.array_equal(fresh.grad, one.grad) and fresh.loss == one.loss
    nog = fl.cross_entropy(x, y, axis=1, grad=False)
    assert nog.grad is None and nog.loss == fresh.loss
    xi = x.copy()
    res = fl.cross_entropy(xi, y, axis=1, out=xi)
    assert res.grad is xi and np.array_equal(xi, fresh.grad) and res.loss == fresh.loss


def test_axis1_errors():
    x = np.zeros((2, 3, 4))
    with pytest.raises(IndexError, match="Target 3 is out of bounds for 3 classes"):
        fl.cross_entropy(x, np.full((2, 4), 3), axis=1)
    with pytest.raises(ValueError, match="target shape"):
        fl.cross_entropy(x, np.zeros((2, 3), int), axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_nll_axis1_matches_torch_and_moveaxis(dtype, reduction):
    x, y = _special(dtype)
    w = np.linspace(-0.5, 2.0, x.shape[1])
    res = fl.nll_loss(x, y, w, axis=1, reduction=reduction)
    ref = fl.nll_loss(np.moveaxis(x, 1, -1).copy(), y, w, axis=-1, reduction=reduction)
    assert_close(res.loss, ref.loss, dtype)
    assert_close(res.grad, np.moveaxis(ref.grad, -1, 1), dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    lt = F.nll_loss(xt, torch.tensor(y), torch.tensor(w), reduction=reduction)
    lt.sum().backward()
    assert_close(res.loss, lt.detach().numpy(), dtype)
    assert_close(res.grad, xt.grad.numpy(), dtype)


def test_nll_axis1_out_is_input_and_threads(threads):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((70, 30, 600))
    y = rng.integers(0, 30, (70, 600))
    fresh = fl.nll_loss(x, y, axis=1)
    threads.set_num_threads(1)  # the fixture restores the thread count
    one = fl.nll_loss(x, y, axis=1)
    assert one.loss == fresh.loss and np.array_equal(one.grad, fresh.grad)
    xi = x.copy()
    res = fl.nll_loss(xi, y, axis=1, out=xi)
    assert res.grad is xi and np.array_equal(xi, fresh.grad) and res.loss == fresh.loss
