"""The PyTorch peer: ``F.<loss>`` on a fresh leaf tensor plus ``.backward()``.

Each function takes the case's tensors (the input first) and options and returns the
loss tensor; :func:`fastloss._bench.peers.torch_call` wraps it into a loss + gradient call.
``KIND[name]`` says what it is: ``"F"`` (a ``torch.nn.functional`` function),
``"recipe"`` (no single PyTorch function: the standard composition of ``F`` calls that a
PyTorch user writes; named in the report) or absent (PyTorch has no such loss: an em
dash in the report).  Decision: the margin losses (``hinge_loss``, ``squared_hinge_loss``,
``perceptron_loss``, ``exponential_loss``, ``zero_one_loss``) and ``log_cosh_loss`` have no
PyTorch function, so they get no PyTorch column rather than a hand-written stand-in;
``sigmoid_focal_loss`` uses ``torchvision.ops.sigmoid_focal_loss``'s own torch code (so
torchvision is not needed); the distillation and entropy losses use their usual recipes.
"""

from __future__ import annotations

import math


def _F():
    import torch.nn.functional as F

    return F


def cross_entropy(x, y, *, label_smoothing=0.0):
    return _F().cross_entropy(x, y, label_smoothing=label_smoothing)


def nll_loss(x, y):
    return _F().nll_loss(x, y)


def softmax_focal_loss(x, y, *, gamma=2.0):
    import torch

    lpy = _F().log_softmax(x, -1).gather(-1, y[:, None])[:, 0]
    return (-((-torch.expm1(lpy)) ** gamma) * lpy).mean()


def kl_div_with_logits(s, t, *, temperature=1.0):
    F = _F()
    T = temperature
    return F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
                    reduction="batchmean") * (T * T)


def js_div_with_logits(a, b, *, temperature=1.0):
    import torch

    F = _F()
    T = temperature
    lp, lq = F.log_softmax(a / T, -1), F.log_softmax(b / T, -1)
    lm = torch.logaddexp(lp, lq) - math.log(2.0)
    return 0.5 * (lp.exp() * (lp - lm) + lq.exp() * (lq - lm)).sum() / a.shape[0]


def softmax_entropy(x):
    F = _F()
    return -(F.softmax(x, -1) * F.log_softmax(x, -1)).sum(-1).mean()


def multi_margin_loss(x, y, *, p=1, margin=1.0):
    return _F().multi_margin_loss(x, y, p=p, margin=margin)


def binary_cross_entropy(x, t):
    return _F().binary_cross_entropy(x, t)


def binary_cross_entropy_with_logits(x, t):
    return _F().binary_cross_entropy_with_logits(x, t)


def sigmoid_focal_loss(x, t, *, alpha=0.25, gamma=2.0):
    """``torchvision.ops.sigmoid_focal_loss(x, t, alpha, gamma, "mean")``, its code."""
    import torch

    p = torch.sigmoid(x)
    ce = _F().binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean()


def soft_margin_loss(x, t):
    return _F().soft_margin_loss(x, t)


def mse_loss(x, t):
    return _F().mse_loss(x, t)


def l1_loss(x, t):
    return _F().l1_loss(x, t)


def smooth_l1_loss(x, t, *, beta=1.0):
    return _F().smooth_l1_loss(x, t, beta=beta)


def huber_loss(x, t, *, delta=1.0):
    return _F().huber_loss(x, t, delta=delta)


def poisson_nll_loss(x, t, *, log_input=True, full=False, eps=1e-8):
    return _F().poisson_nll_loss(x, t, log_input=log_input, full=full, eps=eps)


def kl_div(x, t, *, log_target=False):
    return _F().kl_div(x, t, log_target=log_target, reduction="batchmean")


FUNCTIONS = {
    f.__name__: f
    for f in (
        cross_entropy, nll_loss, softmax_focal_loss, kl_div_with_logits, js_div_with_logits,
        softmax_entropy, multi_margin_loss, binary_cross_entropy,
        binary_cross_entropy_with_logits, sigmoid_focal_loss, soft_margin_loss, mse_loss,
        l1_loss, smooth_l1_loss, huber_loss, poisson_nll_loss, kl_div,
    )
}

_RECIPES = {
    "softmax_focal_loss": "recipe: -(1 - p_y)^γ log p_y from F.log_softmax",
    "kl_div_with_logits": "recipe: T² F.kl_div(F.log_softmax(s/T), F.log_softmax(t/T), "
    "log_target=True, 'batchmean')",
    "js_div_with_logits": "recipe: from F.log_softmax and torch.logaddexp",
    "softmax_entropy": "recipe: -(F.softmax(x) * F.log_softmax(x)).sum(-1).mean()",
    "sigmoid_focal_loss": "torchvision.ops.sigmoid_focal_loss's code",
}

#: What the PyTorch peer of each loss is (see the module docstring).
KIND = {name: ("recipe" if name in _RECIPES else "F") for name in FUNCTIONS}
#: One line per recipe, for the report's notes.
RECIPES = _RECIPES
