"""Edge cases of the calling convention found by differential fuzzing against PyTorch:
0-D targets of another dtype, outputs that overlap the inputs, out=input with values
outside a loss's domain, degenerate class weights, non-integer ignore_index."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastloss as fl


@pytest.mark.parametrize("tdtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.int64])
def test_zero_d_index_target_of_any_integer_dtype(tdtype):
    x = np.array([0.5, -1.0, 2.0])
    want = F.cross_entropy(torch.tensor(x), torch.tensor(1)).item()
    for fn in (fl.cross_entropy, fl.nll_loss, fl.softmax_focal_loss):
        r = fn(x, np.array(1, tdtype), reduction="none")
        assert np.shape(r.loss) == ()
    np.testing.assert_allclose(fl.cross_entropy(x, np.array(1, tdtype)).loss, want, rtol=1e-12)
    assert fl.multi_margin_loss(x, np.array(1, tdtype), reduction="none").loss.shape == ()


def test_zero_d_float_target_of_another_dtype():
    r = fl.mse_loss(np.array(1.0), np.array(3.0, np.float32), reduction="none")
    assert r.loss.shape == () and r.grad.shape == ()
    assert float(r.loss) == 4.0 and float(r.grad) == -4.0


@pytest.mark.parametrize(
    ("fn", "x", "t", "match"),
    [
        (fl.binary_cross_entropy, [0.2, 0.7, 0.4], [0.0, 1.0, 1.5], "target"),
        (fl.binary_cross_entropy, [0.2, 1.7, 0.4], [0.0, 1.0, 0.5], "input"),
        (fl.hinge_loss, [0.5, -2.0, 1.0], [1.0, -1.0, 0.0], "-1 and \\+1"),
        (fl.squared_hinge_loss, [0.5, -2.0, 1.0], [1.0, -1.0, 2.0], "-1 and \\+1"),
        (fl.perceptron_loss, [0.5, -2.0, 1.0], [1.0, 0.5, 1.0], "-1 and \\+1"),
        (fl.exponential_loss, [0.5, -2.0, 1.0], [1.0, -1.0, 0.0], "-1 and \\+1"),
        (fl.zero_one_loss, [0.5, -2.0, 1.0], [3.0, -1.0, 1.0], "-1 and \\+1"),
    ],
)
def test_out_input_with_bad_values_raises_and_leaves_input_intact(fn, x, t, match):
    x = np.array(x)
    t = np.array(t)
    x0, t0 = x.copy(), t.copy()
    with pytest.raises(ValueError, match=match):
        fn(x, t, out=x)
    np.testing.assert_array_equal(x, x0)
    with pytest.raises(ValueError, match=match):
        fn(x, t, out=t)
    np.testing.assert_array_equal(t, t0)


def _shifted_views(dtype, R=6, C=4, shift=4):
    base = np.random.default_rng(1).standard_normal(R * C + shift).astype(dtype)
    return base, base[: R * C].reshape(R, C), base[shift:].reshape(R, C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "call",
    [
        lambda x, **k: fl.cross_entropy(x, np.array([0, 1, 2, 3, 0, 1]), **k),
        lambda x, **k: fl.cross_entropy(x, np.array([0, 1, 2, 3, 0, 1]), label_smoothing=0.1,
                                        reduction="none", **k),
        lambda x, **k: fl.cross_entropy(x.reshape(2, 3, 4), np.array([[0, 1, 2, 0]] * 2),
                                        axis=1, **k),
        lambda x, **k: fl.nll_loss(x, np.array([0, 1, 2, 3, 0, 1]), reduction="none", **k),
        lambda x, **k: fl.softmax_focal_loss(x, np.array([0, 1, 2, 3, 0, 1]), **k),
        lambda x, **k: fl.softmax_entropy(x, **k),
        lambda x, **k: fl.kl_div_with_logits(x, np.ones_like(x), **k),
        lambda x, **k: fl.mse_loss(x, np.zeros_like(x), **k),
        lambda x, **k: fl.binary_cross_entropy_with_logits(x, np.full_like(x, 0.3), **k),
    ],
)
def test_out_partially_overlapping_the_input_gives_the_unaliased_result(call, dtype):
    _, x, out = _shifted_views(dtype)
    want = call(x.copy())
    out_shape = want.grad.shape
    got = call(x, out=out.reshape(out_shape))
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.grad, want.grad)
    assert np.shares_memory(got.grad, out)


def test_out_partially_overlapping_a_probability_target():
    _, t, out = _shifted_views(np.float64)
    t = np.abs(t) / np.abs(t).sum(-1, keepdims=True)
    x = np.random.default_rng(2).standard_normal(t.shape)
    want = fl.cross_entropy(x, t.copy())
    got = fl.cross_entropy(x, t, out=out)
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.grad, want.grad)


def _torch_ce(x, t, w, axis, **kw):
    xt = torch.tensor(x, requires_grad=True)
    lt = F.cross_entropy(xt, torch.tensor(t), torch.tensor(w), **kw)
    lt.backward()
    return lt.item(), xt.grad.numpy()


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize(
    ("x", "t", "w", "axis"),
    [
        ([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], [0, 0], [0.0, 1.0, 2.0], -1),
        ([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], [0, 1], [1.0, -1.0, 2.0], -1),
        ([[0.3, -1.0, 2.0], [0.5, 0.1, -1.0], [2.0, 1.0, 0.0]], [0, 1, -100], [1.0, -1.0, 5.0],
         -1),
        (np.random.default_rng(1).standard_normal((2, 3, 2)), [[0, 1], [1, 0]], [1.0, -1.0, 3.0],
         1),
    ],
)
def test_ce_mean_with_class_weights_summing_to_zero_matches_torch(x, t, w, axis, ls):
    """PyTorch divides by a total weight of 0: its NaN/inf pattern (loss and gradient)."""
    x, t, w = np.asarray(x, float), np.asarray(t), np.asarray(w)
    r = fl.cross_entropy(x, t, w, axis=axis, label_smoothing=ls)
    loss, g = _torch_ce(x, t, w, axis, label_smoothing=ls)
    np.testing.assert_array_equal(np.float64(r.loss), loss)
    np.testing.assert_array_equal(r.grad, g)


@pytest.mark.parametrize("bad", [1.5, -100.0, "0", None])
def test_ignore_index_must_be_an_integer(bad):
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        fl.cross_entropy(x, np.array([0, 1]), ignore_index=bad)
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        fl.nll_loss(x, np.array([0, 1]), ignore_index=bad)
    r = fl.cross_entropy(x, np.array([0, 1]), ignore_index=np.int32(1))
    assert np.isclose(r.loss, np.log(3))
