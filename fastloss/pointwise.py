"""Elementwise losses: binary, regression, margin, count and divergence families.

Every function here has the calling convention of SPEC section 1::

    fl.<loss>(input, target, [weight arrays], *, <options>, reduction="mean", grad=True,
              out=None) -> LossResult(loss, grad)

and runs one fused pass (``fastloss._kernels.pointwise``): each input element is read
once, its loss and its gradient are computed together, the gradient is written once, and
the loss is summed in float64 over fixed blocks (same bits at any thread count).

Conventions shared by all of them
---------------------------------
* ``target`` must have the input's shape exactly (``ValueError`` naming both shapes).
  Targets of any real dtype are converted to the input's dtype.
* ``reduction="mean"`` divides by the number of elements (PyTorch), also when a
  ``weight`` is given.  An empty input gives ``nan`` for ``"mean"``, ``0`` for ``"sum"``
  and an empty array for ``"none"``.
* ``grad`` is d loss / d input of the reduced loss (for ``"none"``: of the sum of the
  per-element losses).
* ``weight`` / ``pos_weight`` broadcast to the input's shape (``ValueError`` naming both
  shapes otherwise).  Scalar, per-last-dim ``(C,)``, per-row ``(N, 1)`` and full-shape
  operands (and generally any operand that varies only along a leading and/or a trailing
  group of axes) are read in place; other broadcasts, e.g. ``(N, 1, C)`` weights on an
  ``(N, H, C)`` input, are first expanded to the input's shape (one input-sized copy).
* Checks that need a full pass (probabilities in [0, 1] for :func:`binary_cross_entropy`,
  targets in {-1, +1} for the margin losses) are made inside the fused kernel and raised
  as ``ValueError`` afterwards.  When that happens ``out`` may already hold part of the
  gradient (and so may the input, if it was passed as ``out``); the input is never
  written otherwise.
* NaN and inf propagate as in PyTorch.  Where PyTorch's formula overflows for finite
  inputs (``soft_margin_loss`` for ``-y*x`` beyond ~709, or ~88 in float32) fastloss uses
  the stable form and returns the finite value.
"""

from __future__ import annotations

import math

import numpy as np

from ._config import pick, runs_serial
from ._core import (
    _default_example,
    as_float_like,
    as_input,
    check_reduction,
    check_same_shape,
    finish,
    prepare_out,
    readonly,
    real_option,
    register,
    small_result,
    to_dtype,
    unalias,
)
from ._kernels import pointwise as _k

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "exponential_loss",
    "hinge_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "log_cosh_loss",
    "log_sigmoid",
    "mse_loss",
    "perceptron_loss",
    "poisson_nll_loss",
    "sigmoid",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "squared_hinge_loss",
    "zero_one_loss",
]

_REDUCTIONS = ("none", "sum", "mean")
_KL_REDUCTIONS = ("none", "sum", "mean", "batchmean")


# --------------------------------------------------------------------------- machinery
def _prepare(input, target, reduction, allowed=_REDUCTIONS):
    """The checked ``(input, target)``: C-contiguous arrays of one float dtype and shape.
    They may be the caller's own (writeable) arrays: :func:`_run` makes read-only views
    before any kernel call that needs them."""
    if (type(input) is np.ndarray and type(target) is np.ndarray
            and input.dtype in _EMPTY and target.dtype == input.dtype
            and input.shape == target.shape and input.flags.c_contiguous
            and target.flags.c_contiguous and reduction in allowed):
        return input, target  # what the checks below would give
    check_reduction(reduction, allowed)
    x = as_input(input)
    t = as_float_like(target, x, "target")
    check_same_shape(x, t)
    return x, t


def _operand(a, x, name):
    """A weight-like array broadcastable to ``x`` (C-contiguous, read-only, x's dtype)."""
    if a is None:
        return None
    w = as_float_like(a, x, name)
    try:
        ok = np.broadcast_shapes(w.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} shape {w.shape} is not broadcastable to input shape {x.shape}")
    return w


