"""fastloss.torch against real PyTorch: values and gradients against torch.nn.functional
(or, for the losses PyTorch lacks, against the same formula written in torch ops), float64
gradcheck of every loss, modules, no_grad, layouts, errors, torch.compile and a training
loop on scikit-learn's digits whose loss curve must equal F.cross_entropy's."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastloss as fl  # noqa: E402
import fastloss.torch as flt  # noqa: E402
import fastloss.torch.nn as fltnn  # noqa: E402
from tests.conftest import assert_close, torchvision_sigmoid_focal_loss  # noqa: E402

F64, F32 = torch.float64, torch.float32
DTYPES = [pytest.param(F64, id="f64"), pytest.param(F32, id="f32")]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=F64, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=F64).to(dtype)


def uniform(lo, hi, *shape, dtype=F64, seed=0):
    return (lo + (hi - lo) * torch.rand(*shape, generator=gen(seed), dtype=F64)).to(dtype)


def labels(n, C, seed=0, ignore=None):
    y = torch.randint(0, C, n if isinstance(n, tuple) else (n,), generator=gen(seed))
    if ignore is not None:
        y.view(-1)[::3] = ignore
    return y


def pm1(*shape, seed=0, dtype=F64):
    return (torch.rand(*shape, generator=gen(seed)) < 0.5).to(dtype) * 2 - 1


def away_from(x, points, gap=0.05):
    """Push the values of ``x`` at least ``gap`` away from each of ``points`` (kinks)."""
    x = x.clone()
    for p in points:
        near = (x - p).abs() < gap
        x[near] = p + gap * torch.where(x[near] >= p, 1.0, -1.0).to(x.dtype) * 2
    return x


def close(actual, expected, dtype=None, **kw):
    a = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    e = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert_close(a, np.asarray(e, dtype=np.float64), dtype or a.dtype, **kw)


# ------------------------------------------------- references for fastloss-only losses
def _reduce(per, reduction, batch=None):
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if reduction == "batchmean":
        return per.sum() / batch
    return per.mean()


def ref_softmax_focal_loss(x, t, weight=None, *, gamma=2.0, ignore_index=-100, axis=-1,
                           reduction="mean"):
    lp = torch.moveaxis(torch.log_softmax(x, dim=axis), axis, -1)
    valid = t != ignore_index
    tt = torch.where(valid, t, 0)
    lpy = lp.gather(-1, tt.unsqueeze(-1)).squeeze(-1)
    w = (weight[tt] if weight is not None else torch.ones_like(lpy)) * valid
    per = -w * (1 - lpy.exp()) ** gamma * lpy
    if reduction == "mean":
        return per.sum() / w.sum()
    return _reduce(per, reduction)


def ref_kl_div_with_logits(x, t, *, temperature=1.0, axis=-1, reduction="batchmean"):
    T = temperature
    ls, lt = torch.log_softmax(x / T, dim=axis), torch.log_softmax(t / T, dim=axis)
    per = T * T * (lt.exp() * (lt - ls)).sum(axis)
    return _reduce(per, reduction, x.shape[0])


def ref_js_div_with_logits(x, t, *, temperature=1.0, axis=-1, reduction="batchmean"):
    lp, lq = torch.log_softmax(x / temperature, dim=axis), torch.log_softmax(t / temperature,
                                                                             dim=axis)
    p, q = lp.exp(), lq.exp()
    lm = torch.log((p + q) / 2)
    per = 0.5 * (p * (lp - lm)).sum(axis) + 0.5 * (q * (lq - lm)).sum(axis)
    return _reduce(per, reduction, x.shape[0])


def ref_softmax_entropy(x, *, axis=-1, reduction="mean"):
    lp = torch.log_softmax(x, dim=axis)
    return _reduce(-(lp.exp() * lp).sum(axis), reduction)


def _margin_ref(f):
    def ref(x, t, *, reduction="mean", **kw):
        return _reduce(f(x, t, **kw), reduction)

    return ref


REFERENCES = {
    "softmax_focal_loss": ref_softmax_focal_loss,
    "sigmoid_focal_loss": torchvision_sigmoid_focal_loss,
    "kl_div_with_logits": ref_kl_div_with_logits,
    "js_div_with_logits": ref_js_div_with_logits,
    "softmax_entropy": ref_softmax_entropy,
    "hinge_loss": _margin_ref(lambda x, t, margin=1.0: torch.clamp(margin - t * x, min=0)),
    "squared_hinge_loss": _margin_ref(
        lambda x, t, margin=1.0: torch.clamp(margin - t * x, min=0) ** 2
    ),
    "perceptron_loss": _margin_ref(lambda x, t: torch.clamp(-t * x, min=0)),
    "exponential_loss": _margin_ref(lambda x, t: torch.exp(-t * x)),
    "zero_one_loss": _margin_ref(lambda x, t: (t * x <= 0).to(x.dtype) + 0 * x),
    "log_cosh_loss": _margin_ref(lambda x, t: torch.log(torch.cosh(x - t))),
}


def reference(name):
    return REFERENCES.get(name) or getattr(F, name)


# ------------------------------------------------------------------------- the cases
# name -> list of (id, make(dtype) -> (input, args, kwargs), target_differentiable).
# Inputs stay away from each loss's kinks so that gradcheck's differences are smooth.
def _probs(*shape, dtype, seed, axis=-1):
    return torch.softmax(randn(*shape, seed=seed), dim=axis).to(dtype)


CASES = {
    "cross_entropy": [
        ("index", lambda d: (randn(6, 5, dtype=d), (labels(6, 5),), {})),
        ("weight-ignore-smooth", lambda d: (
            randn(7, 5, dtype=d), (labels(7, 5, ignore=-100),),
            {"weight": uniform(0.5, 2, 5, dtype=d), "label_smoothing": 0.1})),
        ("ignore_index=2", lambda d: (
            randn(6, 4, dtype=d), (labels(6, 4, seed=1),), {"ignore_index": 2})),
        ("prob-weight-smooth", lambda d: (
            randn(5, 4, dtype=d), (_probs(5, 4, dtype=d, seed=3),),
            {"weight": uniform(0.5, 2, 4, dtype=d), "label_smoothing": 0.2})),
        ("axis1", lambda d: (
            randn(3, 5, 4, dtype=d), (labels((3, 4), 5, ignore=-100),),
            {"weight": uniform(0.5, 2, 5, dtype=d), "label_smoothing": 0.05})),
        ("axis1-prob", lambda d: (
            randn(2, 4, 3, dtype=d), (_probs(2, 4, 3, dtype=d, seed=4, axis=1),), {})),
        ("1d", lambda d: (randn(5, dtype=d), (torch.tensor(3),), {})),
    ],
    "nll_loss": [
        ("weight-ignore", lambda d: (
            torch.log_softmax(randn(7, 4, dtype=d), 1), (labels(7, 4, ignore=-100),),
            {"weight": uniform(0.5, 2, 4, dtype=d)})),
        ("axis1", lambda d: (
            torch.log_softmax(randn(2, 4, 3, 2, dtype=d), 1), (labels((2, 3, 2), 4),), {})),
    ],
    "multi_margin_loss": [
        ("p1", lambda d: (randn(6, 4, dtype=d), (labels(6, 4),), {})),
        ("p2-margin-weight", lambda d: (
            randn(6, 4, dtype=d), (labels(6, 4, seed=2),),
            {"p": 2, "margin": 0.7, "weight": uniform(0.5, 2, 4, dtype=d)})),
    ],
    "binary_cross_entropy": [
        ("weight", lambda d: (
            uniform(0.05, 0.95, 4, 5, dtype=d), (uniform(0, 1, 4, 5, dtype=d, seed=1),),
            {"weight": uniform(0.5, 2, 5, dtype=d)})),
    ],
    "binary_cross_entropy_with_logits": [
        ("plain", lambda d: (randn(4, 5, dtype=d), (uniform(0, 1, 4, 5, dtype=d, seed=1),),
                             {})),
        ("weight-pos_weight", lambda d: (
            randn(4, 5, dtype=d), (uniform(0, 1, 4, 5, dtype=d, seed=1),),
            {"weight": uniform(0.5, 2, 4, 1, dtype=d), "pos_weight": uniform(0.5, 3, 5,
                                                                            dtype=d)})),
    ],
    "mse_loss": [
        ("plain", lambda d: (randn(4, 5, dtype=d), (randn(4, 5, dtype=d, seed=1),), {})),
        ("weight", lambda d: (randn(4, 5, dtype=d), (randn(4, 5, dtype=d, seed=1),),
                              {"weight": uniform(0.1, 2, 4, 5, dtype=d)})),
    ],
    "l1_loss": [
        ("plain", lambda d: (away_from(randn(4, 5), [0]).to(d), (torch.zeros(4, 5, dtype=d),),
                             {})),
        ("weight", lambda d: (away_from(randn(4, 5), [0]).to(d),
                              (torch.zeros(4, 5, dtype=d),),
                              {"weight": uniform(0.1, 2, 4, 5, dtype=d)})),
    ],
    "smooth_l1_loss": [
        ("beta", lambda d: (away_from(2 * randn(4, 5), [0, 0.5, -0.5]).to(d),
                            (torch.zeros(4, 5, dtype=d),), {"beta": 0.5})),
    ],
    "huber_loss": [
        ("delta", lambda d: (away_from(2 * randn(4, 5), [0, 0.7, -0.7]).to(d),
                             (torch.zeros(4, 5, dtype=d),), {"delta": 0.7})),
        ("weight", lambda d: (away_from(2 * randn(4, 5), [0, 1, -1]).to(d),
                              (torch.zeros(4, 5, dtype=d),),
                              {"weight": uniform(0.1, 2, 4, 5, dtype=d)})),
    ],
    "kl_div": [
        ("probs", lambda d: (torch.log_softmax(randn(4, 5), 1).to(d),
                             (_probs(4, 5, dtype=d, seed=1),), {})),
        ("log_target", lambda d: (torch.log_softmax(randn(4, 5), 1).to(d),
                                  (torch.log_softmax(randn(4, 5, seed=1), 1).to(d),),
                                  {"log_target": True})),
    ],
    "poisson_nll_loss": [
        ("log_input", lambda d: (randn(4, 5, dtype=d), (uniform(0.1, 4, 4, 5, dtype=d),), {})),
        ("rate-full", lambda d: (
            uniform(0.2, 3, 4, 5, dtype=d),
            (away_from(uniform(0.1, 4, 4, 5, seed=1), [1]).to(d),),
            {"log_input": False, "full": True, "eps": 1e-6})),
    ],
    "soft_margin_loss": [
        ("pm1", lambda d: (randn(4, 5, dtype=d), (pm1(4, 5, dtype=d),), {})),
    ],
    # fastloss-only losses (references above)
    "softmax_focal_loss": [
        ("weight-ignore", lambda d: (randn(7, 4, dtype=d), (labels(7, 4, ignore=-100),),
                                     {"weight": uniform(0.5, 2, 4, dtype=d), "gamma": 1.5})),
        ("axis1", lambda d: (randn(2, 4, 3, dtype=d), (labels((2, 3), 4),), {"axis": 1})),
    ],
    "sigmoid_focal_loss": [
        ("soft", lambda d: (randn(4, 5, dtype=d), (uniform(0, 1, 4, 5, dtype=d, seed=1),),
                            {"alpha": 0.3, "gamma": 1.5})),
    ],
    "kl_div_with_logits": [
        ("T2", lambda d: (randn(4, 5, dtype=d), (randn(4, 5, dtype=d, seed=1),),
                          {"temperature": 2.0})),
        ("3d-axis1", lambda d: (randn(2, 4, 3, dtype=d), (randn(2, 4, 3, dtype=d, seed=1),),
                                {"axis": 1})),
    ],
    "js_div_with_logits": [
        ("T", lambda d: (randn(4, 5, dtype=d), (randn(4, 5, dtype=d, seed=1),),
                         {"temperature": 1.5})),
        ("3d", lambda d: (randn(2, 3, 4, dtype=d), (randn(2, 3, 4, dtype=d, seed=1),), {})),
    ],
    "softmax_entropy": [
        ("rows", lambda d: (randn(4, 5, dtype=d), (), {})),
        ("axis1", lambda d: (randn(2, 4, 3, dtype=d), (), {"axis": 1})),
    ],
    "hinge_loss": [
        ("margin", lambda d: (away_from(randn(4, 5), [0.8, -0.8]).to(d), (torch.ones(4, 5,
                                                                                  dtype=d),),
                              {"margin": 0.8})),
    ],
    "squared_hinge_loss": [
        ("pm1", lambda d: (away_from(randn(4, 5), [1, -1]).to(d), (pm1(4, 5, dtype=d),), {})),
    ],
    "perceptron_loss": [
        ("pm1", lambda d: (away_from(randn(4, 5), [0]).to(d), (pm1(4, 5, dtype=d),), {})),
    ],
    "exponential_loss": [
        ("pm1", lambda d: (randn(4, 5, dtype=d), (pm1(4, 5, dtype=d),), {})),
    ],
    "zero_one_loss": [
        ("pm1", lambda d: (away_from(randn(4, 5), [0]).to(d), (pm1(4, 5, dtype=d),), {})),
    ],
    "log_cosh_loss": [
        ("plain", lambda d: (randn(4, 5, dtype=d), (randn(4, 5, dtype=d, seed=1),), {})),
    ],
}

#: losses whose gradient with respect to the target is supported (documented).
TARGET_DIFFERENTIABLE = {
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss",
    "smooth_l1_loss", "huber_loss", "kl_div", "poisson_nll_loss", "log_cosh_loss",
    "js_div_with_logits",
}


def _target_differentiable(name, case_id):
    if name == "cross_entropy":
        return case_id.startswith(("prob", "axis1-prob"))
    return name in TARGET_DIFFERENTIABLE


def reductions(name):
    return fl.LOSSES[name].reductions


ALL = [
    pytest.param(name, cid, make, id=f"{name}-{cid}")
    for name, cases in CASES.items()
    for cid, make in cases
]


def test_every_registered_loss_is_wrapped_and_covered():
    assert set(CASES) == set(fl.LOSSES)
    for name in fl.LOSSES:
        assert callable(getattr(flt, name)), name
    assert sorted(flt.__all__) == flt.__all__


# --------------------------------------------------------- values and gradients vs F
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,cid,make", ALL)
def test_matches_pytorch(name, cid, make, dtype):
    ours, ref = getattr(flt, name), reference(name)
    x0, args, kw = make(dtype)
    for reduction in reductions(name):
        xo, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # F.kl_div's "mean" warning
            lr = ref(xr, *args, reduction=reduction, **kw)
        lo = ours(xo, *args, reduction=reduction, **kw)
        msg = f"{name}[{cid}] {reduction}"
        assert lo.dtype == lr.dtype and lo.shape == lr.shape, msg
        close(lo, lr, err_msg=msg)
        # a random upstream gradient: per sample for "none", a scalar otherwise
        go = (uniform(0.5, 2, *lr.shape, dtype=dtype, seed=9) if lr.ndim
              else torch.tensor(0.7, dtype=dtype))
        lo.backward(go)
        lr.backward(go)
        assert xo.grad.dtype == dtype and xo.grad.shape == x0.shape, msg
        close(xo.grad, xr.grad, err_msg=msg)


@pytest.mark.parametrize(
    "name,cid,make",
    [p for p in ALL if _target_differentiable(p.values[0], p.values[1])],
)
def test_target_gradient_matches_pytorch(name, cid, make):
    ours, ref = getattr(flt, name), reference(name)
    x0, (t0, *rest), kw = make(F64)
    for reduction in reductions(name):
        for need_input in (True, False):
            grads = []
            for fn in (ours, ref):
                x = x0.clone().requires_grad_(need_input)
                t = t0.clone().requires_grad_()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loss = fn(x, t, *rest, reduction=reduction, **kw)
                go = uniform(0.5, 2, *loss.shape, seed=5) if loss.ndim else torch.tensor(1.3)
                loss.backward(go)
                grads.append((t.grad, x.grad))
            msg = f"{name}[{cid}] {reduction} need_input={need_input}"
            close(grads[0][0], grads[1][0], err_msg="target " + msg)
            if need_input:
                close(grads[0][1], grads[1][1], err_msg="input " + msg)



@pytest.mark.parametrize("name,x,t,kw", [
    ("kl_div", [-1.0, -2.0, -math.inf], [0.0, 0.5, 0.0], {}),
    ("kl_div", [-1.0, -2.0, -3.0], [-math.inf, 0.5, -1.0], {"log_target": True}),
    ("binary_cross_entropy", [0.0, 1.0, 0.3], [0.5, 0.5, 0.2], {}),
    ("poisson_nll_loss", [0.5, 1.0, 2.0, -1.0], [0.0, 1.0, 3.0, 0.5], {"full": True}),
    ("poisson_nll_loss", [0.5, 1.0, 2.0, 3.0], [0.0, 1.0, 3.0, 0.5],
     {"full": True, "log_input": False}),
    ("cross_entropy", [[0.0, -math.inf, 1.0]], [[0.2, 0.3, 0.5]], {}),
    ("l1_loss", [0.0, 1.0, math.nan], [0.0, 0.0, 0.0], {}),
])
def test_target_gradient_edge_values_as_pytorch(name, x, t, kw):
    got = []
    for fn in (getattr(flt, name), getattr(F, name)):
        xs, ts = torch.tensor(x, dtype=F64, requires_grad=True), torch.tensor(
            t, dtype=F64, requires_grad=True)
        loss = fn(xs, ts, reduction="sum", **kw)
        loss.backward()
        got.append((loss, xs.grad, ts.grad))
    for a, e in zip(*got, strict=True):
        close(a, e)

@pytest.mark.parametrize("name,cid,make", ALL)
def test_gradcheck(name, cid, make):
    fn = getattr(flt, name)
    x0, args, kw = make(F64)
    for reduction in ("none", "mean"):
        if reduction not in reductions(name):
            continue
        if _target_differentiable(name, cid):
            t = args[0].clone().requires_grad_()
            assert torch.autograd.gradcheck(
                lambda x, t, r=reduction: fn(x, t, *args[1:], reduction=r, **kw),
                (x0.clone().requires_grad_(), t),
            )
        else:
            assert torch.autograd.gradcheck(
                lambda x, r=reduction: fn(x, *args, reduction=r, **kw),
                (x0.clone().requires_grad_(),),
            )


def test_target_that_cannot_be_differentiated_is_an_error():
    x = randn(4, 5).requires_grad_()
    t = pm1(4, 5).requires_grad_()
    for fn in (flt.soft_margin_loss, flt.hinge_loss, flt.sigmoid_focal_loss,
               flt.kl_div_with_logits):
        with pytest.raises(RuntimeError, match="not differentiable with respect to argument "
                                               "'target'"):
            fn(x, t)
    with torch.no_grad():  # no gradient wanted: fine
        flt.soft_margin_loss(x, t)


def test_weight_that_requires_grad_is_an_error_as_in_pytorch():
    x = randn(4, 3).requires_grad_()
    w = uniform(0.5, 2, 3).requires_grad_()
    with pytest.raises(RuntimeError, match="argument 'weight'"):
        F.cross_entropy(x, labels(4, 3), weight=w)
    with pytest.raises(RuntimeError, match="argument 'weight'"):
        flt.cross_entropy(x, labels(4, 3), weight=w)
    with pytest.raises(RuntimeError, match="argument 'pos_weight'"):
        flt.binary_cross_entropy_with_logits(x, torch.ones(4, 3), pos_weight=w)


# ------------------------------------------------------------- fastloss extras of CE
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("softcap", [None, 3.0])
def test_cross_entropy_z_loss_and_softcap(dtype, softcap):
    x0 = 3 * randn(7, 6, dtype=dtype)
    y = labels(7, 6, ignore=-100)
    w = uniform(0.5, 2, 6, dtype=dtype)
    kw = {"weight": w, "label_smoothing": 0.1}
    for reduction in ("none", "sum", "mean"):
        xo, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        lo = flt.cross_entropy(xo, y, **kw, reduction=reduction, z_loss=1e-2, softcap=softcap)
        z = xr if softcap is None else softcap * torch.tanh(xr / softcap)
        valid = y != -100
        zl = 1e-2 * torch.logsumexp(z, 1) ** 2 * valid
        ce = F.cross_entropy(z, y, **kw, reduction=reduction)
        lr = ce + {"none": zl, "sum": zl.sum(), "mean": zl.sum() / valid.sum()}[reduction]
        close(lo, lr, err_msg=reduction)
        go = uniform(0.5, 2, 7, dtype=dtype) if reduction == "none" else torch.tensor(1.0,
                                                                                     dtype=dtype)
        lo.backward(go)
        lr.backward(go)
        close(xo.grad, xr.grad, err_msg=reduction)


def test_cross_entropy_axis_extra():
    # classes last (B, T, V), as language models lay them out
    x0 = randn(2, 3, 5)
    y = labels((2, 3), 5)
    xo, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    lo = flt.cross_entropy(xo, y, axis=-1, label_smoothing=0.1)
    lr = F.cross_entropy(xr.reshape(-1, 5), y.reshape(-1), label_smoothing=0.1)
    close(lo, lr)
    lo.backward()
    lr.backward()
    close(xo.grad, xr.grad)


# --------------------------------------------------------------------- legacy args
@pytest.mark.parametrize("size_average,reduce", [(False, None), (None, False), (True, True)])
def test_legacy_size_average_and_reduce_as_pytorch(size_average, reduce):
    x, y = randn(5, 4), labels(5, 4)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ref = F.cross_entropy(x, y, size_average=size_average, reduce=reduce)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ours = flt.cross_entropy(x, y, size_average=size_average, reduce=reduce)
    close(ours, ref)
    with pytest.warns(UserWarning, match="size_average and reduce"):
        ours = flt.mse_loss(x, x + 1, size_average, reduce)  # positional, as in F
    with pytest.warns(UserWarning, match="size_average and reduce"):
        ref = F.mse_loss(x, x + 1, size_average, reduce)
    close(ours, ref)
    with pytest.warns(UserWarning, match="size_average and reduce"):
        m = fltnn.NLLLoss(size_average=size_average, reduce=reduce)
    with pytest.warns(UserWarning, match="size_average and reduce"):
        assert m.reduction == torch.nn.NLLLoss(size_average=size_average,
                                               reduce=reduce).reduction


def test_positional_order_is_pytorchs():
    x, y, w = randn(5, 4), labels(5, 4, ignore=1), uniform(0.5, 2, 4)
    close(flt.cross_entropy(x, y, w, None, 1, None, "sum", 0.2),
          F.cross_entropy(x, y, w, None, 1, None, "sum", 0.2))
    close(flt.nll_loss(x, y, w, None, 1, None, "sum"), F.nll_loss(x, y, w, None, 1, None, "sum"))
    close(flt.multi_margin_loss(x, y, 2, 0.5, w, None, None, "sum"),
          F.multi_margin_loss(x, y, 2, 0.5, w, None, None, "sum"))
    r = uniform(0.2, 3, 5, 4)
    close(flt.poisson_nll_loss(r, r.flip(0), False, True, None, 1e-3, None, "sum"),
          F.poisson_nll_loss(r, r.flip(0), False, True, None, 1e-3, None, "sum"))
    close(flt.huber_loss(x, r, "sum", 0.5), F.huber_loss(x, r, "sum", 0.5))
    close(flt.binary_cross_entropy_with_logits(x, r / 3, None, None, None, "sum", w),
          F.binary_cross_entropy_with_logits(x, r / 3, None, None, None, "sum", w))


# ------------------------------------------------------------------------- modules
MODULES = [
    # (name, constructor kwargs, make inputs)
    ("CrossEntropyLoss", {"weight": uniform(0.5, 2, 5), "ignore_index": 1,
                          "label_smoothing": 0.1}, lambda: (randn(6, 5), labels(6, 5))),
    ("NLLLoss", {"weight": uniform(0.5, 2, 5), "reduction": "sum"},
     lambda: (torch.log_softmax(randn(6, 5), 1), labels(6, 5))),
    ("BCELoss", {"weight": uniform(0.5, 2, 5)},
     lambda: (uniform(0.1, 0.9, 4, 5), uniform(0, 1, 4, 5, seed=1))),
    ("BCEWithLogitsLoss", {"pos_weight": uniform(0.5, 2, 5), "reduction": "none"},
     lambda: (randn(4, 5), uniform(0, 1, 4, 5, seed=1))),
    ("MSELoss", {"reduction": "sum"}, lambda: (randn(4, 5), randn(4, 5, seed=1))),
    ("L1Loss", {}, lambda: (away_from(randn(4, 5), [0]), torch.zeros(4, 5, dtype=F64))),
    ("SmoothL1Loss", {"beta": 0.5}, lambda: (away_from(randn(4, 5), [0, .5, -.5]),
                                             torch.zeros(4, 5, dtype=F64))),
    ("HuberLoss", {"delta": 0.5}, lambda: (away_from(randn(4, 5), [0, .5, -.5]),
                                           torch.zeros(4, 5, dtype=F64))),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True},
     lambda: (torch.log_softmax(randn(4, 5), 1), torch.log_softmax(randn(4, 5, seed=1), 1))),
    ("PoissonNLLLoss", {"log_input": False, "full": True},
     lambda: (uniform(0.2, 3, 4, 5), uniform(0.1, 4, 4, 5, seed=1))),
    ("SoftMarginLoss", {}, lambda: (randn(4, 5), pm1(4, 5))),
    ("MultiMarginLoss", {"p": 2, "margin": 0.5, "weight": uniform(0.5, 2, 5)},
     lambda: (randn(6, 5), labels(6, 5))),
]


@pytest.mark.parametrize("name,kw,make", MODULES, ids=[m[0] for m in MODULES])
def test_modules_match_torch_nn(name, kw, make):
    ours, ref = getattr(fltnn, name)(**kw), getattr(torch.nn, name)(**kw)
    assert isinstance(ours, torch.nn.Module)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    x0, t = make()
    xo, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    lo, lr = ours(xo, t), ref(xr, t)
    close(lo, lr)
    lo.sum().backward()
    lr.sum().backward()
    close(xo.grad, xr.grad)
    # buffers move with the module (as torch.nn's weight / pos_weight do)
    for b_ours, b_ref in zip(ours.to(F32).buffers(), ref.to(F32).buffers(), strict=True):
        assert b_ours.dtype == b_ref.dtype == F32


FASTLOSS_MODULES = [
    ("SoftmaxFocalLoss", "softmax_focal_loss", {"gamma": 1.5}, (labels(6, 5),)),
    ("SigmoidFocalLoss", "sigmoid_focal_loss", {"alpha": 0.4}, (uniform(0, 1, 6, 5),)),
    ("HingeLoss", "hinge_loss", {"margin": 0.5}, (pm1(6, 5),)),
    ("SquaredHingeLoss", "squared_hinge_loss", {}, (pm1(6, 5),)),
    ("PerceptronLoss", "perceptron_loss", {"reduction": "sum"}, (pm1(6, 5),)),
    ("ExponentialLoss", "exponential_loss", {}, (pm1(6, 5),)),
    ("ZeroOneLoss", "zero_one_loss", {}, (pm1(6, 5),)),
    ("LogCoshLoss", "log_cosh_loss", {"reduction": "none"}, (randn(6, 5, seed=2),)),
    ("KLDivWithLogitsLoss", "kl_div_with_logits", {"temperature": 2.0},
     (randn(6, 5, seed=2),)),
    ("JSDivWithLogitsLoss", "js_div_with_logits", {}, (randn(6, 5, seed=2),)),
    ("SoftmaxEntropyLoss", "softmax_entropy", {}, ()),
]


@pytest.mark.parametrize("cls,name,kw,args", FASTLOSS_MODULES,
                         ids=[m[0] for m in FASTLOSS_MODULES])
def test_fastloss_only_modules(cls, name, kw, args):
    x0 = away_from(randn(6, 5), [0, 0.5, -0.5, 1, -1])
    xo, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    lo = getattr(fltnn, cls)(**kw)(xo, *args)
    lr = REFERENCES[name](xr, *args, **kw)
    close(lo, lr)
    lo.sum().backward()
    lr.sum().backward()
    close(xo.grad, xr.grad)


def test_every_pytorch_loss_module_has_a_counterpart():
    names = {n for n, _, _ in MODULES}
    for name in flt.nn.__all__:
        assert issubclass(getattr(fltnn, name), torch.nn.Module)
    assert names <= set(fltnn.__all__)


# ------------------------------------------------------------- autograd mechanics
def test_no_gradient_work_without_autograd():
    x, y = randn(5, 4).requires_grad_(), labels(5, 4)
    with torch.no_grad():
        loss = flt.cross_entropy(x, y)
    assert loss.grad_fn is None and not loss.requires_grad
    with torch.inference_mode():
        loss = flt.mse_loss(x, x.detach() + 1)
    assert loss.grad_fn is None
    loss = flt.cross_entropy(x.detach(), y)  # nothing requires grad
    assert loss.grad_fn is None and not loss.requires_grad
    close(loss, F.cross_entropy(x.detach(), y))
    assert flt.cross_entropy(x, y).grad_fn is not None


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    base = randn(10, 12, dtype=dtype)
    cases = [
        (lambda b: b[::2, 1::2], labels(5, 6), flt.cross_entropy, F.cross_entropy),
        (lambda b: b.t()[:6], labels(6, 10), flt.cross_entropy, F.cross_entropy),
        (lambda b: b.t()[:, :4], randn(12, 4, dtype=dtype).t().contiguous().t(),
         flt.mse_loss, F.mse_loss),
        (lambda b: b[1:4].unsqueeze(1).expand(3, 2, 12), labels((3, 12), 2),
         flt.cross_entropy, F.cross_entropy),
    ]
    for view, t, ours, ref in cases:
        bo, br = base.clone().requires_grad_(), base.clone().requires_grad_()
        xo, xr = view(bo), view(br)
        assert not xo.is_contiguous()
        lo, lr = ours(xo, t, reduction="none"), ref(xr, t, reduction="none")
        close(lo, lr)
        go = uniform(0.5, 2, *lr.shape, dtype=dtype)
        lo.backward(go)
        lr.backward(go)
        close(bo.grad, br.grad)
    # a non-contiguous target, weight and upstream gradient
    x0 = randn(6, 4, dtype=dtype)
    t = randn(4, 6, dtype=dtype).t()
    xo, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    go = uniform(0.5, 2, 4, 6, dtype=dtype).t()
    flt.huber_loss(xo, t, reduction="none").backward(go)
    F.huber_loss(xr, t, reduction="none").backward(go)
    close(xo.grad, xr.grad)


def test_gradient_is_the_kernels_buffer_scaled_in_place():
    # a leaf's .grad is the very array the forward wrote (zero-copy), scaled in place
    x, y = randn(64, 10).requires_grad_(), labels(64, 10)
    loss = flt.cross_entropy(x, y)
    ptr = loss.grad_fn.gi.data_ptr()  # (holding the tensor would prevent the hand-over)
    (2.5 * loss).backward()
    assert x.grad.data_ptr() == ptr
    xr = x.detach().clone().requires_grad_()
    (2.5 * F.cross_entropy(xr, y)).backward()
    close(x.grad, xr.grad)


def test_retain_graph_backward_twice():
    for reduction, go in (("mean", torch.tensor(1.0)), ("sum", torch.tensor(0.5)),
                          ("none", uniform(0.5, 2, 5))):
        x0, y = randn(5, 4), labels(5, 4)
        xo, xr = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        lo = flt.cross_entropy(xo, y, reduction=reduction)
        lr = F.cross_entropy(xr, y, reduction=reduction)
        for _ in range(3):
            lo.backward(go, retain_graph=True)
            lr.backward(go, retain_graph=True)
        close(xo.grad, xr.grad, err_msg=reduction)
        lo.backward(go)  # the last one frees the graph
        lr.backward(go)
        close(xo.grad, xr.grad, err_msg=reduction)


def test_double_backward_raises_a_clear_error():
    """Every higher-order path through the loss raises fastloss's error (none returns
    zeros or None): a gradient's gradient, torch.autograd.grad of it, a Hessian, and a
    gradient penalty with respect to a tensor behind the loss."""
    msg = "double backward is not supported"
    x = randn(5, 4).requires_grad_()
    for make in (lambda z: flt.cross_entropy(z, labels(5, 4)),
                 lambda z: flt.mse_loss(z, torch.zeros(5, 4), reduction="none").sum()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the input is alive: no warning
            (g,) = torch.autograd.grad(make(x), x, create_graph=True)
        assert g.requires_grad
        with pytest.raises(RuntimeError, match=msg):
            (g**2).sum().backward()
        (g,) = torch.autograd.grad(make(x), x, create_graph=True)
        with pytest.raises(RuntimeError, match=msg):
            torch.autograd.grad((g**2).sum(), x)
        with pytest.raises(RuntimeError, match=msg):
            torch.autograd.functional.hessian(make, x)
    # a penalty on the gradient of a tensor behind the loss, the logits kept alive
    w = randn(4, 3).requires_grad_()
    h = randn(5, 4)
    z = h @ w
    (gw,) = torch.autograd.grad(flt.cross_entropy(z, labels(5, 3)), w, create_graph=True)
    close(gw, torch.autograd.grad(F.cross_entropy(h @ w, labels(5, 3)), w)[0])
    with pytest.raises(RuntimeError, match=msg):
        torch.autograd.grad(gw.pow(2).sum(), w)


def test_second_order_through_a_freed_input_warns():
    """A loss input freed before the create_graph backward (a temporary ``h @ w``) cannot
    be linked to the error node: that backward warns that a second-order term through it
    would be missing."""
    w = randn(4, 3).requires_grad_()
    h = randn(5, 4)
    loss = flt.cross_entropy(h @ w, labels(5, 3))
    with pytest.warns(UserWarning, match="second-order term through it would be missing"):
        (gw,) = torch.autograd.grad(loss, w, create_graph=True)
    want = torch.autograd.grad(F.cross_entropy(h @ w, labels(5, 3)), w)[0]
    close(gw, want)


def test_retained_graph_backwards_return_tensors_of_their_own():
    """With retain_graph, each backward's gradient is a new tensor (modifying one leaves
    the next intact), as with PyTorch's losses."""
    x = randn(5, 4).requires_grad_()
    for loss in (flt.cross_entropy(x, labels(5, 4)),
                 flt.mse_loss(x, torch.zeros(5, 4), reduction="none").sum()):
        gs = [torch.autograd.grad(loss, x, retain_graph=True)[0] for _ in range(3)]
        assert len({g.data_ptr() for g in gs}) == 3
        want = gs[0].clone()
        gs[0] += gs[1]
        close(gs[2], want)
    h, W = randn(6, 3).requires_grad_(), randn(5, 3).requires_grad_()
    loss = flt.linear_cross_entropy(h, W, labels(6, 5))
    g1 = torch.autograd.grad(loss, W, retain_graph=True)[0]
    want = g1.clone()
    g1.zero_()
    close(torch.autograd.grad(loss, W)[0], want)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_batched_upstream_gradients(reduction):
    """autograd.grad(is_grads_batched=True) and jacobian(vectorize=True) (vmap over the
    backward) give PyTorch's results."""
    x = randn(3, 4).requires_grad_()
    y, t = labels(3, 4), randn(3, 4, seed=1)
    for flf, tf, tgt, shape in ((flt.cross_entropy, F.cross_entropy, y, (3,)),
                                (flt.mse_loss, F.mse_loss, t, (3, 4))):
        gos = randn(5, *(shape if reduction == "none" else ()), seed=2)
        got = torch.autograd.grad(flf(x, tgt, reduction=reduction), x, gos,
                                  is_grads_batched=True)[0]
        want = torch.autograd.grad(tf(x, tgt, reduction=reduction), x, gos,
                                   is_grads_batched=True)[0]
        close(got, want)
        got = torch.autograd.functional.jacobian(
            lambda z, f=flf, tg=tgt: f(z, tg, reduction=reduction), x, vectorize=True)
        want = torch.autograd.functional.jacobian(
            lambda z, f=tf, tg=tgt: f(z, tg, reduction=reduction), x, vectorize=True)
        close(got, want)
    h, W = randn(6, 3).requires_grad_(), randn(5, 3)
    loss = flt.linear_cross_entropy(h, W, labels(6, 5), reduction=reduction)
    gos = randn(4, *((6,) if reduction == "none" else ()), seed=3)
    if reduction == "none":
        with pytest.raises(RuntimeError, match="batched .vmap. upstream gradient"):
            torch.autograd.grad(loss, h, gos, is_grads_batched=True)
    else:
        want = torch.autograd.grad(F.linear_cross_entropy(h, W, labels(6, 5),
                                                          reduction=reduction),
                                   h, gos, is_grads_batched=True)[0]
        close(torch.autograd.grad(loss, h, gos, is_grads_batched=True)[0], want)


