"""The softmax family: cross-entropy and friends, with their fused gradients.

Class-indexed functions take ``axis`` (the class axis, default -1: classes last, the
NumPy/JAX/Keras layout; PyTorch's ``(N, C, d1, ...)`` layout is ``axis=1``).  Losses are
computed per distribution ("row"); ``reduction="none"`` returns the input's shape without
the class axis.

For ``axis`` other than the last one the rows are strided in memory.  Class-index
cross-entropy (without softcap) and nll_loss have kernels for that layout; the other
functions gather the rows into a contiguous copy, run the row kernel and scatter the
gradient back (an extra copy of the input and of the gradient; classes-last avoids both).
"""

from __future__ import annotations

import math

import numpy as np

from ._config import PARALLEL_MIN_WORK, pick, runs_serial
from ._core import (
    POOL,
    LossResult,
    array_to_dtype,
    as_float_like,
    as_index_target,
    as_input,
    check_reduction,
    finish,
    normalize_axis,
    prepare_out,
    readonly,
    real_option,
    register,
    same_buffer,
    separate,
    small_result,
    target_out_of_bounds,
    to_dtype,
    unalias,
)
from ._kernels import softmax as K
from ._vmath import row_sum

__all__ = [
    "cross_entropy",
    "js_div_with_logits",
    "kl_div_with_logits",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
    "softmax_entropy",
    "softmax_focal_loss",
]

_NO_WEIGHT = readonly(np.empty(0, np.float64))
_EMPTY_F64 = np.empty(0, np.float64)


# ------------------------------------------------------------------------------ layout
class _Rows:
    """``x`` as a C-contiguous (R, C) array of rows along ``axis``, and the way back."""

    __slots__ = ("x2", "axis", "shape", "moved", "batch_shape")

    def __init__(self, x: np.ndarray, axis: int):
        self.shape = x.shape
        self.axis = axis
        if x.ndim == 0:
            raise ValueError("input must have at least one dimension (the class axis)")
        self.moved = axis != x.ndim - 1
        C = x.shape[axis]
        if self.moved:
            xm = np.moveaxis(x, axis, -1)
            self.batch_shape = xm.shape[:-1]
            R = math.prod(self.batch_shape)
            self.x2 = readonly(np.ascontiguousarray(xm).reshape(R, C))
        else:
            self.batch_shape = x.shape[:-1]
            self.x2 = x.reshape(math.prod(self.batch_shape), C)

    def rows_of(self, t: np.ndarray) -> np.ndarray:
        """A same-shape companion array (probability targets, teacher logits) as rows."""
        if self.moved:
            t = np.ascontiguousarray(np.moveaxis(t, self.axis, -1))
        return readonly(t.reshape(self.x2.shape))

    def grad_buffer(self, out, x, grad: bool) -> tuple[np.ndarray, np.ndarray]:
        """(g2 for the kernel, the array returned as grad)."""
        g = prepare_out(out, x, grad)
        if not grad:
            return np.empty((0, 0), x.dtype), None
        if self.moved:
            return np.empty(self.x2.shape, x.dtype), g
        return g.reshape(self.x2.shape), g

    def scatter(self, g2: np.ndarray, g: np.ndarray) -> None:
        if self.moved and g is not None:
            np.copyto(
                np.moveaxis(g, self.axis, -1),
                g2.reshape(self.batch_shape + (self.shape[self.axis],)),
            )


def _weight(weight, C: int, out=None) -> np.ndarray:
    """Class weights as float64 (C,); a copy when they overlap ``out``."""
    if weight is None:
        return _NO_WEIGHT
    w = np.asarray(weight)
    if w.dtype.kind not in "fiu":
        raise TypeError(f"weight must be a real numeric array, got dtype {w.dtype}")
    if w.shape != (C,):
        raise ValueError(
            f"weight should be defined either for all {C} classes or no classes "
            f"but got weight of shape {w.shape}"
        )
    return separate(out, readonly(np.ascontiguousarray(w, dtype=np.float64)))[0]


def _index_target(target, rows: _Rows, out=None) -> np.ndarray:
    return _index_target_of(target, rows.shape, rows.axis, out).reshape(-1)


def _index_target_of(target, shape, axis, out=None) -> np.ndarray:
    """Integer targets with ``shape`` minus the class ``axis`` (checked), as int64; a
    copy where they share memory with ``out`` (the gradient must not overwrite them)."""
    (y,) = separate(out, as_index_target(target, shape[axis], ignorable=True))
    expected = tuple(s for k, s in enumerate(shape) if k != axis)
    if y.shape != expected:
        raise ValueError(
            f"target shape {y.shape} does not match input shape {shape} "
            f"(expected target shape {expected} for class axis {axis})"
        )
    return y


def _check_index_status(status, bad, C):
    if status == 1:
        raise target_out_of_bounds(bad, C, ignorable=True)


