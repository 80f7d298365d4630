"""Elementwise losses (``fastloss/pointwise.py``): binary, regression, margin, count and
divergence families, plus the sigmoid / log_sigmoid utilities.

PyTorch (float64 autograd) is the contract where it has the loss; the float64 NumPy
references of ``tests/reference_pointwise.py`` (checked against central differences
here) where it has not.  float32 results are compared with the float64 answer for the
same float32-rounded inputs at the float32 tolerance.

Compile time dominates this file: inputs are small (serial build) except for one
odd-size group (1029 x 917, parallel build) in float64.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl
from tests import reference_pointwise as ref
from tests.conftest import assert_close, assert_result, central_diff_check, torch_loss_and_grad

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "sum", "mean"]

#: (loss, options) variants exercised against the references.
VARIANTS = [
    ("binary_cross_entropy", {}),
    ("binary_cross_entropy_with_logits", {}),
    ("sigmoid_focal_loss", {}),
    ("sigmoid_focal_loss", {"alpha": -1.0, "gamma": 0.0}),
    ("sigmoid_focal_loss", {"alpha": 0.6, "gamma": 1.5}),
    ("soft_margin_loss", {}),
    ("mse_loss", {}),
    ("l1_loss", {}),
    ("smooth_l1_loss", {}),
    ("smooth_l1_loss", {"beta": 0.5}),
    ("smooth_l1_loss", {"beta": 0.0}),
    ("huber_loss", {}),
    ("huber_loss", {"delta": 0.3}),
    ("log_cosh_loss", {}),
    ("hinge_loss", {}),
    ("hinge_loss", {"margin": 0.5}),
    ("squared_hinge_loss", {}),
    ("perceptron_loss", {}),
    ("exponential_loss", {}),
    ("zero_one_loss", {}),
    ("poisson_nll_loss", {}),
    ("poisson_nll_loss", {"log_input": False}),
    ("poisson_nll_loss", {"full": True}),
    ("poisson_nll_loss", {"log_input": False, "full": True, "eps": 1e-3}),
    ("kl_div", {}),
    ("kl_div", {"log_target": True}),
]
NAMES = sorted({n for n, _ in VARIANTS})
MARGIN = ["hinge_loss", "squared_hinge_loss", "perceptron_loss", "exponential_loss",
          "zero_one_loss"]


def _vid(v):
    name, kw = v
    return name + "".join(f"-{k}={val}" for k, val in kw.items())


def make_inputs(name, kw, shape, dtype, rng):
    """(input, target) suited to loss ``name`` with options ``kw``."""
    (x, t), _ = ref.REFERENCES[name]["inputs"](rng, shape, dtype)
    if name == "poisson_nll_loss" and not kw.get("log_input", True):
        x = (np.abs(x) + 0.1).astype(dtype)
    if name == "kl_div" and kw.get("log_target"):
        t = np.log(t).astype(dtype)
    return x, t


def expected(name, x, t, reduction, **kw):
    """float64 (loss, grad) from PyTorch where it has the loss, else the NumPy reference."""
    e = ref.REFERENCES[name]
    x64 = np.asarray(x, dtype=np.float64)
    args = [np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in (t,)]
    if e["torch"] is not None:
        tkw = {k: (torch.tensor(np.asarray(v, dtype=np.float64)) if isinstance(v, np.ndarray)
                   else v) for k, v in kw.items()}
        return torch_loss_and_grad(e["torch"], x64, *args, reduction=reduction, **tkw)
    loss, g = e["numpy"](x64, *args, reduction=reduction, **kw)
    return np.asarray(loss, dtype=np.float64), g


def call(name, *args, **kw):
    return getattr(fl, name)(*args, **kw)


# ------------------------------------------------------------------ values vs references
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=_vid)
def test_matches_reference(variant, dtype, reduction, rng):
    name, kw = variant
    x, t = make_inputs(name, kw, (6, 7), dtype, rng)
    x0, t0 = x.copy(), t.copy()
    res = call(name, x, t, reduction=reduction, **kw)
    el, eg = expected(name, x, t, reduction, **kw)
    assert_result(res, x, el, eg, reduction, loss_shape=x.shape, err_msg=f"{name} {kw}")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)
    value_only = call(name, x, t, reduction=reduction, grad=False, **kw)
    assert value_only.grad is None
    np.testing.assert_array_equal(value_only.loss, res.loss)


@pytest.mark.parametrize("variant", VARIANTS, ids=_vid)
def test_zero_d_input(variant, rng):
    name, kw = variant
    x, t = make_inputs(name, kw, (1,), np.float64, rng)
    x, t = x.reshape(()), t.reshape(())
    if name == "kl_div":
        t = np.asarray(0.3 if not kw.get("log_target") else math.log(0.3))
    for reduction in REDUCTIONS + (["batchmean"] if name == "kl_div" else []):
        res = call(name, x, t, reduction=reduction, **kw)
        el, eg = expected(name, x, t, reduction, **kw)
        assert_result(res, x, el, eg, reduction, loss_shape=(), err_msg=reduction)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(0,), (2, 0, 3)], ids=["0", "2x0x3"])
def test_empty(name, shape):
    x = np.zeros(shape)
    t = np.ones(shape)
    for dtype in DTYPES:
        xd, td = x.astype(dtype), t.astype(dtype)
        none = call(name, xd, td, reduction="none")
        assert none.loss.shape == shape and none.loss.dtype == dtype
        assert none.grad.shape == shape and none.grad.dtype == dtype
        s = call(name, xd, td, reduction="sum")
        assert s.loss == 0 and s.loss.dtype == dtype and isinstance(s.loss, np.generic)
        m = call(name, xd, td, reduction="mean")
        assert np.isnan(m.loss) and m.loss.dtype == dtype
    # PyTorch agrees ("mean" of nothing is nan)
    if ref.REFERENCES[name]["torch"] is not None and name != "kl_div":
        el, _ = expected(name, x, t, "mean")
        assert np.isnan(el)


def test_kl_div_batchmean_and_mean():
    rng = np.random.default_rng(3)
    (x, t), _ = ref._in_kl(rng, (4, 6), np.float64)
    for red in ("batchmean", "mean", "sum"):
        res = fl.kl_div(x, t, reduction=red)
        xt = torch.tensor(x, requires_grad=True)
        if red == "mean":
            with pytest.warns(UserWarning):  # PyTorch warns; fastloss does not (-W error)
                tl = F.kl_div(xt, torch.tensor(t), reduction=red)
        else:
            tl = F.kl_div(xt, torch.tensor(t), reduction=red)
        tl.backward()
        assert_close(res.loss, tl.item())
        assert_close(res.grad, xt.grad.numpy())
    # batchmean on an empty batch is nan, on (3, 0) it is 0
    assert np.isnan(fl.kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="batchmean").loss)
    assert fl.kl_div(np.zeros((3, 0)), np.zeros((3, 0)), reduction="batchmean").loss == 0


def test_kl_div_zero_target_with_neg_inf_input_is_nan_like_torch():
    x = np.array([-np.inf, 0.0, -1.0, np.nan])
    t = np.array([0.0, 0.0, np.nan, 0.0])
    res = fl.kl_div(x, t, reduction="none")
    el, eg = torch_loss_and_grad(F.kl_div, x, t, reduction="none")
    assert_close(res.loss, el)
    assert_close(res.grad, eg)
    assert np.isnan(res.loss[0]) and res.loss[1] == 0


# ----------------------------------------------------------------------------- kinks
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_regression_kinks_match_torch(dtype):
    # residuals exactly 0, +-beta/delta, and just around them
    d = np.array([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 0.25, 2.0, -3.0, 1e-9, -1e-9])
    t = np.linspace(-1, 1, d.size).astype(dtype)
    x = (t + d.astype(dtype)).astype(dtype)
    d_exact = x.astype(np.float64) - t.astype(np.float64)
    cases = [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {"beta": 1.0}),
             ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0}),
             ("huber_loss", {"delta": 1.0}), ("huber_loss", {"delta": 0.5})]
    for name, kw in cases:
        res = call(name, x, t, reduction="none", **kw)
        el, eg = expected(name, x, t, "none", **kw)
        assert_close(res.loss, el, dtype, err_msg=name)
        assert_close(res.grad, eg, dtype, err_msg=name)
    # the kink values themselves: grad sgn(0) == 0, +-1 at |d| == beta, +-delta at delta
    zero = np.zeros(3, dtype)
    dd = np.array([0.0, 0.5, -0.5], dtype)
    assert list(fl.l1_loss(dd, zero, reduction="none").grad) == [0, 1, -1]
    assert list(fl.smooth_l1_loss(dd, zero, beta=0.5, reduction="none").grad) == [0, 1, -1]
    assert list(fl.huber_loss(dd, zero, delta=0.5, reduction="none").grad) == [0, 0.5, -0.5]
    assert d_exact.size == d.size


def test_margin_kink_convention():
    # t x == margin: subgradient -t (sklearn's Hinge.dloss uses y p <= threshold)
    x = np.array([1.0, -1.0, 0.0, 0.0, 2.0])
    t = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    assert list(fl.hinge_loss(x, t, reduction="none").grad) == [-1, 1, -1, 1, 0]
    assert list(fl.perceptron_loss(x, t, reduction="none").grad) == [0, 0, -1, 1, 0]
    assert list(fl.squared_hinge_loss(x, t, reduction="none").grad) == [0, 0, -2, 2, 0]
    assert list(fl.zero_one_loss(x, t, reduction="none").loss) == [0, 0, 1, 1, 0]
    # NaN scores propagate to the loss
    nan = fl.hinge_loss(np.array([np.nan]), np.array([1.0]), reduction="none")
    assert np.isnan(nan.loss[0]) and np.isnan(nan.grad[0])
    assert np.isnan(fl.zero_one_loss(np.array([np.nan]), np.array([1.0])).loss)


# -------------------------------------------------------------------- weights (binary)
WEIGHT_SHAPES = [None, (), (3,), (1, 3), (5, 1), (5, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("pw_shape", WEIGHT_SHAPES, ids=str)
@pytest.mark.parametrize("w_shape", WEIGHT_SHAPES, ids=str)
def test_bce_with_logits_broadcast_weights(w_shape, pw_shape, dtype, rng):
    x = (3 * rng.standard_normal((5, 3))).astype(dtype)
    t = rng.random((5, 3)).astype(dtype)
    w = None if w_shape is None else rng.uniform(0.1, 2, w_shape).astype(dtype)
    pw = None if pw_shape is None else rng.uniform(0.1, 3, pw_shape).astype(dtype)
    for red in REDUCTIONS:
        res = fl.binary_cross_entropy_with_logits(x, t, w, pw, reduction=red)
        el, eg = torch_loss_and_grad(F.binary_cross_entropy_with_logits, x, t, weight=w,
                                     pos_weight=pw, reduction=red)
        assert_result(res, x, el, eg, red, loss_shape=x.shape)


@pytest.mark.parametrize("w_shape", WEIGHT_SHAPES, ids=str)
def test_bce_broadcast_weights(w_shape, rng):
    x = rng.uniform(0.01, 0.99, (5, 3))
    t = rng.random((5, 3))
    w = None if w_shape is None else rng.uniform(0.1, 2, w_shape)
    for red in REDUCTIONS:
        res = fl.binary_cross_entropy(x, t, w, reduction=red)
        el, eg = torch_loss_and_grad(F.binary_cross_entropy, x, t,
                                     weight=None if w is None else np.broadcast_to(w, x.shape),
                                     reduction=red)
        assert_result(res, x, el, eg, red, loss_shape=x.shape)


@pytest.mark.parametrize("w_shape,pw_shape", [((4, 1, 3), (3,)), ((1, 5, 1), None),
                                              ((5, 3), (4, 1, 1)), ((4, 5, 3), (5, 1)),
                                              ((1,), (1, 1, 1))], ids=str)
def test_bce_with_logits_3d_broadcasts(w_shape, pw_shape, rng):
    """Row/column splits of a 3-D input, and the (N, 1, C) case that is expanded."""
    x = (2 * rng.standard_normal((4, 5, 3)))
    t = rng.random((4, 5, 3))
    w = rng.uniform(0.1, 2, w_shape)
    pw = None if pw_shape is None else rng.uniform(0.1, 3, pw_shape)
    res = fl.binary_cross_entropy_with_logits(x, t, w, pw, reduction="none")
    el, eg = torch_loss_and_grad(F.binary_cross_entropy_with_logits, x, t, weight=w,
                                 pos_weight=pw, reduction="none")
    assert_result(res, x, el, eg, "none", loss_shape=x.shape)


def test_weights_odd_rows_cross_blocks():
    """Per-row and per-column weights with rows that straddle the 4096-element blocks."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((37, 301))
    t = rng.random((37, 301))
    for w, pw in [(rng.random((37, 1)), rng.random(301)), (rng.random(301), None),
                  (None, rng.random((37, 1)))]:
        res = fl.binary_cross_entropy_with_logits(x, t, w, pw, reduction="sum")
        el, eg = ref.binary_cross_entropy_with_logits(x, t, w, pw, reduction="sum")
        assert_close(res.loss, el)
        assert_close(res.grad, eg)


