"""PyTorch parity on PyTorch's own sample inputs (issue 13, item 8).

For every OpInfo of ``torch.testing._internal.common_methods_invocations.op_db`` whose
function fastloss has, every CPU float32 and float64 ``reference_inputs`` sample (a
superset of ``sample_inputs``) is mapped to the fastloss call (PyTorch's ``(N, C, d...)``
layout is ``axis=1``; ``dim`` is ``axis``; ``weight``/``pos_weight``/``beta``/``delta``/
``log_input``/``full``/``eps``/``log_target``/``p``/``margin``/``ignore_index`` keep their
names) and must be accepted, with PyTorch's loss and gradient (SPEC tolerances: float64
rtol 1e-7, float32 rtol 2e-5; the gradient of ``loss.sum()``, SPEC's ``"none"``
convention).

Where SPEC deliberately differs from PyTorch a sample would be listed by
:func:`_divergence` with the reason, and the test would assert SPEC's answer instead (so a
change either way is seen).  There is none at present: every sample is accepted.

``op_db`` imports ``expecttest`` only for a base class; when that package is missing a
stand-in module is installed first (this file does not use expecttest).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
import unittest
import warnings

import numpy as np
import pytest

import fastloss as fl
from tests.conftest import assert_close

torch = pytest.importorskip("torch")

if importlib.util.find_spec("expecttest") is None:  # only TestCase is used by op_db
    _stub = types.ModuleType("expecttest")
    _stub.TestCase = unittest.TestCase
    sys.modules["expecttest"] = _stub

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.testing._internal.common_methods_invocations import op_db


def _np(t):
    return t.detach().cpu().numpy().copy() if isinstance(t, torch.Tensor) else t


def _class_axis(x):
    return 1 if x.ndim >= 2 else -1


def _opts(kw, *names):
    return {k: _np(kw[k]) for k in names if k in kw and kw[k] is not None}


# ------------------------------------------------------------ sample -> fastloss call
def _loss_call(fname, *option_names, class_axis=False):
    def call(s):
        x = _np(s.input)
        args = [_np(a) for a in s.args]
        opts = _opts(s.kwargs, "reduction", *option_names)
        if class_axis:
            opts["axis"] = _class_axis(x)
        return getattr(fl, fname)(x, *args, **opts)

    return call


def _softmax_call(fname):
    def call(s):
        x = _np(s.input)
        dim = s.args[0] if s.args else s.kwargs.get("dim")
        dt = s.kwargs.get("dtype")
        if dt is not None:  # NumPy style: convert first (fastloss has no dtype= option)
            x = x.astype(str(dt).removeprefix("torch."))
        return getattr(fl, fname)(x, axis=dim)

    return call


def _logsumexp_call(s):
    x = _np(s.input)
    dim = s.args[0] if s.args else s.kwargs["dim"]
    keepdim = s.args[1] if len(s.args) > 1 else s.kwargs.get("keepdim", False)
    return fl.logsumexp(x, axis=dim, keepdims=keepdim)


def _map_call(fname):
    return lambda s: getattr(fl, fname)(_np(s.input))


#: OpInfo name -> (maps a SampleInput to the fastloss result, is a loss with a gradient)
OPS = {
    "nn.functional.cross_entropy": (
        _loss_call("cross_entropy", "weight", "ignore_index", "label_smoothing",
                   class_axis=True), True),
    "nn.functional.nll_loss": (
        _loss_call("nll_loss", "weight", "ignore_index", class_axis=True), True),
    "nn.functional.binary_cross_entropy": (_loss_call("binary_cross_entropy", "weight"), True),
    "nn.functional.binary_cross_entropy_with_logits": (
        _loss_call("binary_cross_entropy_with_logits", "weight", "pos_weight"), True),
    "nn.functional.mse_loss": (_loss_call("mse_loss"), True),
    "nn.functional.l1_loss": (_loss_call("l1_loss"), True),
    "nn.functional.smooth_l1_loss": (_loss_call("smooth_l1_loss", "beta"), True),
    "nn.functional.huber_loss": (_loss_call("huber_loss", "delta"), True),
    "nn.functional.kl_div": (_loss_call("kl_div", "log_target"), True),
    "nn.functional.poisson_nll_loss": (
        _loss_call("poisson_nll_loss", "log_input", "full", "eps"), True),
    "nn.functional.soft_margin_loss": (_loss_call("soft_margin_loss"), True),
    "nn.functional.multi_margin_loss": (
        _loss_call("multi_margin_loss", "p", "margin", "weight"), True),
    "softmax": (_softmax_call("softmax"), False),
    "log_softmax": (_softmax_call("log_softmax"), False),
    "logsumexp": (_logsumexp_call, False),
    "sigmoid": (_map_call("sigmoid"), False),
    "nn.functional.logsigmoid": (_map_call("log_sigmoid"), False),
}


def _divergence(name, s):
    """SPEC's reason to answer differently from PyTorch for this sample, or None."""
    if name == "nn.functional.soft_margin_loss":
        t = s.args[0] if s.args else s.kwargs["target"]
        if not bool(((t == 1) | (t == -1)).all()):
            return "SPEC section 5: +-1 targets that are not +-1 are a ValueError"
    return None


