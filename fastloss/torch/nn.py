"""``torch.nn``-style loss modules over :mod:`fastloss.torch`'s functions.

Modules for losses PyTorch has take ``torch.nn``'s constructor arguments (legacy
``size_average`` / ``reduce`` included) and keep ``weight`` / ``pos_weight`` as buffers,
as PyTorch does, so their ``state_dict`` is interchangeable with ``torch.nn``'s.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _functional as F
from ._autograd import legacy_reduction
from ._linear_ce import linear_cross_entropy

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "ExponentialLoss",
    "HingeLoss",
    "HuberLoss",
    "JSDivWithLogitsLoss",
    "KLDivLoss",
    "KLDivWithLogitsLoss",
    "L1Loss",
    "LinearCrossEntropyLoss",
    "LogCoshLoss",
    "MSELoss",
    "MultiMarginLoss",
    "NLLLoss",
    "PerceptronLoss",
    "PoissonNLLLoss",
    "SigmoidFocalLoss",
    "SmoothL1Loss",
    "SoftMarginLoss",
    "SoftmaxEntropyLoss",
    "SoftmaxFocalLoss",
    "SquaredHingeLoss",
    "ZeroOneLoss",
]


class _Loss(torch.nn.Module):
    reduction: str

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = legacy_reduction(size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    weight: Tensor | None

    def __init__(
        self, weight: Tensor | None = None, size_average=None, reduce=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


# ------------------------------------------------------------ mirrors of torch.nn
class CrossEntropyLoss(_WeightedLoss):
    """``torch.nn.CrossEntropyLoss``; extras ``z_loss``, ``softcap``, ``axis``."""

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        axis: int | None = None,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.axis = axis

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.label_smoothing,
            z_loss=self.z_loss, softcap=self.softcap, axis=self.axis,
        )


class NLLLoss(_WeightedLoss):
    """``torch.nn.NLLLoss``; extra ``axis``."""

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
        *,
        axis: int | None = None,
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.axis = axis

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(
            input, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, axis=self.axis,
        )


class BCELoss(_WeightedLoss):
    """``torch.nn.BCELoss``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``torch.nn.BCEWithLogitsLoss``."""

    weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average=None,
        reduce=None,
        reduction: str = "mean",
        pos_weight: Tensor | None = None,
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, pos_weight=self.pos_weight, reduction=self.reduction
        )


class MSELoss(_Loss):
    """``torch.nn.MSELoss``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """``torch.nn.L1Loss``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """``torch.nn.SmoothL1Loss``."""

    def __init__(
        self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """``torch.nn.HuberLoss``."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(_Loss):
    """``torch.nn.KLDivLoss``."""

    def __init__(
        self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class PoissonNLLLoss(_Loss):
    """``torch.nn.PoissonNLLLoss``."""

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        size_average=None,
        eps: float = 1e-8,
        reduce=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_input = log_input
        self.full = full
        self.eps = eps

    def forward(self, log_input: Tensor, target: Tensor) -> Tensor:
        return F.poisson_nll_loss(
            log_input, target, log_input=self.log_input, full=self.full, eps=self.eps,
            reduction=self.reduction,
        )


class SoftMarginLoss(_Loss):
    """``torch.nn.SoftMarginLoss``."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.soft_margin_loss(input, target, reduction=self.reduction)


class MultiMarginLoss(_WeightedLoss):
    """``torch.nn.MultiMarginLoss``."""

    def __init__(
        self,
        p: int = 1,
        margin: float = 1.0,
        weight: Tensor | None = None,
        size_average=None,
        reduce=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if p not in (1, 2):
            raise ValueError("only p == 1 and p == 2 supported")
        if weight is not None and weight.dim() != 1:
            raise ValueError(
                f"MultiMarginLoss: expected weight to be None or 1D tensor, got {weight.dim()}D"
            )
        self.p = p
        self.margin = margin

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.multi_margin_loss(
            input, target, p=self.p, margin=self.margin, weight=self.weight,
            reduction=self.reduction,
        )


class LinearCrossEntropyLoss(_WeightedLoss):
    """``torch.nn.LinearCrossEntropyLoss``: a ``Linear(in_features, num_classes)`` head
    (``self.linear``) fused with the cross-entropy (:func:`linear_cross_entropy`).
    Extras: ``z_loss``, ``softcap``, ``chunk_rows``."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        device=None,
        dtype=None,
        reduction: str = "mean",
        weight: Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        options=None,
        z_loss: float = 0.0,
        softcap: float | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        if weight is not None and tuple(weight.shape) != (num_classes,):
            raise ValueError(
                f"expected weight shape to be {(num_classes,)}, got {tuple(weight.shape)}"
            )
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"expected label_smoothing to be in range [0, 1], got {label_smoothing}"
            )
        super().__init__(weight, reduction=reduction)
        self.num_classes = num_classes
        self.out_features = tuple(out_features)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.options = options
        self.z_loss = z_loss
        self.softcap = softcap
        self.chunk_rows = chunk_rows
        self.linear = torch.nn.Linear(
            in_features, math.prod(self.out_features, start=num_classes), bias=bias,
            device=device, dtype=dtype,
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        shape = (self.num_classes, *self.out_features)
        bias = self.linear.bias
        return linear_cross_entropy(
            input, self.linear.weight.reshape(*shape, self.linear.in_features), target,
            linear_bias=None if bias is None else bias.reshape(shape), weight=self.weight,
            reduction=self.reduction, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, options=self.options, z_loss=self.z_loss,
            softcap=self.softcap, chunk_rows=self.chunk_rows,
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, "
            f"out_features={self.out_features}, bias={self.linear.bias is not None}, "
            f"reduction={self.reduction}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, options={self.options}"
        )


# ------------------------------------------------------------- fastloss-only losses
class SoftmaxFocalLoss(_WeightedLoss):
    """:func:`fastloss.torch.softmax_focal_loss` (classes along ``axis``, default -1)."""

    def __init__(
        self,
        weight: Tensor | None = None,
        *,
        gamma: float = 2.0,
        ignore_index: int = -100,
        axis: int = -1,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, reduction=reduction)
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.axis = axis

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.softmax_focal_loss(
            input, target, self.weight, gamma=self.gamma, ignore_index=self.ignore_index,
            axis=self.axis, reduction=self.reduction,
        )


class SigmoidFocalLoss(_Loss):
    """:func:`fastloss.torch.sigmoid_focal_loss`."""

    def __init__(
        self, *, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction=reduction)
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.sigmoid_focal_loss(
            input, target, alpha=self.alpha, gamma=self.gamma, reduction=self.reduction
        )


class _MarginLoss(_Loss):
    _fn = None

    def __init__(self, *, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.margin = margin

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return type(self)._fn(input, target, margin=self.margin, reduction=self.reduction)


class HingeLoss(_MarginLoss):
    """:func:`fastloss.torch.hinge_loss` (+-1 targets)."""

    _fn = staticmethod(F.hinge_loss)


class SquaredHingeLoss(_MarginLoss):
    """:func:`fastloss.torch.squared_hinge_loss` (+-1 targets)."""

    _fn = staticmethod(F.squared_hinge_loss)


class _PlainLoss(_Loss):
    _fn = None

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return type(self)._fn(input, target, reduction=self.reduction)


class PerceptronLoss(_PlainLoss):
    """:func:`fastloss.torch.perceptron_loss` (+-1 targets)."""

    _fn = staticmethod(F.perceptron_loss)


class ExponentialLoss(_PlainLoss):
    """:func:`fastloss.torch.exponential_loss` (+-1 targets)."""

    _fn = staticmethod(F.exponential_loss)


class ZeroOneLoss(_PlainLoss):
    """:func:`fastloss.torch.zero_one_loss` (+-1 targets; zero gradient)."""

    _fn = staticmethod(F.zero_one_loss)


class LogCoshLoss(_PlainLoss):
    """:func:`fastloss.torch.log_cosh_loss`."""

    _fn = staticmethod(F.log_cosh_loss)


class _LogitsDivergence(_Loss):
    _fn = None

    def __init__(
        self, *, temperature: float = 1.0, axis: int = -1, reduction: str = "batchmean"
    ) -> None:
        super().__init__(reduction=reduction)
        self.temperature = temperature
        self.axis = axis

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return type(self)._fn(
            input, target, temperature=self.temperature, axis=self.axis,
            reduction=self.reduction,
        )


class KLDivWithLogitsLoss(_LogitsDivergence):
    """:func:`fastloss.torch.kl_div_with_logits` (student logits, teacher logits)."""

    _fn = staticmethod(F.kl_div_with_logits)


class JSDivWithLogitsLoss(_LogitsDivergence):
    """:func:`fastloss.torch.js_div_with_logits`."""

    _fn = staticmethod(F.js_div_with_logits)


class SoftmaxEntropyLoss(_Loss):
    """:func:`fastloss.torch.softmax_entropy` (``forward(input)``)."""

    def __init__(self, *, axis: int = -1, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.axis = axis

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax_entropy(input, axis=self.axis, reduction=self.reduction)