def _index_option(value) -> int:
    """``ignore_index`` as an int; PyTorch's TypeError for anything but an integer."""
    if type(value) is int and -(2**63) <= value < 2**63:  # the common case, first
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"ignore_index must be an integer, got {value!r}")
    v = int(value)
    if not -(2**63) <= v < 2**63:  # PyTorch: ValueError (overflow of a C++ int64)
        raise ValueError(f"ignore_index={v} does not fit in a 64-bit integer")
    return v


def _float_option(name, value, lo=None, hi=None, lo_open=False, desc=None):
    v = real_option(value, name)
    ok = math.isfinite(v)  # (an infinite z_loss, softcap, gamma or temperature is NaN arithmetic)
    if lo is not None:
        ok = ok and (v > lo if lo_open else v >= lo)
    if hi is not None:
        ok = ok and v <= hi
    if not ok:
        raise ValueError(f"{name} must be {desc}. Got: {value!r}")
    return v


# ------------------------------------------------------------------------ cross_entropy
@register("classification")
def cross_entropy(
    input,
    target,
    weight=None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    axis: int = -1,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    grad: bool = True,
    out=None,
) -> LossResult:
    r"""Softmax cross-entropy of logits and its gradient, in one fused pass.

    .. math::
        \ell_i = w_{y_i}\,(1-\varepsilon)\,(\mathrm{lse}(x_i) - x_{i,y_i})
                 + \tfrac{\varepsilon}{C}\sum_c w_c\,(\mathrm{lse}(x_i) - x_{i,c})
                 + z\,\mathrm{lse}(x_i)^2

    Semantics of ``torch.nn.functional.cross_entropy`` (class-index or probability
    targets, ``weight``, ``ignore_index``, ``label_smoothing``, ``"mean"`` divided by the
    summed weight of the non-ignored targets), plus the PaLM z-loss and Gemma-2 logit
    soft-capping.

    Args:
        input: logits, float32 or float64, with the classes along ``axis``.
        target: integer class indices with ``input``'s shape minus the class axis, or
            float class probabilities with ``input``'s shape.
        weight: optional per-class weights, shape ``(C,)`` (may be negative or zero).
        ignore_index: class-index targets equal to it contribute 0 loss and 0 gradient
            and are left out of the ``"mean"`` denominator.  Must be negative with
            probability targets.
        label_smoothing: epsilon in [0, 1]; mixes the target with the uniform distribution.
        axis: the class axis (default -1; PyTorch's layout is ``axis=1``).
        z_loss: adds ``z_loss * logsumexp(x_i)**2`` per non-ignored sample.  The term is
            not class-weighted; under ``"mean"`` it is divided by the number of
            non-ignored samples (the convention of Liger-Kernel and cut-cross-entropy).
        softcap: if given (> 0), logits are replaced by ``softcap * tanh(x / softcap)``
            before the softmax; the gradient includes the tanh factor.
        reduction: ``"none"`` | ``"sum"`` | ``"mean"``.
        grad: compute the gradient (default True).
        out: optional C-contiguous buffer of ``input``'s shape and dtype for the
            gradient; may be ``input`` itself (the gradient then overwrites the logits).

    Returns:
        LossResult(loss, grad): ``loss`` a scalar of the input dtype (an array of the
        input's shape minus the class axis for ``"none"``); ``grad`` d loss/d input.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> x = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
        >>> loss, g = fl.cross_entropy(x, np.array([0, 2]))
        >>> print(f"{loss:.6f}")
        0.669962
        >>> bool(np.allclose(g.sum(axis=1), 0.0))
        True

    See also: :func:`nll_loss`, :func:`softmax_focal_loss`, :func:`log_softmax`.
    """
    if (
        _plain_index_call(input, target, weight, reduction, axis)
        and type(label_smoothing) in _PLAIN_ZERO_TYPES
        and not label_smoothing
        and type(z_loss) in _PLAIN_ZERO_TYPES
        and not z_loss
        and softcap is None
        and input.shape[1] <= K.SMALL_C
        and (out is None or not np.may_share_memory(out, input) or same_buffer(out, input))
    ):
        return _ce_small_fast(
            input, target, _index_option(ignore_index), reduction == "mean", grad, out
        )
    (x,) = unalias(out, as_input(input))
    check_reduction(reduction)
    ii = _index_option(ignore_index)
    eps = _float_option("label_smoothing", label_smoothing, 0.0, 1.0, desc="between 0.0 and 1.0")
    zl = _float_option("z_loss", z_loss, 0.0, desc="a finite number >= 0")
    cap = (
        0.0
        if softcap is None
        else _float_option("softcap", softcap, 0.0, lo_open=True, desc="finite and > 0, or None")
    )
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the class axis)")
    ax = normalize_axis(axis, x.ndim)
    C = x.shape[ax]
    w = _weight(weight, C, out)
    t_arr = target if isinstance(target, np.ndarray) else np.asarray(target)
    prob = t_arr.dtype.kind == "f"
    mean = reduction == "mean"
    if C == 0:
        return _ce_no_classes(x, ax, t_arr, prob, ii, eps, zl, reduction, grad, out)
    if not prob and cap == 0.0 and ax != x.ndim - 1:
        # PyTorch's (N, C, d...) layout: a kernel that walks the strided class axis
        # directly, so nothing the size of the input is copied
        A = math.prod(x.shape[:ax])
        B = math.prod(x.shape[ax + 1 :])
        y2 = _index_target_of(t_arr, x.shape, ax, out).reshape(A, B)
        if weight is not None:
            res = _ce_replay(x, ax, y2, w, ii, eps, zl, cap, reduction, grad, out)
            if res is not None:
                return res
        g = prepare_out(out, x, grad)
        g3 = g.reshape(A, C, B) if grad else _EMPTY_3D[x.dtype]
        rl = np.empty((A, B), np.float64)
        rzl = np.empty((A, B), np.float64) if zl > 0.0 else _EMPTY_2D_F64
        status, bad, denom, nv, total, ztotal = pick(K.ce_index_axis, A * B * C, A * B)(
            x.reshape(A, C, B), y2, w, ii, eps, zl, mean, g3, rl, rzl
        )
        _check_index_status(status, bad, C)
        return _ce_result(
            rl.reshape(-1),
            rzl.reshape(-1),
            total,
            ztotal,
            denom,
            nv,
            zl,
            reduction,
            x,
            ax,
            g if grad else None,
        )
    rows = _Rows(x, ax)
    if prob:
        _check_prob_target(t_arr, x, ii)
        t2 = rows.rows_of(separate(out, as_float_like(t_arr, x))[0])
    else:
        y = _index_target(t_arr, rows, out)
        if weight is not None:
            res = _ce_replay(x, ax, y, w, ii, eps, zl, cap, reduction, grad, out)
            if res is not None:
                return res
    g2, g = rows.grad_buffer(out, x, grad)
    R = rows.x2.shape[0]
    rl = np.empty(R, np.float64)
    rzl = np.empty(R, np.float64) if zl > 0.0 else _EMPTY_F64
    if prob:
        r = 1.0 / R if (mean and R) else 1.0
        kern = K.ce_prob_full if cap > 0.0 else K.ce_prob
        pick(kern, R * C, R)(rows.x2, t2, w, eps, zl, cap, r, g2, rl, rzl)
        denom = nv = R
        total = row_sum(rl)
        ztotal = row_sum(rzl) if zl > 0.0 else 0.0
    else:
        if C <= K.SMALL_C and cap == 0.0:  # few classes: whole blocks of rows at once
            status, bad, denom, nv, total, ztotal = pick(K.ce_index_small, R * C)(
                rows.x2, y, w, ii, eps, zl, mean, g2, rl, rzl
            )
        else:
            kern = K.ce_index_full if (cap > 0.0 or eps > 0.0) else K.ce_index
            status, bad, denom, nv, total, ztotal = pick(kern, R * C, R)(
                rows.x2, y, w, ii, eps, zl, cap, mean, g2, rl, rzl
            )
        _check_index_status(status, bad, C)
    rows.scatter(g2, g)
    return _ce_result(rl, rzl, total, ztotal, denom, nv, zl, reduction, x, ax, g)


