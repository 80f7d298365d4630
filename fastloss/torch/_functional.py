"""Every loss of ``fastloss.LOSSES`` as an autograd-aware function of CPU tensors.

Losses PyTorch has keep ``torch.nn.functional``'s name, positional order, defaults and
legacy arguments; fastloss extras (``z_loss``, ``softcap``, ``axis``) are keyword-only.
Losses PyTorch lacks keep fastloss's signature (without ``grad`` and ``out``).
"""

from __future__ import annotations

import functools
import operator

import numpy as np
import torch

import fastloss as fl
from fastloss._core import check_reduction

from ._autograd import (
    NEGATED,
    TargetGrad,
    check_input,
    const,
    deprecated_mean,
    fused,
    legacy_reduction,
    promote,
    public,
    torch_class_axis,
)

Tensor = torch.Tensor

#: Every public function is opaque to torch.compile (a graph break around the call):
#: it runs NumPy and Numba code that Dynamo cannot trace.
_disable = torch.compiler.disable(
    reason="fastloss.torch calls NumPy/Numba kernels (a graph break around each loss)"
)


def _public(fn):
    return _disable(public(fn))


def _torch_reduction(size_average, reduce, reduction):
    """The reduction of a loss PyTorch has: the legacy arguments mapped, and the
    deprecated ``"elementwise_mean"`` accepted as ``"mean"`` (both with PyTorch's
    warnings)."""
    return deprecated_mean(legacy_reduction(size_average, reduce, reduction))


def _index(ignore_index):
    """``ignore_index`` given as a one-element integer tensor, as PyTorch accepts it."""
    return operator.index(ignore_index) if isinstance(ignore_index, Tensor) else ignore_index


def _mean_scale(g, reduction, n):
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g /= n
    return g


# ------------------------------------------------------------------ softmax family
def _ce_prob_target_grad(x, t, res, need_x, *, w, eps, ax, softcap, reduction):
    """d/d target of probability-target cross-entropy: -(1 - eps) w log_softmax(x)."""
    with np.errstate(all="ignore"):
        z = x if softcap is None else softcap * np.tanh(x / softcap)
        g = fl.log_softmax(np.asarray(z, x.dtype), axis=ax)
        g *= -(1.0 - eps)
        if w is not None:
            shape = [1] * x.ndim
            shape[ax] = -1
            g *= np.asarray(w, x.dtype).reshape(shape)
    return _mean_scale(g, reduction, x.size // x.shape[ax] if x.shape[ax] else 0)


@_public
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
    axis: int | None = None,
) -> Tensor:
    """``F.cross_entropy`` (class indices or probabilities); fused loss and gradient.

    Extras: ``z_loss`` (adds ``z_loss * logsumexp**2`` per sample), ``softcap`` (logits
    ``softcap * tanh(x / softcap)``), ``axis`` (class axis; default PyTorch's: 1, or 0
    for a 1-D input).  Differentiable with respect to probability targets."""
    check_input(input, "cross_entropy")
    reduction = _torch_reduction(size_average, reduce, reduction)
    ignore_index = _index(ignore_index)
    ax = torch_class_axis(input, axis)
    w = const(weight, "cross_entropy", "weight")

    def call(x, t, grad):
        return fl.cross_entropy(
            x, t, w, ignore_index=ignore_index, label_smoothing=label_smoothing, axis=ax,
            z_loss=z_loss, softcap=softcap, reduction=reduction, grad=grad,
        )

    tg = None
    if isinstance(target, Tensor) and target.is_floating_point() and input.ndim:
        tg = TargetGrad(
            functools.partial(
                _ce_prob_target_grad, w=w, eps=label_smoothing, ax=ax % input.ndim,
                softcap=softcap, reduction=reduction,
            ),
            False,
        )
    return fused("cross_entropy", call, input, target, axis=ax, target_grad=tg)


@_public
def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    axis: int | None = None,
) -> Tensor:
    """``F.nll_loss`` of log-probabilities; ``axis`` as in :func:`cross_entropy`."""
    check_input(input, "nll_loss")
    reduction = _torch_reduction(size_average, reduce, reduction)
    ignore_index = _index(ignore_index)
    ax = torch_class_axis(input, axis)
    w = const(weight, "nll_loss", "weight")

    def call(x, t, grad):
        return fl.nll_loss(
            x, t, w, ignore_index=ignore_index, axis=ax, reduction=reduction, grad=grad
        )

    return fused("nll_loss", call, input, target, axis=ax)


