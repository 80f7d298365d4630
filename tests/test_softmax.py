"""Softmax family: cross_entropy, nll_loss, kl/js_div_with_logits, softmax_entropy,
softmax_focal_loss and the softmax/log_softmax/logsumexp utilities.

PyTorch (float64 autograd) is the contract where it has the loss; ``reference_softmax``
(float64 NumPy, checked against PyTorch and central differences below) is the contract
where it has not.  float32 results are compared with the float64 answer for the same
(float32-rounded) inputs at the float32 tolerance.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import fastloss as fl
from fastloss._config import force_parallel
from tests import edges
from tests import reference_softmax as ref
from tests.conftest import (
    assert_close,
    assert_result,
    central_diff_check,
    torch_loss_and_grad,
)
from tests.registry import REGISTRY, names

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["none", "sum", "mean"]
DIV_REDUCTIONS = ["none", "sum", "mean", "batchmean"]


def up(a, dtype):
    """``a`` rounded to ``dtype`` then widened to float64: the exact inputs fastloss sees."""
    return np.asarray(a).astype(dtype).astype(np.float64)


def snapshot(*arrays):
    return [np.array(a, copy=True) for a in arrays]


def assert_unchanged(before, *arrays):
    for b, a in zip(before, arrays, strict=True):
        assert np.array_equal(b, np.asarray(a), equal_nan=True), "input was modified"


def none_shape(x, axis=-1):
    x = np.asarray(x)
    return tuple(s for i, s in enumerate(x.shape) if i != axis % x.ndim)


def bitwise_equal(r1, r2):
    l1, g1 = r1
    l2, g2 = r2
    assert np.asarray(l1).dtype == np.asarray(l2).dtype
    assert np.array_equal(np.asarray(l1), np.asarray(l2), equal_nan=True), (l1, l2)
    if g1 is None:
        assert g2 is None
    else:
        assert np.array_equal(g1, g2, equal_nan=True)
        # identical bit patterns (catches -0.0 vs 0.0 and NaN payload differences too)
        assert g1.tobytes() == g2.tobytes()


def torch_ce_expected(x, t, dtype, **kw):
    """Expected (loss, grad) from F.cross_entropy on the dtype-rounded inputs."""
    x64 = up(x, dtype)
    t = np.asarray(t)
    if t.dtype.kind == "f":
        t = up(t, dtype)
    if kw.get("weight") is not None:
        kw = dict(kw, weight=up(kw["weight"], dtype))
    return torch_loss_and_grad(F.cross_entropy, x64, t, **kw)


# Implementation bugs found by this suite get an entry here: each marks exactly the
# failing parameter as xfail(strict=True), so the fix turns it into an XPASS failure,
# which is the cue to delete the entry.  (Emptied after the first round of fixes:
# temperature scaling of huge logits, NaN propagation through 0 log 0 selects, focal
# with a -inf target logit, float32 overflow casts, zero-length class axes,
# logsumexp of +inf rows.)
#: (family case, edge case, dtype name or None for both) -> reason
KNOWN_BUGS: dict = {}


# ============================================================== 0. the references
class TestReferences:
    """The NumPy references themselves: vs PyTorch where it has the loss, vs central
    differences everywhere."""

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("ls", [0.0, 0.1])
    def test_ce_reference_vs_torch_on_edges(self, reduction, ls):
        rng = np.random.default_rng(1)
        for case in edges.class_cases(np.float64, rng, big=False):
            C = case.x.shape[-1]
            w = np.linspace(0.2, 2.0, C)
            for kw in ({}, {"weight": w}):
                got = ref.cross_entropy(case.x, case.target, reduction=reduction,
                                        label_smoothing=ls, **kw)
                exp = torch_loss_and_grad(F.cross_entropy, case.x, case.target,
                                          reduction=reduction, label_smoothing=ls, **kw)
                assert_close(got[0], exp[0], err_msg=case.name)
                assert_close(got[1], exp[1], err_msg=case.name)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_ce_reference_prob_targets_and_kdim_vs_torch(self, reduction):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((7, 5))
        x[1, 2] = -np.inf
        p = rng.random((7, 5))
        p /= p.sum(1, keepdims=True)
        w = rng.random(5) - 0.3
        for kw in ({}, {"weight": w}, {"label_smoothing": 0.2},
                   {"weight": w, "label_smoothing": 1.0}):
            got = ref.cross_entropy(x, p, reduction=reduction, **kw)
            exp = torch_loss_and_grad(F.cross_entropy, x, p, reduction=reduction, **kw)
            assert_close(got[0], exp[0])
            assert_close(got[1], exp[1])
        x = rng.standard_normal((2, 3, 4, 5))
        t = rng.integers(0, 3, (2, 4, 5))
        t[0, 1, 1] = -100
        got = ref.cross_entropy(x, t, axis=1, reduction=reduction)
        exp = torch_loss_and_grad(F.cross_entropy, x, t, reduction=reduction)
        assert_close(got[0], exp[0])
        assert_close(got[1], exp[1])
        got = ref.nll_loss(x, t, axis=1, weight=w[:3], reduction=reduction)
        exp = torch_loss_and_grad(F.nll_loss, x, t, weight=w[:3], reduction=reduction)
        assert_close(got[0], exp[0])
        assert_close(got[1], exp[1])

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_ce_reference_zloss_softcap_vs_torch_composite(self, reduction):
        rng = np.random.default_rng(3)
        x = 3 * rng.standard_normal((9, 6))
        t = rng.integers(0, 6, 9)
        t[2] = -100
        w = rng.random(6) + 0.1

        def composite(x, t, weight=None, z=0.0, c=None, ls=0.0):
            xc = c * torch.tanh(x / c) if c else x
            ce = F.cross_entropy(xc, t, weight=weight, label_smoothing=ls,
                                 reduction="sum" if reduction == "mean" else reduction)
            keep = t != -100
            zt = torch.where(keep, z * torch.logsumexp(xc, -1) ** 2, 0.0)
            if reduction == "none":
                return ce + zt
            if reduction == "sum":
                return ce + zt.sum()
            den = weight[t[keep]].sum() if weight is not None else keep.sum()
            return ce / den + zt.sum() / keep.sum()

        for z, c, ls, ww in [(1e-2, None, 0.0, None), (0.0, 2.0, 0.0, None),
                             (0.1, 3.0, 0.1, w), (1e-4, 30.0, 0.0, w)]:
            got = ref.cross_entropy(x, t, ww, z_loss=z, softcap=c, label_smoothing=ls,
                                    reduction=reduction)
            exp = torch_loss_and_grad(composite, x, t, weight=ww, z=z, c=c, ls=ls)
            assert_close(got[0], exp[0])
            assert_close(got[1], exp[1])

    @pytest.mark.parametrize("name", names("softmax"))
    def test_registry_torch_vs_numpy(self, name):
        """Every registry entry: numpy reference == torch version on finite inputs."""
        e = REGISTRY[name]
        rng = np.random.default_rng(4)
        args, kw = e["inputs"](rng, (6, 9), np.float64)
        reds = DIV_REDUCTIONS if "div" in name else REDUCTIONS
        for reduction in reds:
            got = e["numpy"](*args, reduction=reduction, **kw)
            exp = torch_loss_and_grad(e["torch"], *args, reduction=reduction, **kw)
            assert_close(got[0], exp[0], err_msg=f"{name} {reduction}")
            assert_close(got[1], exp[1], err_msg=f"{name} {reduction}")

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("name", names("softmax"))
    def test_registry_fastloss_vs_numpy(self, name, dtype):
        """Every benchmarked path is tested: registry fastloss == registry numpy."""
        e = REGISTRY[name]
        rng = np.random.default_rng(7)
        args, kw = e["inputs"](rng, (37, 129), dtype)
        reds = DIV_REDUCTIONS if "div" in name else REDUCTIONS
        for reduction in reds:
            res = e["fastloss"](*args, reduction=reduction, **kw)
            exp = e["numpy"](*_round_args(args, dtype), reduction=reduction, **kw)
            assert_result(res, args[0], *exp, reduction, loss_shape=(37,), err_msg=name)

    def test_focal_reference_vs_torch_and_ce(self):
        rng = np.random.default_rng(5)
        x = 2 * rng.standard_normal((8, 5))
        t = rng.integers(0, 5, 8)
        t[3] = -100
        w = rng.random(5) + 0.1
        for gamma in [0.0, 0.5, 1.0, 2.0, 3.5]:
            for reduction in REDUCTIONS:
                got = ref.softmax_focal_loss(x, t, w, gamma=gamma, reduction=reduction)
                exp = torch_loss_and_grad(ref._torch_focal, x, t, w, gamma=gamma,
                                          reduction=reduction)
                assert_close(got[0], exp[0])
                assert_close(got[1], exp[1])
        # gamma = 0 is weighted cross-entropy
        for reduction in REDUCTIONS:
            a = ref.softmax_focal_loss(x, t, w, gamma=0.0, reduction=reduction)
            b = ref.cross_entropy(x, t, w, reduction=reduction)
            assert_close(a[0], b[0])
            assert_close(a[1], b[1])

    CENTRAL = [
        ("ce_all_options", lambda x, r: ref.cross_entropy(
            x, r["t"], r["w"], label_smoothing=0.1, z_loss=1e-2, softcap=4.0, ignore_index=1,
            reduction=r["red"])),
        ("ce_prob", lambda x, r: ref.cross_entropy(x, r["p"], r["w"], label_smoothing=0.2,
                                                   z_loss=1e-3, reduction=r["red"])),
        ("ce_axis0", lambda x, r: (lambda lg: (lg[0], lg[1].T))(ref.cross_entropy(
            x.T, r["t"], z_loss=0.05, softcap=2.0, axis=0, reduction=r["red"]))),
        ("kl_T2", lambda x, r: ref.kl_div_with_logits(x, r["teacher"], temperature=2.0,
                                                      reduction=r["red"])),
        ("kl_masked_teacher", lambda x, r: ref.kl_div_with_logits(
            x, r["teacher_masked"], temperature=0.7, reduction=r["red"])),
        ("js_T1", lambda x, r: ref.js_div_with_logits(x, r["teacher"], reduction=r["red"])),
        ("js_T3_masked", lambda x, r: ref.js_div_with_logits(
            x, r["teacher_masked"], temperature=3.0, reduction=r["red"])),
        ("entropy", lambda x, r: ref.softmax_entropy(x, reduction=r["red"])),
        ("focal_g2", lambda x, r: ref.softmax_focal_loss(x, r["t"], r["w"], gamma=2.0,
                                                         ignore_index=1, reduction=r["red"])),
        ("focal_g1.5", lambda x, r: ref.softmax_focal_loss(x, r["t"], gamma=1.5,
                                                           reduction=r["red"])),
        ("nll", lambda x, r: ref.nll_loss(x, r["t"], r["w"], reduction=r["red"])),
    ]

    @pytest.mark.parametrize("reduction", ["sum", "mean"])
    @pytest.mark.parametrize("case", CENTRAL, ids=[c[0] for c in CENTRAL])
    def test_reference_gradients_central_differences(self, case, reduction):
        rng = np.random.default_rng(6)
        x = 1.5 * rng.standard_normal((6, 7))
        p = rng.random((6, 7))
        teacher_masked = 2 * rng.standard_normal((6, 7))
        teacher_masked[rng.random((6, 7)) < 0.3] = -np.inf
        teacher_masked[:, 0] = 0.0
        r = {
            "t": np.array([0, 1, 6, 3, 1, 2]),
            "w": rng.random(7) + 0.2,
            "p": p / p.sum(1, keepdims=True),
            "teacher": 2 * rng.standard_normal((6, 7)),
            "teacher_masked": teacher_masked,
            "red": reduction,
        }
        _, fn = case
        loss, g = fn(x, r)
        assert np.all(np.isfinite(g))
        central_diff_check(lambda xx: fn(xx, r)[0], x, g)


# ================================================== 1. cross_entropy vs PyTorch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_edge_cases_vs_torch(dtype, reduction):
    rng = np.random.default_rng(10)
    for case in edges.class_cases(dtype, rng):
        before = snapshot(case.x, case.target)
        res = fl.cross_entropy(case.x, case.target, reduction=reduction)
        assert_unchanged(before, case.x, case.target)
        exp = torch_ce_expected(case.x, case.target, dtype, reduction=reduction)
        assert_result(res, case.x, *exp, reduction, loss_shape=none_shape(case.x),
                      err_msg=case.name)


WEIGHTS = {
    "none": lambda C, rng: None,
    "positive": lambda C, rng: rng.random(C) + 0.1,
    "with_zeros": lambda C, rng: np.where(np.arange(C) % 3 == 0, 0.0, rng.random(C) + 0.1),
    "negative": lambda C, rng: rng.random(C) - 0.6,
    "all_nonpositive": lambda C, rng: -rng.random(C),
    "all_zero": lambda C, rng: np.zeros(C),
}
IGNORE = {
    "default_with_some": (-100, [0, 5]),
    "in_range_C//2": (3, None),
    "out_of_range_255": (255, [1, 4, 9]),
    "negative_-1": (-1, [2, 3]),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weight", list(WEIGHTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_weight_ignore_smoothing_vs_torch(dtype, weight, ls, reduction):
    rng = np.random.default_rng(11)
    N, C = 23, 7
    x = (2 * rng.standard_normal((N, C))).astype(dtype)
    x[4, 1] = -np.inf  # a masked logit (never the target)
    w = WEIGHTS[weight](C, rng)
    for ign_name, (ii, rows) in IGNORE.items():
        t = rng.integers(0, C, N)
        t[4] = 2
        if rows is None:
            t[[1, 7, 8]] = ii
        else:
            t[rows] = ii
        before = snapshot(x, t)
        res = fl.cross_entropy(x, t, w, ignore_index=ii, label_smoothing=ls,
                               reduction=reduction)
        assert_unchanged(before, x, t)
        exp = torch_ce_expected(x, t, dtype, weight=w, ignore_index=ii, label_smoothing=ls,
                                reduction=reduction)
        assert_result(res, x, *exp, reduction, loss_shape=(N,), err_msg=ign_name)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_probability_targets_vs_torch(dtype, ls, reduction):
    rng = np.random.default_rng(12)
    N, C = 19, 6
    x = (2 * rng.standard_normal((N, C))).astype(dtype)
    p = rng.random((N, C))
    p /= p.sum(1, keepdims=True)
    p[3] = 0.0
    p[3, 2] = 1.0  # one-hot row
    p = p.astype(dtype)
    x_masked = x.copy()
    x_masked[5, 0] = -np.inf  # 0 * -inf: PyTorch gives NaN loss for that row
    p_masked = p.copy()
    p_masked[5] = [0.0, 0.5, 0.5, 0.0, 0.0, 0.0]
    for xx, pp in ((x, p), (x_masked, p_masked)):
        for w in (None, rng.random(C) + 0.1, rng.random(C) - 0.5):
            res = fl.cross_entropy(xx, pp, w, label_smoothing=ls, reduction=reduction)
            exp = torch_ce_expected(xx, pp, dtype, weight=w, label_smoothing=ls,
                                    reduction=reduction)
            assert_result(res, xx, *exp, reduction, loss_shape=(N,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_1d_input(dtype, reduction):
    rng = np.random.default_rng(13)
    x = rng.standard_normal(9).astype(dtype)
    for t in (np.array(4), np.int64(0), 8):
        res = fl.cross_entropy(x, t, reduction=reduction)
        exp = torch_ce_expected(x, np.asarray(t), dtype, reduction=reduction)
        assert_result(res, x, *exp, reduction, loss_shape=())
    p = rng.random(9).astype(dtype)
    res = fl.cross_entropy(x, p, label_smoothing=0.1, reduction=reduction)
    exp = torch_ce_expected(x, p, dtype, label_smoothing=0.1, reduction=reduction)
    assert_result(res, x, *exp, reduction, loss_shape=())


@pytest.mark.parametrize("shape", edges.kdim_shapes(), ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_kdim_axis1_vs_torch(dtype, shape):
    rng = np.random.default_rng(14)
    x = rng.standard_normal(shape).astype(dtype)
    C = shape[1]
    t = rng.integers(0, C, shape[:1] + shape[2:])
    if t.size:
        t.reshape(-1)[0] = -100
    p = rng.random(shape).astype(dtype)
    w = rng.random(C) + 0.1
    for reduction in REDUCTIONS:
        lshape = shape[:1] + shape[2:]
        res = fl.cross_entropy(x, t, w, axis=1, label_smoothing=0.05, reduction=reduction)
        exp = torch_ce_expected(x, t, dtype, weight=w, label_smoothing=0.05,
                                reduction=reduction)
        assert_result(res, x, *exp, reduction, loss_shape=lshape, err_msg="index")
        res = fl.cross_entropy(x, p, axis=1, reduction=reduction)
        exp = torch_ce_expected(x, p, dtype, reduction=reduction)
        assert_result(res, x, *exp, reduction, loss_shape=lshape, err_msg="prob")
        res = fl.nll_loss(x, t, w, axis=1, reduction=reduction)
        exp = torch_loss_and_grad(F.nll_loss, up(x, dtype), t, weight=up(w, dtype),
                                  reduction=reduction)
        assert_result(res, x, *exp, reduction, loss_shape=lshape, err_msg="nll")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_all_targets_ignored(dtype):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((6, 4)).astype(dtype)
    t = np.full(6, 2)
    for kw in ({}, {"label_smoothing": 0.1}, {"weight": np.array([1.0, 2.0, 3.0, 4.0])},
               {"z_loss": 1e-3}):
        res_mean = fl.cross_entropy(x, t, ignore_index=2, **kw)
        assert np.isnan(res_mean.loss) and res_mean.loss.dtype == dtype
        assert np.array_equal(res_mean.grad, np.zeros_like(x))
        res_sum = fl.cross_entropy(x, t, ignore_index=2, reduction="sum", **kw)
        assert res_sum.loss == 0 and res_sum.loss.dtype == dtype
        assert np.array_equal(res_sum.grad, np.zeros_like(x))
        res_none = fl.cross_entropy(x, t, ignore_index=2, reduction="none", **kw)
        assert np.array_equal(res_none.loss, np.zeros(6, dtype))
        if not kw:
            exp = torch_ce_expected(x, t, dtype, ignore_index=2)
            assert_result(res_mean, x, *exp, "mean")


def test_ce_ignored_rows_with_nan_log_softmax_match_torch():
    """An ignored row whose log-softmax is NaN (all -inf, or holding NaN/+inf) gets a NaN
    gradient row in PyTorch; a finite ignored row gets exact zeros."""
    x = np.array([[1.0, 2.0, 3.0], [-np.inf] * 3, [np.nan, 1.0, 1.0], [np.inf, 0.0, 1.0],
                  [-np.inf, 2.0, 3.0]])
    t = np.array([0, -100, -100, -100, -100])
    for reduction in REDUCTIONS:
        for ls in (0.0, 0.1):
            res = fl.cross_entropy(x, t, label_smoothing=ls, reduction=reduction)
            exp = torch_ce_expected(x, t, np.float64, label_smoothing=ls, reduction=reduction)
            assert_result(res, x, *exp, reduction, loss_shape=(5,))
            assert np.array_equal(res.grad[4], np.zeros(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_empty_batches(dtype):
    for shape, axis in (((0, 5), -1), ((0, 5, 3), 1), ((2, 3, 0, 7), 1), ((0, 1), -1)):
        x = np.zeros(shape, dtype)
        tshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        t = np.zeros(tshape, np.int64)
        for reduction in REDUCTIONS:
            for target in (t, np.zeros(shape, dtype)):
                res = fl.cross_entropy(x, target, axis=axis, reduction=reduction)
                exp_loss = {"none": np.zeros(tshape), "sum": 0.0, "mean": np.nan}[reduction]
                assert_result(res, x, exp_loss, np.zeros(shape), reduction, loss_shape=tshape)
        res = fl.nll_loss(x, t, axis=axis, reduction="mean")
        assert np.isnan(res.loss) and res.grad.shape == shape


@pytest.mark.parametrize("int_dtype", edges.int_dtypes(), ids=lambda d: np.dtype(d).name)
def test_ce_every_integer_target_dtype(int_dtype):
    rng = np.random.default_rng(16)
    x = rng.standard_normal((11, 5))
    t64 = rng.integers(0, 5, 11)
    t = t64.astype(int_dtype)
    base = fl.cross_entropy(x, t64, reduction="none")
    bitwise_equal(fl.cross_entropy(x, t, reduction="none"), base)
    bitwise_equal(fl.nll_loss(x, t, reduction="none"), fl.nll_loss(x, t64, reduction="none"))
    bitwise_equal(fl.softmax_focal_loss(x, t, reduction="none"),
                  fl.softmax_focal_loss(x, t64, reduction="none"))
    # an ignore_index representable in the dtype (255 for uint8, like PyTorch's byte targets)
    ii = 127 if np.dtype(int_dtype) == np.int8 else (255 if np.dtype(int_dtype).kind == "u" else -1)
    t2 = t64.copy()
    t2[[0, 3]] = ii
    exp = fl.cross_entropy(x, t2, ignore_index=ii)
    bitwise_equal(fl.cross_entropy(x, t2.astype(int_dtype), ignore_index=ii), exp)
    exp_t = torch_ce_expected(x, t2, np.float64, ignore_index=ii)
    assert_result(exp, x, *exp_t, "mean")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_layouts_of_input_and_target(dtype, tmp_path):
    rng = np.random.default_rng(17)
    case = [c for c in edges.class_cases(dtype, rng, big=False) if c.name == "neg_inf_masked"][0]
    x, t = case.x, case.target
    w = rng.random(x.shape[1]) + 0.1
    kw = dict(label_smoothing=0.1, reduction="none")
    base = fl.cross_entropy(x, t, w, **kw)
    exp = torch_ce_expected(x, t, dtype, weight=w, **kw)
    assert_result(base, x, *exp, "none", loss_shape=(x.shape[0],))
    for name, xl in edges.layouts(x, tmp_path):
        before = snapshot(xl)
        res = fl.cross_entropy(xl, t, w, **kw)
        assert_unchanged(before, xl)
        assert res.grad.dtype == dtype and res.loss.dtype == dtype, name
        bitwise_equal(res, base)
    for _name, tl in edges.layouts(t, tmp_path):
        bitwise_equal(fl.cross_entropy(x, tl, w, **kw), base)
    for _name, wl in edges.layouts(w, tmp_path):
        bitwise_equal(fl.cross_entropy(x, t, wl, **kw), base)
    # probability targets in every layout, and a 3-D input with axis=1
    p = rng.random(x.shape).astype(dtype)
    base_p = fl.cross_entropy(x, p, reduction="sum")
    for _name, pl in edges.layouts(p, tmp_path):
        bitwise_equal(fl.cross_entropy(x, pl, reduction="sum"), base_p)
    x3 = rng.standard_normal((4, 5, 6)).astype(dtype)
    t3 = rng.integers(0, 5, (4, 6))
    base3 = fl.cross_entropy(x3, t3, axis=1)
    for _name, xl in edges.layouts(x3, tmp_path):
        bitwise_equal(fl.cross_entropy(xl, t3, axis=1), base3)


# ================================================================ 2. nll_loss
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_vs_torch(dtype, reduction):
    rng = np.random.default_rng(20)
    N, C = 31, 9
    x = ref.log_softmax(rng.standard_normal((N, C))).astype(dtype)
    x[3, 4] = -np.inf
    x[5, 0] = np.nan
    for wname in ("none", "positive", "negative", "with_zeros"):
        w = WEIGHTS[wname](C, rng)
        for ii, rows in IGNORE.values():
            t = rng.integers(0, C, N)
            t[3] = 1
            t[[0, 9] if rows is None else rows] = ii
            before = snapshot(x, t)
            res = fl.nll_loss(x, t, w, ignore_index=ii, reduction=reduction)
            assert_unchanged(before, x, t)
            exp = torch_loss_and_grad(F.nll_loss, up(x, dtype), t,
                                      weight=None if w is None else up(w, dtype),
                                      ignore_index=ii, reduction=reduction)
            assert_result(res, x, *exp, reduction, loss_shape=(N,))
    # arbitrary (not normalised) inputs and a 1-D input
    y = rng.standard_normal(7).astype(dtype)
    res = fl.nll_loss(y, np.array(3), reduction=reduction)
    exp = torch_loss_and_grad(F.nll_loss, up(y, dtype), np.array(3), reduction=reduction)
    assert_result(res, y, *exp, reduction, loss_shape=())


# ===================================== 3. the losses PyTorch lacks vs reference_softmax
def _teacher(x):
    """Teacher logits derived from a class case: classes permuted, 0.8 scale, same masks."""
    return np.roll(x, 1, axis=-1) * np.asarray(0.8, x.dtype)


FAMILY = {
    "ce_weight_ls_ignore": ("cross_entropy", ref.cross_entropy, lambda x, t, rng: (
        (np.where(np.arange(t.size) % 4 == 1, 1, t), np.linspace(0.5, 1.5, x.shape[-1])),
        dict(label_smoothing=0.2, ignore_index=1))),
    # name: (fastloss fn name, reference, build(x, t, rng) -> (args, kwargs))
    "ce_zloss": ("cross_entropy", ref.cross_entropy,
                 lambda x, t, rng: ((t,), dict(z_loss=1e-3))),
    "ce_softcap": ("cross_entropy", ref.cross_entropy,
                   lambda x, t, rng: ((t,), dict(softcap=5.0))),
    "ce_zloss_softcap_weight_ls": ("cross_entropy", ref.cross_entropy, lambda x, t, rng: (
        (t, rng.random(x.shape[-1]) + 0.1),
        dict(z_loss=0.01, softcap=3.0, label_smoothing=0.1))),
    "ce_prob_zloss_softcap": ("cross_entropy", ref.cross_entropy, lambda x, t, rng: (
        (np.full(x.shape, 1.0 / x.shape[-1], x.dtype),), dict(z_loss=0.01, softcap=3.0))),
    "kl_T1": ("kl_div_with_logits", ref.kl_div_with_logits,
              lambda x, t, rng: ((_teacher(x),), {})),
    "kl_T2.5": ("kl_div_with_logits", ref.kl_div_with_logits,
                lambda x, t, rng: ((_teacher(x),), dict(temperature=2.5))),
    "js_T1": ("js_div_with_logits", ref.js_div_with_logits,
              lambda x, t, rng: ((_teacher(x),), {})),
    "js_T0.5": ("js_div_with_logits", ref.js_div_with_logits,
                lambda x, t, rng: ((_teacher(x),), dict(temperature=0.5))),
    "entropy": ("softmax_entropy", ref.softmax_entropy, lambda x, t, rng: ((), {})),
    "focal_g2": ("softmax_focal_loss", ref.softmax_focal_loss,
                 lambda x, t, rng: ((t,), {})),
    "focal_g0.5_weight": ("softmax_focal_loss", ref.softmax_focal_loss, lambda x, t, rng: (
        (t, rng.random(x.shape[-1]) + 0.1), dict(gamma=0.5))),
    "focal_g0": ("softmax_focal_loss", ref.softmax_focal_loss,
                 lambda x, t, rng: ((t,), dict(gamma=0.0))),
}


def _family_reductions(fn_name):
    return DIV_REDUCTIONS if "div" in fn_name else REDUCTIONS


def _round_args(args, dtype):
    return tuple(up(a, dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                 for a in args)


CASE_NAMES = [c.name for c in edges.class_cases(np.float64, np.random.default_rng(0), big=False)]


def _family_params():
    out = []
    for name in FAMILY:
        for case in CASE_NAMES:
            for dtype in DTYPES:
                key = (name, case, np.dtype(dtype).name)
                bug = KNOWN_BUGS.get(key) or KNOWN_BUGS.get((name, case, None))
                marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
                out.append(pytest.param(name, case, dtype, marks=marks,
                                        id=f"{name}-{case}-{np.dtype(dtype).name}"))
    return out


@pytest.mark.parametrize(("name", "case_name", "dtype"), _family_params())
def test_family_vs_reference_on_edge_cases(name, case_name, dtype):
    fn_name, reffn, build = FAMILY[name]
    fn = getattr(fl, fn_name)
    rng = np.random.default_rng(30)
    case = next(c for c in edges.class_cases(dtype, rng, big=False) if c.name == case_name)
    args, kw = build(case.x, case.target, rng)
    for reduction in _family_reductions(fn_name):
        before = snapshot(case.x, *args)
        res = fn(case.x, *args, reduction=reduction, **kw)
        assert_unchanged(before, case.x, *args)
        exp = reffn(up(case.x, dtype), *_round_args(args, dtype), reduction=reduction, **kw)
        assert_result(res, case.x, *exp, reduction, loss_shape=none_shape(case.x),
                      err_msg=f"{case.name} {reduction}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_zloss_softcap_denominators_with_ignore_and_weights(dtype):
    """z-loss: z * lse**2 per non-ignored row, divided by the number of non-ignored rows
    under "mean" (Liger), while the CE part divides by the weight sum (PyTorch)."""
    rng = np.random.default_rng(34)
    x = (3 * rng.standard_normal((17, 6))).astype(dtype)
    t = rng.integers(0, 6, 17)
    t[[0, 4, 5, 11]] = -100
    w = (rng.random(6) * 3).astype(dtype)
    for reduction in REDUCTIONS:
        for kw in (dict(z_loss=0.05), dict(z_loss=0.05, softcap=2.5, label_smoothing=0.1),
                   dict(softcap=1.5)):
            res = fl.cross_entropy(x, t, w, reduction=reduction, **kw)
            exp = ref.cross_entropy(up(x, dtype), t, up(w, dtype), reduction=reduction, **kw)
            assert_result(res, x, *exp, reduction, loss_shape=(17,), err_msg=str(kw))
            assert np.all(res.grad[[0, 4, 5, 11]] == 0)
    # explicit decomposition of the mean
    z = 0.05
    ce = fl.cross_entropy(x, t, w, reduction="mean").loss
    lse = ref.logsumexp(up(x, dtype))
    keep = t != -100
    want = np.float64(ce) + z * np.sum(lse[keep] ** 2) / keep.sum()
    assert_close(fl.cross_entropy(x, t, w, z_loss=z, reduction="mean").loss, want, dtype)
    # probability targets: every row counts
    p = np.full(x.shape, 1.0 / 6, dtype)
    res = fl.cross_entropy(x, p, z_loss=z, reduction="mean")
    exp = ref.cross_entropy(up(x, dtype), up(p, dtype), z_loss=z, reduction="mean")
    assert_result(res, x, *exp, "mean")


def _wide_rows(dtype, rng):
    """Rows wide enough for the prefetching exp pass (>= 32 KiB), with a column count that
    is not a multiple of the prefetch chunk, -inf masks, a NaN row and a one-hot row."""
    C = (32768 // np.dtype(dtype).itemsize) + 37
    x = (4 * rng.standard_normal((5, C))).astype(dtype)
    x[1, ::3] = -np.inf
    x[2, 100] = np.nan
    x[3] = -1e30
    x[3, 5] = 1e30
    t = rng.integers(0, C, 5)
    t[1] = 1  # a finite logit of the masked row
    return x, t


@pytest.mark.parametrize("name", list(FAMILY))
@pytest.mark.parametrize("dtype", DTYPES)
def test_family_wide_rows_vs_reference(name, dtype):
    """Rows of >= 32 KiB take the exp pass that prefetches the next row; every row of a
    batch (the last has no next row), odd tails and out=input must agree with the
    reference."""
    fn_name, reffn, build = FAMILY[name]
    fn = getattr(fl, fn_name)
    rng = np.random.default_rng(35)
    x, t = _wide_rows(dtype, rng)
    args, kw = build(x, t, rng)
    reduction = "none"
    exp = reffn(up(x, dtype), *_round_args(args, dtype), reduction=reduction, **kw)
    res = fn(x, *args, reduction=reduction, **kw)
    assert_result(res, x, *exp, reduction, loss_shape=(5,), err_msg=name)
    xin = x.copy()
    res2 = fn(xin, *args, reduction=reduction, out=xin, **kw)
    assert res2.grad is xin
    np.testing.assert_array_equal(res2.grad, res.grad)
    np.testing.assert_array_equal(res2.loss, res.loss)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_and_utilities_wide_rows_vs_torch(dtype):
    rng = np.random.default_rng(36)
    x, t = _wide_rows(dtype, rng)
    xt = torch.tensor(up(x, dtype))
    p = rng.random(x.shape)
    p /= p.sum(-1, keepdims=True)
    for target in (t, p.astype(dtype)):
        for reduction in REDUCTIONS:
            res = fl.cross_entropy(x, target, reduction=reduction)
            exp = ref.cross_entropy(up(x, dtype), up(target, dtype) if target.dtype.kind == "f"
                                    else target, reduction=reduction)
            assert_result(res, x, *exp, reduction, loss_shape=(5,), err_msg=reduction)
            tt = torch.tensor(up(target, dtype)) if target.dtype.kind == "f" else torch.tensor(t)
            xg = xt.clone().requires_grad_(True)
            lt = F.cross_entropy(xg, tt, reduction=reduction)
            lt.sum().backward()
            assert_close(res.loss, lt.detach().numpy(), dtype)
            assert_close(res.grad, xg.grad.numpy(), dtype)
    for fn, tfn in ((fl.logsumexp, torch.logsumexp), (fl.softmax, torch.softmax),
                    (fl.log_softmax, torch.log_softmax)):
        assert_close(fn(x), tfn(xt, -1).numpy(), dtype, err_msg=fn.__name__)


@pytest.mark.parametrize("name", list(FAMILY))
def test_family_gradients_central_differences(name):
    """fastloss's float64 gradient vs central differences of fastloss's own loss."""
    fn_name, _, build = FAMILY[name]
    fn = getattr(fl, fn_name)
    rng = np.random.default_rng(31)
    x = 1.5 * rng.standard_normal((5, 7))
    t = rng.integers(0, 7, 5)
    args, kw = build(x, t, rng)
    for reduction in ("sum", "mean"):
        g = fn(x, *args, reduction=reduction, **kw).grad

        def f(xx, reduction=reduction):
            return fn(xx, *args, reduction=reduction, grad=False, **kw).loss

        central_diff_check(f, x, g)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_family_axis_vs_reference(axis):
    rng = np.random.default_rng(32)
    x = rng.standard_normal((4, 5, 6))
    C = x.shape[axis]
    tshape = none_shape(x, axis)
    t = rng.integers(0, C, tshape)
    teacher = rng.standard_normal(x.shape)
    w = rng.random(C) + 0.1
    calls = [
        ("cross_entropy", ref.cross_entropy, (t, w),
         dict(z_loss=0.01, softcap=4.0, label_smoothing=0.1)),
        ("nll_loss", ref.nll_loss, (t, w), {}),
        ("kl_div_with_logits", ref.kl_div_with_logits, (teacher,), dict(temperature=2.0)),
        ("js_div_with_logits", ref.js_div_with_logits, (teacher,), {}),
        ("softmax_entropy", ref.softmax_entropy, (), {}),
        ("softmax_focal_loss", ref.softmax_focal_loss, (t, w), {}),
    ]
    for fn_name, reffn, args, kw in calls:
        for reduction in _family_reductions(fn_name):
            res = getattr(fl, fn_name)(x, *args, axis=axis, reduction=reduction, **kw)
            exp = reffn(x, *args, axis=axis, reduction=reduction, **kw)
            assert_result(res, x, *exp, reduction, loss_shape=tshape, err_msg=fn_name)


def test_kl_js_entropy_zero_log_zero_convention():
    """-inf teacher logits contribute 0 (0 log 0 = 0); a -inf student logit under
    positive teacher mass gives +inf KL; equal rows give exactly 0."""
    inf = np.inf
    s = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, -inf], [0.0, 0.0, -inf], [1.0, 2.0, 3.0]])
    t = np.array([[-inf, 1.0, 2.0], [0.0, 1.0, -inf], [0.0, 3.0, -inf], [0.0, 2.0, -inf]])
    for fn, reffn in ((fl.kl_div_with_logits, ref.kl_div_with_logits),
                      (fl.js_div_with_logits, ref.js_div_with_logits)):
        res = fn(s, t, reduction="none")
        exp = reffn(s, t, reduction="none")
        assert_result(res, s, *exp, "none", loss_shape=(4,))
        assert np.all(np.isfinite(res.loss)) and np.all(np.isfinite(res.grad))
        assert res.loss[1] == 0.0 or abs(res.loss[1]) < 1e-15
    kl = fl.kl_div_with_logits(t, s, reduction="none")  # student -inf where teacher has mass
    assert kl.loss[0] == np.inf
    ent = fl.softmax_entropy(t, reduction="none")
    assert_result(ent, t, *ref.softmax_entropy(t, reduction="none"), "none", loss_shape=(4,))
    assert np.all(np.isfinite(ent.grad))
    # one surviving logit: entropy 0, gradient 0
    one = fl.softmax_entropy(np.array([[-inf, 5.0, -inf]]), reduction="sum")
    assert one.loss == 0.0 and np.array_equal(one.grad, np.zeros((1, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_and_divergences_ignore_weight_semantics(dtype):
    rng = np.random.default_rng(33)
    x = rng.standard_normal((10, 4)).astype(dtype)
    t = rng.integers(0, 4, 10)
    t[[2, 5]] = -100
    w = (rng.random(4) + 0.2).astype(dtype)
    for reduction in REDUCTIONS:
        res = fl.softmax_focal_loss(x, t, w, gamma=2.0, reduction=reduction)
        exp = ref.softmax_focal_loss(up(x, dtype), t, up(w, dtype), gamma=2.0,
                                     reduction=reduction)
        assert_result(res, x, *exp, reduction, loss_shape=(10,))
        assert np.array_equal(res.grad[[2, 5]], np.zeros((2, 4), dtype))
    # all ignored: mean is nan, grad 0 (as cross-entropy)
    res = fl.softmax_focal_loss(x, np.full(10, -100))
    assert np.isnan(res.loss) and np.array_equal(res.grad, np.zeros_like(x))
    # batchmean divides by input.shape[0], mean by the number of rows
    x3 = rng.standard_normal((3, 4, 5)).astype(dtype)
    s3 = rng.standard_normal((3, 4, 5)).astype(dtype)
    bm = fl.kl_div_with_logits(x3, s3, reduction="batchmean").loss
    sm = fl.kl_div_with_logits(x3, s3, reduction="sum").loss
    mn = fl.kl_div_with_logits(x3, s3, reduction="mean").loss
    assert_close(bm, sm / 3, dtype)
    assert_close(mn, sm / 12, dtype)


# ================================================================ 4. utilities
LSE_CASES = {
    "0_-40": np.array([0.0, -40.0]),
    "1000_1000": np.array([1000.0, 1000.0]),
    "all_-inf": np.array([-np.inf, -np.inf]),
    "one_-inf": np.array([-np.inf]),
    "inf": np.array([np.inf, 0.0]),
    "nan": np.array([np.nan, 1.0]),
    "mixed_1e10": np.array([[1e10, 1e-10], [-1e10, -np.inf]]),
    "full_10000": np.full(1000, 10000.0),
    "arange200": np.arange(200.0),
    "softmax_underflow": np.array([1.0, 325.0, 749.0, 750.0]),
    "softmax_1000_0": np.array([1000.0, 0.0, 0.0, 0.0]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(LSE_CASES))
def test_utilities_scipy_cases_vs_torch(case, dtype):
    x = LSE_CASES[case].astype(dtype)
    xt = torch.tensor(up(x, dtype))
    lse = fl.logsumexp(x)
    exp = torch.logsumexp(xt, -1).numpy()
    assert np.asarray(lse).dtype == dtype and np.shape(lse) == exp.shape
    assert_close(lse, exp, dtype)
    for fn, tfn in ((fl.softmax, torch.softmax), (fl.log_softmax, torch.log_softmax)):
        r = fn(x)
        assert isinstance(r, np.ndarray) and r.dtype == dtype and r.shape == x.shape
        assert_close(r, tfn(xt, -1).numpy(), dtype)


def test_utilities_special_results():
    # SciPy gh-18295 asks for logaddexp(0, -40) = 4.2e-18 exactly; PyTorch (the contract)
    # returns 0.0 there, so only the SPEC tolerance is required.
    assert_close(fl.logsumexp(np.array([0.0, -40.0])), np.logaddexp(0.0, -40.0), np.float64)
    assert fl.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    assert fl.logsumexp(np.zeros((0, 4))).shape == (0,)
    assert fl.softmax(np.zeros((0, 4))).shape == (0, 4)
    assert np.array_equal(fl.softmax(np.array([1000.0, 0, 0, 0])), [1.0, 0, 0, 0])
    assert fl.softmax(np.array([1.0, 325.0, 749.0, 750.0]))[0] == 0.0
    tiny = np.full(100_000, np.log(1e-40))
    assert_close(np.exp(fl.logsumexp(tiny)), 1e-35, np.float64)


def test_utilities_empty_class_axis():
    assert fl.logsumexp(np.zeros(0)) == -np.inf
    e = fl.logsumexp(np.zeros((3, 0)))
    assert e.shape == (3,) and np.all(e == -np.inf)
    assert fl.softmax(np.zeros((3, 0))).shape == (3, 0)
    assert fl.log_softmax(np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_name", CASE_NAMES + ["big_1029x917"])
def test_utilities_on_edge_arrays_vs_torch(case_name, dtype):
    rng = np.random.default_rng(40)
    case = next(c for c in edges.class_cases(dtype, rng) if c.name == case_name)
    xt = torch.tensor(up(case.x, dtype))
    for fn, tfn in ((fl.logsumexp, torch.logsumexp), (fl.softmax, torch.softmax),
                    (fl.log_softmax, torch.log_softmax)):
        r = fn(case.x)
        exp = tfn(xt, -1).numpy()
        assert np.asarray(r).dtype == dtype and np.shape(r) == exp.shape
        assert_close(r, exp, dtype, err_msg=f"{fn.__name__} {case.name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_utilities_axes_and_layouts(dtype, tmp_path):
    rng = np.random.default_rng(41)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    for axis in (0, 1, 2, -1):
        xt = torch.tensor(up(x, dtype))
        assert_close(fl.logsumexp(x, axis=axis), torch.logsumexp(xt, axis).numpy(), dtype)
        assert_close(fl.softmax(x, axis=axis), torch.softmax(xt, axis).numpy(), dtype)
        assert_close(fl.log_softmax(x, axis=axis), torch.log_softmax(xt, axis).numpy(), dtype)
    base = (fl.softmax(x, axis=1), fl.log_softmax(x, axis=1), fl.logsumexp(x, axis=1))
    for name, xl in edges.layouts(x, tmp_path):
        before = snapshot(xl)
        got = (fl.softmax(xl, axis=1), fl.log_softmax(xl, axis=1), fl.logsumexp(xl, axis=1))
        assert_unchanged(before, xl)
        for a, b in zip(got, base, strict=True):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), name


# ============================================================ 5. out= and grad=False
def _family_calls(x, rng):
    """(label, fastloss function, args, kwargs) for every softmax-family loss."""
    C = x.shape[-1]
    t = rng.integers(0, C, x.shape[:-1])
    t.reshape(-1)[:2] = -100
    w = rng.random(C) + 0.1
    teacher = rng.standard_normal(x.shape).astype(x.dtype)
    p = np.full(x.shape, 1.0 / C, x.dtype)
    return [
        ("ce", fl.cross_entropy, (t,), {}),
        ("ce_opts", fl.cross_entropy, (t, w),
         dict(label_smoothing=0.1, z_loss=1e-3, softcap=5.0)),
        ("ce_prob", fl.cross_entropy, (p,), {}),
        ("nll", fl.nll_loss, (t, w), {}),
        ("kl", fl.kl_div_with_logits, (teacher,), dict(temperature=2.0)),
        ("js", fl.js_div_with_logits, (teacher,), {}),
        ("entropy", fl.softmax_entropy, (), {}),
        ("focal", fl.softmax_focal_loss, (t, w), {}),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_and_grad_false(dtype):
    rng = np.random.default_rng(50)
    x = rng.standard_normal((13, 7)).astype(dtype)
    for label, fn, args, kw in _family_calls(x, rng):
        for reduction in REDUCTIONS:
            base = fn(x, *args, reduction=reduction, **kw)
            # fresh out: returned as grad, same bits
            out = np.full_like(x, 7.0)
            res = fn(x, *args, reduction=reduction, out=out, **kw)
            assert res.grad is out, label
            bitwise_equal(res, base)
            # out = input: the gradient overwrites the input
            xx = x.copy()
            res = fn(xx, *args, reduction=reduction, out=xx, **kw)
            assert res.grad is xx, label
            bitwise_equal(res, base)
            # grad=False: same loss, no gradient
            nog = fn(x, *args, reduction=reduction, grad=False, **kw)
            assert nog.grad is None
            assert np.asarray(nog.loss).dtype == dtype
            same = np.array_equal(np.asarray(nog.loss), np.asarray(base.loss), equal_nan=True)
            assert same, label


@pytest.mark.parametrize("dtype", DTYPES)
def test_family_layouts_unchanged_inputs(dtype, tmp_path):
    """Every family member: any layout of the input (and of array arguments) gives the
    C-contiguous result bit for bit, and leaves the input untouched."""
    rng = np.random.default_rng(51)
    x = (2 * rng.standard_normal((9, 11))).astype(dtype)
    x[2, 3] = -np.inf
    for label, fn, args, kw in _family_calls(x, rng):
        base = fn(x, *args, reduction="none", **kw)
        assert base.loss.shape == (9,) and base.loss.dtype == dtype, label
        assert base.grad.shape == x.shape and base.grad.dtype == dtype, label
        for lname, xl in edges.layouts(x, tmp_path / label):
            before = snapshot(xl, *args)
            res = fn(xl, *args, reduction="none", **kw)
            assert_unchanged(before, xl, *args)
            bitwise_equal(res, base)
            assert res.loss.dtype == dtype, (label, lname)
        for k, a in enumerate(args):
            if isinstance(a, np.ndarray) and a.ndim:
                for _lname, al in edges.layouts(a, tmp_path / f"{label}_{k}"):
                    args2 = args[:k] + (al,) + args[k + 1:]
                    bitwise_equal(fn(x, *args2, reduction="none", **kw), base)


# ================================================================= 6. errors
def _raises_naming(exc, fn, *parts):
    with pytest.raises(exc) as ei:
        fn()
    msg = str(ei.value)
    for part in parts:
        assert part in msg, f"{part!r} not in message {msg!r}"
    return msg


class TestErrors:
    x = np.random.default_rng(60).standard_normal((4, 5))

    @pytest.mark.parametrize("bad", [5, 7, -1, -101, 2**40])
    @pytest.mark.parametrize("fn_name", ["cross_entropy", "nll_loss", "softmax_focal_loss"])
    def test_target_out_of_range(self, fn_name, bad):
        t = np.array([0, 1, bad, 2])
        _raises_naming(IndexError, lambda: getattr(fl, fn_name)(self.x, t), str(bad), "5")

    def test_target_out_of_range_uint64_and_kdim(self):
        t = np.array([0, 1, 2**63 + 5, 2], dtype=np.uint64)
        _raises_naming(IndexError, lambda: fl.cross_entropy(self.x, t), str(2**63 + 5), "5")
        x = np.zeros((2, 3, 4))
        t = np.zeros((2, 4), np.int64)
        t[1, 3] = 3
        _raises_naming(IndexError, lambda: fl.cross_entropy(x, t, axis=1), "3")

    @pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128, bool, object])
    def test_non_float_input(self, dtype):
        x = np.zeros((4, 5), dtype=dtype)
        for fn, args in ((fl.cross_entropy, (np.zeros(4, np.int64),)),
                         (fl.softmax_entropy, ()),
                         (fl.kl_div_with_logits, (np.zeros((4, 5)),)),
                         (fl.logsumexp, ())):
            with pytest.raises(TypeError, match=r"float32.*float64|float64.*float32"):
                fn(x, *args)

    def test_non_integer_class_target(self):
        with pytest.raises((TypeError, ValueError)):
            fl.cross_entropy(self.x, np.array([0.0, 1.0, 2.0, 3.0]))
        with pytest.raises(TypeError):
            fl.cross_entropy(self.x, np.array([True, False, True, False]))

    def test_shape_mismatch(self):
        for t in (np.zeros(3, np.int64), np.zeros((4, 2), np.int64), np.zeros((5,), np.int64)):
            with pytest.raises(ValueError) as ei:
                fl.cross_entropy(self.x, t)
            msg = str(ei.value)
            assert str(t.shape) in msg and (str(self.x.shape) in msg or "(4,)" in msg), msg
        with pytest.raises(ValueError, match=re.escape(str((4, 6)))):
            fl.cross_entropy(self.x, np.zeros((4, 6)))
        for fn in (fl.kl_div_with_logits, fl.js_div_with_logits):
            _raises_naming(ValueError, lambda fn=fn: fn(self.x, np.zeros((4, 6))), "(4, 6)",
                           "(4, 5)")
        _raises_naming(ValueError, lambda: fl.nll_loss(self.x, np.zeros(3, np.int64)), "(3,)")

    @pytest.mark.parametrize("ls", [-0.1, 1.5, np.nan])
    def test_label_smoothing_range(self, ls):
        with pytest.raises(ValueError, match="label_smoothing"):
            fl.cross_entropy(self.x, np.zeros(4, np.int64), label_smoothing=ls)

    @pytest.mark.parametrize("fn_name", ["cross_entropy", "nll_loss", "softmax_entropy",
                                         "kl_div_with_logits", "softmax_focal_loss"])
    def test_unknown_reduction(self, fn_name):
        args = {"softmax_entropy": (), "kl_div_with_logits": (np.zeros((4, 5)),)}.get(
            fn_name, (np.zeros(4, np.int64),))
        with pytest.raises(ValueError, match=r"avg.*mean|mean.*avg"):
            getattr(fl, fn_name)(self.x, *args, reduction="avg")

    def test_bad_out(self):
        t = np.zeros(4, np.int64)
        for out, _what in ((np.zeros((4, 6)), "shape"), (np.zeros((4, 5), np.float32), "dtype"),
                          (np.zeros((5, 4)).T, "contiguous"), (np.zeros((8, 5))[::2], "contig")):
            with pytest.raises(ValueError):
                fl.cross_entropy(self.x, t, out=out)
        ro = np.zeros((4, 5))
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only|writeable"):
            fl.cross_entropy(self.x, t, out=ro)
        with pytest.raises(ValueError):
            fl.softmax_entropy(self.x, out=np.zeros((4, 5), np.float32))

    def test_weight_length(self):
        t = np.zeros(4, np.int64)
        for fn in (fl.cross_entropy, fl.nll_loss, fl.softmax_focal_loss):
            with pytest.raises(ValueError, match="weight"):
                fn(self.x, t, np.ones(4))
            with pytest.raises(ValueError, match="weight"):
                fn(self.x, t, np.ones((5, 1)))

    def test_probability_targets_with_nonnegative_ignore_index(self):
        with pytest.raises(ValueError, match="ignore_index"):
            fl.cross_entropy(self.x, np.full((4, 5), 0.2), ignore_index=1)
        with pytest.raises(ValueError, match="ignore_index"):
            fl.cross_entropy(self.x, np.full((4, 5), 0.2), ignore_index=0)
        fl.cross_entropy(self.x, np.full((4, 5), 0.2), ignore_index=-1)  # negative is fine

    def test_options_out_of_range(self):
        s = np.zeros((4, 5))
        for T in (0.0, -1.0):
            with pytest.raises(ValueError, match="temperature"):
                fl.kl_div_with_logits(self.x, s, temperature=T)
            with pytest.raises(ValueError, match="temperature"):
                fl.js_div_with_logits(self.x, s, temperature=T)
        with pytest.raises(ValueError, match="softcap"):
            fl.cross_entropy(self.x, np.zeros(4, np.int64), softcap=0.0)
        with pytest.raises(ValueError, match="gamma"):
            fl.softmax_focal_loss(self.x, np.zeros(4, np.int64), gamma=-1.0)
        with pytest.raises(ValueError, match="axis"):
            fl.cross_entropy(self.x, np.zeros(4, np.int64), axis=2)
        with pytest.raises(ValueError, match="axis"):
            fl.softmax(self.x, axis=-3)


# ======================================================= 7. hypothesis properties
finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def logits_and_targets(draw, max_n=12, max_c=9):
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    seed = draw(st.integers(0, 2**32 - 1))
    r = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    x = scale * r.standard_normal((n, c))
    t = r.integers(0, c, n)
    ignored = r.random(n) < draw(st.sampled_from([0.0, 0.3]))
    t[ignored] = -100
    w = r.random(c) + 0.05
    return x, t, w


@settings(max_examples=30)
@given(logits_and_targets(), st.floats(-100, 100), st.sampled_from(REDUCTIONS),
       st.sampled_from([0.0, 0.2]), st.booleans())
def test_prop_shift_invariance(data, c, reduction, ls, use_w):
    x, t, w = data
    w = w if use_w else None
    a = fl.cross_entropy(x, t, w, label_smoothing=ls, reduction=reduction)
    b = fl.cross_entropy(x + c, t, w, label_smoothing=ls, reduction=reduction)
    assert_close(b.loss, a.loss, rtol=1e-9, atol=1e-10)
    assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-10)
    ea = fl.softmax_entropy(x, reduction=reduction)
    eb = fl.softmax_entropy(x + c, reduction=reduction)
    assert_close(eb.loss, ea.loss, rtol=1e-9, atol=1e-10)
    assert_close(eb.grad, ea.grad, rtol=1e-9, atol=1e-10)
    assert_close(fl.logsumexp(x + c), fl.logsumexp(x) + c, rtol=1e-12, atol=1e-10)


@settings(max_examples=30)
@given(logits_and_targets(), st.sampled_from(["sum", "mean", "none"]),
       st.sampled_from([0.0, 0.3]), st.sampled_from(["cross_entropy", "softmax_focal_loss",
                                                     "nll_loss"]))
def test_prop_ignored_rows_equal_dropped_rows(data, reduction, ls, fn_name):
    x, t, w = data
    fn = getattr(fl, fn_name)
    kw = {"label_smoothing": ls} if fn_name == "cross_entropy" else {}
    keep = t != -100
    full = fn(x, t, w, reduction=reduction, **kw)
    kept = fn(np.ascontiguousarray(x[keep]), t[keep], w, reduction=reduction, **kw)
    assert np.all(full.grad[~keep] == 0)
    if reduction == "none":
        assert np.all(full.loss[~keep] == 0)
        assert_close(full.loss[keep], kept.loss)
    else:
        assert_close(full.loss, kept.loss)
    assert_close(full.grad[keep], kept.grad)


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2), st.sampled_from(REDUCTIONS),
       st.sampled_from(["cross_entropy", "nll_loss", "kl_div_with_logits", "js_div_with_logits",
                        "softmax_entropy", "softmax_focal_loss"]))
def test_prop_axis_equals_moveaxis(seed, axis, reduction, fn_name):
    r = np.random.default_rng(seed)
    shape = tuple(r.integers(1, 6, 3))
    x = r.standard_normal(shape)
    C = shape[axis]
    t = r.integers(0, C, none_shape(x, axis))
    args = {"kl_div_with_logits": (r.standard_normal(shape),),
            "js_div_with_logits": (r.standard_normal(shape),),
            "softmax_entropy": ()}.get(fn_name, (t,))
    fn = getattr(fl, fn_name)
    if reduction == "batchmean":
        return
    a = fn(x, *args, axis=axis, reduction=reduction)
    moved = tuple(np.moveaxis(v, axis, -1) if v.shape == x.shape else v for v in args)
    b = fn(np.moveaxis(x, axis, -1), *moved, axis=-1, reduction=reduction)
    assert_close(a.loss, b.loss)
    assert_close(a.grad, np.moveaxis(b.grad, -1, axis))


@settings(max_examples=30)
@given(logits_and_targets(), st.sampled_from([0.0, 0.1]), st.sampled_from([0.0, 1e-2]),
       st.sampled_from([None, 3.0]), st.booleans())
def test_prop_none_summed_equals_sum(data, ls, z, cap, use_w):
    x, t, w = data
    w = w if use_w else None
    kw = dict(label_smoothing=ls, z_loss=z, softcap=cap)
    none = fl.cross_entropy(x, t, w, reduction="none", **kw)
    tot = fl.cross_entropy(x, t, w, reduction="sum", **kw)
    assert_close(np.sum(none.loss, dtype=np.float64), tot.loss, atol=1e-10)
    assert_close(none.grad, tot.grad)
    teacher = np.roll(x, 1, axis=0)
    for fn, args in ((fl.kl_div_with_logits, (teacher,)), (fl.js_div_with_logits, (teacher,)),
                     (fl.softmax_entropy, ()), (fl.softmax_focal_loss, (t, w))):
        none = fn(x, *args, reduction="none")
        tot = fn(x, *args, reduction="sum")
        assert_close(np.sum(none.loss, dtype=np.float64), tot.loss, atol=1e-10)
        assert_close(none.grad, tot.grad)


@settings(max_examples=30)
@given(logits_and_targets(), st.sampled_from(REDUCTIONS))
def test_prop_plain_ce_grad_rows_sum_to_zero(data, reduction):
    x, t, _ = data
    g = fl.cross_entropy(x, t, reduction=reduction).grad
    assert np.all(np.abs(g.sum(axis=1)) <= 1e-12 * x.shape[1])
    # with probability targets that sum to one, too
    p = np.abs(np.random.default_rng(0).standard_normal(x.shape))
    p /= p.sum(1, keepdims=True)
    g = fl.cross_entropy(x, p, reduction=reduction).grad
    assert np.all(np.abs(g.sum(axis=1)) <= 1e-12 * x.shape[1])


@settings(max_examples=20)
@given(logits_and_targets(), st.sampled_from(REDUCTIONS), st.sampled_from(DTYPES))
def test_prop_out_input_equals_fresh_out(data, reduction, dtype):
    x, t, w = data
    x = x.astype(dtype)
    for _label, fn, args, kw in _family_calls(x, np.random.default_rng(len(t))):
        fresh = fn(x, *args, reduction=reduction, out=np.empty_like(x), **kw)
        xx = x.copy()
        alias = fn(xx, *args, reduction=reduction, out=xx, **kw)
        bitwise_equal(alias, fresh)


# =============================================== 8. threads: bitwise and concurrency
PAR_SHAPE = (263, 131)  # 34453 elements > PARALLEL_MIN_WORK (32768): the parallel path


def _thread_case(seed, dtype):
    """Logits of the parallel path's size with a few -inf, and the generator after them."""
    r = np.random.default_rng(seed)
    n = int(r.integers(PAR_SHAPE[0], PAR_SHAPE[0] + 40))
    x = (3 * r.standard_normal((n, PAR_SHAPE[1]))).astype(dtype)
    x.reshape(-1)[r.integers(0, x.size, 5)] = -np.inf
    return x, r


