"""The machinery shared by every ``fastloss.torch`` loss: tensor checks, zero-copy
conversion to NumPy, and the autograd ``Function`` that keeps the fused gradient of the
forward and only scales it in the backward."""

from __future__ import annotations

import functools
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch._C import _functions as _torch_functions

_FLOATS = (torch.float32, torch.float64)


# ----------------------------------------------------------------------------- checks
def check_tensor(t, fname: str, arg: str) -> None:
    """TypeError unless ``t`` is a dense CPU tensor (SPEC section 4)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"fastloss.torch.{fname}: {arg} must be a torch.Tensor, got {type(t).__name__}"
        )
    if t.device.type != "cpu":
        raise TypeError(
            f"fastloss.torch.{fname}: {arg} is on device '{t.device}'; fastloss computes on "
            "the CPU only (move it with .cpu())"
        )
    if t.layout is not torch.strided:
        raise TypeError(
            f"fastloss.torch.{fname}: {arg} must be a dense (strided) tensor, got {t.layout}"
        )


def check_input(t, fname: str) -> None:
    check_tensor(t, fname, "input")
    if t.dtype not in _FLOATS:
        raise TypeError(
            f"fastloss.torch.{fname}: input must have dtype torch.float32 or torch.float64, "
            f"got {t.dtype}"
        )


def const(t, fname: str, arg: str):
    """A weight-like argument (a constant): its NumPy view, or ``t`` itself if it is not a
    tensor (None, a number, an array).  A weight that requires grad is an error, as in
    PyTorch's own losses."""
    if not isinstance(t, torch.Tensor):
        return t
    check_tensor(t, fname, arg)
    if t.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            f"fastloss.torch.{fname} is not differentiable with respect to argument "
            f"'{arg}'. This input cannot have requires_grad True (pass {arg}.detach())."
        )
    return to_numpy(t, fname, arg)


def to_numpy(t: torch.Tensor, fname: str = "", arg: str = "tensor") -> np.ndarray:
    """The tensor's memory as an ndarray (no copy; strided views stay strided)."""
    if t.requires_grad:
        t = t.detach()
    if t.is_neg():
        t = t.resolve_neg()
    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)  # NumPy has no bfloat16 (a target or weight, never input)
    try:
        return t.numpy()
    except RuntimeError as e:  # no storage: a torch.func transform's wrapped tensor
        raise RuntimeError(
            f"fastloss.torch.{fname}: {arg} has no memory of its own (inside a torch.func "
            "transform such as grad, vmap or jvp?); fastloss.torch supports ordinary "
            "autograd (.backward(), torch.autograd.grad) on plain CPU tensors only"
        ) from e


def as_tensor(a) -> torch.Tensor:
    """A NumPy loss (array or scalar) as a tensor sharing its memory."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    elif not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


def deprecated_mean(reduction):
    """PyTorch's ``_Reduction.get_enum``: ``"elementwise_mean"`` is ``"mean"``, with its
    deprecation warning (for the losses whose PyTorch version accepts it)."""
    if reduction == "elementwise_mean":
        warnings.warn(
            "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
            UserWarning,
            stacklevel=3,
        )
        return "mean"
    return reduction


def legacy_reduction(size_average, reduce, reduction: str) -> str:
    """PyTorch's mapping of the deprecated ``size_average`` / ``reduce`` arguments
    (``torch.nn._reduction.legacy_get_string``), with its warning."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "mean" if (size_average and reduce) else ("sum" if reduce else "none")
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{ret}' "
        "instead.",
        UserWarning,
        stacklevel=3,
    )
    return ret


def torch_class_axis(input: torch.Tensor, axis) -> int:
    """PyTorch's class dimension (1, or 0 for a 1-D input) unless ``axis`` is given."""
    if axis is None:
        return 1 if input.ndim >= 2 else 0
    return axis


# --------------------------------------------------------------------------- autograd
class TargetGrad(NamedTuple):
    """How the gradient with respect to the target is obtained.

    ``fn(x, t, res, need_input) -> ndarray``: d loss / d target (the call's reduction),
    from the NumPy input and target and the fastloss result ``res``; it may overwrite
    ``res.grad`` when ``need_input`` is False.  ``uses_grad``: ``res`` must hold the
    input gradient."""

    fn: Callable
    uses_grad: bool


def _negated(x, t, res, need_input):
    return np.negative(res.grad, out=None if need_input else res.grad)


#: Losses of ``input - target``: d/d target = -d/d input.
NEGATED = TargetGrad(_negated, True)


class _Job(NamedTuple):
    fname: str
    call: Callable  # (x, t, grad) -> LossResult
    x: np.ndarray
    t: np.ndarray | None
    axis: int | None  # class axis of the input that a "none" loss lacks (None: elementwise)
    target_grad: TargetGrad | None


