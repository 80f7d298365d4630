"""Multi-class margin (hinge) loss: ``torch.nn.functional.multi_margin_loss``."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._config import BLOCK, pick, runs_serial
from ._core import (
    LossResult,
    as_index_target,
    as_input,
    check_reduction,
    finish,
    prepare_out,
    readonly,
    register,
    separate,
    target_out_of_bounds,
    to_dtype,
    unalias,
)
from ._kernels.multimargin import multi_margin, multi_margin_small_call
from ._vmath import row_sum

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.dtype(np.int64)

__all__ = ["multi_margin_loss"]


def _target_shape_ok(x_shape, t_shape) -> bool:
    if len(x_shape) == 1:
        return t_shape in ((), (1,))
    n = x_shape[0]
    return t_shape == (n,) or (n == 1 and t_shape == ())


def _example(dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4) / 4
    return (x, np.array([0, 3, 1], dtype=np.int32)), {}


@register("margin", example=_example)
def multi_margin_loss(
    input,
    target,
    weight=None,
    *,
    p=1,
    margin=1.0,
    reduction="mean",
    grad=True,
    out=None,
) -> LossResult:
    r"""Multi-class margin (hinge) loss and its gradient, as ``F.multi_margin_loss``.

    For a row ``x`` of ``C`` scores with target class ``y``:

    .. math::

        \ell(x, y) = \frac{1}{C} \sum_{j \ne y} w_y \, \max(0,\ m - x_y + x_j)^p

    with ``m = margin`` and ``w = weight`` (all ones by default).  A term at the kink
    (``m - x_y + x_j == 0`` exactly) or with a NaN score contributes nothing to the loss
    or the gradient, as in PyTorch (``z > 0`` is false there).  ``m - x_y + x_j`` is
    computed in the input dtype (``margin`` rounded to it), so kinks fall exactly where
    PyTorch's do.

    Args:
        input: scores, shape ``(N, C)``, ``(C,)`` or ``()`` (one sample of one class, as
            PyTorch: loss 0); float32 or float64.
        target: class indices in ``[0, C)``, shape ``(N,)`` (or ``()`` / ``(1,)`` for a
            ``(C,)`` or ``()`` input or when ``N == 1``); any integer dtype.
        weight: optional per-class weights, shape ``(C,)`` (may be negative); cast to the
            input dtype.
        p: 1 (hinge) or 2 (squared hinge).
        margin: the margin ``m`` (any real, including 0 and negative values).
        reduction: ``"none"`` (per-sample losses, the target's shape), ``"sum"`` or
            ``"mean"`` (the sum divided by ``N``, also when ``weight`` is given, exactly
            as PyTorch).
        grad: compute the gradient (``False``: loss only).
        out: optional writeable C-contiguous array of the input's shape and dtype that
            receives the gradient; may be ``input`` itself.

    Returns:
        LossResult ``(loss, grad)``: ``loss`` a scalar of the input dtype (``"sum"``,
        ``"mean"``) or an array of the target's shape (``"none"``); ``grad`` the
        gradient with respect to ``input`` (input's shape and dtype), or ``None``.
        An empty batch gives ``"mean"`` nan and ``"sum"`` 0 (PyTorch leaves that value
        uninitialised).

    Raises:
        TypeError: non-float input or non-integer target.
        ValueError: ``p`` not 1 or 2, ``weight`` not 1-D of length ``C``, shapes that do
            not match, unknown ``reduction``, bad ``out``.
        IndexError: a target outside ``[0, C)``.

    Examples:
        >>> import numpy as np
        >>> import fastloss as fl
        >>> x = np.array([[0.1, 0.2, 0.4, 0.8]])
        >>> loss, g = fl.multi_margin_loss(x, np.array([3]))
        >>> print(round(float(loss), 4))
        0.325
        >>> print(g)
        [[ 0.25  0.25  0.25 -0.75]]

    See also:
        ``hinge_loss``, ``squared_hinge_loss`` (binary margins).
    """
    if (
        out is None
        and weight is None
        and type(input) is np.ndarray
        and input.ndim == 2
        and input.dtype in _FAST_DTYPES
        and input.flags.c_contiguous
        and 0 < input.shape[1]
        and type(target) is np.ndarray
        and target.dtype == _INT64
        and target.shape == input.shape[:1]
        and target.flags.c_contiguous
        and type(p) is int
        and (p == 1 or p == 2)
        and type(margin) in (float, int)
        and abs(margin) < 1e38  # no float32 overflow in the cast below
        and (reduction == "mean" or reduction == "sum")
        and runs_serial(input.size)  # what pick() runs below: the serial build
    ):
        return _small_call(input, target, p, margin, reduction == "mean", grad)
    check_reduction(reduction)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or p not in (1, 2):
        raise ValueError(f"only p == 1 and p == 2 supported, got p={p!r}")
    if not isinstance(margin, numbers.Real):
        raise TypeError(f"margin must be a real number, got {type(margin).__name__}")

    (x,) = unalias(out, as_input(input))  # a partial overlap with out: work from a copy
    if x.ndim > 2 or (x.ndim and x.shape[-1] == 0):
        raise ValueError(f"input must have shape (N, C) or (C,) with C >= 1, got shape {x.shape}")
    c = x.shape[-1] if x.ndim else 1  # a 0-d input is one sample of one class (PyTorch)
    (t,) = separate(out, as_index_target(target, c))  # never overwritten under the kernel
    if not _target_shape_ok(x.shape if x.ndim else (1,), t.shape):
        expected = "() or (1,)" if x.ndim < 2 else f"({x.shape[0]},)"
        raise ValueError(
            f"target shape {t.shape} does not match input shape {x.shape}: "
            f"expected target shape {expected}"
        )
    x2 = x.reshape(-1, c)
    n = x2.shape[0]
    t1 = t.reshape(n)
    dt = x.dtype.type

    with np.errstate(over="ignore"):  # float32 cast of a huge margin / weight -> inf
        m = dt(margin)
        if weight is None:
            w = readonly(np.ones(c, dtype=x.dtype))
        else:
            wa = np.asarray(weight)
            if wa.ndim != 1:
                raise ValueError(
                    f"weight must be one-dimensional of length C={c}, got shape {wa.shape}"
                )
            if wa.shape[0] != c:
                raise ValueError(
                    f"weight has shape {wa.shape}, expected ({c},) (one weight per class)"
                )
            if wa.dtype.kind not in "fiub":
                raise TypeError(f"weight must be a real numeric array, got dtype {wa.dtype}")
            (w,) = separate(out, readonly(np.ascontiguousarray(wa, dtype=x.dtype)))

    g = prepare_out(out, x, grad)
    if out is not None:
        # out may be (or overlap) the input: a bad target found mid-kernel would leave it
        # half overwritten, so check first (a pass over n labels against the n x C work)
        if n and (int(t1.min()) < 0 or int(t1.max()) >= c):
            _raise_bad_target(t1, c, np.flatnonzero((t1 < 0) | (t1 >= c))[0])
    g2 = g.reshape(n, c) if grad else g.reshape(0, 0)

    gscale = dt(1.0 / (n * c)) if reduction == "mean" and n else dt(1.0 / c)
    losses = np.empty(n, dtype=np.float64)
    status = np.empty((n + BLOCK - 1) // BLOCK, dtype=np.int64)
    pick(multi_margin, n * c)(x2, t1, w, m, p == 2, gscale, bool(grad), losses, g2, status)
    if status.size:
        bad = status[status >= 0]
        if bad.size:
            _raise_bad_target(t1, c, bad[0])

    with np.errstate(over="ignore", invalid="ignore"):  # inf + -inf -> nan, as PyTorch
        if reduction == "none":
            loss = losses.astype(x.dtype).reshape(t.shape)
        elif reduction == "sum":
            loss = to_dtype(row_sum(losses), x.dtype)
        else:
            loss = to_dtype(row_sum(losses) / n if n else np.nan, x.dtype)
    return finish(loss, g, grad, out)


def _small_call(x, t, p, margin, mean, grad):
    """The common small call (2-D C-contiguous scores, int64 labels, no weight or ``out=``,
    a reduced loss) in one kernel call: the general path's kernel and values."""
    n, c = x.shape
    dt = x.dtype.type
    gscale = dt(1.0 / (n * c)) if mean and n else dt(1.0 / c)
    bad, total, g = multi_margin_small_call(x, t, dt(margin), p == 2, gscale, bool(grad))
    if bad >= 0:
        _raise_bad_target(t, c, bad)
    loss = to_dtype((total / n if n else math.nan) if mean else total, x.dtype)
    return LossResult(loss, g if grad else None)


def _raise_bad_target(t, c, row):
    raise target_out_of_bounds(int(t[row]), c)
