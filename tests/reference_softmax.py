"""Slow, obviously-correct float64 NumPy references for the softmax family.

Same signatures as the fastloss functions; each returns ``(loss, grad)`` in float64
(``grad`` is d loss / d input, input-shaped).  Gradients are derived analytically and
checked against central differences in ``tests/test_softmax.py``; the PyTorch-backed parts
(plain cross-entropy, nll) are checked against ``torch.nn.functional`` there too.

Conventions (SPEC section 2 and the lead's brief):

* ``reduction``: ``"none"`` -> per-row losses, shape = input shape without the class axis;
  ``"sum"``; ``"mean"`` -> average over rows (weighted-CE: PyTorch's weighted mean);
  ``"batchmean"`` -> sum / ``input.shape[0]``.
* ``0 * log 0 = 0`` where a probability is exactly 0 (``-inf`` logits) in KL, JS, entropy.
* ``cross_entropy`` follows PyTorch (``0 * -inf = nan`` for probability targets) and adds
  ``z_loss * lse**2`` per non-ignored row (divided by the number of non-ignored rows under
  ``"mean"``, Liger's convention) and ``softcap * tanh(x / softcap)`` before the softmax.

This module also exports ``REFERENCES``, the softmax family's entries of the test and
benchmark registry (see ``tests/registry.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "REFERENCES",
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


# ----------------------------------------------------------------------------- helpers
_quiet = np.errstate(all="ignore")  # references follow IEEE silently (tests run -W error)


def _rows(x, axis):
    """float64 copy of ``x`` with the class axis moved last, reshaped to (R, C)."""
    x = np.asarray(x, dtype=np.float64)
    axis = axis % x.ndim
    xm = np.moveaxis(x, axis, -1)
    batch_shape = xm.shape[:-1]
    return np.ascontiguousarray(xm).reshape(-1, x.shape[axis]), batch_shape, axis


def _unrows(g2, batch_shape, axis, ndim):
    """Inverse of :func:`_rows` for an (R, C) gradient."""
    g = g2.reshape(batch_shape + (g2.shape[-1],))
    return np.ascontiguousarray(np.moveaxis(g, -1, axis))


def _lse_rows(x2):
    """Row-wise logsumexp of an (R, C) float64 array; -inf rows give -inf, +inf gives +inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(x2, axis=1, initial=-np.inf) if x2.shape[1] else np.full(x2.shape[0], -np.inf)
        m_safe = np.where(np.isfinite(m), m, 0.0)
        s = np.sum(np.exp(x2 - m_safe[:, None]), axis=1)
        out = m_safe + np.log(s)
        # rows whose max is +-inf: +inf -> +inf (nan if the row also holds nan), -inf -> -inf
        out = np.where(np.isposinf(m), np.where(np.isnan(x2).any(axis=1), np.nan, np.inf), out)
        out = np.where(np.isneginf(m), -np.inf, out)
        out = np.where(np.isnan(x2).any(axis=1), np.nan, out)
    return out