def _split(shape, ops):
    """Row length B and (flat array, row stride, column stride) per operand, seeing the
    input as rows of B elements, with the largest B that makes every operand
    ``op[r * rs + c * cs]``; ``None`` if no split fits all operands."""
    nd = len(shape)
    for k in range(nd + 1):
        A = math.prod(shape[:k])
        B = math.prod(shape[k:])
        res = []
        for a in ops:
            ws = (1,) * (nd - a.ndim) + a.shape
            wa = math.prod(ws[:k])
            wb = math.prod(ws[k:])
            if wa not in (1, A) or wb not in (1, B):
                break
            rs = wb if (wa == A and A > 1) else 0
            cs = 1 if (wb == B and B > 1) else 0
            res.append((a.reshape(-1), rs, cs))
        else:
            return B, res
    return None


def _weight_args(x, weight, pos_weight):
    """(w, pw, geom) for a weighted kernel.  Scalar, per-last-dim ``(C,)`` / ``(1, C)``,
    per-row ``(N, 1)`` and full-shape operands are indexed in place; broadcasts that are
    none of these (e.g. ``(N, 1, C)`` weights on an ``(N, H, C)`` input) are expanded to
    the input's shape first (one input-sized copy)."""
    one = _ONE[x.dtype]
    if weight is None and pos_weight is None:  # what _split gives for two scalars
        return one, one, np.array([x.size, 0, 0, 0, 0], dtype=np.int64)
    ops = [one if weight is None else weight, one if pos_weight is None else pos_weight]
    sp = _split(x.shape, ops)
    if sp is None:
        ops = [o if o.size in (1, x.size) else readonly(np.ascontiguousarray(
            np.broadcast_to(o, x.shape))) for o in ops]
        sp = _split(x.shape, ops)
    B, ((w, wrs, wcs), (pw, prs, pcs)) = sp
    return w, pw, np.array([B, wrs, wcs, prs, pcs], dtype=np.int64)


_shares = np.may_share_memory


def _overwrites(g, x, t, wargs):
    """Whether the gradient buffer ``g`` may overlap an operand: input, target or a weight."""
    return _shares(g, x) or _shares(g, t) or any(_shares(g, w) for w in wargs)


_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0)}
_ONE = {dt: readonly(np.ones(1, dtype=dt)) for dt in _EMPTY}