@_public
def multi_margin_loss(
    input: Tensor,
    target: Tensor,
    p: int = 1,
    margin: float = 1.0,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``F.multi_margin_loss`` of scores ``(N, C)`` or ``(C,)`` and class indices."""
    check_input(input, "multi_margin_loss")
    reduction = _torch_reduction(size_average, reduce, reduction)
    w = const(weight, "multi_margin_loss", "weight")

    def call(x, t, grad):
        return fl.multi_margin_loss(x, t, w, p=p, margin=margin, reduction=reduction, grad=grad)

    return fused("multi_margin_loss", call, input, target, axis=-1)


@_public
def softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    axis: int = -1,
    reduction: str = "mean",
) -> Tensor:
    """fastloss's ``softmax_focal_loss``: ``-w_y (1 - p_y)**gamma log p_y`` (classes along
    ``axis``, default -1 as in fastloss; ``axis=1`` for the ``(N, C, d...)`` layout)."""
    w = const(weight, "softmax_focal_loss", "weight")

    def call(x, t, grad):
        return fl.softmax_focal_loss(
            x, t, w, gamma=gamma, ignore_index=ignore_index, axis=axis, reduction=reduction,
            grad=grad,
        )

    return fused("softmax_focal_loss", call, input, target, axis=axis)


@_public
def kl_div_with_logits(
    input: Tensor,
    target: Tensor,
    *,
    temperature: float = 1.0,
    axis: int = -1,
    reduction: str = "batchmean",
) -> Tensor:
    """fastloss's ``kl_div_with_logits``: ``T**2 KL(softmax(target/T) || softmax(input/T))``
    (distillation; the teacher ``target`` must not require grad)."""

    def call(x, t, grad):
        return fl.kl_div_with_logits(
            x, t, temperature=temperature, axis=axis, reduction=reduction, grad=grad
        )

    return fused("kl_div_with_logits", call, input, target, axis=axis)


def _js_target_grad(x, t, res, need_x, **options):
    return fl.js_div_with_logits(np.asarray(t, x.dtype), x, **options).grad


@_public
def js_div_with_logits(
    input: Tensor,
    target: Tensor,
    *,
    temperature: float = 1.0,
    axis: int = -1,
    reduction: str = "batchmean",
) -> Tensor:
    """fastloss's ``js_div_with_logits``: Jensen-Shannon divergence of ``softmax(input/T)``
    and ``softmax(target/T)``.  Symmetric, so also differentiable with respect to
    ``target`` (a second fused pass with the arguments swapped)."""

    def call(x, t, grad):
        return fl.js_div_with_logits(
            x, t, temperature=temperature, axis=axis, reduction=reduction, grad=grad
        )

    tg = TargetGrad(
        functools.partial(
            _js_target_grad, temperature=temperature, axis=axis, reduction=reduction
        ),
        False,
    )
    return fused("js_div_with_logits", call, input, target, axis=axis, target_grad=tg)


@_public
def softmax_entropy(input: Tensor, *, axis: int = -1, reduction: str = "mean") -> Tensor:
    """fastloss's ``softmax_entropy``: the entropy of ``softmax(input)`` along ``axis``."""

    def call(x, t, grad):
        return fl.softmax_entropy(x, axis=axis, reduction=reduction, grad=grad)

    return fused("softmax_entropy", call, input, None, axis=axis)


# ---------------------------------------------------------------- elementwise losses
def _bce_target_grad(x, t, res, need_x, *, w, reduction):
    with np.errstate(all="ignore"):
        g = -np.log(x / (1 - x))  # PyTorch: -logit(input), unclamped
        if w is not None:
            g *= np.asarray(w, x.dtype)
    return _mean_scale(g, reduction, x.size)


