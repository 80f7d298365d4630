"""Property-based fuzzing of every public function (issue 13, item 6).

Hypothesis draws shapes (empty, 1 x 1, 0-d where PyTorch allows it, up to a few dozen
elements, and now and then a tiling past the parallel thresholds), dtypes, memory layouts
(C, Fortran, transposed, strided, negative strides, read-only, byte-swapped), option
values and extreme values (+-inf, NaN, +-1e30, +-1e20, exp-overflow points, subnormals,
-inf-masked logits) for each function, and checks:

* **no crash**: the only exceptions are the ones SPEC section 5 names, with their content
  (``TypeError`` naming float32/float64, ``ValueError`` naming both shapes / the valid
  reductions / the option, ``IndexError`` naming the class index and ``C``);
* a call built to be invalid raises exactly the expected one;
* a valid call gives the reference's loss and gradient: PyTorch in float64 where PyTorch
  has the function, else the float64 references of ``tests/reference_*.py`` or the
  SPEC formulas (grad_hess).  SPEC tolerances (``tests.conftest.assert_close``); a reduced
  loss may also differ by ``rtol * sum|l_i| / D`` (the rounding of the per-sample terms);
  a float32 result may instead match PyTorch's own float32 computation (its NaN/inf
  pattern included).  When fastloss rejects a valid-looking call, PyTorch must reject it
  too;
* the inputs are not modified.

Examples per function: ``FASTLOSS_FUZZ_EXAMPLES`` (the opt-in run: 10000), default
``_DEFAULT_EXAMPLES``.  ``FASTLOSS_FUZZ_SUMMARY=path`` (or any opt-in run, to
``fuzz_summary.json`` in the working directory) writes the examples run per function.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl
from tests import edges
from tests import reference_pointwise as refp
from tests import reference_softmax as refs
from tests.conftest import assert_close, autograd_loss_and_grad, torchvision_sigmoid_focal_loss

torch = pytest.importorskip("torch")
F = torch.nn.functional

_DEFAULT_EXAMPLES = 200
N_EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "0") or 0) or _DEFAULT_EXAMPLES
OPT_IN = "FASTLOSS_FUZZ_EXAMPLES" in os.environ

FUZZ = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

COUNTS: collections.Counter = collections.Counter()
_ERRORS = (ValueError, TypeError, IndexError)


@pytest.fixture(autouse=True)
def _summary():
    """After every test (so that a long run's figures survive an interruption)."""
    yield
    path = os.environ.get("FASTLOSS_FUZZ_SUMMARY") or ("fuzz_summary.json" if OPT_IN else "")
    if path and COUNTS:
        Path(path).write_text(json.dumps(
            {"max_examples": N_EXAMPLES, "examples": dict(sorted(COUNTS.items()))}, indent=1))


# ============================================================================ values
def _specials(dt):
    tiny = float(np.finfo(dt).tiny)
    return [math.inf, -math.inf, math.nan, 1e30, -1e30, 1e20, -1e20, 0.0, -0.0, tiny,
            tiny / 4, -tiny / 4, 88.8, -88.8, 710.0, -710.0, 1e-3, 4988429.2]


def _floats(dt, lo=-6.0, hi=6.0, specials=True):
    w = 32 if np.dtype(dt) == np.float32 else 64
    s = st.floats(lo, hi, width=w)
    if specials:
        s = st.one_of(s, s, s, st.sampled_from(_specials(dt)))
    return s


_LAYOUTS = ["C", "fortran", "transposed", "strided", "reversed", "readonly", "byteswapped"]


@st.composite
def _layout(draw, a):
    """``a``'s values in a drawn memory layout (tests/edges.py's layouts)."""
    # (edges.layouts gives a 0-d array's "C" variant as shape (1,): np.ascontiguousarray)
    options = {k: v if v.shape == a.shape else v.reshape(a.shape)
               for k, v in edges.layouts(a)}
    name = draw(st.sampled_from([k for k in _LAYOUTS if k in options]))
    return options[name]


@st.composite
def _array(draw, dt, shape, lo=-6.0, hi=6.0, specials=True, layout=True):
    a = draw(hnp.arrays(dt, shape, elements=_floats(dt, lo, hi, specials)))
    return draw(_layout(a)) if layout else a


def _shape(min_dims=0, max_dims=3, min_side=0, max_side=6):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


_dtypes = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])


def _tile_rows(arrays, reps):
    """Tile every array of the call ``reps`` times along axis 0 (past the parallel
    thresholds, so the parallel builds see the extreme values too)."""
    return [np.concatenate([a] * reps, axis=0) if np.ndim(a) else a for a in arrays]


# ========================================================================== execution
class Call:
    """One drawn call: the fastloss function and arguments, the expected error (or None),
    and how to get the reference."""

    def __init__(self, fname, args, kw, expect=None, ref=None, native=None, denom=None,
                 per_sample=None, inplace=False, alt=None):
        self.fname, self.args, self.kw = fname, list(args), dict(kw)
        self.expect = expect  # (exception type, [regexes]) or None
        self.ref = ref  # () -> (loss, grad) float64, may raise when PyTorch rejects
        self.native = native  # () -> (loss, grad) in the input dtype (PyTorch float32)
        self.denom = denom  # the "mean" denominator, for the reduced-loss tolerance
        self.per_sample = per_sample  # () -> float64 per-sample losses
        self.inplace = inplace
        self.alt = alt  # () -> (loss, grad): a documented deviation's own reference
        self.none_ref = None  # () -> float64 (per-element losses, their gradients)
        self.term_scale = None  # () -> per-sample magnitude of the terms that cancel
        self.grad_scale = None  # () -> the same for the gradient (broadcast to its shape)

    def __repr__(self):
        def show(a):
            if isinstance(a, np.ndarray):
                flags = "" if a.flags.c_contiguous else " non-C"
                return (f"array({np.array2string(a, threshold=40, precision=9)}, "
                        f"dtype={a.dtype.str}{flags}, shape={a.shape})")
            return repr(a)

        args = ", ".join(show(a) for a in self.args)
        kw = ", ".join(f"{k}={show(v)}" for k, v in self.kw.items())
        return f"fl.{self.fname}({args}, {kw})"


def _check_error(e, expect):
    etype, patterns = expect
    assert isinstance(e, etype), f"expected {etype.__name__}, got {type(e).__name__}: {e}"
    for p in patterns:
        assert re.search(p, str(e)), f"message {str(e)!r} lacks {p!r}"


def _generic_error_content(e, fname):
    """An unexpected-but-allowed error must still say something SPEC 5 asks for."""
    msg = str(e)
    if isinstance(e, TypeError):
        return
    assert msg.strip(), f"{fname}: empty error message ({type(e).__name__})"


def _snapshot(args):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def _unchanged(before, after):
    for b, a in zip(before, after, strict=True):
        if isinstance(b, np.ndarray):
            assert b.tobytes() == np.ascontiguousarray(a).astype(b.dtype).tobytes() or (
                np.array_equal(b, a, equal_nan=True)), "an input was modified"


def _scale(call):
    """Per-sample magnitudes whose float rounding bounds a loss's error: ``|l_i|`` (the
    per-sample losses) plus ``call.term_scale()`` where the loss is a difference of large
    terms (``logsumexp - z_y``)."""
    per = np.abs(np.asarray(call.per_sample(), dtype=np.float64))
    if call.term_scale is not None:
        per = per + np.abs(np.asarray(call.term_scale(), dtype=np.float64)).reshape(per.shape)
    return per


def _close_reduced(loss, exp, dt, call, err):
    try:
        assert_close(loss, exp, dt, err_msg=err)
        return
    except AssertionError:
        if call.per_sample is None or not np.isfinite(exp):
            raise
    rtol, atol = (2e-5, 1e-6) if dt == np.float32 else (1e-7, 1e-12)
    d = abs(call.denom) if call.denom else 1.0
    with np.errstate(all="ignore"):
        sc = _scale(call)
        scale = float(np.sum(sc[np.isfinite(sc)])) / d if d else math.inf
    assert abs(float(loss) - float(exp)) <= atol + rtol * scale, (
        f"{err}: {loss!r} vs {exp!r} (cancellation scale {scale:.3g})")


def _close_per_sample(loss, exp, dt, call, err):
    try:
        assert_close(loss, exp, dt, err_msg=err)
        return
    except AssertionError:
        if call.per_sample is None or call.term_scale is None:
            raise
    rtol, atol = (2e-5, 1e-6) if dt == np.float32 else (1e-7, 1e-12)
    sc = _scale(call)
    sc = sc[np.isfinite(sc)]
    assert_close(loss, exp, dt, rtol=rtol, atol=atol + rtol * float(np.max(sc, initial=0.0)),
                 err_msg=err)