def _log_softmax_rows(x2):
    """Row-wise log-softmax as PyTorch computes it: ``x - max - log(sum exp(x - max))``.

    An all ``-inf`` row gives NaN (``-inf - -inf``), as in PyTorch.
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(x2, axis=1, keepdims=True) if x2.shape[0] else np.zeros((0, 1))
        sh = x2 - m
        return sh - np.log(np.sum(np.exp(sh), axis=1, keepdims=True))


def _reduce(per_row, reduction, batch_shape, n0, denom_mean=None):
    """Apply a reduction to per-row losses; returns (loss, scale) with scale = d loss /
    d per_row (a scalar, or per-row array for "none")."""
    if reduction == "none":
        return per_row.reshape(batch_shape), 1.0
    total = float(np.sum(per_row))
    if reduction == "sum":
        return total, 1.0
    if reduction == "mean":
        d = per_row.size if denom_mean is None else denom_mean
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.float64(total) / np.float64(d), 1.0 / np.float64(d) if d else np.inf
    if reduction == "batchmean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.float64(total) / np.float64(n0), 1.0 / np.float64(n0) if n0 else np.inf
    raise ValueError(f"unknown reduction {reduction!r}")


# --------------------------------------------------------------------------- utilities
@_quiet
def logsumexp(x, axis=-1):
    x2, bs, ax = _rows(x, axis)
    return _lse_rows(x2).reshape(bs)


@_quiet
def log_softmax(x, axis=-1):
    x2, bs, ax = _rows(x, axis)
    return _unrows(_log_softmax_rows(x2), bs, ax, np.ndim(x))


@_quiet
def softmax(x, axis=-1):
    with np.errstate(invalid="ignore"):
        return np.exp(log_softmax(x, axis))


# ------------------------------------------------------------------------ cross-entropy
@_quiet
def cross_entropy(input, target, weight=None, *, ignore_index=-100, label_smoothing=0.0,
                  axis=-1, z_loss=0.0, softcap=None, reduction="mean", grad=True, out=None):
    """PyTorch's ``F.cross_entropy`` (class indices or probabilities) + z-loss + softcap."""
    raw2, bs, ax = _rows(input, axis)
    R, C = raw2.shape
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    eps = float(label_smoothing)

    if softcap is not None:
        th = np.tanh(raw2 / softcap)
        x2 = softcap * th
        dcap = 1.0 - th * th
    else:
        x2, dcap = raw2, None

    logp = _log_softmax_rows(x2)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.exp(logp)
    lse = _lse_rows(x2)

    t = np.asarray(target)
    prob = t.shape == np.shape(input)
    with np.errstate(invalid="ignore", over="ignore"):
        if prob:
            t2, _, _ = _rows(t, ax)
            ts = t2 * (1 - eps) + eps / C
            keep = np.ones(R, bool)
            per = -np.sum(w * ts * logp, axis=1)
            # d/dx of -sum_c w_c t_c logp_c  =  (sum_c w_c t_c) p - w * t
            g2 = np.sum(w * ts, axis=1, keepdims=True) * p - w * ts
            denom = R  # PyTorch: mean over rows, NOT the weight sum
        else:
            y = t.astype(np.int64).reshape(-1)
            keep = y != ignore_index
            ys = np.where(keep, y, 0)
            rows = np.arange(R)
            wy = np.where(keep, w[ys], 0.0)
            onehot = np.zeros((R, C))
            onehot[rows, ys] = 1.0
            nll = -wy * logp[rows, ys] if R else np.zeros(0)
            g2 = (1 - eps) * wy[:, None] * (p - onehot)
            per = (1 - eps) * nll
            if eps:
                smooth = -np.sum(w * logp, axis=1)
                per = per + np.where(keep, eps / C * smooth, 0.0)
                g2 = g2 + np.where(keep[:, None], eps / C * (w.sum() * p - w), 0.0)
            per = np.where(keep, per, 0.0)
            denom = float(np.sum(wy)) if weight is not None else int(np.sum(keep))
        n_keep = int(np.sum(keep))

        if reduction == "mean":
            ce = np.float64(np.sum(per)) / np.float64(denom)
            s_ce = 1.0 / np.float64(denom)
        elif reduction in ("sum", "none"):
            ce, s_ce = None, 1.0
        else:
            raise ValueError(reduction)

        zterm = np.where(keep, z_loss * lse * lse, 0.0) if z_loss else np.zeros(R)
        zg = np.where(keep[:, None], 2.0 * z_loss * lse[:, None] * p, 0.0) if z_loss else 0.0

        if reduction == "none":
            loss = (per + zterm).reshape(bs)
            g = g2 + zg
        elif reduction == "sum":
            loss = np.float64(np.sum(per) + np.sum(zterm))
            g = g2 + zg
        else:
            s_z = 1.0 / np.float64(n_keep)
            loss = ce + (np.float64(np.sum(zterm)) * s_z if z_loss else 0.0)
            g = g2 * s_ce + (zg * s_z if z_loss else 0.0)
        if not prob:
            # ignored rows: gradient 0, except rows whose log-softmax is NaN (PyTorch)
            bad = np.isnan(logp).any(axis=1) & ~keep
            g = np.where(keep[:, None], g, 0.0)
            g[bad] = np.nan
        if dcap is not None:
            g = g * dcap
    return loss, (_unrows(g, bs, ax, np.ndim(input)) if grad else None)


