"""Slow, obviously-correct float64 NumPy references for the elementwise losses.

Same signatures as the fastloss functions (``fastloss/pointwise.py``); each returns
``(loss, grad)`` in float64, ``grad`` being d loss / d input of the reduced loss
(for ``"none"``: of the sum).  They are written from the textbook / library formulas,
independently of the kernels:

* losses PyTorch lacks: ``log_cosh_loss`` (``log(cosh d)`` directly), the margin family
  (sklearn's conventions: subgradient ``-y`` where ``y f <= margin``), ``exponential_loss``,
  ``zero_one_loss``, and ``sigmoid_focal_loss`` (torchvision's formula transcribed to NumPy,
  gradient derived by hand and checked against central differences in the tests);
* losses PyTorch has get a NumPy version too (for the registry and the benchmarks), but
  the tests compare those against ``torch.nn.functional`` (``torch`` key).

``REFERENCES`` holds this family's entries of the shared registry (``tests/registry.py``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "REFERENCES",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "exponential_loss",
    "hinge_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "log_cosh_loss",
    "mse_loss",
    "perceptron_loss",
    "poisson_nll_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "squared_hinge_loss",
    "zero_one_loss",
]

def _quiet():
    """References follow IEEE silently (tests run with -W error)."""
    return np.errstate(all="ignore")


def _f64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def _reduce(l, g, reduction, x):
    """Apply ``reduction`` to per-element losses ``l`` and their gradients ``g``."""
    n = l.size
    if reduction == "none":
        return l, g
    if reduction == "sum":
        return float(np.sum(l)), g
    if reduction == "batchmean":
        d = x.shape[0] if x.ndim else 1
    else:
        d = n
    if d == 0:
        return math.nan, g
    return float(np.sum(l)) / d, g / d


def _sigmoid(x):
    with _quiet():
        return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))),
                        np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def _log_sigmoid(x):
    with _quiet():
        return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


# ------------------------------------------------------------------------ binary family
def binary_cross_entropy(input, target, weight=None, *, reduction="mean", grad=True, out=None):
    x, t, w = _f64(input, target, weight)
    w = np.ones_like(x) if w is None else np.broadcast_to(w, x.shape)
    with _quiet():
        l = -w * (t * np.maximum(np.log(x), -100.0) + (1 - t) * np.maximum(np.log1p(-x), -100.0))
        g = w * (x - t) / np.maximum(x * (1 - x), 1e-12)
    return _reduce(l, g, reduction, x)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, *,
                                     reduction="mean", grad=True, out=None):
    x, t, w, pw = _f64(input, target, weight, pos_weight)
    w = np.ones_like(x) if w is None else np.broadcast_to(w, x.shape)
    pw = np.ones_like(x) if pw is None else np.broadcast_to(pw, x.shape)
    with _quiet():
        l = w * ((1 - t) * x - (1 + (pw - 1) * t) * _log_sigmoid(x))
        g = w * ((pw * t + 1 - t) * _sigmoid(x) - pw * t)
    return _reduce(l, g, reduction, x)


def sigmoid_focal_loss(input, target, *, alpha=0.25, gamma=2.0, reduction="mean", grad=True,
                       out=None):
    """torchvision.ops.sigmoid_focal_loss, line by line, plus a hand-derived gradient."""
    x, t = _f64(input, target)
    with _quiet():
        p = 1.0 / (1.0 + np.exp(-x))
        ce = (1 - t) * x - _log_sigmoid(x)  # F.binary_cross_entropy_with_logits, "none"
        p_t = p * t + (1 - p) * (1 - t)
        m = 1 - p_t
        loss = ce * m**gamma
        a_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else np.ones_like(x)
        loss = a_t * loss
        # d/dx: dce = p - t, dm = -p (1 - p) (2t - 1)
        dm = -p * (1 - p) * (2 * t - 1)
        dpow = gamma * m ** (gamma - 1) * dm if gamma != 0 else np.zeros_like(x)
        g = a_t * ((p - t) * m**gamma + ce * dpow)
    return _reduce(loss, g, reduction, x)


def soft_margin_loss(input, target, *, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        z = -t * x
        l = np.logaddexp(0.0, z)
        g = -t * _sigmoid(z)
    return _reduce(l, g, reduction, x)


# -------------------------------------------------------------------- regression family
def mse_loss(input, target, *, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        d = x - t
        return _reduce(d * d, 2 * d, reduction, x)


def l1_loss(input, target, *, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        d = x - t
        return _reduce(np.abs(d), np.nan_to_num(np.sign(d), nan=0.0), reduction, x)


def smooth_l1_loss(input, target, *, beta=1.0, reduction="mean", grad=True, out=None):
    if beta == 0:
        return l1_loss(input, target, reduction=reduction)
    x, t = _f64(input, target)
    with _quiet():
        d = x - t
        z = np.abs(d)
        l = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)
        g = np.where(d <= -beta, -1.0, np.where(d >= beta, 1.0, d / beta))
    return _reduce(l, g, reduction, x)


def huber_loss(input, target, *, delta=1.0, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        d = x - t
        z = np.abs(d)
        l = np.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
        g = np.where(d <= -delta, -delta, np.where(d >= delta, delta, d))
    return _reduce(l, g, reduction, x)


def log_cosh_loss(input, target, *, reduction="mean", grad=True, out=None):
    """log(cosh(d)) straight from NumPy where cosh is finite, |d| - log 2 beyond."""
    x, t = _f64(input, target)
    with _quiet():
        d = x - t
        a = np.abs(d)
        l = np.where(a < 700, np.log(np.cosh(np.where(a < 700, d, 0.0))), a - math.log(2.0))
        g = np.tanh(d)
    return _reduce(l, g, reduction, x)


# ------------------------------------------------------------------------ margin family
def hinge_loss(input, target, *, margin=1.0, reduction="mean", grad=True, out=None):
    """sklearn's Hinge(threshold=margin): loss max(0, m - y f); dloss -y if y f <= m."""
    x, t = _f64(input, target)
    with _quiet():
        z = t * x
        l = np.where(np.isnan(z), np.nan, np.maximum(0.0, margin - z))
        g = np.where(np.isnan(z), np.nan, np.where(z <= margin, -t, 0.0))
    return _reduce(l, g, reduction, x)