def _check_prob_target(t, x, ii):
    if t.shape != x.shape:
        raise ValueError(
            f"probability target shape {t.shape} does not match input shape {x.shape}"
        )
    if ii >= 0:
        raise ValueError(
            "ignore_index is not supported for probability (floating point) targets; "
            f"got ignore_index={ii}"
        )


def _ce_no_classes(x, ax, t, prob, ii, eps, zl, reduction, grad, out):
    """C == 0, PyTorch's empty-sum arithmetic: with probability targets a row's loss is
    -0.0 (a negated empty sum; its z-loss, of logsumexp = -inf, is inf) and "mean"
    divides by numel / C = 0/0; with class indices every target must be ignore_index
    (any other is out of range), each row's loss is 0 (NaN with label smoothing: 0 *
    eps/0), and "mean" is 0/0."""
    if prob:
        _check_prob_target(t, x, ii)
        per = np.full(x.shape[:ax] + x.shape[ax + 1 :], math.inf if zl > 0.0 else -0.0)
    else:
        y = _index_target_of(t, x.shape, ax)
        bad = y[y != ii]
        if bad.size:
            _check_index_status(1, int(bad.flat[0]), 0)
        per = np.full(y.shape, math.nan if eps > 0.0 else 0.0)
    if reduction == "none":
        loss = array_to_dtype(per, x.dtype)
    else:
        # "sum": every row has the same value (a sum of -0.0s is -0.0, as in PyTorch)
        total = per.flat[0] if per.size else (-0.0 if prob else 0.0)
        loss = to_dtype(math.nan if reduction == "mean" else total, x.dtype)
    return finish(loss, prepare_out(out, x, grad), grad, out)