# --------------------------------------------------------------------- extreme values
EXTREMES = [0.0, 1.0, -1.0, 30.0, -30.0, 100.0, -100.0, 1e30, -1e30, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_bce_with_logits_extreme_logits(dtype):
    big = float(np.finfo(dtype).max)
    xs = np.array(EXTREMES + [big, -big], dtype=dtype)
    x = np.repeat(xs, 3)
    t = np.tile(np.array([0.0, 1.0, 0.3], dtype), xs.size)
    for pw in (None, np.array([2.5], dtype)):
        res = fl.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none")
        # The loss against PyTorch's formula in extended precision, rounded to the input
        # dtype: fastloss's cancellation-free form stays finite where PyTorch's own
        # intermediates overflow (x = -max with a soft target: -inf + ... = inf, while the
        # true loss 0.75 * max is finite).
        xl, tl_ = x.astype(np.longdouble), t.astype(np.longdouble)
        lw = 1 + ((pw.astype(np.longdouble) if pw is not None else 1) - 1) * tl_
        with np.errstate(all="ignore"):
            logsig = np.minimum(xl, 0) - np.log1p(np.exp(-np.abs(xl)))
            exact = (1 - tl_) * xl - lw * logsig
            exact = np.where(np.isneginf(xl), np.nan, exact)  # -inf + inf, as PyTorch
            big_ = np.abs(exact) > np.finfo(dtype).max
            exact = np.where(big_, np.copysign(np.inf, exact), exact).astype(np.float64)
        assert_close(res.loss, exact, dtype)
        # the gradient against PyTorch in the input's own dtype (2.5 * max overflows there
        # as here)
        xt = torch.tensor(x, requires_grad=True)
        tl = F.binary_cross_entropy_with_logits(
            xt, torch.tensor(t), pos_weight=None if pw is None else torch.tensor(pw),
            reduction="none")
        tl.sum().backward()
        assert_close(res.grad, xt.grad.numpy(), dtype)
        if pw is None:  # finite logits (up to the float maximum) give finite results
            finite = np.isfinite(x)
            assert np.all(np.isfinite(res.loss[finite])) and np.all(np.isfinite(res.grad[finite]))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_focal_and_soft_margin_extremes(dtype):
    big = float(np.finfo(dtype).max)
    xs = np.array([v for v in EXTREMES if np.isfinite(v)] + [big, -big], dtype=dtype)
    x = np.repeat(xs, 2)
    t01 = np.tile(np.array([0.0, 1.0], dtype), xs.size)
    f = fl.sigmoid_focal_loss(x, t01, reduction="none")
    assert np.all(np.isfinite(f.loss)) and np.all(np.isfinite(f.grad))
    el, eg = ref.sigmoid_focal_loss(x, t01, reduction="none")
    # torchvision's 1 - p_t loses everything for |x| > ~36; compare where it is exact
    ok = np.abs(x) < 15
    assert_close(f.loss[ok], el[ok], dtype)
    assert_close(f.grad[ok], eg[ok], dtype)
    tpm = 2 * t01 - 1
    s = fl.soft_margin_loss(x, tpm, reduction="none")
    assert np.all(np.isfinite(s.loss)) and np.all(np.isfinite(s.grad))
    el, eg = ref.soft_margin_loss(x, tpm, reduction="none")  # stable softplus reference
    assert_close(s.loss, el, dtype)
    assert_close(s.grad, eg, dtype)
    # where PyTorch's formula does not overflow, PyTorch agrees
    ok = np.abs(x.astype(np.float64)) < 80
    tl, tg = torch_loss_and_grad(F.soft_margin_loss, x[ok], tpm[ok], reduction="none")
    assert_close(s.loss[ok], tl, dtype)
    assert_close(s.grad[ok], tg, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sigmoid_utilities(dtype):
    big = float(np.finfo(dtype).max)
    x = np.array(EXTREMES + [big, -big, 1e-3, -20.0, 20.0], dtype=dtype)
    s = fl.sigmoid(x)
    ls = fl.log_sigmoid(x)
    assert s.dtype == dtype and ls.dtype == dtype and s.shape == x.shape
    xt = torch.tensor(x.astype(np.float64))
    assert_close(s, torch.sigmoid(xt).numpy(), dtype)
    assert_close(ls, F.logsigmoid(xt).numpy(), dtype)
    z = fl.sigmoid(np.float32(0.0))
    assert isinstance(z, np.ndarray) and z.shape == () and z.dtype == np.float32 and z == 0.5
    assert fl.log_sigmoid([]).shape == (0,)
    with pytest.raises(TypeError, match="float32 or float64"):
        fl.sigmoid(np.arange(3))


def test_log_cosh_large_and_tiny_residuals():
    d = np.array([1e4, -1e4, 1e6, 1e300, 1e-8, -1e-8, 1e-200, 0.0, 19.9, 20.0, 20.1, np.inf])
    res = fl.log_cosh_loss(d, np.zeros_like(d), reduction="none")
    assert_close(res.loss[:4], np.abs(d[:4]) - math.log(2))
    # tiny residuals keep their relative accuracy: log cosh d ~ d^2 / 2
    np.testing.assert_allclose(res.loss[4:7], d[4:7] ** 2 / 2, rtol=1e-12)
    assert res.loss[7] == 0 and res.loss[-1] == np.inf
    assert_close(res.loss[8:11], np.log(np.cosh(d[8:11])))
    assert_close(res.grad, np.tanh(d))
    r32 = fl.log_cosh_loss(d[:3].astype(np.float32), np.zeros(3, np.float32), reduction="none")
    assert np.all(np.isfinite(r32.loss))


def test_bce_clamp_and_backward_formula():
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-300, 0.5])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.5])
    res = fl.binary_cross_entropy(x, t, reduction="none")
    el, eg = torch_loss_and_grad(F.binary_cross_entropy, x, t, reduction="none")
    assert_close(res.loss, el)
    assert_close(res.grad, eg)
    assert res.loss[0] == 100 and res.loss[1] == 100