def _run(kern, x, t, a=0.0, b=0.0, c=0.0, *, reduction, grad, out, wargs=(), on_bad=None):
    """Run an elementwise kernel and reduce: returns the LossResult."""
    if 0 < x.size <= _k.BLOCK_ELEMS and reduction != "none":
        # (a non-empty input: "batchmean" divides by x.shape[0] >= 1)
        denom = x.size if reduction == "mean" else (
            (x.shape[0] if x.ndim else 1) if reduction == "batchmean" else 0)
        if out is not None:
            return _run_block(kern, readonly(x), readonly(t), a, b, c, denom, grad, wargs,
                              on_bad, out)
        if not wargs and runs_serial(x.size):
            # the latency case: one kernel call builds its own arguments and buffers
            total, bad, g = kern.small(x, t, a, b, c, 1.0 / denom if denom else 1.0, grad)
            if bad and on_bad is not None:
                on_bad(x, t)
            if grad and x.ndim != 1:
                g = g.reshape(x.shape)
            return small_result(total / denom if denom else total, x.dtype, g, grad)
        return _run_block(kern, readonly(x), readonly(t), a, b, c, denom, grad, wargs, on_bad)
    x, t = readonly(x), readonly(t)
    g = prepare_out(out, x, grad)
    # the gradient overwrites (part of) an operand: domain errors are found first (below);
    # decided on the caller's arrays, before unalias swaps a partial overlap for a copy
    check_first = on_bad is not None and grad and out is not None and _overwrites(g, x, t, wargs)
    x, t = unalias(out, x, t)
    wargs = unalias(out, *wargs)
    n = x.size
    if reduction == "batchmean":
        denom = x.shape[0] if x.ndim else 1
    else:
        denom = n
    averaged = reduction in ("mean", "batchmean")
    scale = 1.0 / denom if (averaged and denom) else 1.0
    lout = np.empty(x.shape, dtype=x.dtype) if reduction == "none" else None
    total = 0.0
    if n:
        nb = -(-n // _k.BLOCK_ELEMS)
        partial = np.empty(nb)
        flags = np.empty(nb, dtype=np.bool_)
        p = np.array([a, b, c, scale], dtype=x.dtype)
        empty = _EMPTY[x.dtype]
        if check_first:
            _domain_first(kern, x, t, wargs, p, partial, flags, on_bad)
        pick(kern, n)(
            x.reshape(-1), t.reshape(-1), *wargs, p, 0, nb,
            empty if lout is None else lout.reshape(-1),
            g.reshape(-1) if grad else empty,
            partial, flags,
        )
        if on_bad is not None and flags.any():
            on_bad(x, t)
        with np.errstate(invalid="ignore"):  # blocks of +inf and -inf: NaN, as one sum
            total = float(np.sum(partial))
    if reduction == "none":
        loss = lout
    elif averaged:
        loss = to_dtype(total / denom if denom else math.nan, x.dtype)
    else:
        loss = to_dtype(total, x.dtype)
    return finish(loss, g, grad, out)


def _domain_first(kern, x, t, wargs, p, partial, flags, on_bad):
    """The gradient overwrites an operand: find values outside the loss's domain first
    (a loss-only pass over ``partial.size`` blocks), so an error leaves the caller's
    arrays intact."""
    empty = _EMPTY[x.dtype]
    pick(kern, x.size)(x.reshape(-1), t.reshape(-1), *wargs, p, 0, partial.size, empty, empty,
                       partial, flags)
    if flags.any():
        on_bad(x, t)


def _run_block(kern, x, t, a, b, c, denom, grad, wargs, on_bad, out=None):
    """:func:`_run` for the common small call (one block, a reduced loss: divided by
    ``denom``, or summed for 0): the same kernel call and result with the per-call Python
    work cut down, since at a few thousand elements that work, not the kernel, is the
    call's cost."""
    dt = x.dtype
    n = x.size
    empty = _EMPTY[dt]
    partial = np.empty(1)
    flags = np.empty(1, dtype=np.bool_)
    p = np.array((a, b, c, 1.0 / denom if denom else 1.0), dtype=dt)
    flat = x.ndim == 1
    if out is None:
        g = np.empty(n, dt) if grad else empty
    else:
        g = prepare_out(out, x, grad)
        if _overwrites(g, x, t, wargs):
            check_first = on_bad is not None
            (x, t), wargs = unalias(g, x, t), unalias(g, *wargs)
            if check_first:  # (decided on the caller's arrays, as in _run)
                _domain_first(kern, x, t, wargs, p, partial, flags, on_bad)
        if not flat:
            g = g.reshape(-1)
    xf = x if flat else x.reshape(-1)
    tf = t if flat else t.reshape(-1)
    pick(kern, n)(xf, tf, *wargs, p, 0, 1, empty, g, partial, flags)
    if on_bad is not None and flags[0]:
        on_bad(x, t)
    total = float(partial[0])
    if out is not None:
        return small_result(total / denom if denom else total, dt, out, grad)
    return small_result(total / denom if denom else total, dt,
                        g if flat or not grad else g.reshape(x.shape), grad)


def _bad_probabilities(x, t):
    if not np.all((x >= 0) & (x <= 1)):
        raise ValueError("all elements of input should be between 0 and 1")
    raise ValueError("all elements of target should be between 0 and 1")


def _bad_signs(x, t):
    bad = t[(t != 1) & (t != -1)]
    raise ValueError(
        f"target must contain only -1 and +1 (margin losses); found {bad.flat[0]!r}"
    )


# ----------------------------------------------------------------------- binary family
def _probability_example(dtype):
    rng = np.random.default_rng(0)
    return (rng.random((3, 4)).astype(dtype), rng.random((3, 4)).astype(dtype)), {}


@register("binary", example=_probability_example)
def binary_cross_entropy(input, target, weight=None, *, reduction="mean", grad=True, out=None):
    r"""Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    .. math::
        \ell_i = -w_i \left[ t_i \max(\log x_i, -100) + (1 - t_i) \max(\log(1 - x_i), -100) \right]

    The logs are clamped at -100 like PyTorch, so ``x = 0, t = 1`` gives 100, not inf.
    The gradient is PyTorch's backward formula ``w (x - t) / max(x (1 - x), 1e-12)``
    (which, like PyTorch's, is not the derivative of the clamped forward where the clamp
    is active).

    Args:
        input: probabilities in [0, 1], any shape, float32 or float64.
        target: same shape, values in [0, 1] (soft labels allowed).
        weight: optional rescaling weight broadcastable to ``input`` (e.g. ``()``,
            ``(C,)``, ``(N, 1)``, ``(N, C)``).
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` (mean over all elements).
        grad: also compute d loss / d input.
        out: optional C-contiguous array receiving the gradient (may be ``input``).

    Returns:
        LossResult(loss, grad): ``loss`` a scalar of the input dtype (or an input-shaped
        array for ``"none"``); ``grad`` input-shaped, or ``None`` when ``grad=False``.

    Raises:
        ValueError: an input or target value outside [0, 1] (NaN included, like
            PyTorch); shapes that do not match.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.binary_cross_entropy(np.array([0.5, 0.9]), np.array([1.0, 1.0]))
        >>> print(f"{loss:.4f}", np.round(g, 4))
        0.3993 [-1.     -0.5556]
    """
    x, t = _prepare(input, target, reduction)
    w = _operand(weight, x, "weight")
    return _run(_k.binary_cross_entropy, x, t, reduction=reduction, grad=grad, out=out,
                wargs=_weight_args(x, w, None), on_bad=_bad_probabilities)


@register("binary")
def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, *,
                                     reduction="mean", grad=True, out=None):
    r"""Binary cross-entropy on logits, as ``F.binary_cross_entropy_with_logits``.

    .. math::
        \ell_i = w_i \left[ (1 - t_i) x_i - (1 + (p_i - 1) t_i) \log\sigma(x_i) \right],

    .. math::
        \frac{\partial \ell_i}{\partial x_i} =
        w_i \left[ (p_i t_i + 1 - t_i)\,\sigma(x_i) - p_i t_i \right]

    with ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``: finite for every finite logit
    (``|x|`` up to the float maximum).  ``+-inf`` logits give what PyTorch gives (e.g. NaN
    loss for ``x = +inf, t = 1``).

    Args:
        input: logits, any shape, float32 or float64.
        target: same shape, values usually in [0, 1] (not checked, as in PyTorch).
        weight: optional weight broadcastable to ``input``.
        pos_weight: optional weight of the positive term, broadcastable to ``input``
            (typically ``(C,)``: one per class along the last dimension).
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` (mean over all elements).
        grad: also compute d loss / d input.
        out: optional C-contiguous array receiving the gradient (may be ``input``).

    Returns:
        LossResult(loss, grad), see :func:`binary_cross_entropy`.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.binary_cross_entropy_with_logits(np.array([0.0, 2.0]),
        ...     np.array([1.0, 0.0]))
        >>> print(f"{loss:.4f}", np.round(g, 4))
        1.4100 [-0.25    0.4404]
    """
    x, t = _prepare(input, target, reduction)
    w = _operand(weight, x, "weight")
    pw = _operand(pos_weight, x, "pos_weight")
    return _run(_k.binary_cross_entropy_with_logits, x, t, 0.0 if pw is None else 1.0,
                reduction=reduction, grad=grad, out=out, wargs=_weight_args(x, w, pw))


