"""fastloss.multi_margin_loss against torch.nn.functional.multi_margin_loss.

The PyTorch reference runs in the input's own dtype (float32 inputs in float32 torch), since
that is what PyTorch's CPU kernel computes (per-term products, kinks and float32 overflow
included).
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastloss as fl
from fastloss._kernels.multimargin import WIDE
from tests.conftest import assert_close, central_diff_check
from tests.edges import class_cases, int_dtypes, layouts

REDUCTIONS = ("none", "sum", "mean")
DTYPES = (np.float32, np.float64)


def torch_ref(x, t, w=None, **kw):
    """PyTorch loss and gradient (of ``loss.sum()``) in ``x``'s dtype, as NumPy."""
    x = np.asarray(x)
    xt = torch.tensor(np.array(x), requires_grad=True)
    tt = torch.tensor(np.asarray(t, dtype=np.int64))
    wt = None if w is None else torch.tensor(np.asarray(w, dtype=x.dtype))
    loss = F.multi_margin_loss(xt, tt, weight=wt, **kw)
    (g,) = torch.autograd.grad(loss.sum(), xt)
    return loss.detach().numpy(), g.numpy()


def check(x, t, w=None, err="", **kw):
    """fastloss result == torch result, dtype and shape included; input unchanged."""
    x = np.asarray(x)
    before = x.copy()
    res = fl.multi_margin_loss(x, t, w, **kw)
    el, eg = torch_ref(x, t, w, **kw)
    assert np.array_equal(x, before, equal_nan=True), "input modified"
    red = kw.get("reduction", "mean")
    if red == "none":
        assert isinstance(res.loss, np.ndarray) and res.loss.shape == el.shape, err
    else:
        assert isinstance(res.loss, np.generic), err
    assert res.loss.dtype == x.dtype and res.grad.dtype == x.dtype, err
    assert res.grad.shape == x.shape, err
    assert_close(res.loss, el, x.dtype, err_msg="loss " + err)
    assert_close(res.grad, eg, x.dtype, err_msg="grad " + err)
    return res


def weights(kind, c, dtype, rng):
    if kind is None:
        return None
    if kind == "positive":
        return rng.uniform(0.1, 3.0, c).astype(dtype)
    return rng.standard_normal(c).astype(dtype)  # "signed": negative weights too


