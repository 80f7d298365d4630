"""Shared test machinery for every fastloss test file.

Import the helpers with ``from tests.conftest import assert_close, torch_loss_and_grad``
(``tests`` is a package) or use the fixtures of the same names.

* ``assert_close(actual, expected, dtype)``: SPEC tolerances (float64 rtol 1e-7 / atol
  1e-12, float32 rtol 2e-5 / atol 1e-6); NaN must match NaN and +-inf must match the same
  infinity, position by position.
* ``torch_loss_and_grad(fn, x, *args, **kw)``: run a PyTorch loss in float64 autograd and
  return ``(loss, grad)`` as float64 NumPy (grad of ``loss.sum()``, i.e. the ``"none"``
  convention of SPEC section 1).
* ``central_diff_check(f, x, grad, ...)``: directional central-difference check of a
  gradient in float64.
* hypothesis profiles: ``default`` (deadline off, modest examples) and ``ci`` (fewer
  examples, derandomized), the latter selected when the ``CI`` environment variable is set;
  ``HYPOTHESIS_PROFILE`` overrides.
* fixtures: ``rng`` (fresh seeded generator per test), ``threads`` (restores
  ``fastloss.set_num_threads`` afterwards).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# ------------------------------------------------------------------------- hypothesis
settings.register_profile(
    "default",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=20,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


# -------------------------------------------------------------------------- tolerances
#: SPEC section 1 tolerances (rtol) plus a small atol for values that should be ~0.
TOLERANCES = {
    np.dtype(np.float64): (1e-7, 1e-12),
    np.dtype(np.float32): (2e-5, 1e-6),
}


def tolerance(dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for results of ``dtype``."""
    return TOLERANCES[np.dtype(dtype)]


def assert_close(actual, expected, dtype=None, *, rtol=None, atol=None, err_msg=""):
    """Assert ``actual`` matches ``expected`` within the SPEC tolerance of ``dtype``.

    ``dtype`` defaults to ``actual``'s dtype.  Shapes must match exactly (a 0-d array or a
    NumPy scalar matches a Python float).  NaN positions must coincide, infinities must
    coincide in position and sign; finite values are compared with
    ``|a - e| <= atol + rtol * |e|``.  The sign of zero is not compared.
    """
    a = np.asarray(actual)
    e = np.asarray(expected)
    dt = np.dtype(dtype) if dtype is not None else a.dtype
    if dt not in TOLERANCES:
        dt = np.dtype(np.float64)
    r0, a0 = TOLERANCES[dt]
    rtol = r0 if rtol is None else rtol
    atol = a0 if atol is None else atol
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}. {err_msg}"
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    if dt == np.float32:
        # a float64 expectation beyond float32's range is +-inf in float32 (IEEE rounding)
        big = np.abs(e64) >= 3.4028235677973366e38
        e64 = np.where(big, np.copysign(np.inf, e64), e64)
    an, en = np.isnan(a64), np.isnan(e64)
    if not np.array_equal(an, en):
        idx = np.argwhere(an != en)[:5]
        raise AssertionError(
            f"NaN mismatch at {idx.tolist()}: actual {a64[tuple(idx.T)]}, "
            f"expected {e64[tuple(idx.T)]}. {err_msg}"
        )
    ai, ei = np.isinf(a64), np.isinf(e64)
    if not (np.array_equal(ai, ei) and np.array_equal(a64[ai], e64[ei])):
        idx = np.argwhere((ai != ei) | (ai & ei & (a64 != e64)))[:5]
        raise AssertionError(
            f"inf mismatch at {idx.tolist()}: actual {a64[tuple(idx.T)]}, "
            f"expected {e64[tuple(idx.T)]}. {err_msg}"
        )
    fin = ~(an | ai)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a64 - e64)
        ok = err <= atol + rtol * np.abs(e64)
    bad = fin & ~ok
    if bad.any():
        idx = np.argwhere(bad)
        worst = idx[np.argmax(err[bad])]
        raise AssertionError(
            f"{bad.sum()} of {a.size} values differ beyond rtol={rtol}, atol={atol}; worst "
            f"at {worst.tolist()}: actual {a64[tuple(worst)]!r}, expected "
            f"{e64[tuple(worst)]!r} (abs err {err[tuple(worst)]:.3g}). {err_msg}"
        )