@register("binary")
def sigmoid_focal_loss(input, target, *, alpha=0.25, gamma=2.0, reduction="mean", grad=True,
                       out=None):
    r"""Sigmoid focal loss (Lin et al. 2017), as ``torchvision.ops.sigmoid_focal_loss``.

    .. math::
        p = \sigma(x),\quad \mathrm{ce} = \mathrm{BCEWithLogits}(x, t),\quad
        1 - p_t = p (1 - t) + (1 - p) t,\quad
        \ell = \alpha_t\, \mathrm{ce}\, (1 - p_t)^\gamma

    with ``alpha_t = alpha t + (1 - alpha)(1 - t)``, or 1 when ``alpha < 0`` (no class
    weighting).  Soft targets in [0, 1] are allowed.  ``1 - p_t`` is computed as the sum
    of two non-negative terms (torchvision computes ``1 - p_t`` by subtraction), so it
    keeps its relative accuracy for confident predictions.  The gradient is analytic:
    ``alpha_t [(p - t)(1 - p_t)^gamma + ce * gamma (1 - p_t)^(gamma-1) p (1 - p)(1 - 2t)]``.

    Args:
        input: logits, any shape, float32 or float64.
        target: same shape, labels in {0, 1} or soft labels.
        alpha: weight of the positive class in [0, 1]; negative disables weighting.
        gamma: focusing exponent, ``gamma >= 0`` (0 gives alpha-weighted BCE).
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` (mean over all elements).
        grad, out: see :func:`binary_cross_entropy`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.sigmoid_focal_loss(np.array([0.0, 3.0]),
        ...     np.array([1.0, 1.0]), reduction="sum")
        >>> print(f"{loss:.5f}", [round(float(v), 5) for v in g])
        0.04335 [-0.07457, -8e-05]
    """
    x, t = _prepare(input, target, reduction)
    alpha = real_option(alpha, "alpha")
    gamma = real_option(gamma, "gamma")
    if not alpha <= 1.0:  # NaN, inf and (1, inf): alpha_t would be negative
        raise ValueError(
            f"alpha must be a number in [0, 1], or negative to disable weighting; got {alpha}"
        )
    if not 0.0 <= gamma < math.inf:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
    return _run(_k.sigmoid_focal_loss, x, t, alpha, gamma, reduction=reduction, grad=grad,
                out=out)