def _replay_terms(x, ax, yf, valid, w, eps, zl, cap, D, nz, grad, out):
    """PyTorch's order of operations for class-index cross-entropy, in float64 NumPy,
    with the mean's denominators ``D`` (cross-entropy and smoothing) and ``nz`` (z-loss)
    given (1 for other reductions).  Returns ``(per, smooth, lz, g)``: the weighted NLL
    of each row (0 for ignored rows), the weighted smoothing sums (None without label
    smoothing), the valid rows' logsumexp, and the gradient written to ``out`` (a new
    array when ``out`` is None; the size-0 placeholder without ``grad``).  Shared with
    the chunked replay (``fastloss._chunked``).  Call under ``np.errstate(all="ignore")``."""
    C = x.shape[ax]
    yv = yf[valid]
    x2 = np.moveaxis(x, ax, -1).reshape(-1, C).astype(np.float64)
    z = cap * np.tanh(x2 / cap) if cap > 0.0 else x2
    rows_v = np.flatnonzero(valid)
    m = np.max(z, axis=1, keepdims=True) if (C and z.shape[0]) else z[:, :1]
    lse = m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True))
    logsm = z - lse
    p = np.exp(logsm)
    go = 1.0 - eps
    per = np.zeros(x2.shape[0])
    per[rows_v] = -(w[yv] * logsm[rows_v, yv])
    gls = np.zeros_like(z)
    gls[rows_v, yv] = w[yv] * -(go / D)
    smooth = None
    if eps > 0.0:
        smooth = np.zeros(x2.shape[0])
        smooth[rows_v] = -np.sum(logsm[rows_v] * w, axis=1)
        # ignored rows too: PyTorch masks their smoothing term after the weighting,
        # so its backward multiplies the weights by 0 (NaN for a non-finite weight)
        gls += np.where(valid, -((eps / C) / D), -0.0)[:, None] * w
    g = prepare_out(out, x, grad)
    if grad:
        gx = gls - p * np.sum(gls, axis=1, keepdims=True)
        if zl > 0.0:
            gx[rows_v] += (2.0 * zl / nz) * lse[rows_v] * p[rows_v]
        if cap > 0.0:
            gx *= 1.0 - np.tanh(x2 / cap) ** 2
        gm = gx.reshape(np.moveaxis(x, ax, -1).shape)
        np.copyto(g, np.moveaxis(gm, -1, ax), casting="unsafe")
    return per, smooth, lse[rows_v, 0], g


def _ce_replay(x, ax, y, w, ii, eps, zl, cap, reduction, grad, out):
    """Class weights whose arithmetic is not finite: a non-finite weight, or under
    ``"mean"`` a total weight of the counted targets that is exactly 0 (weights that
    cancel, only zero-weight targets) or whose reciprocal overflows, or with label
    smoothing a sum of all weights that overflows (the kernels spread it; PyTorch sums
    ``w_c log p_c`` term by term, which can stay finite).  PyTorch's answer is
    then inf/NaN arithmetic whose pattern depends on its order of operations (a weight is
    read only for the rows that target its class, and by label smoothing), which the
    fused kernels do not follow.  This replays that order in float64 NumPy (a rare case,
    so speed does not matter).  Returns None when the weights are ordinary (or a target
    is out of range: the kernel reports it)."""
    C = x.shape[ax]
    yf = y.reshape(-1)
    valid = yf != ii
    yv = yf[valid]
    if yv.size and (yv.min() < 0 or yv.max() >= C):
        return None
    mean = reduction == "mean"
    with np.errstate(all="ignore"):
        tw = w[yv].sum()
        if (np.isfinite(w).all() and not (mean and yv.size and not np.isfinite(1.0 / tw))
                and not (eps > 0.0 and not np.isfinite(np.sum(w, dtype=np.float64)))):
            return None
        D = tw if mean else 1.0  # PyTorch divides by the total weight under "mean" only
        nz = max(valid.sum(), 1) if mean else 1
        per, smooth, lz, g = _replay_terms(x, ax, yf, valid, w, eps, zl, cap, D, nz, grad,
                                           out)
        go = 1.0 - eps
        if reduction == "none":
            loss = go * per + smooth * (eps / C) if eps > 0.0 else per
            if zl > 0.0:
                loss[valid] += zl * lz**2
        else:
            nll = np.sum(per) / D
            loss = go * nll + np.sum(smooth) / D * (eps / C) if eps > 0.0 else nll
            if zl > 0.0:
                loss = loss + zl * np.sum(lz * lz) / nz
    loss = _finish(loss, "none", 1, x, ax) if reduction == "none" else to_dtype(loss, x.dtype)
    return finish(loss, g, grad, out)


def _ce_result(rl, rzl, total, ztotal, denom, nv, zl, reduction, x, ax, g):
    """cross_entropy's reduction: CE part over ``denom``, z-loss part over ``nv``."""
    if reduction == "none":
        if zl > 0.0:
            rl += rzl
        loss = array_to_dtype(rl, x.dtype).reshape(
            tuple(s for k, s in enumerate(x.shape) if k != ax)
        )
    elif reduction == "sum":
        loss = to_dtype(total + ztotal, x.dtype)
    elif rl.size:
        loss = to_dtype(
            _mean_div(total, denom) + (_mean_div(ztotal, nv) if zl > 0.0 else 0.0), x.dtype
        )
    else:
        loss = to_dtype(math.nan, x.dtype)
    return LossResult(loss, g)


