"""``linear_cross_entropy`` with PyTorch 2.13's signature over fastloss's chunked fused
linear + cross-entropy (the ``N x V`` logits never exist whole)."""

from __future__ import annotations

import math
import operator

import torch

from ._autograd import (
    _first_order_only,
    _is_batched,
    _scale,
    anchors,
    as_tensor,
    check_input,
    check_tensor,
    const,
    deprecated_mean,
    promote,
    public,
    take_graph,
)
from ._autograd import to_numpy as _np

__all__ = ["linear_cross_entropy"]

Tensor = torch.Tensor
_NAME = "linear_cross_entropy"


def _lce_module():
    try:
        from fastloss import linear_ce
    except ImportError as e:  # pragma: no cover - only before fastloss.linear_ce exists
        raise NotImplementedError(
            "fastloss.torch.linear_cross_entropy needs fastloss.linear_ce, which this "
            "fastloss does not have"
        ) from e
    return linear_ce


class _LinearCE(torch.autograd.Function):
    """mean/sum: every gradient is computed in the forward, the backward scales them.
    none: the forward only scores; the backward reruns the chunks with each token's
    logit gradient scaled by its upstream gradient (``row_scale``)."""

    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, job):
        ctx.fname = _NAME
        ctx.anchors = anchors(input, linear_weight, linear_bias)
        need = ctx.needs_input_grad[:3]
        ctx.freed = False
        # only "none" reruns the chunks in the backward: otherwise nothing keeps the
        # inputs' memory (the NumPy views in ``job``) alive past the forward
        ctx.job = job if job["reduction"] == "none" else None
        if job["reduction"] == "none":
            res = job["fn"](*job["arrays"], grad=False, **job["options"])
            # the backward reruns the chunks from these tensors' memory: all of them are
            # saved with autograd's version check, the target and class weight included
            ctx.save_for_backward(input, linear_weight, linear_bias, target, job["weight"])
            ctx.grads = None
        else:
            res = job["fn"](*job["arrays"], grad=True, **job["options"])
            g = (res.grad_input, res.grad_linear_weight, res.grad_linear_bias)
            ctx.grads = [torch.from_numpy(a) if n and a is not None else None
                         for a, n in zip(g, need, strict=True)]
        return as_tensor(res.loss)

    @staticmethod
    @_first_order_only
    def backward(ctx, go):
        need = ctx.needs_input_grad[:3]
        job = ctx.job
        if ctx.grads is None:  # "none": recompute with the per-token scale
            ctx.saved_tensors  # noqa: B018  (raises if an input was modified in place)
            if _is_batched(go):
                raise RuntimeError(
                    f"fastloss.torch.{_NAME}: a batched (vmap) upstream gradient, as from "
                    "torch.autograd.grad(is_grads_batched=True) or jacobian(vectorize=True), "
                    "is not supported with reduction='none' (the backward reruns the kernels "
                    "with one upstream gradient; call it per row instead)"
                )
            rs = _np(go, _NAME, "grad_output")
            res = job["fn"](*job["arrays"], grad=True, row_scale=rs, **job["options"])
            if not torch._C._autograd._get_current_graph_task_keep_graph():
                ctx.job = None  # the saved tensors are freed too: a rerun raises above
            g = (res.grad_input, res.grad_linear_weight, res.grad_linear_bias)
            out = [torch.from_numpy(a) if n and a is not None else None
                   for a, n in zip(g, need, strict=True)]
            return (*out, None, None)
        keep = take_graph(ctx)
        grads = ctx.grads
        if not keep:
            ctx.grads = None
        return (*[_scale(g, go, None, not keep) for g in grads], None, None)