@register("binary", example=_default_example("margin"))  # (+-1 targets)
def soft_margin_loss(input, target, *, reduction="mean", grad=True, out=None):
    r"""Two-class logistic loss on +-1 labels, as ``F.soft_margin_loss``.

    .. math::
        \ell_i = \log(1 + e^{-t_i x_i}),\qquad
        \frac{\partial \ell_i}{\partial x_i} = -t_i\, \sigma(-t_i x_i)

    Targets must be -1 or +1 (``ValueError`` otherwise, as every margin loss here and the
    spec's error table; PyTorch accepts any value).  Computed in the stable softplus
    form: where PyTorch's ``log1p(exp(-t x))`` overflows to inf (and its gradient to NaN)
    for finite ``-t x`` beyond ~709 (float64) / ~88 (float32), fastloss returns the
    finite values ``-t x`` and ``-t``; an infinite score with ``-t x = +inf`` gives
    PyTorch's inf loss and NaN gradient.

    Args:
        input: scores, any shape.
        target: same shape, -1 / +1.
        reduction, grad, out: see :func:`binary_cross_entropy`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.soft_margin_loss(np.array([0.0, 2.0]),
        ...     np.array([1.0, -1.0]), reduction="sum")
        >>> print(f"{loss:.4f}", np.round(g, 4))
        2.8201 [-0.5     0.8808]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.soft_margin_loss, x, t, reduction=reduction, grad=grad, out=out,
                on_bad=_bad_signs)


# ------------------------------------------------------------------- regression family
@register("regression")
def mse_loss(input, target, *, reduction="mean", grad=True, out=None):
    r"""Squared error, as ``F.mse_loss``: :math:`\ell_i = (x_i - t_i)^2`, gradient ``2 (x - t)``.

    Args:
        input: predictions, any shape, float32 or float64.
        target: same shape.
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` (mean over all elements).
        grad: also compute d loss / d input.
        out: optional C-contiguous array receiving the gradient (may be ``input``).

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.mse_loss(np.array([1.0, 2.0]), np.array([1.5, 2.0]))
        >>> print(loss, g)
        0.125 [-0.5  0. ]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.mse_loss, x, t, reduction=reduction, grad=grad, out=out)


@register("regression")
def l1_loss(input, target, *, reduction="mean", grad=True, out=None):
    r"""Absolute error, as ``F.l1_loss``: :math:`\ell_i = |x_i - t_i|`.

    The gradient is ``sgn(x - t)`` with ``sgn(0) = 0`` (PyTorch, LightGBM) and, like
    ``torch.sgn``, 0 where the residual is NaN (the loss is NaN there).

    Args:
        input, target, reduction, grad, out: see :func:`mse_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.l1_loss(np.array([1.0, 2.0, 3.0]),
        ...     np.array([1.5, 2.0, 2.0]), reduction="sum")
        >>> print(loss, g)
        1.5 [-1.  0.  1.]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.l1_loss, x, t, reduction=reduction, grad=grad, out=out)