_EMPTY_3D = {np.dtype(dt): np.empty((0, 0, 0), dt) for dt in (np.float32, np.float64)}
_EMPTY_2D_F64 = np.empty((0, 0), np.float64)


_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Option types the fast path takes as they are (anything else, None included, goes
#: through the general path's checks)
_PLAIN_ZERO_TYPES = (float, int)
_INT64 = np.dtype(np.int64)


def _plain_index_call(input, target, weight, reduction, axis) -> bool:
    """The fast paths' common condition: C-contiguous 2-D float32/float64 ndarray input
    with its classes last, 1-D int64 labels of its length, no class weight, and a
    reduced loss (what the general path would check, convert and pass on unchanged)."""
    return (
        type(input) is np.ndarray
        and type(target) is np.ndarray
        and input.ndim == 2
        and target.ndim == 1
        and weight is None
        and input.dtype in _FAST_DTYPES
        and target.dtype == _INT64
        and (reduction == "mean" or reduction == "sum")
        and type(axis) is int
        and (axis == -1 or axis == 1)
        and input.shape[0] == target.shape[0]
        and input.flags.c_contiguous
        and target.flags.c_contiguous
    )


def _ce_small_fast(x, y, ignore_index, mean, grad, out):
    """The most common small call (2-D logits with few classes, int64 labels, no options),
    with the per-call Python work cut to the bone: the same kernel and checks as the
    general path, which it is tested against (tests/test_fastpath.py)."""
    R, C = x.shape
    if out is None and runs_serial(R * C):
        # one kernel call that makes its own buffers (the latency case)
        status, bad, loss, g = K.ce_index_small_call(x, y, ignore_index, mean, grad)
        if status:
            _check_index_status(status, bad, C)
        return small_result(loss, x.dtype, g, grad)
    if out is None:
        g = _fast_grad(x, grad)
    else:
        g = prepare_out(out, x, grad)
        (y,) = separate(out, y)  # labels in the gradient's memory: read from a copy
    rl = np.empty(R, np.float64)
    k = K.ce_index_small.serial if R * C < PARALLEL_MIN_WORK else pick(K.ce_index_small, R * C)
    status, bad, denom, _, total, _ = k(
        readonly(x), readonly(y), _NO_WEIGHT, ignore_index, 0.0, 0.0, mean, g, rl, _EMPTY_F64
    )
    if status:
        _check_index_status(status, bad, C)
    if mean:
        total = _mean_div(total, denom) if R else math.nan
    return finish(to_dtype(total, x.dtype), g, grad, out)


_EMPTY_2D = {dt: np.empty((0, 0), dt) for dt in _FAST_DTYPES}


def _fast_grad(x, grad):
    """A fast path's gradient buffer (no ``out=``): fresh, pooled when large."""
    if not grad:
        return _EMPTY_2D[x.dtype]
    if x.nbytes < POOL.MIN_BYTES:
        return np.empty(x.shape, x.dtype)
    return POOL.empty(x.shape, x.dtype)


def _mean_div(total, denom):
    """total / denom with IEEE semantics (0/0 = nan, x/0 = +-inf) and no warnings."""
    total = float(total)
    denom = float(denom)
    if denom == 0.0:
        if total == 0.0 or total != total:
            return math.nan
        return math.copysign(math.inf, total) * math.copysign(1.0, denom)
    return total / denom


# ------------------------------------------------------------------------------ nll_loss
@register("classification")
def nll_loss(
    input,
    target,
    weight=None,
    *,
    ignore_index: int = -100,
    axis: int = -1,
    reduction: str = "mean",
    grad: bool = True,
    out=None,
) -> LossResult:
    r"""Negative log-likelihood of log-probabilities, ``torch.nn.functional.nll_loss``.

    .. math:: \ell_i = -w_{y_i}\, x_{i, y_i}

    Args:
        input: log-probabilities, float32/float64, classes along ``axis``.
        target: integer class indices, ``input``'s shape minus the class axis.
        weight: optional per-class weights ``(C,)``.
        ignore_index: targets equal to it give 0 loss and 0 gradient.
        axis: the class axis (default -1; PyTorch's layout is ``axis=1``).
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` (divided by the summed weight of
            the non-ignored targets).
        grad, out: see :func:`cross_entropy`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> logp = np.log(np.array([[0.7, 0.2, 0.1]]))
        >>> print(f"{fl.nll_loss(logp, np.array([1])).loss:.6f}")
        1.609438
    """
    if _plain_index_call(input, target, weight, reduction, axis):
        return _nll_small_fast(input, target, _index_option(ignore_index), reduction == "mean",
                               grad, out)
    (x,) = unalias(out, as_input(input))
    check_reduction(reduction)
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the class axis)")
    ax = normalize_axis(axis, x.ndim)
    C = x.shape[ax]
    w = _weight(weight, C, out)
    if ax != x.ndim - 1:  # strided class axis: read in place, no copy
        A = math.prod(x.shape[:ax])
        B = math.prod(x.shape[ax + 1 :])
        y2 = _index_target_of(target, x.shape, ax, out).reshape(A, B)
        g = prepare_out(out, x, grad)
        g3 = g.reshape(A, C, B) if grad else _EMPTY_3D[x.dtype]
        rl = np.empty((A, B), np.float64)
        status, bad, denom, _ = pick(K.nll_axis, A * B * C, A * B)(
            x.reshape(A, C, B), y2, w, _index_option(ignore_index), reduction == "mean", g3, rl
        )
        _check_index_status(status, bad, C)
        return finish(_finish(rl.reshape(-1), reduction, denom, x, ax), g, grad, out)
    rows = _Rows(x, ax)
    y = _index_target(target, rows, out)
    g2, g = rows.grad_buffer(out, x, grad)
    R = rows.x2.shape[0]
    rl = np.empty(R, np.float64)
    status, bad, denom, _, total = pick(K.nll, R * C, R)(
        rows.x2, y, w, _index_option(ignore_index), reduction == "mean", g2, rl
    )
    _check_index_status(status, bad, C)
    rows.scatter(g2, g)
    return LossResult(_finish(rl, reduction, denom, x, ax, total), g)