# ------------------------------------------------------------------ the samples
def _samples():
    out = []
    for op in op_db:
        if op.name not in OPS:
            continue
        for dtype in (torch.float32, torch.float64):
            if dtype not in op.supported_dtypes("cpu"):
                continue
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                samples = list(op.reference_inputs("cpu", dtype, requires_grad=OPS[op.name][1]))
            variant = f".{op.variant_test_name}" if op.variant_test_name else ""
            for i, s in enumerate(samples):
                out.append(pytest.param(op, s, id=f"{op.name}{variant}-{str(dtype)[6:]}-{i}"))
    return out


SAMPLES = _samples()


def _torch_result(op, s, with_grad):
    x = s.input
    if with_grad:
        x = x.detach().clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's reduction="mean" warning
        y = op.op(x, *s.args, **s.kwargs)
    if not with_grad:
        return _np(y), None
    (g,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    return _np(y), (np.zeros(x.shape) if g is None else _np(g))


def test_every_fastloss_torch_counterpart_has_samples():
    names = {p.values[0].name for p in SAMPLES}
    assert names == set(OPS), f"no op_db samples for {sorted(set(OPS) - names)}"


@pytest.mark.parametrize(("op", "sample"), SAMPLES)
def test_fastloss_matches_pytorch_on_its_samples(op, sample):
    call, with_grad = OPS[op.name]
    dt = np.dtype(str(sample.input.dtype).removeprefix("torch."))
    reason = _divergence(op.name, sample)
    if reason is not None:
        with pytest.raises(ValueError, match=r"1"):
            call(sample)
        return
    loss_t, grad_t = _torch_result(op, sample, with_grad)
    res = call(sample)
    if with_grad:
        loss, grad = res
        assert np.asarray(loss).shape == loss_t.shape, "loss shape"
        assert np.asarray(loss).dtype == dt
        assert_close(loss, loss_t, dt, err_msg="loss")
        assert grad.shape == grad_t.shape and grad.dtype == dt
        assert_close(grad, grad_t, dt, err_msg="grad")
    else:
        out = np.asarray(res)
        assert out.shape == loss_t.shape, f"shape {out.shape} != PyTorch {loss_t.shape}"
        assert out.dtype == loss_t.dtype
        assert_close(out, loss_t, out.dtype)


def test_samples_cover_the_known_zero_d_multi_margin_case():
    """PyTorch's first multi_margin_loss sample is a 0-d input with a 0-d target."""
    ids = [p.id for p in SAMPLES if p.values[0].name == "nn.functional.multi_margin_loss"
           and p.values[1].input.ndim == 0]
    assert ids


# --------------------------------------------------- regressions of the mismatches found
def test_multi_margin_loss_zero_d_input():
    """PyTorch treats a 0-d input as one sample of one class: loss 0, gradient 0."""
    x = np.array(0.3)
    for red in ("mean", "sum", "none"):
        loss, g = fl.multi_margin_loss(x, np.array(0), reduction=red)
        lt, gt = _torch_result(
            types.SimpleNamespace(op=torch.nn.functional.multi_margin_loss),
            types.SimpleNamespace(input=torch.tensor(0.3, dtype=torch.float64),
                                  args=(torch.tensor(0),), kwargs={"reduction": red}),
            True)
        assert np.shape(loss) == lt.shape and g.shape == ()
        assert_close(loss, lt, np.float64)
        assert_close(g, gt, np.float64)
    with pytest.raises(IndexError, match="1 classes"):
        fl.multi_margin_loss(x, np.array(1))


@pytest.mark.parametrize("fname", ["softmax", "log_softmax"])
def test_softmax_of_a_zero_d_input(fname):
    """torch.softmax(0-d, dim=0) is 1 (log_softmax 0): one element along a size-1 axis."""
    for v in (0.3, -math.inf, math.nan):
        ref = getattr(torch, fname)(torch.tensor(v, dtype=torch.float64), 0).numpy()
        for axis in (0, -1):
            out = getattr(fl, fname)(np.array(v), axis=axis)
            assert out.shape == () and out.dtype == np.float64
            assert_close(out, ref, np.float64)
    with pytest.raises(ValueError, match="out of bounds"):
        getattr(fl, fname)(np.array(0.3), axis=1)


def test_logsumexp_axis_tuple_and_keepdims():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5))
    for dim in ((0, 1), (1, 2), (0, 2), (0, 1, 2), (-1, 0), 1, -2):
        for keep in (False, True):
            ref = torch.logsumexp(torch.tensor(x), dim, keepdim=keep).numpy()
            out = fl.logsumexp(x, axis=dim, keepdims=keep)
            assert np.shape(out) == ref.shape
            assert_close(out, ref, np.float64)
    ref = torch.logsumexp(torch.tensor(0.5, dtype=torch.float64), 0).numpy()
    assert_close(fl.logsumexp(np.array(0.5), axis=0), ref, np.float64)
    with pytest.raises(ValueError, match="repeated"):
        fl.logsumexp(x, axis=(1, 1))