@_quiet
def nll_loss(input, target, weight=None, *, ignore_index=-100, axis=-1, reduction="mean",
             grad=True, out=None):
    """PyTorch's ``F.nll_loss`` with the class axis at ``axis``."""
    x2, bs, ax = _rows(input, axis)
    R, C = x2.shape
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    y = np.asarray(target).astype(np.int64).reshape(-1)
    keep = y != ignore_index
    ys = np.where(keep, y, 0)
    rows = np.arange(R)
    wy = np.where(keep, w[ys], 0.0)
    with np.errstate(invalid="ignore"):
        per = np.where(keep, -wy * x2[rows, ys], 0.0) if R else np.zeros(0)
    g2 = np.zeros((R, C))
    g2[rows, ys] = -wy
    denom = float(np.sum(wy)) if weight is not None else int(np.sum(keep))
    loss, s = _reduce(per, reduction, bs, None, denom_mean=denom)
    return loss, (_unrows(g2 * s, bs, ax, np.ndim(input)) if grad else None)


# ------------------------------------------------------------------ distillation losses
def _xlogy_rows(p, logq):
    """Elementwise ``p * logq`` with ``0 * anything = 0`` (the 0 log 0 = 0 convention)."""
    with np.errstate(invalid="ignore"):
        return np.where(p == 0, 0.0, p * logq)


@_quiet
def kl_div_with_logits(input, target, *, temperature=1.0, axis=-1, reduction="batchmean",
                       grad=True, out=None):
    """``T**2 * KL(softmax(target/T) || softmax(input/T))`` per row.

    d/d input = T * (softmax(input/T) - softmax(target/T)).
    """
    T = float(temperature)
    s2, bs, ax = _rows(input, axis)
    t2, _, _ = _rows(target, axis)
    n0 = np.shape(input)[0] if np.ndim(input) else 1
    logps = _log_softmax_rows(s2 / T)
    logpt = _log_softmax_rows(t2 / T)
    with np.errstate(invalid="ignore", over="ignore"):
        ps, pt = np.exp(logps), np.exp(logpt)
        per = T * T * np.sum(_xlogy_rows(pt, logpt) - _xlogy_rows(pt, logps), axis=1)
        g2 = T * (ps - pt)
    loss, s = _reduce(per, reduction, bs, n0)
    return loss, (_unrows(g2 * s, bs, ax, np.ndim(input)) if grad else None)


@_quiet
def js_div_with_logits(input, target, *, temperature=1.0, axis=-1, reduction="batchmean",
                       grad=True, out=None):
    """Jensen-Shannon divergence ``0.5 KL(P||M) + 0.5 KL(Q||M)``, ``M = (P + Q) / 2``,
    ``P = softmax(input/T)``, ``Q = softmax(target/T)``; natural log, no ``T**2`` factor.

    dJS/dP_k = 0.5 (log P_k - log M_k); then through the softmax of ``input / T``:
    d/d a_j = (1/T) P_j (g_j - sum_k P_k g_k).
    """
    T = float(temperature)
    a2, bs, ax = _rows(input, axis)
    b2, _, _ = _rows(target, axis)
    n0 = np.shape(input)[0] if np.ndim(input) else 1
    logP = _log_softmax_rows(a2 / T)
    logQ = _log_softmax_rows(b2 / T)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        P, Q = np.exp(logP), np.exp(logQ)
        logM = np.logaddexp(logP, logQ) - np.log(2.0)
        per = 0.5 * np.sum(_xlogy_rows(P, logP - logM) + _xlogy_rows(Q, logQ - logM), axis=1)
        Pg = _xlogy_rows(P, 0.5 * (logP - logM))  # P_j * g_j, 0 where P_j == 0
        g2 = (Pg - P * np.sum(Pg, axis=1, keepdims=True)) / T
    loss, s = _reduce(per, reduction, bs, n0)
    return loss, (_unrows(g2 * s, bs, ax, np.ndim(input)) if grad else None)