# -------------------------------------------------------- layouts, out=, threads, big
def _layouts(a, tmp_path):
    from tests import edges

    return list(edges.layouts(a, tmp_path))


@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "huber_loss",
                                  "hinge_loss", "binary_cross_entropy"])
def test_layouts_give_identical_bits(name, tmp_path, rng):
    x, t = make_inputs(name, {}, (9, 11), np.float64, rng)
    base = call(name, x, t, reduction="none")
    for lname, xv in _layouts(x, tmp_path):
        keep = np.array(xv, copy=True)
        res = call(name, xv, t, reduction="none")
        np.testing.assert_array_equal(res.loss, base.loss, err_msg=lname)
        np.testing.assert_array_equal(res.grad, base.grad, err_msg=lname)
        assert res.grad.dtype == np.float64 and res.grad.shape == x.shape
        np.testing.assert_array_equal(np.asarray(xv), keep, err_msg=lname)
    for lname, tv in _layouts(t, None):
        res = call(name, x, tv, reduction="sum")
        assert res.loss == call(name, x, t, reduction="sum").loss, lname


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_out_fresh_and_in_place(dtype, rng):
    for name in ["binary_cross_entropy_with_logits", "mse_loss", "kl_div", "binary_cross_entropy"]:
        x, t = make_inputs(name, {}, (13, 7), dtype, rng)
        base = call(name, x, t)
        out = np.full(x.shape, 7.0, dtype)
        res = call(name, x, t, out=out)
        assert res.grad is out
        np.testing.assert_array_equal(out, base.grad)
        xi = x.copy()
        res = call(name, xi, t, out=xi)
        assert res.grad is xi and res.loss == base.loss
        np.testing.assert_array_equal(xi, base.grad)
        w = rng.random(7).astype(dtype)
        if name == "binary_cross_entropy_with_logits":  # weighted kernel, in place
            b = call(name, x, t, w, w)
            xi = x.copy()
            call(name, xi, t, w, w, out=xi)
            np.testing.assert_array_equal(xi, b.grad)