def _first_order_only(backward):
    """``once_differentiable`` with a message naming the loss: the gradients returned
    carry a node that raises if they are differentiated again."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        if not torch.is_grad_enabled():
            return outputs
        live = [i for i, o in enumerate(outputs) if o is not None]
        if not live:
            return outputs
        # create_graph=True: differentiating these gradients again raises when the second
        # backward reaches the error node below.  Its inputs are the gradients and the
        # loss's own differentiable inputs, so every higher-order path through this loss
        # reaches it: a gradient's gradient, a Hessian, and torch.autograd.grad() with
        # respect to a tensor *behind* the loss (a gradient penalty).  The inputs are held
        # by weak reference (the forward must not keep big logits alive); an input freed
        # since (e.g. a temporary ``h @ w``) cannot be linked, and the second-order term
        # through it would be silently missing: hence the warning in that case only.
        anchors = [r() for r in getattr(ctx, "anchors", ())]
        if any(a is None for a in anchors):
            warnings.warn(
                f"fastloss.torch.{ctx.fname}: backward with create_graph=True: the gradient "
                "through this loss is not differentiable (it is computed in the forward "
                "pass) and an input of the loss has been freed, so a second-order term "
                "through it would be missing from torch.autograd.grad results instead of "
                "raising (use torch.nn.functional for higher-order gradients)",
                UserWarning,
                stacklevel=2,
            )
        anchors = [a for a in anchors if a is not None and a.requires_grad]
        err = _torch_functions.DelayedError(
            f"fastloss.torch.{ctx.fname}: double backward is not supported (the fused "
            "gradient is computed in the forward pass and is not itself differentiable; "
            "use torch.nn.functional for higher-order gradients)",
            len(live) + len(anchors),
        )
        aliased = err(*[outputs[i].detach().requires_grad_() for i in live], *anchors)
        if not isinstance(aliased, tuple):
            aliased = (aliased,)
        outputs = list(outputs)
        for i, a in zip(live, aliased[: len(live)], strict=True):
            outputs[i] = a
        return tuple(outputs)

    return wrapper


def _scale(g: torch.Tensor | None, go: torch.Tensor, axis, inplace: bool):
    """``g * go`` for the backward: ``go`` is the scalar of a reduced loss or the
    per-sample upstream gradient of ``"none"`` (broadcast over the class axis)."""
    if g is None:
        return None
    if _is_batched(go):
        # vmap over the upstream gradient (autograd.grad(is_grads_batched=True),
        # jacobian(vectorize=True)): out of place, no Python scalar
        return g * (go.unsqueeze(axis) if 0 < go.ndim < g.ndim else go)
    if go.ndim and go.numel() and not any(go.stride()):
        go = go[(0,) * go.ndim]  # an expanded scalar, e.g. from loss.sum()'s backward
    if go.ndim == 0:
        if go.item() == 1.0:
            # the saved buffer itself only when it is handed over; with retain_graph
            # every backward returns a tensor of its own (as PyTorch's losses do)
            return g if inplace else g.clone()
    elif go.ndim < g.ndim:
        go = go.unsqueeze(axis)
    return g.mul_(go) if inplace else g * go


_scope = threading.local()


class call_scope:
    """The extent of one public call: tensors :func:`promote` casts inside it are linked
    to the caller's tensors they came from, so :func:`anchors` refers to the caller's
    tensors (a cast copy is a temporary, dead as soon as the forward returns)."""

    __slots__ = ("saved",)

    def __enter__(self):
        self.saved = getattr(_scope, "origin", None)
        _scope.origin = {}

    def __exit__(self, *exc):
        _scope.origin = self.saved


def promote(t: torch.Tensor, dtype) -> torch.Tensor:
    """``t.to(dtype)`` (differentiable: the gradient comes back in ``t``'s dtype through
    autograd's cast), remembered as standing for ``t`` (see :class:`call_scope`)."""
    c = t.to(dtype)
    origin = getattr(_scope, "origin", None)
    if origin is not None and c is not t:
        origin[id(c)] = origin.get(id(t), t)
    return c


_LOW = (torch.float16, torch.bfloat16)


def autocast_fp32(args, kwargs):
    """Under CPU autocast, PyTorch runs its losses in float32 (they are on autocast's
    float32 list): float16 / bfloat16 tensor arguments are cast up, float64 ones left."""
    if not torch.is_autocast_enabled("cpu"):
        return args, kwargs

    def up(a):
        return promote(a, torch.float32) if isinstance(a, torch.Tensor) and a.dtype in _LOW else a

    return tuple(up(a) for a in args), {k: up(v) for k, v in kwargs.items()}


def public(fn):
    """A public ``fastloss.torch`` function: one :class:`call_scope` per call, and
    autocast's float32 policy for its tensor arguments."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with call_scope():
            args, kwargs = autocast_fp32(args, kwargs)
            return fn(*args, **kwargs)

    return wrapper


def anchors(*tensors) -> tuple:
    """Weak references to a loss's differentiable inputs (see :func:`_first_order_only`):
    the caller's tensors, where the call cast one (:func:`promote`)."""
    origin = getattr(_scope, "origin", None) or {}
    return tuple(weakref.ref(origin.get(id(t), t)) for t in tensors
                 if isinstance(t, torch.Tensor) and t.requires_grad)


def _is_batched(t: torch.Tensor) -> bool:
    """A tensor under vmap: legacy (``autograd.grad(is_grads_batched=True)``) or
    ``torch.func.vmap``."""
    f = torch._C._functorch
    return bool(f.is_legacy_batchedtensor(t) or f.is_batchedtensor(t))


def _grad_tensor(a) -> torch.Tensor:
    """A gradient array as a tensor sharing its memory (a 0-d result of a NumPy ufunc is
    a NumPy scalar: made an array first)."""
    return torch.from_numpy(a if isinstance(a, np.ndarray) else np.asarray(a))


def graph_freed(ctx) -> None:
    """PyTorch's error for a second backward through a freed graph (the fused gradients
    are the saved values: the first backward without ``retain_graph`` hands them over)."""
    raise RuntimeError(
        f"fastloss.torch.{ctx.fname}: Trying to backward through the graph a second time "
        "(or directly access saved tensors after they have already been freed). Saved "
        "intermediate values of the graph are freed when you call .backward() or "
        "autograd.grad(). Specify retain_graph=True if you need to backward through the "
        "graph a second time or if you need to access saved tensors after calling backward."
    )


def take_graph(ctx) -> bool:
    """For a backward: True when the graph is kept (``retain_graph``), so the saved
    gradients must stay as they are; otherwise marks them as handed over, and a later
    backward raises :func:`graph_freed`."""
    if ctx.freed:
        graph_freed(ctx)
    keep = torch._C._autograd._get_current_graph_task_keep_graph()
    ctx.freed = not keep
    return keep


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, job):
        need_x, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        tg = job.target_grad
        res = job.call(job.x, job.t, need_x or (need_t and tg.uses_grad))
        gt = tg.fn(job.x, job.t, res, need_x) if need_t else None
        ctx.fname = job.fname
        ctx.axis = job.axis
        ctx.freed = False
        ctx.anchors = anchors(input, target)
        ctx.gi = _grad_tensor(res.grad) if need_x else None
        ctx.gt = _grad_tensor(gt) if need_t else None
        return as_tensor(res.loss)

    @staticmethod
    @_first_order_only
    def backward(ctx, go):
        gi, gt = ctx.gi, ctx.gt
        keep = take_graph(ctx)
        if not keep:
            # the buffers are ours alone: scale them in place, and let autograd take them
            # over (a leaf's .grad becomes the very array the kernel wrote)
            ctx.gi = ctx.gt = None
        return _scale(gi, go, ctx.axis, not keep), _scale(gt, go, ctx.axis, not keep), None