@_quiet
def softmax_entropy(input, *, axis=-1, reduction="mean", grad=True, out=None):
    """``H(softmax(x)) = -sum p log p`` per row; dH/dx_j = -p_j (log p_j + H)."""
    x2, bs, ax = _rows(input, axis)
    n0 = np.shape(input)[0] if np.ndim(input) else 1
    logp = _log_softmax_rows(x2)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.exp(logp)
        H = -np.sum(_xlogy_rows(p, logp), axis=1)
        g2 = -_xlogy_rows(p, logp + H[:, None])
    loss, s = _reduce(H, reduction, bs, n0)
    return loss, (_unrows(g2 * s, bs, ax, np.ndim(input)) if grad else None)


@_quiet
def softmax_focal_loss(input, target, weight=None, *, gamma=2.0, ignore_index=-100, axis=-1,
                       reduction="mean", grad=True, out=None):
    """``-w_y (1 - p_y)**gamma log p_y`` per non-ignored row; "mean" divides by the sum of
    the weights of the non-ignored targets (as cross-entropy).

    With f(p) = -(1-p)^g log p:  d/dx_j = w_y [g p (1-p)^(g-1) log p - (1-p)^g] (d_jy - p_j),
    taking p log p = 0 at p = 0 (a -inf target logit: loss +inf, gradient the finite CE
    limit ``w_y (p - onehot)``, as cross-entropy gives).
    """
    gamma = float(gamma)
    x2, bs, ax = _rows(input, axis)
    R, C = x2.shape
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    y = np.asarray(target).astype(np.int64).reshape(-1)
    keep = y != ignore_index
    ys = np.where(keep, y, 0)
    rows = np.arange(R)
    wy = np.where(keep, w[ys], 0.0)
    logp = _log_softmax_rows(x2)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        p = np.exp(logp)
        lpy = logp[rows, ys] if R else np.zeros(0)
        py = np.exp(lpy)
        q = -np.expm1(lpy)  # 1 - p_y, accurate when p_y ~ 1
        mod = q ** gamma
        per = np.where(keep, -wy * mod * lpy, 0.0)
        # a = gamma p (1-p)^(gamma-1) log p, with 0 log 0 = 0 (p_y = 0: the CE limit) and
        # a -> 0 as p -> 1 for gamma < 1
        plogp = np.where(py == 0, 0.0, py * lpy)
        if gamma == 0:
            a = np.zeros(R)
        else:
            a = np.where(q == 0, 0.0, gamma * plogp * q ** (gamma - 1))
        coef = wy * (a - mod)  # d per / d p_y * p_y
        onehot = np.zeros((R, C))
        onehot[rows, ys] = 1.0
        g2 = coef[:, None] * (onehot - p)
        g2 = np.where(keep[:, None], g2, 0.0)
    denom = float(np.sum(wy)) if weight is not None else int(np.sum(keep))
    loss, s = _reduce(per, reduction, bs, None, denom_mean=denom)
    return loss, (_unrows(g2 * s, bs, ax, np.ndim(input)) if grad else None)


# ----------------------------------------------------------------- registry (for tests)
def _fl(name):
    """A callable that resolves ``fastloss.<name>`` at call time (the API may land later)."""

    def call(*args, **kw):
        import fastloss

        return getattr(fastloss, name)(*args, **kw)

    call.__name__ = name
    return call


def _torch_cross_entropy(x, t, **kw):
    import torch.nn.functional as F

    return F.cross_entropy(x, t, **kw)


def _torch_nll_loss(x, t, **kw):
    import torch.nn.functional as F

    return F.nll_loss(x, t, **kw)