def perceptron_loss(input, target, *, reduction="mean", grad=True, out=None):
    return hinge_loss(input, target, margin=0.0, reduction=reduction)


def squared_hinge_loss(input, target, *, margin=1.0, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        h = np.where(np.isnan(x), np.nan, np.maximum(0.0, margin - t * x))
        return _reduce(h * h, -2 * t * h, reduction, x)


def exponential_loss(input, target, *, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        e = np.exp(-t * x)
        return _reduce(e, -t * e, reduction, x)


def zero_one_loss(input, target, *, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        l = np.where(np.isnan(x), np.nan, (t * x <= 0).astype(np.float64))
        return _reduce(l, np.zeros_like(x), reduction, x)


# ------------------------------------------------------------------------- count family
def poisson_nll_loss(input, target, *, log_input=True, full=False, eps=1e-8,
                     reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        if log_input:
            l = np.exp(x) - t * x
            g = np.exp(x) - t
        else:
            l = x - t * np.log(x + eps)
            g = 1 - t / (x + eps)
        if full:
            st = t * np.log(t) - t + 0.5 * np.log(2 * np.pi * t)
            l = l + np.where(t <= 1, 0.0, st)
    return _reduce(l, g, reduction, x)


# -------------------------------------------------------------------- divergence family
def kl_div(input, target, *, log_target=False, reduction="mean", grad=True, out=None):
    x, t = _f64(input, target)
    with _quiet():
        if log_target:
            l = np.exp(t) * (t - x)
            g = -np.exp(t)
        else:
            xlogy = np.where(t == 0, 0.0, t * np.log(t))
            l = xlogy - t * x
            g = -t
    return _reduce(l, g, reduction, x)


# ---------------------------------------------------------------------------- registry
def _fl(name):
    """A callable that resolves ``fastloss.<name>`` at call time."""

    def call(*args, **kw):
        import fastloss

        return getattr(fastloss, name)(*args, **kw)

    call.__name__ = name
    return call


def _torch(name, **fixed):
    """``torch.nn.functional.<name>`` with the fastloss keyword names."""

    def call(*args, **kw):
        import torch.nn.functional as F

        kw = {**fixed, **kw}
        return getattr(F, name)(*args, **kw)

    call.__name__ = f"torch_{name}"
    return call


def _torch_kl(input, target, *, log_target=False, reduction="mean"):
    import torch.nn.functional as F

    if reduction == "mean":  # PyTorch warns about "mean"; same value as sum / numel
        return F.kl_div(input, target, log_target=log_target, reduction="sum") / input.numel()
    return F.kl_div(input, target, log_target=log_target, reduction=reduction)


def _in_prob(rng, shape, dtype):
    x = rng.uniform(0.02, 0.98, shape).astype(dtype)
    return (x, rng.uniform(0, 1, shape).astype(dtype)), {}


def _in_logits01(rng, shape, dtype):
    return ((2 * rng.standard_normal(shape)).astype(dtype),
            (rng.random(shape) < 0.4).astype(dtype)), {}


def _in_reg(rng, shape, dtype):
    return ((2 * rng.standard_normal(shape)).astype(dtype),
            rng.standard_normal(shape).astype(dtype)), {}


def _in_pm1(rng, shape, dtype):
    return ((2 * rng.standard_normal(shape)).astype(dtype),
            np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)), {}


def _in_count(rng, shape, dtype):
    return (rng.standard_normal(shape).astype(dtype),
            rng.poisson(2.0, shape).astype(dtype)), {}


def _in_kl(rng, shape, dtype):
    p = rng.dirichlet(np.ones(shape[-1]), shape[:-1]) if len(shape) else np.array(1.0)
    q = rng.dirichlet(np.ones(shape[-1]), shape[:-1]) if len(shape) else np.array(1.0)
    return (np.log(q).astype(dtype), p.astype(dtype)), {}


def _entry(name, numpy_fn, torch_fn, inputs, group):
    return {"fastloss": _fl(name), "numpy": numpy_fn, "torch": torch_fn, "inputs": inputs,
            "group": group}


#: Registry entries of the elementwise families (merged by ``tests/registry.py``).
REFERENCES = {
    "binary_cross_entropy": _entry("binary_cross_entropy", binary_cross_entropy,
                                   _torch("binary_cross_entropy"), _in_prob, "binary"),
    "binary_cross_entropy_with_logits": _entry(
        "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits,
        _torch("binary_cross_entropy_with_logits"), _in_logits01, "binary"),
    "sigmoid_focal_loss": _entry("sigmoid_focal_loss", sigmoid_focal_loss, None, _in_logits01,
                                 "binary"),
    "soft_margin_loss": _entry("soft_margin_loss", soft_margin_loss, _torch("soft_margin_loss"),
                               _in_pm1, "binary"),
    "mse_loss": _entry("mse_loss", mse_loss, _torch("mse_loss"), _in_reg, "regression"),
    "l1_loss": _entry("l1_loss", l1_loss, _torch("l1_loss"), _in_reg, "regression"),
    "smooth_l1_loss": _entry("smooth_l1_loss", smooth_l1_loss, _torch("smooth_l1_loss"), _in_reg,
                             "regression"),
    "huber_loss": _entry("huber_loss", huber_loss, _torch("huber_loss"), _in_reg, "regression"),
    "log_cosh_loss": _entry("log_cosh_loss", log_cosh_loss, None, _in_reg, "regression"),
    "hinge_loss": _entry("hinge_loss", hinge_loss, None, _in_pm1, "margin"),
    "squared_hinge_loss": _entry("squared_hinge_loss", squared_hinge_loss, None, _in_pm1,
                                 "margin"),
    "perceptron_loss": _entry("perceptron_loss", perceptron_loss, None, _in_pm1, "margin"),
    "exponential_loss": _entry("exponential_loss", exponential_loss, None, _in_pm1, "margin"),
    "zero_one_loss": _entry("zero_one_loss", zero_one_loss, None, _in_pm1, "margin"),
    "poisson_nll_loss": _entry("poisson_nll_loss", poisson_nll_loss, _torch("poisson_nll_loss"),
                               _in_count, "count"),
    "kl_div": _entry("kl_div", kl_div, _torch_kl, _in_kl, "divergence"),
}