def fused(
    fname: str,
    call: Callable,
    input: torch.Tensor,
    target: torch.Tensor | None,
    *,
    axis: int | None = None,
    target_grad: TargetGrad | None = None,
) -> torch.Tensor:
    """Run ``call(x, t, grad)`` (a fastloss function on the NumPy views of ``input`` and
    ``target``) with ``grad=True`` only when autograd needs it, and return the loss as a
    tensor attached to the graph.  ``axis``: the input's class axis that a ``"none"``
    loss lacks (None for elementwise losses); ``target_grad``: None if the loss is not
    differentiable with respect to the target."""
    check_input(input, fname)
    t = None
    need_t = False
    if target is not None:
        check_tensor(target, fname, "target")
        if target.dtype == torch.float64 and input.dtype == torch.float32:
            # torch's type promotion: the loss is float64 and the input's gradient comes
            # back as float32 through the cast (autograd's own)
            input = promote(input, torch.float64)
        t = to_numpy(target, fname, "target")
        need_t = target.requires_grad
    x = to_numpy(input, fname, "input")
    if not (torch.is_grad_enabled() and (input.requires_grad or need_t)):
        return as_tensor(call(x, t, False).loss)
    if need_t and target_grad is None:
        raise RuntimeError(
            f"fastloss.torch.{fname} is not differentiable with respect to argument "
            "'target'. This input cannot have requires_grad True (pass target.detach())."
        )
    if axis is not None and x.ndim:
        axis %= x.ndim
    return _FusedLoss.apply(input, target, _Job(fname, call, x, t, axis, target_grad))