@register("regression")
def smooth_l1_loss(input, target, *, beta=1.0, reduction="mean", grad=True, out=None):
    r"""Smooth L1 loss, as ``F.smooth_l1_loss``.

    .. math::
        \ell_i = \begin{cases} 0.5\, d_i^2 / \beta & |d_i| < \beta \\
                 |d_i| - 0.5 \beta & \text{otherwise} \end{cases},
        \qquad d = x - t

    Gradient ``clip(d / beta, -1, 1)`` (+-1 at ``|d| = beta``).  ``beta == 0`` is exactly
    :func:`l1_loss` (as in PyTorch's functional API).

    Args:
        input, target: see :func:`mse_loss`.
        beta: threshold between the quadratic and the linear part, ``beta >= 0``.
        reduction, grad, out: see :func:`mse_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.smooth_l1_loss(np.array([0.5, 3.0]),
        ...     np.array([0.0, 0.0]), reduction="none")
        >>> print(loss, g)
        [0.125 2.5  ] [0.5 1. ]
    """
    x, t = _prepare(input, target, reduction)
    beta = real_option(beta, "beta")
    if not beta >= 0.0:
        raise ValueError(
            f"beta must be >= 0 (smooth_l1_loss does not support negative values for beta), "
            f"got {beta}"
        )
    if x.dtype.type(beta) == 0.0:
        # also a beta that rounds to 0 in float32 (the kernel computes in the input's
        # dtype): the smooth kernel's d >= beta branch would give sgn(0) = 1 there
        return _run(_k.l1_loss, x, t, reduction=reduction, grad=grad, out=out)
    return _run(_k.smooth_l1_loss, x, t, beta, reduction=reduction, grad=grad, out=out)


@register("regression")
def huber_loss(input, target, *, delta=1.0, reduction="mean", grad=True, out=None):
    r"""Huber loss, as ``F.huber_loss``.

    .. math::
        \ell_i = \begin{cases} 0.5\, d_i^2 & |d_i| < \delta \\
                 \delta (|d_i| - 0.5 \delta) & \text{otherwise} \end{cases},
        \qquad d = x - t

    Gradient ``clip(d, -delta, delta)`` (+-delta at ``|d| = delta``).

    Args:
        input, target: see :func:`mse_loss`.
        delta: threshold, ``delta > 0``.
        reduction, grad, out: see :func:`mse_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.huber_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none")
        >>> print(loss, g)
        [0.125 2.5  ] [0.5 1. ]
    """
    x, t = _prepare(input, target, reduction)
    delta = real_option(delta, "delta")
    if not delta > 0.0:
        raise ValueError(
            f"delta must be > 0 (huber_loss does not support non-positive values for delta), "
            f"got {delta}"
        )
    return _run(_k.huber_loss, x, t, delta, reduction=reduction, grad=grad, out=out)


@register("regression")
def log_cosh_loss(input, target, *, reduction="mean", grad=True, out=None):
    r"""Log-cosh loss: :math:`\ell_i = \log\cosh(x_i - t_i)`, gradient ``tanh(x - t)``.

    Computed without overflow for any residual: ``log1p(m^2 / (2 (1 + m)))`` with
    ``m = expm1(|d|)`` for ``|d| < 20`` (accurate down to tiny residuals, where
    ``log cosh d ~ d^2 / 2``), and ``|d| - log 2`` beyond, where the remaining term
    ``log1p(exp(-2|d|))`` is below one ulp.  Both equal
    ``|d| + log1p(exp(-2|d|)) - log 2``.

    Args:
        input, target, reduction, grad, out: see :func:`mse_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.log_cosh_loss(np.array([0.0, 1e4]), np.array([1.0, 0.0]), reduction="none")
        >>> print([round(float(v), 4) for v in loss], np.round(g, 4))
        [0.4338, 9999.3069] [-0.7616  1.    ]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.log_cosh_loss, x, t, reduction=reduction, grad=grad, out=out)


# ----------------------------------------------------------------------- margin family
def _margin(margin):
    margin = real_option(margin, "margin")
    if not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number, got {margin}")
    return margin


@register("margin")
def hinge_loss(input, target, *, margin=1.0, reduction="mean", grad=True, out=None):
    r"""Hinge loss (SVM): :math:`\ell_i = \max(0, m - t_i x_i)`, labels :math:`t_i \in \{-1, 1\}`.

    Gradient ``-t`` where ``t x <= margin``, else 0.
    Subgradient convention at the kink (``t x == margin``): ``-t``, i.e. the kink counts
    as inside the margin, as in scikit-learn's SGD losses (``Hinge.dloss`` returns ``-y``
    when ``y p <= threshold``) and PyTorch's ``clamp(min=0)`` backward.  NaN scores give
    NaN loss and gradient.

    Args:
        input: scores, any shape, float32 or float64.
        target: same shape, exactly -1 or +1 (anything else raises ``ValueError``).
        margin: the margin ``m`` (finite).
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` (mean over all elements).
        grad, out: see :func:`mse_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.hinge_loss(np.array([2.0, 0.5, 1.0]),
        ...     np.array([1.0, 1.0, 1.0]), reduction="none")
        >>> print(loss, g)
        [0.  0.5 0. ] [ 0. -1. -1.]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.hinge_loss, x, t, _margin(margin), reduction=reduction, grad=grad, out=out,
                on_bad=_bad_signs)