def _close_grad(grad, egrad, dt, call, err):
    try:
        assert_close(grad, egrad, dt, err_msg=err)
        return
    except AssertionError:
        if call.grad_scale is None:
            raise
    # rounding of sums that cancel (probability targets of mixed sign and magnitude)
    rtol, atol = (2e-5, 1e-6) if dt == np.float32 else (1e-7, 1e-12)
    scale = np.broadcast_to(np.asarray(call.grad_scale(), np.float64), np.shape(egrad))
    a, e = np.asarray(grad, np.float64), np.asarray(egrad, np.float64)
    with np.errstate(all="ignore"):
        loose = np.isfinite(e) & np.isfinite(scale) & (
            np.abs(a - e) <= atol + rtol * (np.abs(e) + scale))
    assert_close(np.where(loose, 0.0, a), np.where(loose, 0.0, e), dt, err_msg=err)


def _compare(res, exp, dt, call, name):
    loss, grad = res
    eloss, egrad = exp
    if np.ndim(eloss) == 0 and call.kw.get("reduction", "mean") != "none":
        _close_reduced(loss, eloss, dt, call, f"{name} loss")
    else:
        _close_per_sample(loss, eloss, dt, call, f"{name} loss")
    if egrad is not None and grad is not None:
        assert grad.shape == np.shape(egrad)
        _close_grad(grad, egrad, dt, call, f"{name} grad")


def run(name, call: Call):
    COUNTS[name] += 1
    fn = getattr(fl, call.fname)
    before = _snapshot(call.args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            res = fn(*call.args, **call.kw)
        except _ERRORS as e:
            if call.expect is not None:
                _check_error(e, call.expect)
                return
            _generic_error_content(e, name)
            # fastloss rejects a call built as valid: PyTorch must reject it too
            if call.ref is None:
                raise
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    call.ref()
            except (RuntimeError, ValueError, IndexError, TypeError):
                return
            raise AssertionError(f"{name}: fastloss raised {e!r}; the reference accepts") \
                from e
    assert call.expect is None, f"{name}: expected {call.expect[0].__name__}, got a result"
    if not call.inplace:
        _unchanged(before, call.args)
    dt = np.asarray(res[0] if isinstance(res, tuple) else res).dtype
    if call.ref is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = call.ref()
    if not isinstance(res, tuple):
        res, exp = (res, None), (exp, None)
    try:
        _compare(res, exp, dt, call, name)
    except AssertionError as first:
        others = []
        if call.native is not None and dt == np.float32:
            others.append((call.native, " (vs PyTorch float32)"))
        if call.alt is not None:
            others.append((call.alt, " (vs the documented stable form)"))
        for other, what in others:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e2 = other()
            if not isinstance(e2, tuple):
                e2 = (e2, None)
            try:
                _compare(res, e2, dt, call, name + what)
                return
            except AssertionError:
                pass
        if dt == np.float32 and call.none_ref is not None:
            try:
                if _f32_overflow_ok(res, exp, call):
                    return
            except AssertionError:
                pass
        if call.alt is not None:
            # element by element, either the reference or the documented form (the loss
            # too under "none"; a reduced loss must match one of them as a whole)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                alt = call.alt()
            merged = []
            reduced = call.kw.get("reduction", "mean") != "none"
            for k, (got, e1, e2) in enumerate(zip(res, exp, alt, strict=True)):
                if e1 is None or e2 is None:
                    merged.append(e1)
                    continue
                if k == 0 and reduced:
                    try:
                        _close_reduced(got, e2, dt, call, "")
                        merged.append(e2)
                    except AssertionError:
                        merged.append(e1)
                    continue
                e1, e2 = np.broadcast_arrays(np.asarray(e1, np.float64),
                                             np.asarray(e2, np.float64))
                a = np.asarray(got, np.float64)
                with np.errstate(all="ignore"):
                    near2 = (a == e2) | (np.abs(a - e2) <= 1e-6 + 2e-5 * np.abs(e2)) | (
                        np.isnan(a) & np.isnan(e2))
                merged.append(np.where(near2, e2, e1))
            try:
                _compare(res, tuple(merged), dt, call, name + " (elementwise either)")
                return
            except AssertionError:
                pass
        raise first


def _f32_overflow_ok(res, exp, call):
    """A float32 call's per-element loss or (unscaled) gradient beyond float32's range
    overflows in float32 arithmetic (``exp(88.8)``), also when the reduced value would fit:
    such elements (and a reduction over them) may be non-finite; the rest must match."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        l_none, g_none = call.none_ref()
    big = float(np.finfo(np.float32).max)
    with np.errstate(all="ignore"):
        ovl = np.isfinite(l_none) & (np.abs(l_none) > big)
        ovg = np.isfinite(g_none) & (np.abs(g_none) > big)
    if not (ovl.any() or ovg.any()):
        return False
    loss, grad = res
    eloss, egrad = exp
    if np.ndim(eloss) == 0 and call.kw.get("reduction", "mean") != "none":
        if not ovl.any():
            assert_close(loss, eloss, np.float32)
        elif np.isfinite(loss):  # an overflowing term: inf, or the float64 value
            assert_close(loss, eloss, np.float32)
    else:
        a, e = np.asarray(loss, np.float64), np.asarray(eloss, np.float64)
        free = ovl & ~np.isfinite(a)
        assert_close(np.where(free, 0.0, a), np.where(free, 0.0, e), np.float32)
    if grad is not None and egrad is not None:
        a, e = np.asarray(grad, np.float64), np.asarray(egrad, np.float64)
        free = np.broadcast_to(ovg, a.shape) & ~np.isfinite(a)
        assert_close(np.where(free, 0.0, a), np.where(free, 0.0, e), np.float32)
    return True


# -------------------------------------------------------------------- torch helpers
def _t(a, dtype=torch.float64):
    a = np.asarray(a)
    a = a.astype(a.dtype.newbyteorder("="))  # torch takes native byte order only
    if a.dtype.kind in "iub":
        return torch.tensor(a.astype(np.int64))
    return torch.tensor(np.array(a, dtype=np.float64 if dtype == torch.float64 else a.dtype))


def _torch_ref(f, x, others, kw, grad=True, native=False):
    """``f(x_t, *others_t, **kw_t)`` in float64 (or x's own dtype) -> (loss, grad)."""
    dt = torch.float64
    if native:
        dt = torch.float32 if np.asarray(x).dtype.newbyteorder("=") == np.float32 \
            else torch.float64

    def conv(a):
        if isinstance(a, np.ndarray):
            t = _t(a, dt)
            return t.to(dt) if t.is_floating_point() else t
        return a

    xt = conv(np.asarray(x)).requires_grad_(grad)
    return autograd_loss_and_grad(f, xt, [conv(o) for o in others],
                                  {k: conv(v) for k, v in kw.items()}, grad)


def _reductions(name):
    return list(fl.LOSSES[name].reductions)


@st.composite
def _reduction(draw, name, call_kw):
    """A reduction; with a small probability an invalid one (ValueError expected)."""
    if draw(st.integers(0, 24)) == 0:
        call_kw["reduction"] = draw(st.sampled_from(["avg", "", "Mean", "elementwise"]))
        return (ValueError, [r"valid value"])
    call_kw["reduction"] = draw(st.sampled_from(_reductions(name)))
    return None


@st.composite
def _bad_dtype_input(draw, shape):
    kind = draw(st.sampled_from(["int64", "int32", "bool", "float16", "complex128"]))
    return np.zeros(shape, dtype=kind)


_DTYPE_ERR = (TypeError, [r"float32", r"float64"])


# ========================================================================= elementwise
def _targets(draw, kind, dt, shape):
    if kind == "real":
        return draw(_array(dt, shape))
    if kind == "prob":
        return draw(_array(dt, shape, 0.0, 1.0, specials=False))
    if kind == "pm1":
        return draw(hnp.arrays(dt, shape, elements=st.sampled_from([-1.0, 1.0])).flatmap(
            _layout))
    if kind == "count":
        return draw(hnp.arrays(dt, shape, elements=st.one_of(
            st.integers(0, 20).map(float), st.floats(0, 1e4, width=32),
            st.sampled_from([0.0, 1.0, 1e20, math.inf]))).flatmap(_layout))
    if kind == "kl":
        return draw(_array(dt, shape, 0.0, 1.0, specials=True))
    raise AssertionError(kind)


def _poisson_terms(x, t, kw):
    """|terms| of the Poisson NLL, whose difference is the loss (rounding bound)."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    with np.errstate(all="ignore"):
        if kw.get("log_input", True):
            s = np.abs(np.exp(x)) + np.abs(t * x)
        else:
            s = np.abs(x) + np.abs(t * np.log(x + kw.get("eps", 1e-8)))
        if kw.get("full", False):
            s = s + np.where(t > 1, np.abs(t * np.log(t)) + t, 0.0)
    return np.where(np.isfinite(s), s, 0.0)


def _bcel_stable(x, t, weight=None, pos_weight=None, reduction="mean"):
    """BCE with logits as ``w (pw t softplus(-x) + (1 - t) softplus(x))``, in float64: no
    cancellation (PyTorch's ``(1 - t) x - log_sigmoid(x)`` loses ``t x`` for ``x`` near
    -1e30; fastloss keeps it)."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    w = 1.0 if weight is None else np.asarray(weight, np.float64)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    with np.errstate(all="ignore"):
        def sp(z):
            return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))

        def sig(z):
            return np.where(z >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))

        l = w * (pw * t * sp(-x) + (1 - t) * sp(x))
        g = w * (-pw * t * sig(-x) + (1 - t) * sig(x))
        l, g = np.broadcast_arrays(l, g)
        if reduction == "none":
            return l, g
        if reduction == "sum":
            return float(np.sum(l)), g
        n = l.size
        return (float(np.sum(l)) / n if n else math.nan), g / n if n else g