def _torch_reduce(per, reduction, n0):
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if reduction == "mean":
        return per.mean()
    return per.sum() / n0


def _torch_kl(s, t, temperature=1.0, reduction="batchmean"):
    import torch.nn.functional as F

    T = temperature
    per = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1),
                   log_target=True, reduction="none").sum(-1)
    return _torch_reduce(T * T * per, reduction, s.shape[0])


def _torch_js(a, b, temperature=1.0, reduction="batchmean"):
    import math

    import torch
    import torch.nn.functional as F

    T = temperature
    lp, lq = F.log_softmax(a / T, -1), F.log_softmax(b / T, -1)
    lm = torch.logaddexp(lp, lq) - math.log(2.0)
    per = 0.5 * (lp.exp() * (lp - lm) + lq.exp() * (lq - lm)).sum(-1)
    return _torch_reduce(per, reduction, a.shape[0])


def _torch_entropy(x, reduction="mean"):
    import torch

    per = torch.distributions.Categorical(logits=x).entropy()
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


def _torch_focal(x, t, weight=None, gamma=2.0, ignore_index=-100, reduction="mean"):
    import torch
    import torch.nn.functional as F

    logp = F.log_softmax(x, -1)
    keep = t != ignore_index
    ts = torch.where(keep, t, torch.zeros_like(t))
    lpy = logp.gather(-1, ts[..., None])[..., 0]
    wy = weight[ts] if weight is not None else torch.ones_like(lpy)
    wy = torch.where(keep, wy, torch.zeros_like(wy))
    per = -wy * (-torch.expm1(lpy)) ** gamma * lpy
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / wy.sum()


def _inputs_class(rng, shape, dtype):
    n, c = shape
    return (rng.standard_normal(shape).astype(dtype), rng.integers(0, c, n)), {}


def _inputs_logprob(rng, shape, dtype):
    (x, t), kw = _inputs_class(rng, shape, dtype)
    return (log_softmax(x).astype(dtype), t), kw


def _inputs_two_logits(rng, shape, dtype):
    return (rng.standard_normal(shape).astype(dtype),
            (1.5 * rng.standard_normal(shape)).astype(dtype)), {}


def _inputs_logits(rng, shape, dtype):
    return (rng.standard_normal(shape).astype(dtype),), {}


#: Registry entries (``tests/registry.py`` merges every ``tests/reference_*.py``'s dict).
#: ``inputs(rng, shape, dtype) -> (args, kwargs)`` builds NumPy arguments for all three
#: callables; ``torch`` takes the same arguments as torch tensors (None: no torch version).
REFERENCES = {
    "cross_entropy": {
        "fastloss": _fl("cross_entropy"),
        "numpy": cross_entropy,
        "torch": _torch_cross_entropy,
        "inputs": _inputs_class,
        "group": "softmax",
    },
    "nll_loss": {
        "fastloss": _fl("nll_loss"),
        "numpy": nll_loss,
        "torch": _torch_nll_loss,
        "inputs": _inputs_logprob,
        "group": "softmax",
    },
    "kl_div_with_logits": {
        "fastloss": _fl("kl_div_with_logits"),
        "numpy": kl_div_with_logits,
        "torch": _torch_kl,
        "inputs": _inputs_two_logits,
        "group": "softmax",
    },
    "js_div_with_logits": {
        "fastloss": _fl("js_div_with_logits"),
        "numpy": js_div_with_logits,
        "torch": _torch_js,
        "inputs": _inputs_two_logits,
        "group": "softmax",
    },
    "softmax_entropy": {
        "fastloss": _fl("softmax_entropy"),
        "numpy": softmax_entropy,
        "torch": _torch_entropy,
        "inputs": _inputs_logits,
        "group": "softmax",
    },
    "softmax_focal_loss": {
        "fastloss": _fl("softmax_focal_loss"),
        "numpy": softmax_focal_loss,
        "torch": _torch_focal,
        "inputs": _inputs_class,
        "group": "softmax",
    },
}