def test_linear_cross_entropy_promotes_to_a_float64_probability_target():
    h = randn(5, 3, dtype=torch.float32).requires_grad_()
    W = randn(4, 3, dtype=torch.float32).requires_grad_()
    P = torch.softmax(randn(5, 4, seed=4), 1)
    got = flt.linear_cross_entropy(h, W, P)
    want = F.linear_cross_entropy(h, W, P)
    assert got.dtype == want.dtype == torch.float64
    got.backward()
    assert h.grad.dtype == W.grad.dtype == torch.float32
    close(got, want, dtype=np.float32)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_second_backward_through_a_freed_graph_raises_as_in_pytorch(reduction):
    for fn, t in ((flt.cross_entropy, labels(5, 4)), (flt.mse_loss, torch.zeros(5, 4))):
        x = randn(5, 4).requires_grad_()
        loss = fn(x, t, reduction=reduction).sum()
        loss.backward()
        g = x.grad.clone()
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            loss.backward()
        close(x.grad, g)  # the first gradient, untouched
        # two losses sharing one fastloss node: the second backward raises too
        per = fn(x, t, reduction="none")
        a, b = per.sum(), per.mean()
        a.backward()
        with pytest.raises(RuntimeError, match="second time"):
            b.backward()


def test_zero_dim_inputs_with_a_target_that_requires_grad():
    for name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
                 "kl_div"):
        x = torch.tensor(0.3, dtype=F64, requires_grad=True)
        t = torch.tensor(0.6, dtype=F64, requires_grad=True)
        xr, tr = x.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
        kw = {"reduction": "sum"} if name == "kl_div" else {}  # (mean: PyTorch warns)
        getattr(flt, name)(x, t, **kw).backward()
        getattr(F, name)(xr, tr, **kw).backward()
        close(x.grad, xr.grad, err_msg=name)
        close(t.grad, tr.grad, err_msg=name)