@register("margin")
def squared_hinge_loss(input, target, *, margin=1.0, reduction="mean", grad=True, out=None):
    r"""Squared hinge loss: :math:`\ell_i = \max(0, m - t_i x_i)^2`, labels in {-1, +1}.

    Gradient ``-2 t max(0, m - t x)`` (continuous: 0 at the kink).

    Args:
        input, target, margin, reduction, grad, out: see :func:`hinge_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.squared_hinge_loss(np.array([0.5, 0.5]),
        ...     np.array([1.0, -1.0]), reduction="none")
        >>> print(loss, g)
        [0.25 2.25] [-1.  3.]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.squared_hinge_loss, x, t, _margin(margin), reduction=reduction, grad=grad,
                out=out, on_bad=_bad_signs)


@register("margin")
def perceptron_loss(input, target, *, reduction="mean", grad=True, out=None):
    r"""Perceptron loss: :math:`\ell_i = \max(0, -t_i x_i)`, labels in {-1, +1}.

    The hinge loss with margin 0.  Gradient ``-t`` where ``t x <= 0`` (a score of exactly
    0 counts as a mistake, as in the perceptron update and scikit-learn's
    ``Hinge(threshold=0)``), else 0.

    Args:
        input, target, reduction, grad, out: see :func:`hinge_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.perceptron_loss(np.array([2.0, 0.5, 0.0]),
        ...     np.array([1.0, -1.0, 1.0]), reduction="none")
        >>> print(loss, g)
        [0.  0.5 0. ] [ 0.  1. -1.]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.hinge_loss, x, t, 0.0, reduction=reduction, grad=grad, out=out,
                on_bad=_bad_signs)


@register("margin")
def exponential_loss(input, target, *, reduction="mean", grad=True, out=None):
    r"""Exponential loss (AdaBoost): :math:`\ell_i = e^{-t_i x_i}`, labels in {-1, +1}.

    Gradient ``-t exp(-t x)``; overflows to inf for ``-t x`` beyond ~709 (float64) /
    ~88 (float32), as the formula does.

    Args:
        input, target, reduction, grad, out: see :func:`hinge_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.exponential_loss(np.array([0.0, 1.0]),
        ...     np.array([1.0, -1.0]), reduction="none")
        >>> print(np.round(loss, 4), np.round(g, 4))
        [1.     2.7183] [-1.      2.7183]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.exponential_loss, x, t, reduction=reduction, grad=grad, out=out,
                on_bad=_bad_signs)


@register("margin")
def zero_one_loss(input, target, *, reduction="mean", grad=True, out=None):
    r"""Zero-one loss: :math:`\ell_i = 1[t_i x_i \le 0]`, labels in {-1, +1}.

    A score of exactly 0 counts as an error.  NaN scores give a NaN loss.  The gradient
    is zero everywhere (also where the loss is NaN); ``"mean"`` is the error rate.

    Args:
        input, target, reduction, grad, out: see :func:`hinge_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.zero_one_loss(np.array([2.0, 0.5, 0.0, -1.0]),
        ...     np.array([1.0, -1.0, 1.0, -1.0]))
        >>> print(loss, g)
        0.5 [0. 0. 0. 0.]
    """
    x, t = _prepare(input, target, reduction)
    return _run(_k.zero_one_loss, x, t, reduction=reduction, grad=grad, out=out,
                on_bad=_bad_signs)