def _focal_limit(nf, args, kw):
    """The float64 focal reference with its gradient's limit where ``p_t`` rounds to 1 at a
    finite logit: ``ce * gamma * m**(gamma - 1) * dm`` is ``inf * 0`` there (PyTorch's
    autograd gives NaN too), while the derivative tends to 0 (``~ e**(-(1 + gamma)|x|)``);
    and the loss with a cancellation-free cross-entropy (torchvision's loses ``t x`` at
    ``x = -1e30``, fastloss keeps it) and ``1 - p_t`` as the sum of its two non-negative
    terms ``p (1 - t) + (1 - p) t``, as fastloss documents (torchvision's subtraction
    ``1 - p_t`` is off by 1e-4 relative at ``t = 1e-12, x = -1e30``)."""
    x, t = (np.asarray(a, np.float64) for a in args[:2])
    _, g = nf(x, t, **kw)
    alpha, gamma = kw.get("alpha", 0.25), kw.get("gamma", 2.0)
    with np.errstate(all="ignore"):
        p = 1.0 / (1.0 + np.exp(-x))
        q = 1.0 / (1.0 + np.exp(x))  # 1 - p without the cancellation
        m = p * (1 - t) + q * t
        m_ref = 1 - (p * t + (1 - p) * (1 - t))  # the reference gradient's own 1 - p_t
        # the loss with the cross-entropy in its cancellation-free form (as _bcel_stable)
        ce = t * (np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))) + (1 - t) * (
            np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))
        a_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1.0
        per = a_t * ce * m**gamma
    fix = np.isfinite(x) & (m_ref == 0) & np.isnan(g)
    g = np.where(fix, 0.0, g)
    red = kw.get("reduction", "mean")
    if red == "none":
        return per, g
    total = float(np.sum(per))
    return (total if red == "sum" else (total / per.size if per.size else math.nan)), g


ELEMENTWISE = {
    # name: (input kind, target kind, torch function or None, numpy ref, options)
    "mse_loss": ("real", "real", F.mse_loss, refp.mse_loss, {}),
    "l1_loss": ("real", "real", F.l1_loss, refp.l1_loss, {}),
    "smooth_l1_loss": ("real", "real", F.smooth_l1_loss, refp.smooth_l1_loss,
                       {"beta": [0.0, 1e-3, 0.5, 1.0, 2.0]}),
    "huber_loss": ("real", "real", F.huber_loss, refp.huber_loss,
                   {"delta": [1e-3, 0.5, 1.0, 8.0]}),
    "log_cosh_loss": ("real", "real", None, refp.log_cosh_loss, {}),
    "binary_cross_entropy": ("prob", "prob", F.binary_cross_entropy,
                             refp.binary_cross_entropy, {}),
    "binary_cross_entropy_with_logits": ("real", "prob", F.binary_cross_entropy_with_logits,
                                         refp.binary_cross_entropy_with_logits, {}),
    "sigmoid_focal_loss": ("real", "prob", torchvision_sigmoid_focal_loss, refp.sigmoid_focal_loss,
                           {"alpha": [0.25, 0.5, 0.0, 1.0, -1.0], "gamma": [0.0, 0.5, 1.0,
                                                                              2.0, 3.0]}),
    "soft_margin_loss": ("real", "pm1", F.soft_margin_loss, refp.soft_margin_loss, {}),
    "hinge_loss": ("real", "pm1", None, refp.hinge_loss, {"margin": [1.0, 0.5, 0.0, 2.0]}),
    "squared_hinge_loss": ("real", "pm1", None, refp.squared_hinge_loss,
                           {"margin": [1.0, 0.5, 0.0, 2.0]}),
    "perceptron_loss": ("real", "pm1", None, refp.perceptron_loss, {}),
    "exponential_loss": ("real", "pm1", None, refp.exponential_loss, {}),
    "zero_one_loss": ("real", "pm1", None, refp.zero_one_loss, {}),
    "poisson_nll_loss": ("real", "count", F.poisson_nll_loss, refp.poisson_nll_loss,
                         {"log_input": [True, False], "full": [False, True],
                          "eps": [1e-8, 1e-3, 0.5]}),
    "kl_div": ("real", "kl", F.kl_div, refp.kl_div, {"log_target": [False, True]}),
}

#: Option values outside the valid range: ValueError naming the option.
_BAD_OPTIONS = {
    "smooth_l1_loss": {"beta": [-1.0, -1e-3]},
    "huber_loss": {"delta": [0.0, -1.0]},
}


@st.composite
def _broadcast_shape(draw, shape):
    """A shape that broadcasts to ``shape`` (a suffix, with some sides 1)."""
    k = draw(st.integers(0, len(shape)))
    suffix = shape[len(shape) - k:]
    return tuple(draw(st.sampled_from([1, s])) for s in suffix)