@_public
def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``F.binary_cross_entropy`` of probabilities (log clamped at -100)."""
    reduction = _torch_reduction(size_average, reduce, reduction)
    w = const(weight, "binary_cross_entropy", "weight")

    def call(x, t, grad):
        return fl.binary_cross_entropy(x, t, w, reduction=reduction, grad=grad)

    tg = TargetGrad(functools.partial(_bce_target_grad, w=w, reduction=reduction), False)
    return fused("binary_cross_entropy", call, input, target, target_grad=tg)


def _bcel_target_grad(x, t, res, need_x, *, w, pw, reduction):
    with np.errstate(all="ignore"):
        if pw is None:
            g = -x
        else:
            g = fl.log_sigmoid(-x) - fl.log_sigmoid(x) * np.asarray(pw, x.dtype)
        if w is not None:
            g = g * np.asarray(w, x.dtype)
        g = np.array(np.broadcast_to(g, x.shape), dtype=x.dtype)
    return _mean_scale(g, reduction, x.size)


@_public
def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """``F.binary_cross_entropy_with_logits`` (``weight``, ``pos_weight`` broadcast)."""
    reduction = _torch_reduction(size_average, reduce, reduction)
    w = const(weight, "binary_cross_entropy_with_logits", "weight")
    pw = const(pos_weight, "binary_cross_entropy_with_logits", "pos_weight")

    def call(x, t, grad):
        return fl.binary_cross_entropy_with_logits(
            x, t, w, pw, reduction=reduction, grad=grad
        )

    tg = TargetGrad(functools.partial(_bcel_target_grad, w=w, pw=pw, reduction=reduction), False)
    return fused("binary_cross_entropy_with_logits", call, input, target, target_grad=tg)


def _weighted(fn, x, t, w, reduction, grad, by_weight, **options):
    """PyTorch 2.13's per-element ``weight`` of mse/l1/huber: ``w * loss``; ``"mean"`` is
    ``sum(w * loss) / sum(w)`` (mse, l1: ``by_weight``) or ``mean(w * loss)`` (huber)."""
    loss, g = fn(x, t, reduction="none", grad=grad, **options)
    w = np.asarray(w, x.dtype)
    with np.errstate(all="ignore"):
        wl = loss * w
        if grad:
            g *= w
        if reduction == "none":
            return fl.LossResult(wl, g)
        total = np.sum(wl, dtype=np.float64)
        if reduction == "mean":
            d = np.sum(w, dtype=np.float64) if by_weight else np.float64(w.size)
            total = total / d
            if grad:
                g *= np.float64(1.0) / d
        return fl.LossResult(x.dtype.type(total), g)


def _pointwise(fname, fn, input, target, reduction, weight=None, by_weight=True, **options):
    check_input(input, fname)
    if isinstance(weight, Tensor) and weight.dtype == torch.float64 and (
            input.dtype == torch.float32):
        # PyTorch's weighted path multiplies by the weight: a float64 loss
        input = promote(input, torch.float64)
    w = const(weight, fname, "weight")
    if w is not None and tuple(np.shape(w)) != tuple(input.shape):
        raise ValueError("Weights and input must have the same size.")
    if w is not None:
        check_reduction(reduction)

    def call(x, t, grad):
        if w is None:
            return fn(x, t, reduction=reduction, grad=grad, **options)
        return _weighted(fn, x, t, w, reduction, grad, by_weight, **options)

    return fused(fname, call, input, target, target_grad=NEGATED)


@_public
def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """``F.mse_loss``, with PyTorch 2.13's per-element ``weight`` (``"mean"`` divides by
    its sum).  Differentiable with respect to ``target``."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    if weight is None:  # (PyTorch's weighted path has no "elementwise_mean")
        reduction = deprecated_mean(reduction)
    return _pointwise("mse_loss", fl.mse_loss, input, target, reduction, weight)