def _nll_small_fast(x, y, ignore_index, mean, grad, out=None):
    """nll_loss's most common call (2-D log-probabilities, int64 labels, no weight, a
    reduced loss) with the per-call Python work cut down: the general path's kernel call
    and result (tests/test_fastpath.py)."""
    R, C = x.shape
    if out is None:
        if runs_serial(R * C, R) and x.nbytes < POOL.MIN_BYTES:  # pick()'s serial build
            status, bad, loss, g = K.nll_small_call(x, y, ignore_index, mean, grad)
            if status:
                _check_index_status(status, bad, C)
            return small_result(loss, x.dtype, g, grad)
        g = _fast_grad(x, grad)
    else:
        g = prepare_out(out, x, grad)
        (x,) = unalias(out, x)
        (y,) = separate(out, y)
    rl = np.empty(R, np.float64)
    status, bad, denom, _, total = pick(K.nll, R * C, R)(
        readonly(x), readonly(y), _NO_WEIGHT, ignore_index, mean, g, rl
    )
    if status:
        _check_index_status(status, bad, C)
    loss = to_dtype(_mean_div(total, denom) if mean else total, x.dtype)
    return finish(loss, g, grad, out)


def _finish(rl, reduction, denom, x, ax, total=None):
    """Reduce per-row losses: "none" keeps them (input shape minus the class axis),
    otherwise their fixed-order float64 sum, divided by ``denom`` for a mean (an empty
    batch has denom 0: nan, as PyTorch)."""
    if reduction == "none":
        return array_to_dtype(rl, x.dtype).reshape(
            tuple(s for k, s in enumerate(x.shape) if k != ax)
        )
    if total is None:
        total = row_sum(rl)
    if reduction == "sum":
        return to_dtype(total, x.dtype)
    return to_dtype(_mean_div(total, denom), x.dtype)


# ---------------------------------------------------------------------- softmax focal
@register("classification")
def softmax_focal_loss(
    input,
    target,
    weight=None,
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    axis: int = -1,
    reduction: str = "mean",
    grad: bool = True,
    out=None,
) -> LossResult:
    r"""Focal loss on softmax probabilities (Lin et al. 2017, multi-class form).

    .. math:: \ell_i = -w_{y_i}\,(1 - p_{i,y_i})^\gamma \log p_{i,y_i},
              \quad p_i = \mathrm{softmax}(x_i)

    ``gamma=0`` is cross-entropy.  ``"mean"`` divides by the summed weight of the
    non-ignored targets, as :func:`cross_entropy` does.  Ignored rows give 0 loss and a 0
    gradient.

    Args:
        input: logits, classes along ``axis``.
        target: integer class indices.
        weight: optional per-class weights ``(C,)``.
        gamma: focusing parameter, >= 0.
        ignore_index, axis, reduction, grad, out: as :func:`cross_entropy`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> x = np.array([[2.0, 0.5, -1.0]])
        >>> print(f"{fl.softmax_focal_loss(x, np.array([0])).loss:.6f}")
        0.011093
    """
    (x,) = unalias(out, as_input(input))
    check_reduction(reduction)
    gm = _float_option("gamma", gamma, 0.0, desc="a finite number >= 0")
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the class axis)")
    ax = normalize_axis(axis, x.ndim)
    rows = _Rows(x, ax)
    C = x.shape[ax]
    w = _weight(weight, C, out)
    y = _index_target(target, rows, out)
    g2, g = rows.grad_buffer(out, x, grad)
    R = rows.x2.shape[0]
    rl = np.empty(R, np.float64)
    status, bad, denom, _ = pick(K.focal, R * C, R)(
        rows.x2, y, w, _index_option(ignore_index), gm, reduction == "mean", g2, rl
    )
    _check_index_status(status, bad, C)
    rows.scatter(g2, g)
    return LossResult(_finish(rl, reduction, denom, x, ax), g)