def assert_result(res, x, expected_loss, expected_grad, reduction, *, loss_shape=None,
                  err_msg=""):
    """Check a ``LossResult`` for dtype, shape and values against float64 expectations.

    ``x`` is the input (its dtype and shape fix the result's); ``loss_shape`` is the
    ``"none"`` shape (required when ``reduction == "none"``).  ``expected_grad`` may be
    ``None`` when ``res.grad`` must be ``None``.
    """
    x = np.asarray(x)
    loss, grad = res
    if reduction == "none":
        assert isinstance(loss, np.ndarray), f"'none' loss is {type(loss)}. {err_msg}"
        assert loss.shape == tuple(loss_shape), f"loss shape {loss.shape} != {loss_shape}"
    else:
        assert isinstance(loss, np.generic) and np.ndim(loss) == 0, (
            f"{reduction!r} loss must be a NumPy scalar, got {type(loss)}. {err_msg}")
    assert loss.dtype == x.dtype, f"loss dtype {loss.dtype} != input {x.dtype}. {err_msg}"
    assert_close(loss, expected_loss, x.dtype, err_msg="loss: " + err_msg)
    if expected_grad is None:
        assert grad is None, "grad must be None when grad=False"
        return
    assert isinstance(grad, np.ndarray)
    assert grad.dtype == x.dtype, f"grad dtype {grad.dtype} != input {x.dtype}. {err_msg}"
    assert grad.shape == x.shape, f"grad shape {grad.shape} != input {x.shape}. {err_msg}"
    assert_close(grad, expected_grad, x.dtype, err_msg="grad: " + err_msg)


# --------------------------------------------------------------------------- torch
def _to_torch(a):
    import torch

    if isinstance(a, np.ndarray) or isinstance(a, np.generic):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            return torch.tensor(np.array(a, dtype=np.float64))
        if a.dtype.kind in "iub":
            return torch.tensor(np.array(a, dtype=np.int64))
    return a


def torch_loss_and_grad(fn, x, *args, grad=True, **kw):
    """Run ``fn(x_t, *args_t, **kw_t)`` in float64 PyTorch; return float64 NumPy
    ``(loss, grad_wrt_x)``.

    NumPy float arrays (positional or keyword) become float64 tensors, integer arrays int64
    tensors (copies: read-only and memmap inputs are fine); other values pass through.
    ``grad`` is the gradient of ``loss.sum()`` w.r.t. ``x``, or ``None`` when ``grad=False``
    or the loss does not depend on ``x``.
    """
    xt = _to_torch(np.asarray(x)).requires_grad_(grad)
    return autograd_loss_and_grad(fn, xt, [_to_torch(a) for a in args],
                                  {k: _to_torch(v) for k, v in kw.items()}, grad)


def autograd_loss_and_grad(fn, xt, args, kw, grad):
    """``fn(xt, *args, **kw)`` on tensors -> float64 NumPy ``(loss, d loss.sum() / d xt)``
    (``None`` when ``grad=False``, zeros when the loss does not depend on ``xt``)."""
    import torch

    out = fn(xt, *args, **kw)
    g = None
    if grad:
        if out.requires_grad:
            (gt,) = torch.autograd.grad(out.sum(), xt, allow_unused=True)
            g = np.zeros(xt.shape) if gt is None else gt.detach().numpy().astype(np.float64)
        else:
            g = np.zeros(xt.shape)
    return out.detach().numpy().astype(np.float64), g


def torchvision_sigmoid_focal_loss(x, t, alpha=0.25, gamma=2.0, reduction="mean"):
    """``torchvision.ops.sigmoid_focal_loss`` transcribed (torchvision is not a
    dependency), on tensors; ``alpha`` None or negative: no class weighting."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


# ------------------------------------------------------------------ finite differences
def central_diff_check(f, x, grad, *, eps=1e-6, rtol=1e-6, atol=1e-9, n_dirs=2, seed=0):
    """Check ``grad`` (d f / d x, same shape as x) against central differences of ``f``.

    ``f(x) -> float`` (a scalar loss, evaluated in float64).  Uses ``n_dirs`` random
    directions ``v``: ``(f(x + eps v) - f(x - eps v)) / (2 eps) ~= <grad, v>``.
    """
    x = np.asarray(x, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64)
    assert grad.shape == x.shape
    r = np.random.default_rng(seed)
    for _ in range(n_dirs):
        v = r.standard_normal(x.shape)
        fd = (float(f(x + eps * v)) - float(f(x - eps * v))) / (2 * eps)
        an = float(np.sum(grad * v))
        assert abs(fd - an) <= atol + rtol * max(abs(fd), abs(an)), (
            f"central difference {fd!r} != analytic {an!r}")


# ------------------------------------------------------------------------- fixtures
@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: deterministic, distinct per test."""
    import zlib

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def threads():
    """Yields ``fastloss``; restores its thread count afterwards."""
    import fastloss

    n = fastloss.get_num_threads()
    yield fastloss
    fastloss.set_num_threads(n)


@pytest.fixture(name="assert_close")
def _assert_close_fixture():
    return assert_close


@pytest.fixture(name="torch_loss_and_grad")
def _torch_loss_and_grad_fixture():
    return torch_loss_and_grad
