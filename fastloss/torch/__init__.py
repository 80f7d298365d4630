"""fastloss's fused CPU kernels as PyTorch autograd functions and ``torch.nn`` modules.

``fastloss.torch.<loss>(input, target, ...)`` takes CPU tensors and returns the loss as a
tensor; the forward computes the gradient with the loss in one fused pass (only when
autograd needs it) and the backward scales it by the incoming gradient.  Losses PyTorch
has keep ``torch.nn.functional``'s signatures; ``fastloss.torch.nn`` has the modules.
See ``docs/torch.md``.

Example:
    >>> import torch
    >>> import fastloss.torch as flt
    >>> x = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    >>> loss = flt.cross_entropy(x, torch.tensor([0, 2]))
    >>> loss.backward()
    >>> print(f"{loss.item():.6f}", x.grad.sum(dim=1).abs().max().item() < 1e-7)
    0.669962 True
"""

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'fastloss.torch needs PyTorch; install it with: pip install "fastloss[torch]"'
    ) from e

from . import nn
from ._functional import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    exponential_loss,
    hinge_loss,
    huber_loss,
    js_div_with_logits,
    kl_div,
    kl_div_with_logits,
    l1_loss,
    log_cosh_loss,
    mse_loss,
    multi_margin_loss,
    nll_loss,
    perceptron_loss,
    poisson_nll_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
    soft_margin_loss,
    softmax_entropy,
    softmax_focal_loss,
    squared_hinge_loss,
    zero_one_loss,
)
from ._linear_ce import linear_cross_entropy

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "exponential_loss",
    "hinge_loss",
    "huber_loss",
    "js_div_with_logits",
    "kl_div",
    "kl_div_with_logits",
    "l1_loss",
    "linear_cross_entropy",
    "log_cosh_loss",
    "mse_loss",
    "multi_margin_loss",
    "nll_loss",
    "nn",
    "perceptron_loss",
    "poisson_nll_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "softmax_entropy",
    "softmax_focal_loss",
    "squared_hinge_loss",
    "zero_one_loss",
]