# ------------------------------------------------------------------ divergences, entropy
def _pair(input, target, axis, reduction, grad, out):
    x = as_input(input)
    check_reduction(reduction, ("none", "sum", "mean", "batchmean"))
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the class axis)")
    (x,) = unalias(out, x)
    (t,) = separate(out, as_float_like(target, x, shape=x.shape))
    ax = normalize_axis(axis, x.ndim)
    rows = _Rows(x, ax)
    t2 = rows.rows_of(t)
    g2, g = rows.grad_buffer(out, x, grad)
    return x, ax, rows, t2, g2, g


def _row_scale(reduction, x, ax, R):
    if reduction == "mean":
        return 1.0 / R if R else 1.0, R
    if reduction == "batchmean":
        n = x.shape[0] if x.ndim > 1 else 1
        return (1.0 / n if n else 1.0), n
    return 1.0, 1


def _per_row(kern, rows, x, ax, reduction, g2, g, *args):
    """Run a per-row kernel ``kern(x2, *args, r, g2, rl)`` (divergences, entropy) and
    reduce its per-row losses."""
    R = rows.x2.shape[0]
    r, denom = _row_scale(reduction, x, ax, R)
    rl = np.empty(R, np.float64)
    if x.shape[ax] == 0:  # no classes: an empty sum
        rl.fill(0.0)
    else:
        pick(kern, R * x.shape[ax], R)(rows.x2, *args, r, g2, rl)
    rows.scatter(g2, g)
    return LossResult(_finish(rl, reduction, denom, x, ax), g)


def _logits_pair_example(dtype):
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    return (x, x[::-1].copy()), {}


@register(
    "divergence", reductions=("none", "sum", "mean", "batchmean"), example=_logits_pair_example
)
def kl_div_with_logits(
    input,
    target,
    *,
    temperature: float = 1.0,
    axis: int = -1,
    reduction: str = "batchmean",
    grad: bool = True,
    out=None,
) -> LossResult:
    r"""Distillation KL divergence from teacher logits to student logits.

    .. math::
        \ell_i = T^2\,\mathrm{KL}\big(\mathrm{softmax}(t_i/T)\,\|\,\mathrm{softmax}(s_i/T)\big)

    Hinton et al.'s :math:`T^2` keeps gradient magnitudes independent of ``T``.
    Classes where the teacher probability is 0 (``-inf`` teacher logits) contribute 0
    (``0 log 0 = 0``).  Only the student (``input``) gets a gradient:
    :math:`T\,(\mathrm{softmax}(s/T) - \mathrm{softmax}(t/T))` per row, scaled by the
    reduction.

    Args:
        input: student logits ``s``, classes along ``axis``.
        target: teacher logits ``t``, same shape.
        temperature: T > 0.
        axis: the class axis.
        reduction: ``"batchmean"`` (default: sum / ``input.shape[0]``, the batch size,
            PyTorch's definition; a 1-D input is one sample, so its batchmean is its
            sum, where ``F.kl_div``'s elementwise batchmean would divide by ``C``),
            ``"mean"`` (over rows), ``"sum"`` or ``"none"`` (per row).
        grad, out: see :func:`cross_entropy`.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> s = np.array([[1.0, 2.0, 3.0]]); t = np.array([[3.0, 2.0, 1.0]])
        >>> print(f"{fl.kl_div_with_logits(s, t).loss:.6f}")
        1.150421
    """
    T = _float_option("temperature", temperature, 0.0, lo_open=True, desc="a finite number > 0")
    x, ax, rows, t2, g2, g = _pair(input, target, axis, reduction, grad, out)
    return _per_row(K.kl_logits, rows, x, ax, reduction, g2, g, t2, T)


@register(
    "divergence", reductions=("none", "sum", "mean", "batchmean"), example=_logits_pair_example
)
def js_div_with_logits(
    input,
    target,
    *,
    temperature: float = 1.0,
    axis: int = -1,
    reduction: str = "batchmean",
    grad: bool = True,
    out=None,
) -> LossResult:
    r"""Jensen-Shannon divergence between the softmaxes of two sets of logits.

    .. math:: \ell_i = \tfrac12\mathrm{KL}(P_i\|M_i) + \tfrac12\mathrm{KL}(Q_i\|M_i),\quad
              P = \mathrm{softmax}(a/T),\ Q = \mathrm{softmax}(b/T),\ M = (P+Q)/2

    Natural logarithm (bounded by log 2); no :math:`T^2` factor; ``0 log 0 = 0``.  The
    gradient is taken with respect to ``input`` (``a``) only.

    Args:
        input: logits ``a``; target: logits ``b`` (same shape); temperature: T > 0;
        axis, reduction (default ``"batchmean"``), grad, out: as :func:`kl_div_with_logits`.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> a = np.array([[1.0, 2.0, 3.0]]); b = np.array([[3.0, 2.0, 1.0]])
        >>> print(f"{fl.js_div_with_logits(a, b).loss:.6f}")
        0.247588
    """
    T = _float_option("temperature", temperature, 0.0, lo_open=True, desc="a finite number > 0")
    x, ax, rows, t2, g2, g = _pair(input, target, axis, reduction, grad, out)
    return _per_row(K.js_logits, rows, x, ax, reduction, g2, g, t2, T)