@st.composite
def elementwise_call(draw, name):
    ikind, tkind, tf, nf, options = ELEMENTWISE[name]
    dt = draw(_dtypes)
    shape = draw(_shape())
    kw = {}
    expect = draw(_reduction(name, kw))
    for opt, values in options.items():
        if draw(st.booleans()):
            kw[opt] = draw(st.sampled_from(values))
    if ikind == "prob":
        x = draw(_array(dt, shape, 0.0, 1.0, specials=False))
    else:
        x = draw(_array(dt, shape))
    t = _targets(draw, tkind, dt, shape)
    extra = []
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits") and draw(
            st.booleans()):
        wshape = draw(_broadcast_shape(shape))
        extra.append(draw(_array(dt, wshape, -2.0, 3.0, specials=False)))
        if name == "binary_cross_entropy_with_logits" and draw(st.booleans()):
            pshape = draw(_broadcast_shape(shape))
            kw["pos_weight"] = draw(_array(dt, pshape, 0.0, 4.0, specials=False))
    # now and then: big (past the parallel threshold)
    if expect is None and x.size and draw(st.integers(0, 19)) == 0 and x.ndim:
        reps = -(-40000 // x.size)
        x, t = _tile_rows([x, t], reps)
        if extra and extra[0].ndim == x.ndim and extra[0].shape[0] != 1:
            extra = _tile_rows(extra, reps)
        pw = kw.get("pos_weight")
        if pw is not None and pw.ndim == x.ndim and pw.shape[0] != 1:
            kw["pos_weight"] = _tile_rows([pw], reps)[0]
    # invalid variants
    bad = expect is None and draw(st.integers(0, 9)) == 0
    if bad:
        what = draw(st.sampled_from(["dtype", "shape", "option", "domain", "out"]))
        if what == "dtype":
            x = draw(_bad_dtype_input(x.shape))
            expect = _DTYPE_ERR
        elif what == "shape":
            t = np.zeros(x.shape + (2,), dtype=dt)
            expect = (ValueError, [re.escape(str(x.shape)), re.escape(str(t.shape))])
        elif what == "option" and name in _BAD_OPTIONS:
            opt, vals = next(iter(_BAD_OPTIONS[name].items()))
            kw[opt] = draw(st.sampled_from(vals))
            expect = (ValueError, [opt])
        elif what == "domain" and tkind == "pm1" and t.size:
            t = np.array(t, order="C")
            t.reshape(-1)[draw(st.integers(0, t.size - 1))] = draw(st.sampled_from(
                [0.0, 0.5, 2.0, -3.0]))
            expect = (ValueError, [r"1"])
        elif what == "domain" and ikind == "prob" and x.size:
            x = np.array(x, order="C")
            x.reshape(-1)[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(
                [-0.5, 1.5, 1e30, -math.inf]))
            expect = (ValueError, [r"\[0, 1\]|between 0 and 1|probabilit"])
        elif what == "out" and x.size:
            kw["out"] = draw(st.sampled_from([
                np.empty(x.shape + (1,), x.dtype), np.empty(x.shape, np.float16),
                np.asfortranarray(np.empty(x.shape + (2,), x.dtype))[..., 0]]))
            if kw["out"].flags.c_contiguous and kw["out"].shape == x.shape:
                kw.pop("out")  # (a 1-element F view can be C-contiguous)
            else:
                expect = (ValueError, [r"out"])
    inplace = False
    if expect is None and draw(st.integers(0, 7)) == 0 and x.size:
        x = np.array(x, dtype=x.dtype.newbyteorder("="), order="C")
        kw["out"] = x
        inplace = True
    args = [x, t] + extra
    xs = np.array(x, copy=True)
    call = Call(name, args, kw, expect=expect, inplace=inplace)
    if expect is None:
        ref_kw = {k: v for k, v in kw.items() if k != "out"}
        ref_args = [xs] + args[1:]
        red = ref_kw.get("reduction", "mean")

        if tf is not None:
            tkw = dict(ref_kw)
            if name == "kl_div" and red == "mean":
                def tfn(a, b, **k):
                    return F.kl_div(a, b, **dict(k, reduction="sum")) / max(a.numel(), 1) \
                        if a.numel() else F.kl_div(a, b, **k)
            else:
                tfn = tf
            call.ref = lambda: _torch_ref(tfn, ref_args[0], ref_args[1:], tkw)
            call.native = lambda: _torch_ref(tfn, ref_args[0], ref_args[1:], tkw, native=True)
            if name == "soft_margin_loss":  # documented: the stable softplus form
                call.alt = lambda: nf(*[np.asarray(a, np.float64) for a in ref_args], **ref_kw)
            if name == "sigmoid_focal_loss":
                call.alt = lambda: _focal_limit(nf, ref_args, ref_kw)
            if name == "binary_cross_entropy_with_logits":
                call.alt = lambda: _bcel_stable(*ref_args, **ref_kw)
        else:
            call.ref = lambda: nf(*[np.asarray(a, np.float64) for a in ref_args], **ref_kw)
        call.per_sample = lambda: nf(*[np.asarray(a, np.float64) for a in ref_args],
                                     **dict(ref_kw, reduction="none", grad=False))[0]
        call.none_ref = lambda: nf(*[np.asarray(a, np.float64) for a in ref_args],
                                   **dict(ref_kw, reduction="none"))
        if name == "poisson_nll_loss":
            call.term_scale = lambda: _poisson_terms(ref_args[0], ref_args[1], ref_kw)
        call.denom = (xs.shape[0] if xs.ndim else 1) if red == "batchmean" else xs.size
    return call


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_fuzz_elementwise(name):
    @FUZZ
    @given(call=elementwise_call(name))
    def check(call):
        run(name, call)

    check()


def test_fuzz_covers_every_loss():
    covered = set(ELEMENTWISE) | set(CLASS_LOSSES) | {"kl_div_with_logits",
                                                      "js_div_with_logits", "softmax_entropy"}
    assert covered == set(fl.LOSSES)


# ====================================================================== class losses
CLASS_LOSSES = ("cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss")
_INT_DTYPES = [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32,
               np.uint64]


def _torch_layout(x, axis):
    """fastloss's class ``axis`` -> PyTorch's class axis 1 (0 for a 1-D input)."""
    if x.ndim <= 1:
        return x
    return np.moveaxis(x, axis, 1)


def _torch_ce(x, t, weight=None, *, ignore_index=-100, label_smoothing=0.0, z_loss=0.0,
              softcap=None, reduction="mean"):
    """SPEC's cross_entropy in PyTorch (class axis 1): ``softcap * tanh(x / softcap)``
    first (Gemma 2), ``F.cross_entropy``, plus ``z_loss * logsumexp**2`` per non-ignored
    sample (PaLM; under "mean" divided by their number)."""
    z = x if not softcap else softcap * torch.tanh(x / softcap)
    kw = dict(weight=weight, label_smoothing=label_smoothing)
    if not t.is_floating_point():
        kw["ignore_index"] = ignore_index
    ce = F.cross_entropy(z, t, reduction=reduction, **kw)
    if not z_loss:
        return ce
    cdim = 1 if z.ndim > 1 else 0
    # logsumexp as z - log_softmax(z): its gradient is softmax(z) exactly, where
    # torch.logsumexp's backward, exp(z - lse), loses the log 2 of [1e30, 1e30]
    # (at each row's largest logit, so that -inf logits stay out of it)
    top = z.detach().argmax(dim=cdim, keepdim=True)
    lse = (z - F.log_softmax(z, dim=cdim)).gather(cdim, top).squeeze(cdim)
    valid = (t != ignore_index) if not t.is_floating_point() else torch.ones_like(lse, dtype=bool)
    zl = torch.where(valid, z_loss * lse**2, torch.zeros_like(lse))
    if reduction == "none":
        return ce + zl
    if reduction == "sum":
        return ce + zl.sum()
    return ce + zl.sum() / valid.sum()


@st.composite
def class_call(draw, name):
    dt = draw(_dtypes)
    mm = name == "multi_margin_loss"
    if mm:
        nd = draw(st.sampled_from([0, 1, 2, 2, 2]))
    else:
        nd = draw(st.sampled_from([1, 2, 2, 2, 3, 4]))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=nd, max_size=nd)))
    axis = -1
    if nd >= 2 and not mm:
        axis = draw(st.sampled_from([-1, 1, nd - 1] + ([0] if nd >= 3 else [])))
        if axis == 0:  # PyTorch cannot express a class axis before the batch axis
            axis = -1
    ax = axis % nd if nd else 0
    C = shape[ax] if nd else 1
    if mm and nd and C == 0:
        shape = shape[:-1] + (1,)
        C = 1
    if not mm and C == 0:
        shape = shape[:ax] + (1,) + shape[ax + 1:]
        C = 1
    kw = {}
    expect = draw(_reduction(name, kw))
    if name == "nll_loss":
        x = draw(_array(dt, shape, -30.0, 0.0))
    else:
        x = draw(_array(dt, shape, -8.0, 8.0))
        if name == "cross_entropy" and x.size and draw(st.booleans()):
            x = np.array(x, order="C")
            mask = draw(hnp.arrays(np.bool_, x.shape))
            x[mask] = -np.inf  # -inf-masked logits
    tshape = shape[:ax] + shape[ax + 1:] if nd else ()
    if mm and nd == 1 and draw(st.booleans()):
        tshape = (1,)
    prob = name == "cross_entropy" and nd >= 1 and draw(st.integers(0, 3)) == 0
    if prob:
        t = draw(_array(dt, shape, 0.0, 1.0, specials=draw(st.booleans())))
    else:
        tdt = np.dtype(draw(st.sampled_from(_INT_DTYPES)))
        t = draw(hnp.arrays(tdt, tshape, elements=st.integers(0, C - 1)))
        if not mm and draw(st.booleans()):
            signed = tdt.kind == "i"
            choices = [C // 2, 255 if tdt.itemsize > 1 or tdt.kind == "u" else 100]
            if signed:
                choices += [-100, -1]
            ii = draw(st.sampled_from(choices))
            if ii <= np.iinfo(tdt).max:
                kw["ignore_index"] = ii
                if t.size:
                    t = np.array(t, order="C")
                    t.reshape(-1)[: draw(st.integers(0, t.size))] = ii
        t = draw(_layout(t))
    # options
    weight = None
    if draw(st.booleans()) and C:
        weight = draw(hnp.arrays(np.float64, (C,), elements=st.sampled_from(
            [1.0, 0.5, 2.0, 0.0, -1.0, 3.25])))
    if name == "cross_entropy":
        if draw(st.booleans()):
            kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
        if draw(st.integers(0, 3)) == 0:
            kw["z_loss"] = draw(st.sampled_from([0.0, 1e-4, 0.1]))
        if draw(st.integers(0, 3)) == 0:
            kw["softcap"] = draw(st.sampled_from([1.0, 5.0, 30.0, 1000.0, 1e12, 1e31]))
    if name == "softmax_focal_loss" and draw(st.booleans()):
        kw["gamma"] = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]))
    if mm:
        if draw(st.booleans()):
            kw["p"] = draw(st.sampled_from([1, 2]))
        if draw(st.booleans()):
            kw["margin"] = draw(st.sampled_from([1.0, 0.5, 0.0, -3.25, 2.0]))
    if axis != -1:
        kw["axis"] = axis
    # invalid variants
    if expect is None and draw(st.integers(0, 7)) == 0:
        what = draw(st.sampled_from(["dtype", "index", "option", "weight", "out"]))
        if what == "dtype":
            x = draw(_bad_dtype_input(x.shape))
            expect = _DTYPE_ERR
        elif what == "index" and not prob and t.size:
            t = np.array(t, order="C")
            bad = draw(st.sampled_from([C, C + 3, 1000] + ([-2, -7] if t.dtype.kind == "i"
                                                           else [])))
            if bad == kw.get("ignore_index") or bad > np.iinfo(t.dtype).max:
                bad = C
            if bad > np.iinfo(t.dtype).max:
                bad = None
            if bad is not None:
                t.reshape(-1)[draw(st.integers(0, t.size - 1))] = bad
                expect = (IndexError, [re.escape(str(bad)), rf"\b{C}\b"])
        elif what == "option" and name == "cross_entropy":
            opt, val = draw(st.sampled_from([("label_smoothing", -0.1),
                                             ("label_smoothing", 1.5), ("z_loss", -1.0),
                                             ("softcap", 0.0), ("softcap", -2.0)]))
            kw[opt] = val
            expect = (ValueError, [opt])
        elif what == "option" and name == "softmax_focal_loss":
            kw["gamma"] = -1.0
            expect = (ValueError, ["gamma"])
        elif what == "option" and mm:
            kw["p"] = draw(st.sampled_from([0, 3, 1.5]))
            expect = (ValueError, [r"\bp\b"])
        elif what == "weight" and C:
            weight = np.ones(C + 1)
            expect = (ValueError, [r"weight"])
        elif what == "out" and x.size:
            kw["out"] = np.empty(x.shape, np.float16)
            expect = (ValueError, [r"out"])
    if weight is not None:
        kw["weight"] = weight
    inplace = False
    if expect is None and x.size and draw(st.integers(0, 7)) == 0:
        x = np.array(x, dtype=x.dtype.newbyteorder("="), order="C")
        kw["out"] = x
        inplace = True
    # big: tile the batch (axis 0 is never the class axis here)
    if expect is None and not inplace and nd >= 2 and shape[0] and draw(
            st.integers(0, 19)) == 0:
        reps = -(-4096 // max(x.size, 1)) + 64
        x, t = _tile_rows([x, t], reps)
    xs = np.array(x, copy=True)
    call = Call(name, [x, t], kw, expect=expect, inplace=inplace)
    if expect is None:
        _class_reference(call, name, xs, t, kw, axis, prob)
    return call


def _class_reference(call, name, xs, t, kw, axis, prob):
    ref_kw = {k: v for k, v in kw.items() if k not in ("out", "axis")}
    red = ref_kw.get("reduction", "mean")
    nd = xs.ndim
    ax = axis % nd if nd else 0

    def to_fl_grad(g):  # a gradient in PyTorch's layout back to fastloss's
        return g if nd <= 1 else np.moveaxis(g, 1, ax)

    def per_sample_np():
        f = {"cross_entropy": refs.cross_entropy, "nll_loss": refs.nll_loss,
             "softmax_focal_loss": refs.softmax_focal_loss}.get(name)
        if f is None:  # multi_margin: PyTorch's "none"
            return _torch_ref(F.multi_margin_loss, xs, [t],
                              dict(ref_kw, reduction="none"), grad=False)[0]
        return f(np.asarray(xs, np.float64), np.asarray(t), **dict(
            ref_kw, axis=axis, reduction="none", grad=False))[0]

    call.per_sample = per_sample_np
    if name in ("cross_entropy", "softmax_focal_loss") and nd:
        def term_scale():  # |w| sum|t| (|logsumexp(z)| + max|z|) per sample
            z = np.asarray(xs, np.float64)
            with np.errstate(all="ignore"):
                if kw.get("softcap"):
                    z = kw["softcap"] * np.tanh(z / kw["softcap"])
                lse = np.asarray(refs.logsumexp(z, axis=axis))
                zmax = np.max(np.abs(np.where(np.isfinite(z), z, 0.0)), axis=ax,
                              initial=0.0)
                w = kw.get("weight")
                wmax = float(np.max(np.abs(w), initial=0.0)) if w is not None else 1.0
                tsum = np.sum(np.abs(np.asarray(t, np.float64)), axis=ax) if prob else 1.0
                return wmax * tsum * (np.abs(np.where(np.isfinite(lse), lse, 0.0)) + zmax)

        call.term_scale = term_scale
    if prob and nd:
        def grad_scale():  # sum_c |t_c| per sample (the softmax * sum(t) term)
            with np.errstate(all="ignore"):
                s_ = np.sum(np.abs(np.asarray(t, np.float64)), axis=ax, keepdims=True)
            red_ = kw.get("reduction", "mean")
            return s_ / max(call.denom, 1) if red_ == "mean" else s_

        call.grad_scale = grad_scale
    keep = None

    def zero_ignored(g):
        """PyTorch's gradient of an ignored sample, also under an all-ignored "mean" (where
        the float64 references compute 0 * inf): 0, except that a softmax-based loss's
        backward multiplies the zero by the row's softmax, so a cross-entropy row with a
        NaN or +inf logit, or only -inf logits, gets NaN (softmax_focal_loss: always 0)."""
        if prob or g is None:
            return g
        ignored = ~keep.reshape(keep.shape[:ax] + (1,) + keep.shape[ax:]) if nd else ~keep
        ignored = np.broadcast_to(ignored, g.shape)
        fill = np.zeros(g.shape)
        if name == "cross_entropy" and nd:
            xf = np.asarray(xs, np.float64)
            cap = kw.get("softcap")
            if cap:
                with np.errstate(all="ignore"):
                    xf = cap * np.tanh(xf / cap)
            bad = (np.isnan(xf).any(axis=ax, keepdims=True)
                   | np.isposinf(xf).any(axis=ax, keepdims=True)
                   | np.isneginf(xf).all(axis=ax, keepdims=True))
            fill = np.where(np.broadcast_to(bad, g.shape), np.nan, 0.0)
        return np.where(ignored, fill, g)

    if not prob:
        ii = kw.get("ignore_index", -100)
        keep = np.asarray(t).astype(np.int64) != ii
    if name == "multi_margin_loss":
        call.denom = max(t.size, 1) if red == "mean" else 1
    elif prob:
        call.denom = (xs.size // xs.shape[ax]) if xs.shape[ax] else 0
    else:
        w = kw.get("weight")
        tt = np.asarray(t).astype(np.int64)
        wy = np.where(keep, (w[np.where(keep, tt, 0)] if w is not None else 1.0), 0.0)
        call.denom = float(np.sum(wy))

    torch_ok = name in ("cross_entropy", "nll_loss", "multi_margin_loss")
    if not kw.get("z_loss"):
        ref_kw.pop("z_loss", None)
    if torch_ok and xs.size == 0 and red == "mean" and name == "multi_margin_loss":
        # PyTorch returns an uninitialised value; SPEC 5: an empty batch's mean is NaN
        call.ref = lambda: (np.float64(np.nan), np.zeros(xs.shape))
        return
    if torch_ok:
        tf = {"cross_entropy": _torch_ce, "nll_loss": F.nll_loss,
              "multi_margin_loss": F.multi_margin_loss}[name]
        xt = _torch_layout(xs, ax) if nd >= 2 else xs
        tt = _torch_layout(np.asarray(t), ax) if (prob and nd >= 2) else np.asarray(t)

        def ref(native=False):
            try:
                loss, g = _torch_ref(tf, xt, [tt], ref_kw, native=native)
            except RuntimeError as e:  # PyTorch's nll_loss2d backward on some shapes
                if "must be contiguous" not in str(e) or name != "nll_loss":
                    raise
                loss, g = refs.nll_loss(np.asarray(xs, np.float64), np.asarray(t), **dict(
                    ref_kw, axis=axis))
                # PyTorch writes only each sample's target entry (0 * inf elsewhere here)
                C = xs.shape[ax]
                hot = np.moveaxis(np.arange(C) == np.asarray(t).astype(np.int64)[..., None],
                                  -1, ax)
                return loss, zero_ignored(np.where(hot, g, 0.0))
            return loss, to_fl_grad(g)

        call.ref = ref
        call.native = lambda: ref(True)
    else:
        f = {"cross_entropy": refs.cross_entropy,
             "softmax_focal_loss": refs.softmax_focal_loss}[name]

        def ref():
            loss, g = f(np.asarray(xs, np.float64), np.asarray(t), **dict(ref_kw, axis=axis))
            if name == "softmax_focal_loss" and red == "mean" and call.denom == 0 and nd:
                # a zero weight sum: the gradient is (finite) / 0, whose inf/NaN pattern
                # follows PyTorch's order of operations, as cross-entropy's does (the focal
                # factor is positive): that of F.cross_entropy on the same inputs
                ce_kw = {k: v for k, v in ref_kw.items() if k != "gamma"}
                _, gce = _torch_ref(F.cross_entropy, _torch_layout(xs, ax), [np.asarray(t)],
                                    ce_kw)
                gce = gce if nd <= 1 else np.moveaxis(gce, 1, ax)
                g = np.where(np.isfinite(gce), g, gce)
            return loss, zero_ignored(g)

        call.ref = ref


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_fuzz_class_losses(name):
    @FUZZ
    @given(call=class_call(name))
    def check(call):
        run(name, call)

    check()


# ============================================================ logits-pair and entropy
@st.composite
def pair_call(draw, name):
    dt = draw(_dtypes)
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=nd, max_size=nd)))
    axis = draw(st.sampled_from([-1] + list(range(nd))))
    kw = {}
    expect = draw(_reduction(name, kw))
    x = draw(_array(dt, shape, -8.0, 8.0))
    args = [x]
    if name != "softmax_entropy":
        args.append(draw(_array(dt, shape, -8.0, 8.0)))
        if draw(st.booleans()):
            kw["temperature"] = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
    if axis != -1:
        kw["axis"] = axis
    if expect is None and draw(st.integers(0, 7)) == 0:
        what = draw(st.sampled_from(["dtype", "option", "shape"]))
        if what == "dtype":
            args[0] = draw(_bad_dtype_input(x.shape))
            expect = _DTYPE_ERR
        elif what == "option" and name != "softmax_entropy":
            kw["temperature"] = draw(st.sampled_from([0.0, -1.0, math.inf]))
            expect = (ValueError, ["temperature"])
        elif what == "shape" and name != "softmax_entropy":
            args[1] = np.zeros(shape + (2,), dt)
            expect = (ValueError, [re.escape(str(shape)), re.escape(str(shape + (2,)))])
    inplace = False
    if expect is None and draw(st.integers(0, 7)) == 0:
        args[0] = np.array(args[0], dtype=args[0].dtype.newbyteorder("="), order="C")
        kw["out"] = args[0]
        inplace = True
    xs = [np.array(a, copy=True) for a in args]
    call = Call(name, args, kw, expect=expect, inplace=inplace)
    if expect is None:
        f = {"kl_div_with_logits": refs.kl_div_with_logits,
             "js_div_with_logits": refs.js_div_with_logits,
             "softmax_entropy": refs.softmax_entropy}[name]
        ref_kw = {k: v for k, v in kw.items() if k != "out"}
        red = kw.get("reduction", fl.LOSSES[name].fn.__kwdefaults__["reduction"])

        def ref(dtype=np.float64):
            with _reference_precision(dtype):
                loss, g = f(*[np.asarray(a, dtype) for a in xs], **ref_kw)
            if red == "batchmean" and nd == 1:
                # a 1-D input is one sample: fastloss divides by 1, the reference by C
                loss, g = loss * xs[0].shape[0], g * xs[0].shape[0]
            return loss, np.asarray(g, np.float64)

        call.ref = ref
        if np.dtype(xs[0].dtype.newbyteorder("=")) == np.float32:
            # the same formulas in float32 arithmetic: a teacher probability that underflows
            # to 0 contributes 0 (the float64 reference may say inf)
            call.alt = lambda: ref(np.float32)
        call.per_sample = lambda: f(*[np.asarray(a, np.float64) for a in xs], **dict(
            ref_kw, reduction="none", grad=False))[0]
        ax = axis % nd
        rows = x.size // x.shape[ax]
        batch = x.shape[0] if nd > 1 else 1
        call.denom = batch if red == "batchmean" else (rows if red == "mean" else 1)
    return call