@_public
def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """``F.l1_loss`` (gradient 0 at a zero residual), per-element ``weight`` as
    :func:`mse_loss`.  Differentiable with respect to ``target``."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    if weight is None:  # (PyTorch's weighted path has no "elementwise_mean")
        reduction = deprecated_mean(reduction)
    return _pointwise("l1_loss", fl.l1_loss, input, target, reduction, weight)


@_public
def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """``F.smooth_l1_loss``.  Differentiable with respect to ``target``."""
    reduction = _torch_reduction(size_average, reduce, reduction)
    return _pointwise("smooth_l1_loss", fl.smooth_l1_loss, input, target, reduction, beta=beta)


@_public
def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    """``F.huber_loss``, with PyTorch 2.13's per-element ``weight`` (``"mean"`` divides by
    the number of elements, as PyTorch).  Differentiable with respect to ``target``."""
    if weight is None:
        reduction = deprecated_mean(reduction)
    return _pointwise(
        "huber_loss", fl.huber_loss, input, target, reduction, weight, False, delta=delta
    )


@_public
def log_cosh_loss(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """fastloss's ``log_cosh_loss``: ``log(cosh(input - target))``.  Differentiable with
    respect to ``target``."""
    return _pointwise("log_cosh_loss", fl.log_cosh_loss, input, target, reduction)


def _kl_target_grad(x, t, res, need_x, *, log_target, reduction):
    t = np.asarray(t, x.dtype)
    with np.errstate(all="ignore"):
        if log_target:
            et = np.exp(t)
            g = et * (t - x) + et
        else:
            # PyTorch's xlogy(t, t) - t * x: xlogy's derivatives give 0 log-term at t = 0
            # and t / t (NaN at t = 0)
            g = np.where(t != 0, np.log(t), 0).astype(x.dtype) + t / t - x
    if reduction == "batchmean" and x.ndim:
        with np.errstate(divide="ignore", invalid="ignore"):
            g /= x.shape[0]
    return _mean_scale(g, reduction, x.size)


@_public
def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """``F.kl_div`` of log-probabilities (``reduction="batchmean"`` too; no warning for
    ``"mean"``).  Differentiable with respect to ``target``."""
    check_input(input, "kl_div")
    # PyTorch divides by the batch size whenever reduction="batchmean" is passed, also on
    # top of what legacy size_average / reduce arguments select
    per_batch = reduction == "batchmean" and input.ndim != 0 and (
        size_average is not None or reduce is not None)
    reduction = _torch_reduction(size_average, reduce, reduction)
    n = input.shape[0] if per_batch else 1

    def call(x, t, grad):
        res = fl.kl_div(x, t, log_target=log_target, reduction=reduction, grad=grad)
        if not per_batch:
            return res
        with np.errstate(divide="ignore", invalid="ignore"):
            g = res.grad
            if g is not None:
                g /= n
            return fl.LossResult(x.dtype.type(res.loss / n) if reduction != "none"
                                 else res.loss / x.dtype.type(n), g)

    def target_grad(x, t, res, need_x):
        g = _kl_target_grad(x, t, res, need_x, log_target=log_target, reduction=reduction)
        if per_batch:
            with np.errstate(divide="ignore", invalid="ignore"):
                g /= n
        return g

    return fused("kl_div", call, input, target, target_grad=TargetGrad(target_grad, False))


def _poisson_target_grad(x, t, res, need_x, *, log_input, full, eps, reduction):
    t = np.asarray(t, x.dtype)
    with np.errstate(all="ignore"):
        g = -x if log_input else -np.log(x + x.dtype.type(eps))
        if full:
            # PyTorch's Stirling term t log t - t + 0.5 log(2 pi t), masked where t <= 1,
            # differentiated as autograd does (so the masked gradient at t = 0 is NaN)
            m = np.where(t <= 1, 0, 1).astype(x.dtype)
            tau = 2 * np.pi
            g = g + (m * np.log(t) + (m * t) / t - m + (0.5 * m) / (tau * t) * tau)
    return _mean_scale(np.array(g, dtype=x.dtype), reduction, x.size)


@_public
def poisson_nll_loss(
    input: Tensor,
    target: Tensor,
    log_input: bool = True,
    full: bool = False,
    size_average: bool | None = None,
    eps: float = 1e-8,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``F.poisson_nll_loss``.  Differentiable with respect to ``target``."""
    reduction = legacy_reduction(size_average, reduce, reduction)

    def call(x, t, grad):
        return fl.poisson_nll_loss(
            x, t, log_input=log_input, full=full, eps=eps, reduction=reduction, grad=grad
        )

    tg = TargetGrad(
        functools.partial(
            _poisson_target_grad, log_input=log_input, full=full, eps=eps, reduction=reduction
        ),
        False,
    )
    return fused("poisson_nll_loss", call, input, target, target_grad=tg)


@_public
def soft_margin_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """``F.soft_margin_loss`` of scores and +-1 targets."""
    reduction = _torch_reduction(size_average, reduce, reduction)

    def call(x, t, grad):
        return fl.soft_margin_loss(x, t, reduction=reduction, grad=grad)

    return fused("soft_margin_loss", call, input, target)


@_public
def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    """fastloss's ``sigmoid_focal_loss`` (torchvision's formula; default reduction
    ``"mean"``, where torchvision's is ``"none"``)."""

    def call(x, t, grad):
        return fl.sigmoid_focal_loss(
            x, t, alpha=alpha, gamma=gamma, reduction=reduction, grad=grad
        )

    return fused("sigmoid_focal_loss", call, input, target)


def _margin(fname, fn, input, target, reduction, **options):
    def call(x, t, grad):
        return fn(x, t, reduction=reduction, grad=grad, **options)

    return fused(fname, call, input, target)


@_public
def hinge_loss(
    input: Tensor, target: Tensor, *, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """fastloss's ``hinge_loss``: ``max(0, margin - target * input)``, +-1 targets."""
    return _margin("hinge_loss", fl.hinge_loss, input, target, reduction, margin=margin)


@_public
def squared_hinge_loss(
    input: Tensor, target: Tensor, *, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """fastloss's ``squared_hinge_loss``: ``max(0, margin - target * input)**2``."""
    return _margin(
        "squared_hinge_loss", fl.squared_hinge_loss, input, target, reduction, margin=margin
    )


@_public
def perceptron_loss(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """fastloss's ``perceptron_loss``: ``max(0, -target * input)``, +-1 targets."""
    return _margin("perceptron_loss", fl.perceptron_loss, input, target, reduction)


@_public
def exponential_loss(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """fastloss's ``exponential_loss``: ``exp(-target * input)``, +-1 targets."""
    return _margin("exponential_loss", fl.exponential_loss, input, target, reduction)


@_public
def zero_one_loss(input: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """fastloss's ``zero_one_loss``: ``1[target * input <= 0]``; its gradient is zero."""
    return _margin("zero_one_loss", fl.zero_one_loss, input, target, reduction)