# ------------------------------------------------------------------------ count family
@register("count")
def poisson_nll_loss(input, target, *, log_input=True, full=False, eps=1e-8,
                     reduction="mean", grad=True, out=None):
    r"""Poisson negative log-likelihood, as ``F.poisson_nll_loss``.

    .. math::
        \ell_i = e^{x_i} - t_i x_i \ \ (\text{log\_input}),\qquad
        \ell_i = x_i - t_i \log(x_i + \epsilon) \ \ (\text{otherwise})

    ``full=True`` adds the Stirling term ``t log t - t + 0.5 log(2 pi t)`` where
    ``t > 1`` (it does not depend on the input, so the gradient is unchanged).

    Args:
        input: log-rates (``log_input=True``) or rates, any shape.
        target: same shape, counts.
        log_input: whether ``input`` is the log of the rate.
        full: add the Stirling approximation term.
        eps: added to the rate inside the log when ``log_input=False``.
        reduction, grad, out: see :func:`mse_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> loss, g = fl.poisson_nll_loss(np.array([0.0, 1.0]),
        ...     np.array([1.0, 2.0]), reduction="none")
        >>> print(np.round(loss, 4), np.round(g, 4))
        [1.     0.7183] [0.     0.7183]
    """
    x, t = _prepare(input, target, reduction)
    eps = real_option(eps, "eps")
    # the default options have a kernel of their own: no logarithms to compute and discard
    kern = _k.poisson_nll_loss_log if (log_input and not full) else _k.poisson_nll_loss
    return _run(kern, x, t, 1.0 if log_input else 0.0, 1.0 if full else 0.0, eps,
                reduction=reduction, grad=grad, out=out)


# ------------------------------------------------------------------- divergence family
@register("divergence", reductions=_KL_REDUCTIONS)
def kl_div(input, target, *, log_target=False, reduction="mean", grad=True, out=None):
    r"""Kullback-Leibler divergence, as ``F.kl_div`` (input is log q, target is p).

    .. math::
        \ell_i = \operatorname{xlogy}(t_i, t_i) - t_i x_i,\qquad
        \ell_i = e^{t_i} (t_i - x_i) \ \ (\text{log\_target})

    with ``xlogy(0, y) = 0``, so ``t = 0`` contributes 0 ... except where ``x = -inf``,
    where ``0 * -inf`` is NaN, exactly as PyTorch 2.x.  Gradient ``-t`` (``-exp(t)``).

    ``reduction="batchmean"`` divides the sum by ``input.shape[0]`` (the KL divergence of
    a batch of distributions; a 0-d input divides by 1); ``"mean"`` divides by the
    number of elements, as PyTorch does.  PyTorch warns about ``"mean"``; fastloss does
    not (the behaviour is documented here and will not change).

    Args:
        input: log-probabilities, any shape, float32 or float64.
        target: same shape, probabilities (or log-probabilities with ``log_target``).
        log_target: whether ``target`` holds log-probabilities.
        reduction: ``"none"`` | ``"sum"`` | ``"mean"`` | ``"batchmean"``.
        grad, out: see :func:`mse_loss`.

    Returns:
        LossResult(loss, grad).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> p = np.array([[0.25, 0.75]]); q = np.array([[0.5, 0.5]])
        >>> loss, g = fl.kl_div(np.log(q), p, reduction="batchmean")
        >>> print(f"{loss:.5f}", g)
        0.13081 [[-0.25 -0.75]]
    """
    x, t = _prepare(input, target, reduction, _KL_REDUCTIONS)
    return _run(_k.kl_div, x, t, 1.0 if log_target else 0.0, reduction=reduction, grad=grad,
                out=out)


# ---------------------------------------------------------------------------- utilities
def _map(kern, x):
    a = as_input(x, "x")
    res = np.empty(a.shape, dtype=a.dtype)
    if a.size:
        pick(kern, a.size)(a.reshape(-1), res.reshape(-1))
    return res


def sigmoid(x):
    r"""Logistic sigmoid :math:`1 / (1 + e^{-x})`, elementwise, without overflow.

    Args:
        x: array-like of float32 or float64.

    Returns:
        ndarray of ``x``'s shape and dtype.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> print(fl.sigmoid(np.array([-1000.0, 0.0, 2.0])))
        [0.         0.5        0.88079708]
    """
    return _map(_k.sigmoid_map, x)


def log_sigmoid(x):
    r"""Log of the logistic sigmoid, :math:`\min(x, 0) - \log(1 + e^{-|x|})`, elementwise.

    Finite for every finite ``x`` (``log_sigmoid(-1000) == -1000``).

    Args:
        x: array-like of float32 or float64.

    Returns:
        ndarray of ``x``'s shape and dtype.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> print(fl.log_sigmoid(np.array([-1000.0, 0.0, 2.0])))
        [-1.00000000e+03 -6.93147181e-01 -1.26928011e-01]
    """
    return _map(_k.log_sigmoid_map, x)