@torch.compiler.disable(reason="fastloss.torch calls NumPy/Numba kernels")
@public
def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options=None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_rows: int | None = None,
) -> Tensor:
    """``F.linear_cross_entropy`` (PyTorch 2.13): ``cross_entropy(linear(input,
    linear_weight, linear_bias), target)`` computed in row chunks by fastloss.

    ``options`` (``torch.nn.LinearCrossEntropyOptions``) is accepted; only its
    ``batch_chunk_size`` is used (as ``chunk_rows``).  Extras: ``z_loss``, ``softcap``,
    ``chunk_rows`` (see :func:`fastloss.linear_ce.linear_cross_entropy`).  A
    K-dimensional ``linear_weight`` ``(C, d1, ..., D)`` materialises the logits (as
    PyTorch does) and goes through :func:`fastloss.torch.cross_entropy`."""
    check_input(input, _NAME)
    check_tensor(linear_weight, _NAME, "linear_weight")
    check_tensor(target, _NAME, "target")
    if linear_bias is not None:
        check_tensor(linear_bias, _NAME, "linear_bias")
    if input.ndim not in (1, 2):
        raise ValueError(f"expected input with dimensionality 1 or 2, got {input.ndim}")
    if linear_weight.ndim < 2:
        raise ValueError(
            f"expected linear_weight with dimensionality at least 2, got {linear_weight.ndim}"
        )
    V, D = linear_weight.shape[0], linear_weight.shape[-1]
    out_features = tuple(linear_weight.shape[1:-1])
    logits_shape = (*input.shape[:-1], V, *out_features)
    prob = tuple(target.shape) == logits_shape
    if prob and ignore_index is not None:
        raise ValueError("ignore_index cannot be specified when target contains probabilities")
    if prob and target.dtype == torch.float64 and input.dtype == torch.float32:
        # torch's type promotion (as F.cross_entropy on the float32 logits would do): the
        # loss is float64, the gradients come back as float32 through autograd's casts
        input = promote(input, torch.float64)
        linear_weight = promote(linear_weight, torch.float64)
        if linear_bias is not None:
            linear_bias = promote(linear_bias, torch.float64)
    reduction = deprecated_mean(reduction)
    if isinstance(ignore_index, Tensor):
        ignore_index = operator.index(ignore_index)
    ii = -100 if ignore_index is None else ignore_index
    if target.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            f"fastloss.torch.{_NAME} is not differentiable with respect to argument "
            "'target'. This input cannot have requires_grad True (pass target.detach())."
        )
    if out_features:
        from ._functional import cross_entropy

        if input.ndim != 2:
            raise ValueError(
                f"K-dimensional loss defined by linear_weight shape {tuple(linear_weight.shape)}"
                f" requires batched input (N, {D}), got shape {tuple(input.shape)}"
            )
        W2 = linear_weight.reshape(math.prod(out_features, start=V), D)
        b2 = None if linear_bias is None else linear_bias.reshape(-1)
        logits = torch.nn.functional.linear(input, W2, b2).reshape(logits_shape)
        return cross_entropy(
            logits, target, weight, ignore_index=ii, reduction=reduction,
            label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap,
        )
    if chunk_rows is None and options is not None:
        chunk_rows = getattr(options, "batch_chunk_size", None)
    w = const(weight, _NAME, "weight")
    arrays = (_np(input, _NAME, "input"), _np(linear_weight, _NAME, "linear_weight"),
              _np(target, _NAME, "target"),
              None if linear_bias is None else _np(linear_bias, _NAME, "linear_bias"), w)
    opts = dict(ignore_index=ii, label_smoothing=label_smoothing, z_loss=z_loss,
                softcap=softcap, reduction=reduction, chunk_rows=chunk_rows)
    fn = _lce_module()._linear_cross_entropy
    diff = [t is not None and t.requires_grad for t in (input, linear_weight, linear_bias)]
    if not (torch.is_grad_enabled() and any(diff)):
        return as_tensor(fn(*arrays, grad=False, **opts).loss)
    job = {"fn": fn, "arrays": arrays, "options": opts, "reduction": reduction,
           "weight": weight if isinstance(weight, Tensor) else None}
    return _LinearCE.apply(input, linear_weight, linear_bias, target, job)

