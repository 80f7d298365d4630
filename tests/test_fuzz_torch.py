"""Property-based fuzzing of ``fastloss.torch`` (issue 13, item 6: every public function).

The NumPy functions underneath are fuzzed in ``tests/test_fuzz.py``; this file fuzzes the
autograd layer on top: for every ``fastloss.torch`` loss that ``torch.nn.functional`` also
has, hypothesis draws a dtype, a shape (empty batches included), a memory layout of the
input (contiguous, transposed, strided slice), whether the input requires grad, the
reduction, an upstream gradient (a random one for ``"none"``) and the loss's options, and
checks the loss and ``input.grad`` against ``torch.nn.functional`` on the same tensors in
float64 (float32 calls: to float32 tolerances), the target untouched and the input
untouched.  Examples per function: ``FASTLOSS_FUZZ_EXAMPLES`` as in ``test_fuzz.py``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
F = torch.nn.functional
flt = pytest.importorskip("fastloss.torch")

N_EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "0") or 0) or 100
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# name: (input kind, target kind, options drawn from)
CASES = {
    "cross_entropy": ("logits", "index", {"label_smoothing": [0.0, 0.1],
                                           "ignore_index": [-100, 0]}),
    "cross_entropy_prob": ("logits", "prob", {"label_smoothing": [0.0, 0.2]}),
    "nll_loss": ("logprob", "index", {"ignore_index": [-100, 1]}),
    "multi_margin_loss": ("logits", "index", {"p": [1, 2], "margin": [1.0, 0.5]}),
    "kl_div": ("logprob", "prob", {"log_target": [False]}),
    "binary_cross_entropy": ("prob", "prob", {}),
    "binary_cross_entropy_with_logits": ("logits", "prob", {}),
    "mse_loss": ("logits", "real", {}),
    "l1_loss": ("logits", "real", {}),
    "smooth_l1_loss": ("logits", "real", {"beta": [0.5, 1.0, 2.0]}),
    "huber_loss": ("logits", "real", {"delta": [0.5, 1.0, 3.0]}),
    "poisson_nll_loss": ("logits", "count", {"log_input": [True], "full": [False, True]}),
    "soft_margin_loss": ("logits", "pm1", {}),
}


def _input(draw, kind, shape, dtype):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 4.0, 30.0]))
    x = rng.standard_normal(shape) * scale
    if kind == "logprob":
        x = x - np.log(np.sum(np.exp(x - x.max(axis=-1, keepdims=True)), axis=-1,
                              keepdims=True)) - x.max(axis=-1, keepdims=True) if x.size else x
    elif kind == "prob":
        x = 1.0 / (1.0 + np.exp(-x))
        x = np.clip(x, 1e-6, 1 - 1e-6)
    elif kind == "logits" and x.size and draw(st.booleans()):
        x.flat[rng.integers(0, x.size)] = draw(st.sampled_from([-1e4, 1e4, -60.0]))
    t = torch.tensor(x, dtype=dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed" and t.ndim == 2:
        t = t.t().contiguous().t()  # same values, column-major storage
    elif layout == "strided":
        big = torch.zeros(shape[:-1] + (2 * shape[-1],), dtype=dtype)
        big[..., ::2] = t
        t = big[..., ::2]
    return t, rng


def _target(draw, kind, x, rng, name):
    if kind == "index":
        N, C = x.shape
        return torch.tensor(rng.integers(0, max(C, 1), N), dtype=torch.int64)
    shape = tuple(x.shape)
    if kind == "prob":
        if name in ("cross_entropy_prob", "kl_div"):
            p = rng.random(shape) + 1e-3
            p = p / p.sum(axis=-1, keepdims=True) if p.size else p
        else:
            p = rng.random(shape)
            if p.size and draw(st.booleans()):
                p = np.round(p)
        return torch.tensor(p, dtype=x.dtype)
    if kind == "count":
        return torch.tensor(rng.poisson(2.0, shape).astype(np.float64), dtype=x.dtype)
    if kind == "pm1":
        return torch.tensor(np.where(rng.random(shape) < 0.5, -1.0, 1.0), dtype=x.dtype)
    return torch.tensor(rng.standard_normal(shape) * 3.0, dtype=x.dtype)


@st.composite
def torch_case(draw, name):
    in_kind, t_kind, options = CASES[name]
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    N = draw(st.integers(0, 6))
    C = draw(st.integers(1, 7))
    shape = (N, C)
    x, rng = _input(draw, in_kind, shape, dtype)
    t = _target(draw, t_kind, x, rng, name)
    kw = {k: draw(st.sampled_from(v)) for k, v in options.items()}
    if kw.get("ignore_index", -100) >= C:
        kw["ignore_index"] = -100
    if "ignore_index" in kw and N and draw(st.booleans()):
        t[0] = kw["ignore_index"]  # an ignored sample
    reduction = draw(st.sampled_from(["none", "sum", "mean"]))
    needs_grad = draw(st.booleans())
    return name, x, t, kw, reduction, needs_grad, rng


def _fastloss_fn(name):
    return flt.cross_entropy if name == "cross_entropy_prob" else getattr(flt, name)


def _soft_margin_stable(x, t, reduction="mean"):
    """F.soft_margin_loss in the stable form fastloss documents (PyTorch's own
    ``log(1 + exp(-t x))`` overflows to inf beyond -t x ~ 709)."""
    per = F.softplus(-t * x, threshold=40.0)
    return per if reduction == "none" else (per.sum() if reduction == "sum" else per.mean())


def _torch_fn(name):
    if name == "soft_margin_loss":
        return _soft_margin_stable
    return F.cross_entropy if name == "cross_entropy_prob" else getattr(F, name)


def _run(fn, x, t, kw, reduction, needs_grad, upstream):
    leaf = x.detach().requires_grad_(needs_grad)  # a view of x's storage, any layout
    with warnings.catch_warnings():
        if fn.__module__.startswith("torch"):
            warnings.simplefilter("ignore")  # F.kl_div's "mean" warning (fastloss: none)
        loss = fn(leaf, t, reduction=reduction, **kw)
    grad = None
    if needs_grad:
        (grad,) = torch.autograd.grad(loss, leaf, grad_outputs=upstream, allow_unused=True)
    return loss.detach(), grad


def _close(a, b, dtype, what):
    a = a.to(torch.float64).numpy()
    b = b.to(torch.float64).numpy()
    if dtype == torch.float64:
        rtol, atol = 1e-9, 1e-12
    else:
        rtol, atol = 2e-4, 2e-5
    scale = np.max(np.abs(b[np.isfinite(b)]), initial=0.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True,
                               err_msg=what)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fuzz_fastloss_torch(name):
    @FUZZ
    @given(case=torch_case(name))
    def check(case):
        name_, x, t, kw, reduction, needs_grad, rng = case
        x_before, t_before = x.detach().clone(), t.clone()
        # the reference in float64 on the same values (float32 inputs: upcast)
        x64 = x.detach().to(torch.float64)
        t64 = t.to(torch.float64) if t.is_floating_point() else t
        ref_loss, _ = _run(_torch_fn(name_), x64, t64, kw, reduction, False, None)
        if name_ == "multi_margin_loss" and x.shape[0] == 0 and reduction == "mean":
            # PyTorch returns uninitialised memory (e.g. 4.7e-310) for the mean of an empty
            # batch; fastloss returns NaN, as every other PyTorch mean of nothing
            ref_loss = torch.tensor(float("nan"), dtype=torch.float64)
        if reduction == "none":
            up = torch.tensor(rng.standard_normal(tuple(ref_loss.shape)), dtype=x.dtype)
        else:
            up = torch.tensor(rng.standard_normal(), dtype=x.dtype)
        _, ref_grad = _run(_torch_fn(name_), x64, t64, kw, reduction, True, up.to(torch.float64))
        loss, grad = _run(_fastloss_fn(name_), x, t, kw, reduction, needs_grad, up)
        assert loss.dtype == x.dtype and tuple(loss.shape) == tuple(ref_loss.shape)
        if needs_grad:
            assert grad is not None and grad.dtype == x.dtype and grad.shape == x.shape
        try:
            _close(loss, ref_loss, x.dtype, f"{name_} loss {kw} {reduction}")
            if needs_grad:
                _close(grad, ref_grad, x.dtype, f"{name_} grad {kw} {reduction}")
        except AssertionError:
            if x.dtype != torch.float32:
                raise
            # a value beyond float32's range (exp(99) in poisson_nll_loss) is inf in float32
            # arithmetic: then PyTorch's own float32 computation is the reference
            nat_loss, nat_grad = _run(_torch_fn(name_), x, t, kw, reduction, needs_grad, up)
            _close(loss, nat_loss, x.dtype, f"{name_} loss {kw} {reduction} (vs float32)")
            if needs_grad:
                _close(grad, nat_grad, x.dtype, f"{name_} grad {kw} {reduction} (vs float32)")
        assert torch.equal(x.detach(), x_before) and torch.equal(t, t_before)

    check()