def _entropy_example(dtype):
    return (np.zeros((2, 3), dtype),), {}


@register("divergence", example=_entropy_example)
def softmax_entropy(
    input, *, axis: int = -1, reduction: str = "mean", grad: bool = True, out=None
) -> LossResult:
    r"""Entropy of ``softmax(input)`` along ``axis``, and its gradient.

    .. math:: H_i = -\sum_c p_{i,c}\log p_{i,c},\quad
              \partial H_i/\partial x_{i,j} = -p_{i,j}\,(x_{i,j} - \textstyle\sum_c p_{i,c}x_{i,c})

    ``0 log 0 = 0`` (``-inf`` logits contribute nothing).  ``"mean"`` averages over rows.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> print(f"{fl.softmax_entropy(np.zeros((1, 4))).loss:.6f}")
        1.386294
    """
    (x,) = unalias(out, as_input(input))
    check_reduction(reduction)
    if x.ndim == 0:
        raise ValueError("input must have at least one dimension (the class axis)")
    ax = normalize_axis(axis, x.ndim)
    rows = _Rows(x, ax)
    g2, g = rows.grad_buffer(out, x, grad)
    return _per_row(K.entropy, rows, x, ax, reduction, g2, g)


# --------------------------------------------------------------------------- utilities
def _softmax_util(x, axis, mode):
    x = as_input(x)
    if x.ndim == 0:
        x = x.reshape(1)
        squeeze = True
    else:
        squeeze = False
    ax = normalize_axis(axis, x.ndim)
    rows = _Rows(x, ax)
    R, C = rows.x2.shape
    if mode == 2:
        out = np.empty((R, 1), x.dtype)
        if C == 0:
            out.fill(-np.inf)
        elif R:
            pick(K.softmax_rows, R * C, R)(rows.x2, 2, out)
        res = (
            out.reshape(rows.batch_shape)
            if not rows.moved
            else out.reshape(tuple(s for k, s in enumerate(x.shape) if k != ax))
        )
        return res[()] if res.ndim == 0 else res
    out2 = np.empty(rows.x2.shape, x.dtype)
    if R and C:
        pick(K.softmax_rows, R * C, R)(rows.x2, mode, out2)
    if rows.moved:
        res = np.empty(x.shape, x.dtype)
        rows.scatter(out2, res)
    else:
        res = out2.reshape(x.shape)
    return res.reshape(()) if squeeze else res


def softmax(x, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` (stable; an all ``-inf`` row gives NaN, as in PyTorch).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> fl.softmax(np.array([1000.0, 1000.0]))
        array([0.5, 0.5])
    """
    return _softmax_util(x, axis, 0)


def log_softmax(x, axis: int = -1) -> np.ndarray:
    """Log-softmax along ``axis``: ``x - logsumexp(x)`` computed stably.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> fl.log_softmax(np.array([0.0, 0.0]))
        array([-0.69314718, -0.69314718])
    """
    return _softmax_util(x, axis, 1)


def logsumexp(x, axis=-1, keepdims: bool = False):
    """``log(sum(exp(x)))`` along ``axis``; an empty or all ``-inf`` row gives ``-inf``.

    ``axis`` is an int or a tuple of ints (reduced together, as ``torch.logsumexp``'s
    ``dim`` and NumPy's ``axis``); ``keepdims=True`` keeps the reduced axes with size 1.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> print(fl.logsumexp(np.array([1000.0, 1000.0])))
        1000.6931471805599
        >>> fl.logsumexp(np.zeros((2, 3, 4)), axis=(0, 2), keepdims=True).shape
        (1, 3, 1)
    """
    if isinstance(axis, (tuple, list)):
        x = as_input(x)
        nd = max(x.ndim, 1)
        axes = tuple(normalize_axis(a, nd) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in logsumexp: axis={tuple(axis)!r}")
        x1 = x.reshape(x.shape or (1,))  # a 0-d input: one element along one axis
        kept = tuple(x1.shape[k] for k in range(nd) if k not in axes)
        rows = np.moveaxis(x1, axes, range(nd - len(axes), nd))
        res = _softmax_util(rows.reshape(kept + (math.prod(x1.shape[k] for k in axes),)), -1, 2)
    elif keepdims:
        x = as_input(x)
        axes = (normalize_axis(axis, max(x.ndim, 1)),)
        res = _softmax_util(x, axis, 2)
    else:
        return _softmax_util(x, axis, 2)
    if keepdims and x.ndim:
        return np.asarray(res).reshape(
            tuple(1 if k in axes else s for k, s in enumerate(x.shape)))
    return res