@pytest.mark.parametrize("name", ["kl_div_with_logits", "js_div_with_logits",
                                  "softmax_entropy"])
def test_fuzz_logit_pairs_and_entropy(name):
    @FUZZ
    @given(call=pair_call(name))
    def check(call):
        run(name, call)

    check()


class _reference_precision:
    """Run tests/reference_softmax.py's formulas in ``dtype`` arithmetic (its row helper
    casts to float64; float32 here emulates a float32 computation)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def __enter__(self):
        self.saved = refs._rows
        if self.dtype != np.float64:
            dt = self.dtype

            def rows(x, axis):
                x = np.asarray(x, dtype=dt)
                axis = axis % x.ndim
                xm = np.moveaxis(x, axis, -1)
                return np.ascontiguousarray(xm).reshape(-1, x.shape[axis]), xm.shape[:-1], axis

            refs._rows = rows
        return self

    def __exit__(self, *exc):
        refs._rows = self.saved


# ========================================================================= utilities
_UTIL_TORCH = {
    "softmax": lambda x, axis: torch.softmax(x, axis),
    "log_softmax": lambda x, axis: torch.log_softmax(x, axis),
    "logsumexp": lambda x, axis: torch.logsumexp(x, axis),
    "sigmoid": lambda x, axis: torch.sigmoid(x),
    "log_sigmoid": lambda x, axis: F.logsigmoid(x),
}


@st.composite
def util_call(draw, name):
    dt = draw(_dtypes)
    rowwise = name in ("softmax", "log_softmax", "logsumexp")
    shape = draw(_shape(min_dims=0 if not rowwise else 1))
    x = draw(_array(dt, shape, -30.0, 30.0))
    kw = {}
    axis = None
    if rowwise:
        axis = draw(st.sampled_from([-1] + list(range(x.ndim))))
        kw["axis"] = axis
    expect = None
    if draw(st.integers(0, 11)) == 0:
        if rowwise and draw(st.booleans()):
            kw["axis"] = x.ndim + draw(st.integers(0, 2))
            expect = (ValueError, [r"axis"])
        else:
            x = draw(_bad_dtype_input(x.shape))
            expect = _DTYPE_ERR
    if expect is None and x.size and x.ndim and draw(st.integers(0, 19)) == 0:
        (x,) = _tile_rows([x], -(-40000 // x.size))
    xs = np.array(x, copy=True)
    call = Call(name, [x], kw, expect=expect)
    if expect is None:
        def ref(native=False):
            dtt = torch.float64
            if native and xs.dtype == np.float32:
                dtt = torch.float32
            xn = xs.astype(xs.dtype.newbyteorder("="))
            return _UTIL_TORCH[name](torch.tensor(xn).to(dtt), axis).numpy().astype(np.float64)

        call.ref = ref
        call.native = lambda: ref(True)
    return call


@pytest.mark.parametrize("name", sorted(_UTIL_TORCH))
def test_fuzz_utilities(name):
    @FUZZ
    @given(call=util_call(name))
    def check(call):
        run(name, call)

    check()


# ====================================================================== grad_hess
def _sig(r):
    with np.errstate(all="ignore"):
        return np.where(r >= 0, 1 / (1 + np.exp(-r)), np.exp(r) / (1 + np.exp(r)))


def _gh_reference(name, r, y, w, o, work=np.float64):
    """SPEC section 3's formulas in ``work`` precision (labels and weights first rounded to
    the preds' dtype, as grad_hess computes in that dtype)."""
    dt = np.asarray(r).dtype
    y = np.asarray(y).astype(dt).astype(work)
    r = np.asarray(r).astype(work)
    with np.errstate(all="ignore"):
        if name == "logistic":
            p = _sig(r)
            g, h = p - y, np.maximum(p * (1 - p), o.get("min_hess", 0.0))
        elif name == "squared_error":
            g, h = r - y, np.ones_like(r)
        elif name == "huber":
            d = o.get("delta", 1.0)
            z = r - y
            g = np.clip(z, -d, d)
            h = np.where(np.abs(z) <= d, 1.0, o.get("min_hess", 0.0))
            h = np.where(np.isnan(z), np.nan, h)  # NaN propagates into the hessian too
        elif name == "pseudo_huber":
            d = o.get("delta", 1.0)
            z = r - y
            s = np.sqrt(1 + (z / d) ** 2)
            g, h = z / s, 1 / s**3
        elif name == "poisson":
            g = np.exp(r) - y
            h = np.exp(r + o.get("max_delta_step", 0.0))
        elif name == "softmax":
            K = r.shape[1]
            m = np.max(r, axis=1, keepdims=True)
            e = np.exp(r - m)
            p = e / e.sum(axis=1, keepdims=True)
            eps = o.get("label_smoothing", 0.0)
            tgt = (1 - eps) * np.eye(K)[np.asarray(y, np.int64)] + eps / K
            cw = o.get("class_weight")
            c = np.ones(len(y)) if cw is None else np.asarray(cw, np.float64)[
                np.asarray(y, np.int64)]
            g = (p - tgt) * c[:, None]
            h = np.maximum(o.get("hess_scale", 1.0) * p * (1 - p), o.get("min_hess", 0.0)) \
                * c[:, None]
        elif name == "focal":
            g, h = _focal_derivatives(r, y, o.get("gamma", 2.0), o.get("alpha"))
            h = np.maximum(h, o.get("min_hess", 0.0))
        else:
            raise AssertionError(name)
        if w is not None:  # (the weights too are in the preds' dtype)
            ww = np.asarray(w).astype(dt).astype(work)
            ww = ww[:, None] if g.ndim == 2 else ww
            g, h = g * ww, h * ww
    return g, h