def test_out_errors(rng):
    x = rng.standard_normal((4, 3))
    t = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="shape"):
        fl.mse_loss(x, t, out=np.empty((3, 4)))
    with pytest.raises(ValueError, match="dtype"):
        fl.mse_loss(x, t, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        fl.mse_loss(x, t, out=np.empty((3, 4)).T)
    ro = np.empty((4, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fl.mse_loss(x, t, out=ro)
    with pytest.raises(ValueError, match="grad=False"):
        fl.mse_loss(x, t, out=np.empty((4, 3)), grad=False)


#: Losses run on the odd-size input (parallel build, float64 only: compile time).
BIG = [("binary_cross_entropy_with_logits", {"pos_weight": "col"}),
       ("binary_cross_entropy", {"weight": "row"}),
       ("huber_loss", {}), ("hinge_loss", {}), ("kl_div", {"reduction": "batchmean"})]


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", BIG, ids=[b[0] for b in BIG])
def test_odd_size_parallel_and_thread_invariance(name, kw, threads):
    rng = np.random.default_rng(11)
    shape = (1029, 917)
    x, t = make_inputs(name, {}, shape, np.float64, rng)
    kw = dict(kw)
    red = kw.pop("reduction", "mean")
    if kw.get("pos_weight") == "col":
        kw["pos_weight"] = rng.uniform(0.5, 2, shape[1])
    if kw.get("weight") == "row":
        kw["weight"] = rng.uniform(0.5, 2, (shape[0], 1))
    if name == "hinge_loss":
        x[0, 5] = t[0, 5]  # a kink, and NaN / inf at block edges
    x.reshape(-1)[4095] = np.nan if name != "binary_cross_entropy" else 0.0
    x.reshape(-1)[4096] = np.inf if name != "binary_cross_entropy" else 1.0
    threads.set_num_threads(1)
    r1 = call(name, x, t, reduction=red, **kw)
    n1 = call(name, x, t, reduction="none", **kw)
    threads.set_num_threads(2)
    r2 = call(name, x, t, reduction=red, **kw)
    n2 = call(name, x, t, reduction="none", **kw)
    assert r1.loss.tobytes() == r2.loss.tobytes()
    assert r1.grad.tobytes() == r2.grad.tobytes()
    assert n1.loss.tobytes() == n2.loss.tobytes()
    e = ref.REFERENCES[name]["numpy"]
    el, eg = e(x, t, reduction=red, **kw)
    assert_close(r2.loss, el)
    assert_close(r2.grad, eg)
    s = call(name, x, t, reduction="sum", **kw)
    assert_close(np.nansum(n2.loss), np.nansum(e(x, t, reduction="none", **kw)[0]))
    assert np.isnan(s.loss) == np.isnan(n2.loss).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_odd_size_serial_blocks(dtype):
    """Sizes around the 4096-element block and the vector tails (serial build)."""
    rng = np.random.default_rng(5)
    for n in (1, 7, 255, 257, 4095, 4096, 4097, 8193, 12289):
        x = rng.standard_normal(n).astype(dtype)
        t = rng.standard_normal(n).astype(dtype)
        res = fl.huber_loss(x, t, reduction="sum")
        el, eg = ref.huber_loss(x, t, reduction="sum")
        assert_close(res.loss, el, dtype, err_msg=str(n))
        assert_close(res.grad, eg, dtype, err_msg=str(n))
        none = fl.huber_loss(x, t, reduction="none").loss
        assert_close(np.sum(none, dtype=np.float64), res.loss, dtype)


# ----------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("variant", VARIANTS, ids=_vid)
def test_central_differences(variant, rng):
    name, kw = variant
    if name == "zero_one_loss":
        return  # piecewise constant: zero gradient checked against the reference
    x, t = make_inputs(name, kw, (4, 5), np.float64, rng)
    if name in ("hinge_loss", "perceptron_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                "squared_hinge_loss"):
        x = x + 0.05 * np.sign(x)  # stay away from kinks
    g = call(name, x, t, reduction="sum", **kw).grad

    def f(z):
        return float(call(name, z, t, reduction="sum", grad=False, **kw).loss)

    central_diff_check(f, x, g, eps=1e-6, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", NAMES)
def test_common_errors(name, rng):
    x, t = make_inputs(name, {}, (3, 4), np.float64, rng)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
        call(name, x, t.T.copy())
    with pytest.raises(TypeError, match="float32 or float64"):
        call(name, x.astype(np.int32), t)
    with pytest.raises(TypeError, match="float32 or float64"):
        call(name, x.astype(np.float16), t)
    with pytest.raises(ValueError, match="valid values are 'none', 'sum', 'mean'"):
        call(name, x, t, reduction="avg")
    if name != "kl_div":
        with pytest.raises(ValueError, match="valid values"):
            call(name, x, t, reduction="batchmean")


def test_option_errors():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        fl.smooth_l1_loss(x, x, beta=-0.1)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        fl.smooth_l1_loss(x, x, beta=math.nan)
    for d in (0.0, -1.0):
        with pytest.raises(ValueError, match="delta must be > 0"):
            fl.huber_loss(x, x, delta=d)
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        fl.sigmoid_focal_loss(x, x, gamma=-1.0)
    for a in (math.nan, 1.5, math.inf):  # alpha_t = alpha t + (1 - alpha)(1 - t) < 0
        with pytest.raises(ValueError, match="alpha must be a number in"):
            fl.sigmoid_focal_loss(x, x, alpha=a)
    for a in (1.0, 0.0, -1.0, -math.inf):  # the edges, and "negative disables weighting"
        assert np.isfinite(fl.sigmoid_focal_loss(x, x, alpha=a).loss)
    with pytest.raises(ValueError, match="margin must be a finite number"):
        fl.hinge_loss(x, np.ones(3), margin=math.inf)
    with pytest.raises(TypeError, match="beta must be a real number"):
        fl.smooth_l1_loss(x, x, beta="big")
    with pytest.raises(ValueError, match=r"weight shape \(4,\) is not broadcastable to input "
                                         r"shape \(2, 3\)"):
        fl.binary_cross_entropy_with_logits(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match=r"pos_weight shape \(2,\)"):
        fl.binary_cross_entropy_with_logits(np.zeros((2, 3)), np.zeros((2, 3)),
                                            pos_weight=np.ones(2))
    with pytest.raises(ValueError, match=r"weight shape \(2, 3, 1\)"):
        fl.binary_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3, 1)))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_bce_range_errors(dtype, rng):
    x = rng.uniform(0, 1, 5000).astype(dtype)  # two blocks: the bad value in the second
    t = rng.uniform(0, 1, 5000).astype(dtype)
    for bad_x, bad_t, what in [(1.5, None, "input"), (-0.1, None, "input"),
                               (np.nan, None, "input"), (None, 1.0001, "target"),
                               (None, np.nan, "target"), (None, -np.inf, "target")]:
        xb, tb = x.copy(), t.copy()
        if bad_x is not None:
            xb[4500] = bad_x
        if bad_t is not None:
            tb[4500] = bad_t
        keep = xb.copy()
        out = np.zeros_like(xb)
        with pytest.raises(ValueError, match=f"all elements of {what} should be between 0 and 1"):
            fl.binary_cross_entropy(xb, tb, out=out)
        np.testing.assert_array_equal(xb, keep)  # the input is never written
        # PyTorch raises too
        with pytest.raises(RuntimeError, match=f"all elements of {what}"):
            F.binary_cross_entropy(torch.tensor(xb), torch.tensor(tb))


@pytest.mark.parametrize("name", MARGIN)
def test_margin_target_errors(name):
    x = np.linspace(-2, 2, 6000)
    for bad in (0.0, 2.0, np.nan, -0.5, np.inf):
        t = np.where(np.arange(6000) % 2 == 0, 1.0, -1.0)
        t[5000] = bad
        keep = x.copy()
        with pytest.raises(ValueError, match=r"only -1 and \+1"):
            call(name, x, t)
        np.testing.assert_array_equal(x, keep)
    # integer and boolean-free +-1 targets of other dtypes are fine
    t = np.where(np.arange(6000) % 3 == 0, 1, -1).astype(np.int8)
    assert np.isfinite(call(name, x, t).loss)


# ---------------------------------------------------------------------- registry
def test_registry_and_groups():
    assert fl.BINARY_LOSSES == sorted(
        ["binary_cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal_loss",
         "soft_margin_loss"])
    assert set(fl.REGRESSION_LOSSES) >= {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                                         "log_cosh_loss"}
    assert set(fl.MARGIN_LOSSES) >= set(MARGIN)
    assert "poisson_nll_loss" in fl.COUNT_LOSSES and "kl_div" in fl.DIVERGENCE_LOSSES
    assert fl.LOSSES["kl_div"].reductions == ("none", "sum", "mean", "batchmean")
    for name in NAMES:
        assert name in ref.REFERENCES and fl.LOSSES[name].fn is getattr(fl, name)


def test_warmup_examples_are_valid():
    spent = fl.warmup(["binary_cross_entropy", "hinge_loss"], dtypes=["float64"],
                      parallel=False)
    assert set(spent) == {"binary_cross_entropy", "hinge_loss"}


def test_on_disk_cache_is_reused_per_loss(tmp_path):
    """Each loss has its own cache entry: a second process loads both without compiling."""
    code = textwrap.dedent("""
        import numpy as np, fastloss as fl
        from fastloss._kernels import pointwise as K
        x = np.linspace(-2, 2, 10); t = np.zeros(10)
        fl.mse_loss(x, t); fl.huber_loss(x, t)  # the one-call small build
        fl.mse_loss(x, t, out=np.empty(10)); fl.huber_loss(x, t, out=np.empty(10))  # the range
        for k in (K.mse_loss, K.huber_loss):
            for build in (k.small, k.serial):
                s = build.stats
                print(k.__name__, len(s.cache_hits), len(s.cache_misses))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTLOSS_CACHE="1")
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(2)]
    assert runs[0] == ["mse_loss", "0", "1"] * 2 + ["huber_loss", "0", "1"] * 2, runs[0]
    assert runs[1] == ["mse_loss", "1", "0"] * 2 + ["huber_loss", "1", "0"] * 2, runs[1]


# ---------------------------------------------------------------------- properties
_PROPERTY_LOSSES = ["binary_cross_entropy_with_logits", "mse_loss", "huber_loss",
                    "log_cosh_loss", "hinge_loss", "sigmoid_focal_loss", "kl_div",
                    "poisson_nll_loss", "smooth_l1_loss", "exponential_loss"]


@st.composite
def _cases(draw):
    name = draw(st.sampled_from(_PROPERTY_LOSSES))
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 40))
    x = draw(hnp.arrays(dtype, n, elements=st.floats(-30, 30, width=32)))
    if name in MARGIN:
        t = draw(hnp.arrays(dtype, n, elements=st.sampled_from([-1.0, 1.0])))
    elif name == "kl_div":
        t = draw(hnp.arrays(dtype, n, elements=st.floats(0, 1, width=32)))
    elif name == "poisson_nll_loss":
        t = draw(hnp.arrays(dtype, n, elements=st.integers(0, 20).map(float)))
    else:
        t = draw(hnp.arrays(dtype, n, elements=st.floats(0, 1, width=32)))
    return name, x, t


@given(_cases())
def test_property_none_sum_mean_out_and_prefix(case):
    name, x, t = case
    none = call(name, x, t, reduction="none")
    s = call(name, x, t, reduction="sum")
    m = call(name, x, t, reduction="mean")
    dt = x.dtype
    # "none" summed is "sum"; "mean" is "sum" / n, also for the gradient
    assert_close(np.sum(none.loss, dtype=np.float64), s.loss, dt, rtol=1e-6 if dt == np.float64
                 else 2e-5)
    np.testing.assert_array_equal(none.grad, s.grad)
    if x.size:
        assert_close(m.loss, s.loss.astype(np.float64) / x.size, dt)
        assert_close(m.grad, s.grad.astype(np.float64) / x.size, dt)
    # out=input gives the same bits as a fresh gradient
    xi = x.copy()
    r = call(name, xi, t, reduction="sum", out=xi)
    assert r.loss.tobytes() == s.loss.tobytes()
    np.testing.assert_array_equal(xi, s.grad)
    # elementwise: a prefix gives the prefix of "none"
    k = x.size // 2
    np.testing.assert_array_equal(call(name, x[:k], t[:k], reduction="none").loss, none.loss[:k])


# ------------------------------------------------------------------- odds and ends
def test_soft_targets_focal_and_pm1_targets_soft_margin(rng):
    x = 2 * rng.standard_normal((5, 6))
    t = rng.random((5, 6))  # soft labels
    for kw in ({}, {"alpha": -1.0, "gamma": 0.5}):
        res = fl.sigmoid_focal_loss(x, t, reduction="none", **kw)
        el, eg = ref.sigmoid_focal_loss(x, t, reduction="none", **kw)
        assert_close(res.loss, el)
        assert_close(res.grad, eg)
    # PyTorch's soft_margin_loss accepts any target value; the spec's error table wants
    # +-1 (a ValueError naming them, as the other margin losses), also on the small path
    for bad in (0.5, 3.0, -2.0, 0.0, np.nan, np.inf):
        t = np.where(rng.random((5, 6)) < 0.5, -1.0, 1.0)
        t[2, 3] = bad
        for kw in ({}, {"out": np.empty_like(x)}, {"reduction": "none"}):
            with pytest.raises(ValueError, match="-1 and \\+1"):
                fl.soft_margin_loss(x, t, **kw)
        with pytest.raises(ValueError, match="-1 and \\+1"):
            fl.soft_margin_loss(np.tile(x, (100, 10)), np.tile(t, (100, 10)))
    # infinite scores: PyTorch's inf loss and NaN gradient where -t x = +inf
    x = np.array([np.inf, -np.inf, np.inf, -np.inf, 2.0])
    t = np.array([-1.0, 1.0, 1.0, -1.0, 1.0])
    res = fl.soft_margin_loss(x, t, reduction="none")
    el, eg = torch_loss_and_grad(F.soft_margin_loss, x, t, reduction="none")
    np.testing.assert_array_equal(res.loss[:4], el[:4])
    np.testing.assert_array_equal(res.grad[:4], eg[:4])
    assert_close(res.loss[4:], el[4:])


def test_many_python_threads_give_identical_results():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 200))
    t = rng.random((300, 200))
    pw = rng.random(200)
    base = fl.binary_cross_entropy_with_logits(x, t, pos_weight=pw)
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: fl.binary_cross_entropy_with_logits(x, t, pos_weight=pw),
                           range(8)))
    for r in outs:
        assert r.loss.tobytes() == base.loss.tobytes()
        np.testing.assert_array_equal(r.grad, base.grad)


def test_inner_loops_vectorise():
    """The fused loops compile to packed SIMD code (data-dependent selects, exp/log)."""
    code = textwrap.dedent("""
        import re, numpy as np, fastloss as fl
        from fastloss._kernels import pointwise as K
        x = np.linspace(-2, 2, 50, dtype=np.float32)
        for name in ("huber_loss", "binary_cross_entropy_with_logits"):
            getattr(fl, name)(x, np.zeros_like(x))
            k = getattr(K, name).serial
            asm = k.inspect_asm(k.signatures[0])
            # packed arithmetic, compares and selects (which ones LLVM picks for the
            # selects depends on the CPU: blendm/max/min on one, cmp + and/masked moves
            # on another)
            ops = (r"\\bv?(?:add|sub|mul|div|max|min|blendm|blendv|and|andn|or|cmp\\w*"
                   r"|fmadd\\w*)ps\\b")
            print(name, len(re.findall(ops, asm)))
    """)
    env = dict(os.environ, FASTLOSS_CACHE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    counts = dict(zip(out[::2], map(int, out[1::2]), strict=True))
    assert counts["huber_loss"] >= 8, counts
    assert counts["binary_cross_entropy_with_logits"] >= 40, counts


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9, 1.5])
def test_sigmoid_focal_fractional_gamma_confident_logits_finite(dtype, gamma):
    """0 < gamma < 1: m**(gamma-1) overflows once 1 - p_t underflows (|x| >~ 104 in
    float32, 746 in float64); the gradient is m**gamma (dm / m), finite, -> 0."""
    big = float(np.finfo(dtype).max)
    xs = np.array([3.0, 20.0, 40.0, 90.0, 101.0, 104.0, 200.0, 700.0, 745.0, 746.0, 1e5,
                   big], dtype=dtype)
    x = np.concatenate([-xs, xs])
    t = np.concatenate([np.zeros_like(xs), np.ones_like(xs)])  # all confidently correct
    for alpha in (0.25, -1.0):
        f = fl.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction="none")
        assert np.all(np.isfinite(f.loss)) and np.all(np.isfinite(f.grad))
        # the exact gradient for t = 0 is a (p**(1+gamma) + gamma ce p**gamma q) >= 0, and
        # its mirror for t = 1; in float64 with p = exp(x) (no underflow for these x)
        x64 = x.astype(np.float64)
        lp = -np.logaddexp(0.0, -np.abs(x64))  # log sigmoid(|x|) = log q_t (close to 0)
        lm = -np.abs(x64) + lp  # log(1 - p_t) = log sigmoid(-|x|)
        ce = -lp
        at = np.where(t == 1, alpha, 1 - alpha) if alpha >= 0 else 1.0
        with np.errstate(over="ignore"):  # (1 + gamma) * -max: -inf, exp 0
            mag = at * (np.exp((1 + gamma) * lm) + gamma * ce * np.exp(gamma * lm + lp))
        want = np.where(t == 1, -mag, mag)
        np.testing.assert_allclose(f.grad, want, rtol=2e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-37 if dtype == np.float32 else 1e-300)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_bce_with_logits_infinite_log_weight_at_underflowing_logits_is_torchs(dtype):
    """An infinite ``lw = 1 + (pos_weight - 1) t`` at a logit whose exp(-|x|) underflows
    (x < -104 in float32, -745 in float64): PyTorch's ``-lw log_sigmoid(x)`` is inf there,
    not the inf * 0 = NaN of the log1p(e) term; a NaN lw (pos_weight 1, target inf) and
    positive logits (PyTorch: inf * -0 = NaN) keep NaN."""
    x = np.array([-800.0, -800.0, -104.0, -120.0, -800.0, 800.0, -800.0, -3.0], dtype)
    t = np.array([1.0, np.inf, 1.0, 1.0, 0.5, 1.0, np.inf, 1.0], dtype)
    pw = np.array([np.inf, 3.0, np.inf, np.inf, -np.inf, np.inf, 1.0, np.inf], dtype)
    res = fl.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none")
    want = F.binary_cross_entropy_with_logits(torch.from_numpy(x), torch.from_numpy(t),
                                              pos_weight=torch.from_numpy(pw),
                                              reduction="none").numpy()
    np.testing.assert_array_equal(res.loss, want)  # (NaN where torch has NaN)
    assert np.isinf(res.loss[:5]).all()


@pytest.mark.parametrize("n", [3, 5000], ids=["one-block", "blocks"])
def test_bce_domain_error_leaves_a_weight_that_is_out_intact(n):
    """out= is the weight array (or overlaps it): a probability outside [0, 1] is found
    before any gradient is written, as when out= is the input or the target."""
    x = np.full(n, 0.5)
    x[-1] = 1.5
    t = np.zeros(n)
    base = np.arange(1.0, n + 2.0)
    for w, out in [(base[:n].copy(), None), (base[1:], base[:n])]:
        buf = w if out is None else base
        before = buf.copy()
        with pytest.raises(ValueError, match="input should be between 0 and 1"):
            fl.binary_cross_entropy(x, t, w, out=w if out is None else out)
        np.testing.assert_array_equal(buf, before)


def test_smooth_l1_beta_that_rounds_to_zero_in_float32_is_l1():
    """beta > 0 that is 0 in float32 (the kernel's arithmetic): the L1 route, as for
    beta == 0, so the gradient at a zero residual is 0 (PyTorch: d / beta = 0), not the
    d >= beta branch's 1."""
    x = np.array([0.0, 1.0, -2.0], np.float32)
    t = np.zeros(3, np.float32)
    res = fl.smooth_l1_loss(x, t, beta=1e-46, reduction="sum")
    xt = torch.from_numpy(x).requires_grad_()
    want = F.smooth_l1_loss(xt, torch.from_numpy(t), beta=1e-46, reduction="sum")
    want.backward()
    np.testing.assert_array_equal(res.grad, xt.grad.numpy())
    assert float(res.loss) == float(want.detach())


@pytest.mark.parametrize("call", [
    lambda: fl.huber_loss(np.zeros(3), np.zeros(3), delta="1"),
    lambda: fl.smooth_l1_loss(np.zeros(3), np.zeros(3), beta=b"1"),
    lambda: fl.sigmoid_focal_loss(np.zeros(3), np.zeros(3), alpha="0.25"),
    lambda: fl.hinge_loss(np.zeros(3), np.ones(3), margin="1"),
    lambda: fl.cross_entropy(np.zeros((2, 3)), np.zeros(2, np.int64), label_smoothing="0.1"),
    lambda: fl.softmax_focal_loss(np.zeros((2, 3)), np.zeros(2, np.int64), gamma="2"),
    lambda: fl.kl_div_with_logits(np.zeros((2, 3)), np.zeros((2, 3)), temperature=np.str_("2")),
    lambda: fl.grad_hess("huber", np.zeros(3), np.zeros(3), delta="1"),
    lambda: fl.grad_hess("focal", np.zeros(3), np.zeros(3), gamma="2"),
], ids=["huber", "smooth_l1", "sigmoid_focal", "hinge", "ce", "softmax_focal", "kl_logits",
        "gh-huber", "gh-focal"])
def test_numeric_options_given_as_strings_are_a_type_error(call):
    """A numeric option given as a string was parsed by float() and accepted; PyTorch's
    functions refuse it ("argument 'delta' must be float, not str"): TypeError."""
    with pytest.raises(TypeError, match="must be a real number"):
        call()


# ------------------------------------------ the engine's output paths (2026-12-04)
def _lane_order_sum(per_element, block=4096, lanes=64):
    """The engine's float64 sum of the per-element losses: per block, 64 lanes each
    summed in index order, then the lanes in order, then the tail; the block partials
    summed as the Python layer sums them (np.sum)."""
    a = np.asarray(per_element).reshape(-1)
    parts = []
    for lo in range(0, a.size, block):
        b = a[lo:lo + block].astype(np.float64)
        k = b.size - b.size % lanes
        acc = b[:k].reshape(-1, lanes).sum(axis=0) if k else np.zeros(lanes)  # in order
        s = 0.0
        for v in acc:
            s += v
        for v in b[k:]:
            s += v
        parts.append(s)
    with np.errstate(invalid="ignore"):
        return float(np.sum(np.array(parts)))


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=_vid)
def test_direct_and_scratch_outputs_give_identical_bits(variant, dtype, parallel, rng):
    """Several blocks: the gradient written straight into a separate buffer, into the
    input (through the scratch block), into the target, and the "none" losses written
    straight out are the same bits, and the reduced loss is the exact lane-order sum of
    the "none" losses."""
    from fastloss._config import force_parallel

    name, kw = variant
    x, t = make_inputs(name, kw, (3 * 4096 + 77,), dtype, rng)
    ctx = force_parallel() if parallel else contextlib.nullcontext()
    with ctx:
        base = call(name, x, t, reduction="sum", **kw)
        none = call(name, x, t, reduction="none", **kw)
        out = np.full_like(x, 7.0)
        res_out = call(name, x, t, reduction="sum", out=out, **kw)
        xi = x.copy()
        res_x = call(name, xi, t, reduction="sum", out=xi, **kw)
        ti = t.copy()
        res_t = call(name, x, ti, reduction="sum", out=ti, **kw)
    for r in (res_out, res_x, res_t):
        assert r.loss.tobytes() == base.loss.tobytes()
        np.testing.assert_array_equal(r.grad, base.grad)
    np.testing.assert_array_equal(none.grad, base.grad)
    assert base.loss == dtype(_lane_order_sum(none.loss))