# ------------------------------------------------------------------------ vs PyTorch
@pytest.mark.parametrize("wkind", [None, "positive", "signed"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch(dtype, p, wkind, rng):
    for case in class_cases(dtype, rng, big=(wkind is None)):
        if case.x.shape[0] == 0:
            continue  # PyTorch leaves the empty-batch value uninitialised (test_empty)
        w = weights(wkind, case.x.shape[1], dtype, rng)
        for red in REDUCTIONS:
            check(case.x, case.target, w, p=p, reduction=red, err=f"{case.name} {red}")


@pytest.mark.parametrize("c", [2, 5, WIDE - 1, WIDE, WIDE + 7, 300])
@pytest.mark.parametrize("margin", [1.0, 0.0, -0.75, 2.5, 0.1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_margins_and_widths(dtype, margin, c, rng):
    x = rng.standard_normal((23, c)).astype(dtype)
    t = rng.integers(0, c, 23)
    w = weights("signed", c, dtype, rng)
    for p in (1, 2):
        for red in REDUCTIONS:
            check(x, t, None, p=p, margin=margin, reduction=red, err=f"p={p} {red}")
            check(x, t, w, p=p, margin=margin, reduction=red, err=f"w p={p} {red}")


def test_weighted_mean_divides_by_batch_size():
    # PyTorch: "mean" is the sum over samples / N, even with class weights.
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 1.5]])
    t = np.array([2, 0])
    w = np.array([2.0, 3.0, 5.0])
    assert_close(fl.multi_margin_loss(x, t, w, reduction="none").loss, [0.0, 2.0])
    assert fl.multi_margin_loss(x, t, w, reduction="mean").loss == 1.0
    check(x, t, w)


# ------------------------------------------------------------------------------ kinks
@pytest.mark.parametrize("c", [4, WIDE + 3])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_kink_contributes_nothing(dtype, p, c):
    # z = margin - x_y + x_j == 0 exactly: PyTorch's `z > 0` is false, zero subgradient.
    x = np.zeros((3, c), dtype)
    x[:, 1] = 1.0  # target 1, margin 1: z_j = 0 for every j != 1
    t = np.array([1, 1, 1])
    x[1, 2] = 0.5  # one active term (z = 0.5) beside kinks
    res = check(x, t, p=p, reduction="none")
    assert res.loss[0] == 0.0 and res.loss[2] == 0.0
    assert np.all(res.grad[[0, 2]] == 0.0)
    assert np.count_nonzero(res.grad[1]) == 2
    # margin rounded to the input dtype first, z computed in the input dtype
    x = np.zeros((1, c), dtype)
    x[0, 0] = dtype(0.1)
    check(x, np.array([1]), p=p, margin=-0.1, reduction="sum")
    check(x, np.array([1]), p=p, margin=0.1, reduction="sum")


# ----------------------------------------------------------------------- NaN and inf
@pytest.mark.parametrize("c", [3, WIDE + 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inf_like_torch(dtype, c):
    # NaN anywhere in the row (target or not) gives a 0 term (`z > 0` is false);
    # +inf off target / -inf on target give inf loss; inf - inf gives NaN z -> 0.
    t = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0])
    x = np.tile(np.linspace(0.5, 1.5, c).astype(dtype), (9, 1))
    x[0, 0] = np.nan
    x[1, 1] = np.nan
    x[2, 0] = np.inf
    x[3, 1] = np.inf
    x[4, 0] = -np.inf
    x[5, 1] = -np.inf
    x[6, [0, 1]] = np.inf
    x[7, [1, 2]] = -np.inf
    x[8, 2] = np.inf
    w = np.linspace(-1.0, 2.0, c).astype(dtype)
    for p in (1, 2):
        for red in REDUCTIONS:
            check(x, t, p=p, reduction=red, err=f"p={p} {red}")
            check(x, t, w, p=p, reduction=red, err=f"w p={p} {red}")
            for i in range(9):
                check(x[i : i + 1], t[i : i + 1], p=p, reduction=red, err=f"row {i}")


def test_nan_inf_weight_on_inactive_row():
    x = np.array([[5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    t = np.array([0, 0])
    for wy in (np.nan, np.inf, 0.0):
        check(x, t, np.array([wy, 1.0, 1.0]), reduction="none")


# -------------------------------------------------------------------- shapes, empty
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_dimensional_input(dtype, rng):
    x = rng.standard_normal(6).astype(dtype)
    for t in (np.array(4), np.array([4])):
        for red in REDUCTIONS:
            for p in (1, 2):
                res = check(x, t, p=p, reduction=red)
                if red == "none":
                    assert res.loss.shape == t.shape
    # (1, C) with a 0-d target, as PyTorch accepts
    check(x[None], np.array(2), reduction="none")


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    x = np.zeros((0, 4), dtype)
    t = np.zeros(0, np.int64)
    loss, g = fl.multi_margin_loss(x, t, reduction="none")
    assert loss.shape == (0,) and loss.dtype == dtype and g.shape == (0, 4)
    loss, g = fl.multi_margin_loss(x, t, reduction="sum")
    assert loss == 0 and loss.dtype == dtype and g.shape == (0, 4) and g.dtype == dtype
    loss, _ = fl.multi_margin_loss(x, t, reduction="mean")
    assert np.isnan(loss) and loss.dtype == dtype


def test_one_class():
    # C == 1: no j != y, loss 0, gradient 0 (as PyTorch).
    check(np.array([[1.0], [-3.0]]), np.array([0, 0]), reduction="none")


# ------------------------------------------------------------------ layouts, targets
@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts_and_target_dtypes(dtype, rng, tmp_path):
    x = rng.standard_normal((19, 7)).astype(dtype)
    t = rng.integers(0, 7, 19)
    expect = fl.multi_margin_loss(x, t, reduction="none")
    for name, xv in layouts(x, tmp_path):
        before = np.array(xv, copy=True)
        res = fl.multi_margin_loss(xv, t, reduction="none")
        assert np.array_equal(np.asarray(xv), before), name
        assert res.grad.dtype == dtype and res.grad.flags.c_contiguous, name
        assert np.array_equal(res.loss, expect.loss), name
        assert np.array_equal(res.grad, expect.grad), name
    for idt in int_dtypes():
        for name, tv in layouts(t.astype(idt)):
            res = fl.multi_margin_loss(x, tv, reduction="none")
            assert np.array_equal(res.grad, expect.grad), (idt, name)
    res = fl.multi_margin_loss(x.tolist(), t.tolist(), reduction="none")  # array-likes
    assert res.loss.dtype == np.float64


def test_grad_false(rng):
    x = rng.standard_normal((40, 50))
    t = rng.integers(0, 50, 40)
    for p in (1, 2):
        for red in REDUCTIONS:
            full = fl.multi_margin_loss(x, t, p=p, reduction=red)
            only = fl.multi_margin_loss(x, t, p=p, reduction=red, grad=False)
            assert only.grad is None
            assert np.array_equal(only.loss, full.loss)


# ------------------------------------------------------------------------------ out=
@pytest.mark.parametrize("c", [6, WIDE + 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_out(dtype, c, rng):
    x = rng.standard_normal((33, c)).astype(dtype)
    x[0, 1] = np.nan
    x[2, 3] = np.inf
    t = rng.integers(0, c, 33)
    w = weights("signed", c, dtype, rng)
    for p in (1, 2):
        ref = fl.multi_margin_loss(x, t, w, p=p)
        out = np.full_like(x, 7.0)
        res = fl.multi_margin_loss(x, t, w, p=p, out=out)
        assert res.grad is out
        assert np.array_equal(out, ref.grad, equal_nan=True) and res.loss == ref.loss
        xi = x.copy()
        res = fl.multi_margin_loss(xi, t, w, p=p, out=xi)
        assert res.grad is xi
        assert np.array_equal(xi, ref.grad, equal_nan=True) and res.loss == ref.loss
    # 1-D input as its own out
    x1 = x[3].copy()
    ref = fl.multi_margin_loss(x1, np.array(2))
    fl.multi_margin_loss(x1, np.array(2), out=x1)
    assert np.array_equal(x1, ref.grad)


def test_out_is_input_bad_target_leaves_input_intact(rng):
    x = rng.standard_normal((600, 4))
    t = rng.integers(0, 4, 600)
    t[500] = 4
    xi = x.copy()
    with pytest.raises(IndexError, match="Target 4 is out of bounds for 4 classes"):
        fl.multi_margin_loss(xi, t, out=xi)
    assert np.array_equal(xi, x)


def test_out_partial_overlap(rng):
    buf = rng.standard_normal(7 * 5 + 5)
    x = buf[:35].reshape(7, 5)
    t = rng.integers(0, 5, 7)
    ref = fl.multi_margin_loss(x.copy(), t)
    out = buf[5:].reshape(7, 5)
    res = fl.multi_margin_loss(x, t, out=out)
    assert np.array_equal(res.grad, ref.grad)


def test_out_errors():
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="shape"):
        fl.multi_margin_loss(x, t, out=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dtype"):
        fl.multi_margin_loss(x, t, out=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        fl.multi_margin_loss(x, t, out=np.zeros((4, 3)).T)
    ro = np.zeros((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fl.multi_margin_loss(x, t, out=ro)
    with pytest.raises(ValueError, match="grad=False"):
        fl.multi_margin_loss(x, t, out=np.zeros((3, 4)), grad=False)


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("c", [5, WIDE + 9])
def test_thread_count_bitwise(threads, rng, c):
    if fl._config.numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    n = 40000 // c + 1000  # > PARALLEL_MIN_WORK elements, several row blocks
    for dtype in DTYPES:
        x = (3 * rng.standard_normal((n, c))).astype(dtype)
        t = rng.integers(0, c, n)
        w = weights("signed", c, dtype, rng)
        for p in (1, 2):
            for red in REDUCTIONS:
                threads.set_num_threads(1)
                a = fl.multi_margin_loss(x, t, w, p=p, reduction=red)
                threads.set_num_threads(2)
                b = fl.multi_margin_loss(x, t, w, p=p, reduction=red)
                assert np.array_equal(a.loss, b.loss) and a.loss.tobytes() == b.loss.tobytes()
                assert a.grad.tobytes() == b.grad.tobytes()
    # and the parallel result still matches torch
    check(x, t, w, p=2, reduction="mean")


# ----------------------------------------------------------------- finite differences
@pytest.mark.parametrize("c", [5, WIDE + 2])
@pytest.mark.parametrize("p", [1, 2])
def test_central_differences(p, c, rng):
    x = rng.standard_normal((8, c))
    t = rng.integers(0, c, 8)
    w = rng.uniform(-1.0, 2.0, c)
    for red in ("sum", "mean"):
        _, g = fl.multi_margin_loss(x, t, w, p=p, margin=0.8, reduction=red)

        def f(xx, red=red):
            return fl.multi_margin_loss(xx, t, w, p=p, margin=0.8, reduction=red, grad=False)[0]

        central_diff_check(f, x, g, eps=1e-7, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------- errors
def test_errors():
    x = np.zeros((2, 3))
    t = np.array([0, 1])
    for p in (0, 3, 1.5, "1", None, True):
        with pytest.raises(ValueError, match=r"only p == 1 and p == 2 supported"):
            fl.multi_margin_loss(x, t, p=p)
    fl.multi_margin_loss(x, t, p=2.0)  # PyTorch accepts a float 2.0
    with pytest.raises(ValueError, match="weight must be one-dimensional"):
        fl.multi_margin_loss(x, t, np.ones((3, 1)))
    with pytest.raises(ValueError, match="weight must be one-dimensional"):
        fl.multi_margin_loss(x, t, np.float64(2.0))
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3,\)"):
        fl.multi_margin_loss(x, t, np.ones(4))
    with pytest.raises(TypeError, match="weight must be a real numeric"):
        fl.multi_margin_loss(x, t, np.array(["a", "b", "c"]))
    with pytest.raises(IndexError, match=r"Target 3 is out of bounds for 3 classes"):
        fl.multi_margin_loss(x, np.array([0, 3]))
    with pytest.raises(IndexError, match=r"Target -1 is out of bounds for 3 classes"):
        fl.multi_margin_loss(x, np.array([-1, 0]), grad=False)
    with pytest.raises(IndexError, match=r"Target 9 is out of bounds for 3 classes"):
        fl.multi_margin_loss(np.zeros((700, 3)), np.r_[np.zeros(600, int), 9, np.zeros(99, int)])
    with pytest.raises(IndexError, match=r"Target 5 is out of bounds for 3 classes"):
        fl.multi_margin_loss(np.zeros(3), np.array(5))
    with pytest.raises(TypeError, match="float32 or float64"):
        fl.multi_margin_loss(np.zeros((2, 3), np.int64), t)
    with pytest.raises(TypeError, match="float32 or float64"):
        fl.multi_margin_loss(np.zeros((2, 3), np.float16), t)
    with pytest.raises(TypeError, match="integer class indices"):
        fl.multi_margin_loss(x, np.array([0.0, 1.0]))
    with pytest.raises(
        ValueError, match=r"target shape \(3,\) does not match input shape \(2, 3\)"
    ):
        fl.multi_margin_loss(x, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"target shape \(2, 1\) does not match"):
        fl.multi_margin_loss(x, np.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"target shape \(\) does not match"):
        fl.multi_margin_loss(x, np.array(0))
    with pytest.raises(ValueError, match=r"input must have shape \(N, C\) or \(C,\)"):
        fl.multi_margin_loss(np.zeros((2, 3, 4)), t)
    with pytest.raises(ValueError, match=r"C >= 1, got shape \(2, 0\)"):
        fl.multi_margin_loss(np.zeros((2, 0)), t)
    res = fl.multi_margin_loss(np.float64(1.0), np.array(0))  # 0-d: PyTorch's loss 0
    assert res.loss == 0.0 and res.grad.shape == () and res.grad == 0.0
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        fl.multi_margin_loss(x, t, reduction="avg")
    with pytest.raises(TypeError, match="margin must be a real number"):
        fl.multi_margin_loss(x, t, margin="1")


# ------------------------------------------------------------------- registry, docs
def test_registered_and_documented():
    assert "multi_margin_loss" in fl.__all__
    assert fl.LOSSES["multi_margin_loss"].group == "margin"
    assert "multi_margin_loss" in fl.MARGIN_LOSSES
    tests = doctest.DocTestFinder().find(fl.multi_margin_loss, "multi_margin_loss", globs={})
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for tst in tests:
        runner.run(tst)
    assert runner.summarize(verbose=False).failed == 0
    assert sum(len(tst.examples) for tst in tests) >= 4