def _focal_derivatives(r, y, gamma, alpha):  # (autograd: inf * 0 = NaN at r = +-inf)
    """torchvision's sigmoid focal loss, differentiated twice by torch autograd (float64)."""
    rt = torch.tensor(np.asarray(r, np.float64), requires_grad=True)
    yt = torch.tensor(np.asarray(y, np.float64))
    loss = torchvision_sigmoid_focal_loss(rt, yt, alpha, gamma, reduction="none")
    (g,) = torch.autograd.grad(loss.sum(), rt, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), rt) if g.requires_grad else (torch.zeros_like(rt),)
    return g.detach().numpy(), h.numpy()


_GH_OPTIONS = {
    "focal": {"gamma": [0.0, 1.0, 2.0, 3.0], "alpha": [None, 0.25, 0.5],
              "min_hess": [0.0, -math.inf, 1e-6]},
    "logistic": {"min_hess": [0.0, 1e-16, 0.01]},
    "softmax": {"hess_scale": [1.0, 2.0], "label_smoothing": [0.0, 0.1],
                "min_hess": [0.0, 1e-16]},
    "squared_error": {},
    "huber": {"delta": [0.5, 1.0, 3.0], "min_hess": [0.0, 1.0]},
    "pseudo_huber": {"delta": [0.5, 1.0, 3.0]},
    "poisson": {"max_delta_step": [0.0, 0.7]},
}
_GH_BAD = {
    "huber": ("delta", [0.0, -1.0]),
    "pseudo_huber": ("delta", [0.0, -1.0]),
    "softmax": ("label_smoothing", [-0.5, 1.5]),
}