def _same_bits_on_1_and_2_threads(fn, x, args, kw):
    for reduction in REDUCTIONS:
        fl.set_num_threads(1)
        a = fn(x, *args, reduction=reduction, **kw)
        fl.set_num_threads(2)
        b = fn(x, *args, reduction=reduction, **kw)
        bitwise_equal(a, b)


def test_thread_count_changes_no_bit_of_ce_with_every_option():
    """A case the property below once drew (seed 819): with class weights, label
    smoothing, z-loss and softcap, the target's gradient element of one row differed by
    1 ulp between 1 and 2 threads (its multiply-adds were fused into FMAs differently in
    the serial and the parallel build; they are now one compiled function)."""
    x, r = _thread_case(819, np.float64)
    (_, fn, args, kw), = [c for c in _family_calls(x, r) if c[0] == "ce_opts"]
    n0 = fl.get_num_threads()
    try:
        with force_parallel():  # the parallel build itself, compiled in the call
            _same_bits_on_1_and_2_threads(fn, x, args, kw)
    finally:
        fl.set_num_threads(n0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_changes_no_bit_of_few_class_ce(dtype):
    """The few-class kernel (C <= 32, whole blocks of rows) inlines its per-row scalars:
    its parallel build must still give the serial build's bits, for every option."""
    r = np.random.default_rng(5)
    x = (3 * r.standard_normal((4000, 10))).astype(dtype)
    x.reshape(-1)[r.integers(0, x.size, 5)] = -np.inf
    t = r.integers(0, 10, 4000)
    t[::7] = -100
    w = r.random(10) + 0.1
    n0 = fl.get_num_threads()
    try:
        with force_parallel():
            for kw in ({}, {"label_smoothing": 0.1, "z_loss": 1e-3}, {"z_loss": 1e-2}):
                for args in ((t,), (t, w)):
                    _same_bits_on_1_and_2_threads(fl.cross_entropy, x, args, kw)
    finally:
        fl.set_num_threads(n0)


@settings(max_examples=4)
@given(st.integers(0, 2**32 - 1), st.sampled_from(DTYPES))
def test_prop_thread_count_changes_no_bit(seed, dtype):
    x, r = _thread_case(seed, dtype)
    n0 = fl.get_num_threads()
    try:
        for _label, fn, args, kw in _family_calls(x, r):
            _same_bits_on_1_and_2_threads(fn, x, args, kw)
        for util in (fl.softmax, fl.log_softmax, fl.logsumexp):
            fl.set_num_threads(1)
            a = util(x)
            fl.set_num_threads(2)
            assert np.asarray(util(x)).tobytes() == np.asarray(a).tobytes()
    finally:
        fl.set_num_threads(n0)


def test_concurrent_calls_from_8_threads_match_serial():
    rng = np.random.default_rng(70)
    inputs = []
    for k in range(8):
        x = rng.standard_normal(PAR_SHAPE)
        t = rng.integers(0, PAR_SHAPE[1], PAR_SHAPE[0])
        t[k] = -100
        inputs.append((x, t))
    kw = dict(label_smoothing=0.1, z_loss=1e-4)
    serial = [fl.cross_entropy(x, t, **kw) for x, t in inputs]
    barrier = threading.Barrier(8)

    def work(k):
        barrier.wait()
        out = []
        for j in range(32):
            x, t = inputs[(k + j) % 8]
            out.append(((k + j) % 8, fl.cross_entropy(x, t, **kw)))
        return out

    with ThreadPoolExecutor(max_workers=8) as ex:
        results = list(ex.map(work, range(8)))
    assert sum(len(r) for r in results) == 256
    for r in results:
        for i, res in r:
            bitwise_equal(res, serial[i])


def test_workqueue_layer_calls_from_threads_do_not_crash():
    """Under the non-thread-safe workqueue layer, fastloss must run off-main-thread calls
    serially (workqueue aborts the process on concurrent parallel launches)."""
    code = textwrap.dedent(
        """
        import threading
        import numpy as np
        import fastloss as fl
        from concurrent.futures import ThreadPoolExecutor
        assert fl.threading_layer() == "workqueue", fl.threading_layer()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((263, 131))
        t = rng.integers(0, 131, 263)
        ref = fl.cross_entropy(x, t)
        ref_s = fl.softmax(x)
        barrier = threading.Barrier(4)
        def work(k):
            barrier.wait()
            for _ in range(8):
                r = fl.cross_entropy(x, t)
                assert r.loss == ref.loss and np.array_equal(r.grad, ref.grad)
                assert np.array_equal(fl.softmax(x), ref_s)
            return k
        with ThreadPoolExecutor(4) as ex:
            assert sorted(ex.map(work, range(4))) == [0, 1, 2, 3]
        print("OK", fl.threading_layer())
        """
    )
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK workqueue" in proc.stdout


def test_in_place_row_loops_vectorise():
    """out=input: the rows that are their own output take one-array loops (a loop reading
    one array and writing another behind LLVM's runtime overlap check runs scalar when
    the two are the same row: cross-entropy in place was 2.8x slower than into a buffer)."""
    import subprocess
    import sys
    import textwrap

    x = np.random.default_rng(0).standard_normal((70, 300)).astype(np.float32)
    y = np.arange(70) % 300
    for kw in ({"label_smoothing": 0.1}, {"softcap": 5.0}, {}):
        xx = x.copy()
        bitwise_equal(fl.cross_entropy(xx, y, out=xx, **kw), fl.cross_entropy(x, y, **kw))
    code = textwrap.dedent("""
        import re, numpy as np
        from fastloss._kernels import softmax as K
        row = np.linspace(-3, 0, 300, dtype=np.float32)
        w = np.ones(300)
        m = np.float32(0)
        calls = {
            "exp_shifted_same": (K._exp_shifted_same, (row, m, row[:0])),
            "exp_scaled": (K._exp_scaled, (row, 0.5, m, row)),
            "scale_sub_w": (K._scale_sub_w, (row, row, 2.0, 0.1, w)),
            "entropy_grad": (K._entropy_grad, (row, row, m, row.copy(), 0.5, 0.1, 1.0)),
        }
        packed = r"\\bv(?:add|sub|mul|fmadd\\w*|fmsub\\w*|max|min|cmp\\w*|blendm|and|or)p[sd]\\b"
        for name, (fn, args) in calls.items():
            fn(*args)
            print(name, len(re.findall(packed, fn.inspect_asm(fn.signatures[0]))))
    """)
    env = dict(os.environ, FASTLOSS_CACHE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    counts = dict(zip(out[::2], map(int, out[1::2]), strict=True))
    assert all(v >= 8 for v in counts.values()), counts


def test_float32_target_gradient_has_no_cancellation_class_axis_not_last_and_focal():
    """The (N, C, d...) kernel and the focal kernel computed the target's gradient as the
    float32 scaled softmax minus (1 - eps) r: 6e-4 relative at p = 1 - 1.3e-5 and +1e-8
    (the wrong sign) at a saturated row, where PyTorch's float32 and the classes-last
    kernels give 0.  Now one float64 expression, as in the row kernels."""
    x = np.array([[12.0, -3.0, 0.5, 1.0], [40.0, 0.0, 0.0, 0.0], [0.5, 0.2, 0.1, 0.0]],
                 np.float32)
    y = np.array([0, 0, 1])
    for kw in ({}, {"z_loss": 1e-4}, {"label_smoothing": 0.1},
               {"weight": np.array([0.3, 0.7, 1.1, 2.0])}):
        g64 = fl.cross_entropy(x.astype(np.float64), y, **kw).grad
        g32 = fl.cross_entropy(x[:, :, None].copy(), y[:, None], axis=1, **kw).grad[:, :, 0]
        np.testing.assert_allclose(g32, g64, rtol=1e-6, atol=1e-12)
    for gamma in (0.0, 0.5, 2.0):
        g64 = fl.softmax_focal_loss(x.astype(np.float64), y, gamma=gamma).grad
        g32 = fl.softmax_focal_loss(x, y, gamma=gamma).grad
        np.testing.assert_allclose(g32[0], g64[0], rtol=1e-6)
        assert g32[1, 0] == 0.0, gamma  # p == 1 in float32: 0, as PyTorch's


def test_target_gradient_is_exactly_zero_where_the_softmax_is_one():
    """One class, or a row whose softmax rounds to exactly 1 at the target: PyTorch's
    float64 gradient there is exactly 0, with class weights and in every layout.  The
    last product of softmax minus target was fused into an FMA (fastmath ``contract``),
    which left its rounding error: -1.85e-18 for a weight of 0.3."""
    w1 = np.array([0.3])
    for x, y, w in [
        (np.zeros((4, 1)), np.zeros(4, np.int64), w1),  # one class, few-class kernel
        (np.zeros((3, 1, 2)), np.zeros((3, 2), np.int64), w1),  # class axis not last
        (np.array([[40.0, 0.0, 0.0], [0.0, 1.0, 2.0]]), np.array([0, 2]),
         np.array([0.3, 0.7, 1.1])),  # a saturated row
        (np.pad(np.array([[40.0, 0.0, 0.0], [0.0, 1.0, 2.0]]), ((0, 0), (0, 60)),
                constant_values=-50.0), np.array([0, 2]),
         np.r_[[0.3, 0.7, 1.1], np.ones(60)]),  # the same in the wide-row kernel
    ]:
        for red in ("mean", "sum"):
            res = fl.cross_entropy(x, y, w, reduction=red, axis=1)
            xt = torch.tensor(x, requires_grad=True)
            want = F.cross_entropy(xt, torch.tensor(y), torch.tensor(w), reduction=red)
            want.backward()
            tgt = np.take_along_axis(res.grad, np.expand_dims(y, 1), axis=1)
            assert (tgt.ravel()[: 4 if x.shape[1] == 1 else 1] == 0.0).all(), (x.shape, red)
            np.testing.assert_allclose(res.grad, xt.grad.numpy(), rtol=1e-12, atol=0)
            assert float(res.loss) == pytest.approx(float(want.detach()), rel=1e-12)


def test_label_smoothing_with_weights_whose_sum_overflows_matches_torch():
    """Label smoothing spreads the sum of all class weights; when that sum overflows
    (weights near 1e308), PyTorch's term-by-term sum stays finite: the replay takes over."""
    x = np.array([[2.0, 1.0, -3.0, -3.0], [5.0, 4.0, 0.0, 0.0]])
    y = np.array([0, 1])
    w = np.array([1e308, 1e308, 1.0, 1.0])
    for axis_last in (True, False):
        for red in ("mean", "sum", "none"):
            xx, yy = (x, y) if axis_last else (x[:, :, None].copy(), y[:, None])
            res = fl.cross_entropy(xx, yy, w, label_smoothing=0.1, reduction=red, axis=1)
            xt = torch.tensor(xx, requires_grad=True)
            lt = F.cross_entropy(xt, torch.tensor(yy), torch.tensor(w), label_smoothing=0.1,
                                 reduction=red)
            lt.backward(torch.ones_like(lt))
            if red == "none":  # (the sum of the two rows overflows in PyTorch too)
                assert np.isfinite(res.loss).all() and np.isfinite(res.grad).all()
            np.testing.assert_allclose(res.loss, lt.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(res.grad, xt.grad.numpy(), rtol=1e-12)


def test_float32_target_gradient_has_no_cancellation_in_the_few_class_kernel():
    """softmax - 1 at the target, where the softmax is near 1 (C = 1, or a dominant
    class): the few-class kernel subtracted in float32 (0.00059998 for 0.00060000 with
    z_loss, C = 1: 3.3e-5 relative); it is one float64 expression, as in the wide one."""
    x = np.array([[0.3], [2.0]], np.float32)
    y = np.array([0, 0])
    for kw in ({"z_loss": 1e-3}, {"z_loss": 1e-3, "label_smoothing": 0.1}):
        g32 = fl.cross_entropy(x, y, **kw).grad
        g64 = fl.cross_entropy(x.astype(np.float64), y, **kw).grad
        np.testing.assert_allclose(g32, g64, rtol=2e-7)
    x = np.array([[12.0, -3.0, 0.5, 1.0]], np.float32)  # p_target = 1 - 1.3e-5
    for C_wide in (False, True):
        xx = np.pad(x, ((0, 0), (0, 40)), constant_values=-30.0) if C_wide else x
        g32 = fl.cross_entropy(xx, np.array([0]), z_loss=1e-4).grad
        g64 = fl.cross_entropy(xx.astype(np.float64), np.array([0]), z_loss=1e-4).grad
        np.testing.assert_allclose(g32[0, 0], g64[0, 0], rtol=1e-5)