def test_float64_target_promotes_a_float32_input_as_torch_does():
    x = torch.rand(6, 3).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    t = torch.rand(6, 3, dtype=F64) + 1e-9
    for name in ("mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "poisson_nll_loss"):
        x.grad = xr.grad = None
        lo, lr = getattr(flt, name)(x, t), getattr(F, name)(xr, t)
        assert lo.dtype == lr.dtype == F64, name
        lo.backward()
        lr.backward()
        assert x.grad.dtype == torch.float32
        close(lo, lr, err_msg=name)
        close(x.grad, xr.grad, err_msg=name)
    # probability targets of cross-entropy
    p = torch.softmax(torch.randn(6, 3, dtype=F64), 1)
    x.grad = xr.grad = None
    lo, lr = flt.cross_entropy(x, p), F.cross_entropy(xr, p)
    assert lo.dtype == lr.dtype == F64
    lo.backward()
    lr.backward()
    close(x.grad, xr.grad)


def test_torch_func_transforms_raise_a_clear_error():
    x, y = randn(4, 3), labels(4, 3)
    with pytest.raises(RuntimeError, match="torch.func transform"):
        torch.func.grad(lambda x: flt.cross_entropy(x, y))(x)
    with pytest.raises(RuntimeError, match="torch.func transform"):
        torch.func.vmap(lambda r: flt.mse_loss(r, torch.zeros(3, dtype=F64)))(x)


def test_non_cpu_tensors_raise_type_error():
    meta = torch.empty(4, 3, device="meta")
    with pytest.raises(TypeError, match="on device 'meta'.*CPU only"):
        flt.cross_entropy(meta, labels(4, 3))
    with pytest.raises(TypeError, match="target is on device 'meta'"):
        flt.cross_entropy(randn(4, 3), torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(TypeError, match="weight is on device 'meta'"):
        flt.cross_entropy(randn(4, 3), labels(4, 3), weight=torch.ones(3, device="meta"))
    with pytest.raises(TypeError, match="on device 'meta'"):
        fltnn.MSELoss()(meta, meta)
    with pytest.raises(TypeError, match="dense"):
        flt.mse_loss(torch.ones(3).to_sparse(), torch.ones(3))
    if torch.cuda.is_available():  # pragma: no cover - no GPU here
        with pytest.raises(TypeError, match="CPU only"):
            flt.mse_loss(torch.ones(3, device="cuda"), torch.ones(3, device="cuda"))


def test_bad_dtypes_and_options():
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        flt.mse_loss(torch.ones(3, dtype=torch.float16), torch.ones(3, dtype=torch.float16))
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        flt.cross_entropy(torch.ones(3, 2, dtype=torch.long), labels(3, 2))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        flt.mse_loss(np.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        flt.cross_entropy(randn(3, 2), labels(3, 2), reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        flt.mse_loss(randn(3), randn(3), reduction="avg", weight=torch.ones(3))
    with pytest.raises(ValueError, match="same size"):
        flt.mse_loss(randn(3), randn(3), weight=torch.ones(2))
    with pytest.raises(IndexError, match="out of bounds"):
        flt.cross_entropy(randn(3, 2).requires_grad_(), torch.tensor([0, 1, 2]))


def test_integer_targets_of_any_width():
    x = randn(6, 4)
    for dt in (torch.int64, torch.int32, torch.uint8):
        y = labels(6, 4).to(dt)
        close(flt.cross_entropy(x, y), F.cross_entropy(x, y.long()))


def test_empty_batch_as_pytorch():
    x = torch.empty(0, 4, dtype=F64, requires_grad=True)
    y = torch.empty(0, dtype=torch.long)
    for reduction in ("mean", "sum", "none"):
        close(flt.cross_entropy(x, y, reduction=reduction),
              F.cross_entropy(x, y, reduction=reduction))
    flt.cross_entropy(x, y, reduction="sum").backward()
    assert x.grad.shape == (0, 4)


# ------------------------------------------------------------------- torch.compile
# PyTorch-internal warnings (importing inductor; Dynamo reading a non-leaf's .grad after
# the graph break), not shown outside pytest's warnings-as-errors
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_torch_compile_runs_and_matches():
    try:
        import torch._dynamo  # noqa: F401
        import torch._inductor  # noqa: F401
    except Exception as e:  # pragma: no cover
        pytest.skip(f"torch.compile unavailable: {e}")
    torch._dynamo.reset()
    W0 = randn(8, 5, dtype=F32)
    x, y = randn(16, 8, dtype=F32, seed=1), labels(16, 5)

    def step(W, fn):
        return fn(torch.tanh(x @ W), y, label_smoothing=0.1, reduction="sum") * 0.5

    Wc, We = W0.clone().requires_grad_(), W0.clone().requires_grad_()
    try:
        compiled = torch.compile(step, dynamic=False)
        lc = compiled(Wc, flt.cross_entropy)
    except Exception as e:  # pragma: no cover - e.g. no C++ compiler for inductor
        if "compiler" in str(e).lower() or "cpp" in str(e).lower():
            pytest.skip(f"inductor backend unavailable: {e}")
        raise
    le = step(We, F.cross_entropy)
    lc.backward()
    le.backward()
    close(lc, le)
    close(Wc.grad, We.grad)
    # again (the cached graph), with no_grad
    with torch.no_grad():
        close(compiled(Wc, flt.cross_entropy), step(We, F.cross_entropy))
    # and a module inside a compiled nn.Module
    model = torch.nn.Sequential(torch.nn.Linear(8, 5)).to(F32)
    crit = fltnn.CrossEntropyLoss()
    cm = torch.compile(lambda a, b: crit(model(a), b))
    close(cm(x, y), F.cross_entropy(model(x), y))


# ---------------------------------------------------------------- a training loop
def _digits(dtype):
    sklearn = pytest.importorskip("sklearn.datasets")
    X, y = sklearn.load_digits(return_X_y=True)
    return torch.tensor(X / 16.0, dtype=dtype), torch.tensor(y, dtype=torch.long)


def _train(model, X, y, loss_fn, steps=40, batch=256, lr=0.2):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    curve = []
    for i in range(steps):
        sl = slice((i * batch) % (len(X) - batch), (i * batch) % (len(X) - batch) + batch)
        opt.zero_grad()
        loss = loss_fn(model(X[sl]), y[sl], label_smoothing=0.1)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    return np.array(curve)


@pytest.mark.parametrize("dtype,rtol", [(F64, 1e-10), (F32, 1e-5)], ids=["f64", "f32"])
def test_digits_training_loop_equals_pytorch(dtype, rtol):
    X, y = _digits(dtype)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                torch.nn.Linear(32, 10)).to(dtype)
    twin = copy.deepcopy(model)
    ours = _train(model, X, y, flt.cross_entropy)
    ref = _train(twin, X, y, F.cross_entropy)
    assert ref[-1] < 0.6 * ref[0]  # it learns
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=0)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(),
                                   rtol=100 * rtol, atol=100 * rtol)


# ------------------------------------------------------------------ import contract
def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_import_fastloss_never_imports_torch_and_missing_torch_is_explained():
    r = _run("import sys, fastloss; assert 'torch' not in sys.modules, 'torch imported'")
    assert r.returncode == 0, r.stderr
    r = _run("import sys; sys.modules['torch'] = None\n"
             "try:\n    import fastloss.torch\nexcept ImportError as e:\n    print(e)\n")
    assert r.returncode == 0, r.stderr
    assert 'pip install "fastloss[torch]"' in r.stdout



# ------------------------------------------------------------ linear_cross_entropy
def _lce_inputs(dtype, N=29, D=6, V=9, seed=0):
    H, W = randn(N, D, dtype=dtype, seed=seed), randn(V, D, dtype=dtype, seed=seed + 1)
    b = randn(V, dtype=dtype, seed=seed + 2)
    return H, W, b


LCE_OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"weight": uniform(0.5, 2, 9), "ignore_index": -100}, id="weight-ignore"),
    pytest.param({"label_smoothing": 0.1, "ignore_index": 3}, id="smooth-ignore3"),
    pytest.param({"weight": uniform(0.5, 2, 9), "label_smoothing": 0.2}, id="weight-smooth"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("opts", LCE_OPTIONS)
def test_linear_cross_entropy_matches_pytorch(opts, bias, dtype):
    H0, W0, b0 = _lce_inputs(dtype)
    y = labels(29, 9, ignore=opts.get("ignore_index", -100) if opts else None)
    if "weight" in opts:
        opts = {**opts, "weight": opts["weight"].to(dtype)}
    for reduction in ("mean", "sum", "none"):
        go = uniform(0.5, 2, 29, dtype=dtype) if reduction == "none" else torch.tensor(
            0.7, dtype=dtype)
        got = []
        for fn, extra in ((flt.linear_cross_entropy, {"chunk_rows": 8}),
                          (F.linear_cross_entropy, {})):
            ps = [p.clone().requires_grad_() for p in (H0, W0, b0)]
            loss = fn(ps[0], ps[1], y, linear_bias=ps[2] if bias else None,
                      reduction=reduction, **opts, **extra)
            loss.backward(go)
            got.append([loss] + [p.grad for p in ps[: 3 if bias else 2]])
        for name, a, e in zip(("loss", "dH", "dW", "db"), *got, strict=False):
            close(a, e, err_msg=f"{name} {reduction}")


def test_linear_cross_entropy_probabilities_unbatched_and_k_dim():
    H0, W0, b0 = _lce_inputs(F64)
    p = _probs(29, 9, dtype=F64, seed=3)
    cases = [
        ((H0, W0, p), {"linear_bias": b0, "label_smoothing": 0.1}),
        ((H0[3], W0, torch.tensor(4)), {"linear_bias": b0}),
        ((H0[3], W0, torch.tensor(4)), {"reduction": "none"}),
        ((H0, randn(4, 3, 6, seed=7), labels((29, 3), 4)), {"reduction": "sum"}),
    ]
    for args, kw in cases:
        got = []
        for fn in (flt.linear_cross_entropy, F.linear_cross_entropy):
            a = [t.clone().requires_grad_() if t.is_floating_point() and t is not p else t
                 for t in args]
            loss = fn(*a, **kw)
            loss.backward(torch.ones_like(loss))
            got.append([loss, a[0].grad, a[1].grad])
        for x, e in zip(*got, strict=True):
            close(x, e)


def test_linear_cross_entropy_gradcheck_and_extras():
    H0, W0, b0 = _lce_inputs(F64, N=7, D=3, V=5)
    y = labels(7, 5, ignore=-100)
    for reduction in ("mean", "none"):
        assert torch.autograd.gradcheck(
            lambda h, w, b, r=reduction: flt.linear_cross_entropy(
                h, w, y, linear_bias=b, reduction=r, label_smoothing=0.1, z_loss=1e-2,
                softcap=2.0, chunk_rows=3),
            tuple(t.clone().requires_grad_() for t in (H0, W0, b0)),
        )
    # z_loss / softcap against their definition on PyTorch's logits
    h, w = H0.clone().requires_grad_(), W0.clone().requires_grad_()
    loss = flt.linear_cross_entropy(h, w, y, z_loss=1e-2, softcap=2.0)
    hr, wr = H0.clone().requires_grad_(), W0.clone().requires_grad_()
    z = 2.0 * torch.tanh(hr @ wr.T / 2.0)
    valid = y != -100
    ref = F.cross_entropy(z, y) + 1e-2 * (torch.logsumexp(z, 1) ** 2 * valid).sum() / valid.sum()
    close(loss, ref)
    loss.backward()
    ref.backward()
    close(h.grad, hr.grad)
    close(w.grad, wr.grad)


def test_linear_cross_entropy_autograd_mechanics():
    H0, W0, _ = _lce_inputs(F64)
    y = labels(29, 9)
    # no_grad and frozen weights: no gradient for what does not need one
    h, w = H0.clone().requires_grad_(), W0.clone().requires_grad_()
    with torch.no_grad():
        assert flt.linear_cross_entropy(h, w, y).grad_fn is None
    flt.linear_cross_entropy(h, W0, y).backward()
    hr = H0.clone().requires_grad_()
    F.linear_cross_entropy(hr, W0, y).backward()
    close(h.grad, hr.grad)
    # retain_graph, for both the precomputed (sum) and the recomputed ("none") path
    for reduction in ("sum", "none"):
        h, hr = H0.clone().requires_grad_(), H0.clone().requires_grad_()
        lo = flt.linear_cross_entropy(h, W0, y, reduction=reduction)
        lr = F.linear_cross_entropy(hr, W0, y, reduction=reduction)
        go = torch.full(lo.shape, 0.5, dtype=F64)
        for _ in range(2):
            lo.backward(go, retain_graph=True)
            lr.backward(go, retain_graph=True)
        close(h.grad, hr.grad)
    # double backward, and an input modified in place before a "none" backward
    h = H0.clone().requires_grad_()
    (g,) = torch.autograd.grad(flt.linear_cross_entropy(h, W0, y), h, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        g.sum().backward()
    # a second backward through a freed graph (the precomputed path), as in PyTorch
    h = H0.clone().requires_grad_()
    loss = flt.linear_cross_entropy(h, W0, y, reduction="sum")
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    # "none" recomputes from the target and class weight: changed in place, it raises
    for change in ("target", "weight"):
        h, yy, cw = H0.clone().requires_grad_(), y.clone(), torch.rand(9, dtype=F64)
        loss = flt.linear_cross_entropy(h, W0, yy, weight=cw, reduction="none")
        (yy if change == "target" else cw).fill_(0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.sum().backward()
    w = W0.clone().requires_grad_()
    wv = w * 1.0
    loss = flt.linear_cross_entropy(H0, wv, y, reduction="none")
    with torch.no_grad():
        wv.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.sum().backward()
    # options: PyTorch's chunking options are accepted
    opt = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=4)
    close(flt.linear_cross_entropy(H0, W0, y, options=opt), F.linear_cross_entropy(H0, W0, y))
    with pytest.raises(ValueError, match="ignore_index cannot be specified"):
        flt.linear_cross_entropy(H0, W0, _probs(29, 9, dtype=F64, seed=1), ignore_index=-1)
    with pytest.raises(TypeError, match="on device 'meta'"):
        flt.linear_cross_entropy(H0, W0.to("meta"), y)


def test_linear_cross_entropy_loss_module():
    kw = {"bias": True, "dtype": F64, "weight": uniform(0.5, 2, 9), "label_smoothing": 0.1}
    ours, ref = fltnn.LinearCrossEntropyLoss(6, 9, **kw), torch.nn.LinearCrossEntropyLoss(6, 9,
                                                                                            **kw)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    H0 = randn(29, 6)
    y = labels(29, 9, ignore=-100)
    ho, hr = H0.clone().requires_grad_(), H0.clone().requires_grad_()
    lo, lr = ours(ho, y), ref(hr, y)
    close(lo, lr)
    lo.backward()
    lr.backward()
    close(ho.grad, hr.grad)
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        close(p.grad, q.grad)
    assert repr(ours) == repr(ref)


# ------------------------------------------------- audit findings, 2026-12-04 (torch)
@pytest.mark.parametrize("make", [
    lambda z, p: flt.cross_entropy(z, p),
    lambda z, p: flt.mse_loss(z, p),
    lambda z, p: flt.mse_loss(z, p.float(), weight=torch.ones(5, 3, dtype=F64)),
])
def test_second_order_through_a_cast_input_raises(make):
    """A float32 input that the call casts to float64 (a float64 target or weight) is
    still the tensor the double-backward error is linked to: a gradient penalty with
    respect to a tensor behind the loss raises, without the "freed input" warning (the
    cast copy, not the caller's tensor, used to be anchored and died at once)."""
    lin = torch.nn.Linear(3, 3)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    p64 = torch.softmax(randn(5, 3), 1)
    out = lin(z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = torch.autograd.grad(make(out, p64), out, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(g.pow(2).sum(), lin.weight, allow_unused=True)


@pytest.mark.parametrize("name, make_t", [
    ("cross_entropy", lambda: labels(16, 5)),
    ("cross_entropy", lambda: torch.softmax(randn(16, 5, dtype=torch.float32), 1)),
    ("nll_loss", lambda: labels(16, 5)),
    ("mse_loss", lambda: randn(16, 5, dtype=torch.float32)),
    ("binary_cross_entropy_with_logits", lambda: uniform(0, 1, 16, 5, dtype=torch.float32)),
    ("huber_loss", lambda: randn(16, 5, dtype=torch.bfloat16)),
    ("kl_div", lambda: torch.softmax(randn(16, 5, dtype=torch.float32), 1)),
])
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_cpu_autocast_runs_in_float32_as_pytorch(name, make_t, low):
    kw = {"reduction": "batchmean"} if name == "kl_div" else {}
    """Under CPU autocast PyTorch's losses cast float16 / bfloat16 arguments to float32
    (autocast's float32 list): so do fastloss's, with the gradient flowing back in the
    input's dtype."""
    lin = torch.nn.Linear(8, 5)
    X = randn(16, 8, dtype=torch.float32)
    t = make_t()
    got = {}
    for mod in (F, flt):
        lin.zero_grad()
        with torch.autocast("cpu", dtype=low):
            z = lin(X)
            z.retain_grad()
            loss = getattr(mod, name)(z, t, **kw)
        loss.backward()
        got[mod] = (loss, z.grad, lin.weight.grad.clone())
    (lo, zo, wo), (lr, zr, wr) = got[flt], got[F]
    assert lo.dtype == lr.dtype == torch.float32
    assert zo.dtype == zr.dtype == low
    close(lo, lr, rtol=1e-6, atol=1e-7)
    close(zo.float(), zr.float(), rtol=1e-2, atol=1e-3)
    close(wo, wr, rtol=1e-2, atol=1e-3)
    with pytest.raises(TypeError, match="float32 or torch.float64"):  # outside autocast
        getattr(flt, name)(torch.ones(16, 5, dtype=low), t, **kw)


def test_linear_cross_entropy_under_cpu_autocast():
    H, W, y = randn(12, 6, dtype=torch.float32), randn(9, 6, dtype=torch.float32), labels(12, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lo = flt.linear_cross_entropy(H.bfloat16(), W.bfloat16(), y)
    assert lo.dtype == torch.float32
    close(lo, F.cross_entropy(H.bfloat16().float() @ W.bfloat16().float().T, y), rtol=1e-6)


@pytest.mark.parametrize("kw", [dict(size_average=False), dict(reduce=True),
                                dict(reduce=False), dict(size_average=True)])
def test_kl_div_legacy_arguments_with_batchmean_as_pytorch(kw):
    """PyTorch maps the legacy arguments and then still divides by the batch size when
    reduction="batchmean" is passed."""
    x = torch.log_softmax(randn(4, 3), 1).requires_grad_()
    t = torch.softmax(randn(4, 3, seed=1), 1).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo = flt.kl_div(x, t, reduction="batchmean", **kw)
        lr = F.kl_div(x, t, reduction="batchmean", **kw)
    close(lo, lr)
    go = randn(*lo.shape, seed=2) if lo.ndim else torch.tensor(0.7, dtype=F64)
    for a, b in zip(torch.autograd.grad(lo, (x, t), go), torch.autograd.grad(lr, (x, t), go),
                    strict=True):
        close(a, b)


@pytest.mark.parametrize("name, args", [
    ("mse_loss", lambda: (randn(4, 3), randn(4, 3, seed=1))),
    ("l1_loss", lambda: (randn(4, 3), randn(4, 3, seed=1))),
    ("smooth_l1_loss", lambda: (randn(4, 3), randn(4, 3, seed=1))),
    ("huber_loss", lambda: (randn(4, 3), randn(4, 3, seed=1))),
    ("cross_entropy", lambda: (randn(4, 3), labels(4, 3))),
    ("nll_loss", lambda: (torch.log_softmax(randn(4, 3), 1), labels(4, 3))),
    ("kl_div", lambda: (torch.log_softmax(randn(4, 3), 1), torch.softmax(randn(4, 3), 1))),
    ("binary_cross_entropy", lambda: (uniform(0.1, 0.9, 4, 3), uniform(0, 1, 4, 3))),
    ("binary_cross_entropy_with_logits", lambda: (randn(4, 3), uniform(0, 1, 4, 3))),
    ("soft_margin_loss", lambda: (randn(4, 3), pm1(4, 3))),
    ("multi_margin_loss", lambda: (randn(4, 3), labels(4, 3))),
    ("linear_cross_entropy", lambda: (randn(4, 3), randn(5, 3), labels(4, 5))),
])
def test_deprecated_elementwise_mean_reduction_as_pytorch(name, args):
    """PyTorch still accepts reduction="elementwise_mean" as "mean", with a deprecation
    warning (poisson_nll_loss and the weighted mse / l1 refuse it: ValueError)."""
    a = args()
    with pytest.warns(UserWarning, match="elementwise_mean"):
        lr = getattr(F, name)(*a, reduction="elementwise_mean")
    with pytest.warns(UserWarning, match="elementwise_mean"):
        lo = getattr(flt, name)(*a, reduction="elementwise_mean")
    close(lo, lr)


def test_elementwise_mean_refused_where_pytorch_refuses_it():
    x, t = randn(4, 3), randn(4, 3, seed=1).abs()
    for mod in (F, flt):
        with pytest.raises(ValueError):
            mod.poisson_nll_loss(x, t, reduction="elementwise_mean")
        for name in ("mse_loss", "l1_loss"):
            with pytest.raises(ValueError):
                getattr(mod, name)(x, t, reduction="elementwise_mean", weight=torch.ones(4, 3))
    with pytest.raises(ValueError, match="reduction"):  # fastloss-only losses: not a name
        flt.hinge_loss(x, pm1(4, 3), reduction="elementwise_mean")


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_float64_per_element_weight_promotes_as_pytorch(name, reduction):
    x = randn(4, 3, dtype=torch.float32).requires_grad_()
    t = randn(4, 3, dtype=torch.float32, seed=1)
    w = uniform(0.1, 2.0, 4, 3)  # float64
    lo = getattr(flt, name)(x, t, reduction=reduction, weight=w)
    lr = getattr(F, name)(x, t, reduction=reduction, weight=w)
    assert lo.dtype == lr.dtype == torch.float64
    # fastloss computes in float64 from the cast input; PyTorch squares the float32
    # residual in float32 before weighting: equal to float32 rounding
    close(lo, lr, rtol=3e-7, atol=1e-7)
    go = randn(*lo.shape, seed=2) if lo.ndim else torch.tensor(0.7, dtype=F64)
    (go_, gr) = torch.autograd.grad(lo, x, go)[0], torch.autograd.grad(lr, x, go)[0]
    assert go_.dtype == gr.dtype == torch.float32
    close(go_, gr, rtol=3e-7, atol=1e-7)


def test_ignore_index_as_a_one_element_tensor():
    x, y = randn(6, 4), labels(6, 4)
    for name in ("cross_entropy", "nll_loss"):
        close(getattr(flt, name)(x, y, ignore_index=torch.tensor(1)),
              getattr(F, name)(x, y, ignore_index=torch.tensor(1)))
    H, W = randn(6, 3), randn(4, 3)
    close(flt.linear_cross_entropy(H, W, y, ignore_index=torch.tensor(2)),
          F.linear_cross_entropy(H, W, y, ignore_index=torch.tensor(2)))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_cross_entropy_frees_its_inputs_after_backward(reduction):
    """After a backward without retain_graph nothing of the call keeps the hidden
    states' memory alive while the loss tensor lives on (for logging, say), as with
    F.linear_cross_entropy (the NumPy views of the inputs used to stay in the graph)."""
    import gc

    from torch.multiprocessing.reductions import StorageWeakRef

    W = randn(7, 5).requires_grad_()
    y = labels(64, 7)
    h = randn(64, 5).requires_grad_() * 1.0  # a non-leaf: nothing else holds it
    ref = StorageWeakRef(h.untyped_storage())
    loss = flt.linear_cross_entropy(h, W, y, reduction=reduction)
    loss.sum().backward()
    del h
    gc.collect()
    assert ref.expired()
    assert loss.shape == ((64,) if reduction == "none" else ())