@st.composite
def grad_hess_call(draw, name):
    dt = draw(_dtypes)
    n = draw(st.integers(0, 40))
    o = {}
    for opt, vals in _GH_OPTIONS[name].items():
        if draw(st.booleans()):
            o[opt] = draw(st.sampled_from(vals))
    if name == "softmax":
        K = draw(st.integers(1, 6))
        r = draw(hnp.arrays(dt, (n, K), elements=_floats(dt, -20, 20)))
        if draw(st.booleans()):
            r = np.asfortranarray(r)
        y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, K - 1)))
        if draw(st.integers(0, 3)) == 0:
            o["class_weight"] = draw(hnp.arrays(np.float64, (K,), elements=st.sampled_from(
                [1.0, 0.5, 2.0, 0.0])))
    else:
        r = draw(_array(dt, (n,), -20.0, 20.0))
        if name in ("logistic", "focal"):
            y = draw(hnp.arrays(np.float64, (n,), elements=st.floats(0, 1)))
        elif name == "poisson":
            y = draw(hnp.arrays(np.float64, (n,), elements=st.one_of(
                st.integers(0, 30).map(float), st.floats(0, 100))))
        else:
            y = draw(hnp.arrays(np.float64, (n,), elements=_floats(np.float64, -10, 10)))
    w = None
    if draw(st.booleans()):
        w = draw(hnp.arrays(np.float64, (n,), elements=st.floats(0, 5)))
    expect = None
    if draw(st.integers(0, 7)) == 0 and n:
        what = draw(st.sampled_from(["label", "option", "dtype", "shape"]))
        if what == "label" and name in ("logistic", "poisson", "softmax"):
            y = np.array(y, order="C")
            if name == "softmax":
                y[draw(st.integers(0, n - 1))] = r.shape[1] + draw(st.integers(0, 3))
                expect = (IndexError, [str(r.shape[1])])
            else:
                y = y.astype(np.float64)
                y[draw(st.integers(0, n - 1))] = -1.0 if name == "poisson" else 1.5
                expect = (ValueError, [r"label"])
        elif what == "option" and name in _GH_BAD:
            opt, vals = _GH_BAD[name]
            o[opt] = draw(st.sampled_from(vals))
            expect = (ValueError, [opt])
        elif what == "dtype":
            r = np.zeros(r.shape, np.int64)
            expect = _DTYPE_ERR
        elif what == "shape":
            y = np.zeros(n + 1)
            expect = (ValueError, [re.escape(str(r.shape[:1]))[:-2]])
    return name, r, y, w, o, expect


@pytest.mark.parametrize("name", sorted(_GH_OPTIONS))
def test_fuzz_grad_hess(name):
    @FUZZ
    @given(case=grad_hess_call(name))
    def check(case):
        name_, r, y, w, o, expect = case
        COUNTS[f"grad_hess:{name}"] += 1
        rs, ys = np.array(r), np.array(y)
        try:
            g, h = fl.grad_hess(name, r, y, sample_weight=w, **o)
        except _ERRORS as e:
            assert expect is not None, f"grad_hess({name}) raised {e!r} on a valid call"
            _check_error(e, expect)
            return
        assert expect is None, f"expected {expect[0].__name__}"
        assert np.array_equal(rs, r, equal_nan=True) and np.array_equal(ys, y, equal_nan=True)
        native = r.dtype.newbyteorder("=")
        assert g.shape == r.shape and h.shape == r.shape and g.dtype == native
        eg, eh = _gh_reference(name, rs, ys, w, o)
        # where a non-finite margin or label makes the formula itself undefined (inf/inf,
        # 0 * inf: NaN), grad_hess may return the formula's limit instead
        yb = np.asarray(ys, np.float64)
        yb = yb[:, None] if rs.ndim == 2 else yb
        nonfinite = ~np.isfinite(np.asarray(rs, np.float64)) | ~np.isfinite(yb)
        refs_ = [(eg, eh)]
        if native == np.float32:  # float32 arithmetic's own overflows (exp(88.8) * 0)
            refs_.append(_gh_reference(name, rs, ys, w, o, work=np.float32))
        for k, (eg_, eh_) in enumerate(refs_):
            try:
                for got, exp_, what in ((g, eg_, "grad"), (h, eh_, "hess")):
                    free = nonfinite & np.isnan(exp_)
                    assert_close(np.where(free, 0.0, got), np.where(free, 0.0, exp_), native,
                                 err_msg=what)
                break
            except AssertionError:
                if k == len(refs_) - 1:
                    raise
        # objective_loss runs the same inputs (no reference value: the derivative is checked)
        COUNTS["objective_loss"] += 1
        v = fl.objective_loss(name, r, y, sample_weight=w, **o)
        assert isinstance(v, float)

    check()


_INIT_LABELS = {
    "logistic": st.floats(0, 1),
    "squared_error": st.floats(-50, 50),
    "poisson": st.integers(0, 20).map(float),
    "softmax": None,
}


@pytest.mark.parametrize("name", sorted(_INIT_LABELS))
def test_fuzz_init_score(name):
    """init_score's constant zeroes the weighted gradient sum (or the data is degenerate)."""

    @FUZZ
    @given(data=st.data())
    def check(data):
        n = data.draw(st.integers(1, 30))
        if name == "softmax":
            K = data.draw(st.integers(2, 5))
            y = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, K - 1)))
            assume(len(np.unique(y)) == K)
        else:
            y = data.draw(hnp.arrays(np.float64, (n,), elements=_INIT_LABELS[name]))
        COUNTS[f"init_score:{name}"] += 1  # (valid examples only, as max_examples counts)
        w = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, (n,),
                                                      elements=st.floats(0.1, 5))))
        if name == "poisson" and not np.any(y):
            with pytest.raises(ValueError, match="positive mean"):
                fl.init_score(name, y, sample_weight=w)
            return
        b = np.asarray(fl.init_score(name, y, sample_weight=w), np.float64)
        if not np.all(np.isfinite(b)):
            # all labels at a boundary of the domain: the optimum is at infinity
            assert name in ("logistic", "poisson"), b
            assert np.all(y == y[0]) and y[0] in (0.0, 1.0)
            return
        r = np.broadcast_to(b, (n,) + b.shape).copy()
        g, _ = _gh_reference(name, r, y, w, {})
        total = g.sum(axis=0)
        scale = np.abs(g).sum(axis=0) + 1e-300
        assert np.all(np.abs(total) <= 1e-6 * scale + 1e-9), (b, total)

    check()


# ==================================================================== linear + CE
@st.composite
def linear_ce_case(draw):
    dt = draw(_dtypes)
    n, d, v = draw(st.integers(0, 9)), draw(st.integers(1, 6)), draw(st.integers(1, 7))
    h = draw(_array(dt, (n, d), -3.0, 3.0, specials=False))
    w = draw(_array(dt, (v, d), -2.0, 2.0, specials=False))
    t = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, v - 1)))
    kw = {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}
    if draw(st.booleans()):
        kw["linear_bias"] = draw(_array(dt, (v,), -2.0, 2.0, specials=False))
    if draw(st.booleans()):
        kw["weight"] = draw(hnp.arrays(np.float64, (v,), elements=st.sampled_from(
            [1.0, 0.5, 2.0, 0.0])))
    if draw(st.booleans()) and n:
        t = np.array(t, order="C")
        t[: draw(st.integers(0, n))] = -100
    if draw(st.booleans()):
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 1.0]))
    if draw(st.booleans()):
        kw["z_loss"] = draw(st.sampled_from([1e-4, 0.1]))
    if draw(st.booleans()):
        kw["softcap"] = draw(st.sampled_from([5.0, 30.0]))
    if draw(st.booleans()):
        kw["chunk_rows"] = draw(st.integers(1, 4))
    return h, w, t, kw


def test_fuzz_linear_cross_entropy():
    """``linear_cross_entropy`` = SPEC's cross_entropy of ``hidden @ W.T + b`` (PyTorch,
    float64), all three gradients, with any chunking."""
    if not hasattr(fl, "linear_cross_entropy"):
        pytest.skip("fastloss has no linear_cross_entropy")

    @FUZZ
    @given(case=linear_ce_case())
    def check(case):
        h, w, t, kw = case
        COUNTS["linear_cross_entropy"] += 1
        hs, ws = np.array(h), np.array(w)
        res = fl.linear_cross_entropy(h, w, t, **kw)
        assert np.array_equal(hs, h) and np.array_equal(ws, w)
        dt = np.dtype(h.dtype.newbyteorder("="))
        ht = _t(hs).requires_grad_(True)
        wt = _t(ws).requires_grad_(True)
        b = kw.get("linear_bias")
        bt = None if b is None else _t(b).requires_grad_(True)
        logits = ht @ wt.T + (bt if bt is not None else 0.0)
        ckw = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()
               if k not in ("linear_bias", "chunk_rows")}
        loss_t = _torch_ce(logits, torch.tensor(t), **ckw)
        ins = [ht, wt] + ([bt] if bt is not None else [])
        grads = torch.autograd.grad(loss_t.sum(), ins, allow_unused=True)
        grads = [np.zeros(x.shape) if g is None else g.numpy() for g, x in zip(grads, ins,
                                                                              strict=True)]
        loss_e = loss_t.detach().numpy()
        # float32: the logits' dot products round like any float32 matmul (scale: |h||w|)
        rtol, atol = (2e-5, 1e-6) if dt == np.float32 else (1e-7, 1e-12)
        scale = float(np.sum(np.abs(hs)) * np.max(np.abs(ws), initial=0.0) + 1.0)
        tol = dict(rtol=rtol, atol=atol * scale * max(len(t), 1))
        assert_close(res.loss, loss_e, dt, **tol, err_msg="loss")
        assert_close(res.grad_input, grads[0], dt, **tol, err_msg="grad_input")
        assert_close(res.grad_linear_weight, grads[1], dt, **tol, err_msg="grad_linear_weight")
        if bt is not None:
            assert_close(res.grad_linear_bias, grads[2], dt, **tol, err_msg="grad_linear_bias")

    check()


def test_zz_example_counts():
    """Every fuzzed function ran its examples (an opt-in run asserts all of them)."""
    if not COUNTS:
        pytest.skip("no fuzz test ran in this session")
    low = {k: v for k, v in COUNTS.items() if v < min(N_EXAMPLES, 50)}
    if OPT_IN:
        low = {k: v for k, v in COUNTS.items() if v < N_EXAMPLES}
    print(json.dumps(dict(sorted(COUNTS.items()))))
    assert not low, f"functions with fewer examples than asked: {low}"


# ------------------------------------------------ regressions of what the fuzzing found
def test_block_sums_of_inf_and_minus_inf_give_nan_without_a_warning():
    """+inf and -inf per-element losses in different summation blocks: NaN, as one sum,
    and no RuntimeWarning (an error under ``-W error``, as in this suite)."""
    from fastloss._kernels.pointwise import BLOCK_ELEMS

    n = 3 * BLOCK_ELEMS
    x = np.zeros(n)
    x[0], x[-1] = np.inf, -np.inf  # kl_div terms t * (log t - x): -inf and +inf
    t = np.full(n, 0.5)
    for red in ("sum", "mean", "batchmean"):
        loss, g = fl.kl_div(x, t, reduction=red)
        assert np.isnan(loss)
        assert np.isfinite(g[1:-1]).all()


def test_objective_loss_of_inf_and_minus_inf_is_nan_without_a_warning():
    v = fl.objective_loss("poisson", np.array([np.inf, -np.inf], np.float32),
                          np.array([1.0, 1.0]))  # per-sample losses +inf and -inf
    assert np.isnan(v)
    assert np.isnan(fl.objective_loss("poisson", np.array([np.inf, -np.inf]), np.ones(2),
                                      reduction="sum"))


def test_float32_softcap_single_class_is_exactly_zero():
    """Was a bug: the capped target logit and the logsumexp rounded differently."""
    x = np.array([[1.0], [4.0]], np.float32)
    loss, g = fl.cross_entropy(x, np.array([0, 0]), softcap=1.0, reduction="none")
    assert np.all(loss == 0) and np.all(g == 0)  # PyTorch: exactly 0 (lse of one term)


@pytest.mark.parametrize(("x", "cap", "dtype"), [
    ([[1e30, 1e30]], 1e31, np.float64),
    ([[3e38, 0.0]], 1e38, np.float64),
    ([[1e20, 1e20]], 1e21, np.float64),
    ([[1e10, 1e10]], 1e11, np.float32),
])
def test_softcap_large_next_to_the_logits(x, cap, dtype):
    """Was a bug (NaN, -inf or far-off losses): the row max was capped in float64 while the
    exp pass capped in the logits' dtype, and for a large cap their ulps are huge."""
    xt = torch.tensor(np.array(x, dtype).astype(np.float64), requires_grad=True)
    lt = F.cross_entropy(cap * torch.tanh(xt / cap), torch.tensor([0]))
    (gt,) = torch.autograd.grad(lt, xt)
    loss, g = fl.cross_entropy(np.array(x, dtype), np.array([0]), softcap=cap)
    assert_close(loss, lt.detach().numpy(), dtype)
    assert_close(g, gt.numpy(), dtype)


def test_sigmoid_focal_loss_keeps_one_minus_p_t_for_tiny_soft_targets():
    """Found by the 10,000-example run: ``x = -1e30, t = 1e-12`` (alpha 0.25, gamma 2).
    ``1 - p_t = t`` exactly there and the loss is ``(0.75 - 5e-13) * (t * 1e30) * t**2``;
    torchvision's subtraction gives 1e-4 relative error, fastloss the exact value."""
    res = fl.sigmoid_focal_loss(np.array([-1e30, 0.0]), np.array([1e-12, 0.0]),
                                reduction="none")
    exact = (0.75 - 0.5e-12) * 1e18 * 1e-24
    assert abs(res.loss[0] - exact) <= 1e-15 * exact
