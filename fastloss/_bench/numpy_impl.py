"""The NumPy peer: each loss and its gradient, float32, vectorised, written for speed.

Each function takes the case's arrays and options and returns ``(loss, grad)``: the same
math as the fastloss call of the case (its reduction: ``"mean"``, or ``"batchmean"`` for
the divergences), on finite inputs.  They are what a careful NumPy user writes: float32
throughout, in-place ufuncs (``out=``) instead of temporaries, ``einsum`` for row dot
products, one ``exp`` per element, the log-sum-exp shift.  They do not reproduce fastloss's
NaN/inf propagation rules, which the benchmark's finite data never exercise.
NumPy runs on one thread (its BLAS, used by ``vdot``, may use more).
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
LN2 = F32(np.log(2.0))


def _f(v) -> np.float32:
    return F32(v)


def _rowdot(a, b):
    """Per-row dot product of two (N, C) arrays, no temporary."""
    return np.einsum("ij,ij->i", a, b)


def _shifted(x, scale=None):
    """``x * scale - rowmax`` as a new float32 array."""
    z = np.multiply(x, _f(scale)) if scale is not None else x.copy()
    z -= z.max(axis=1, keepdims=True)
    return z


# ============================================================== softmax family (N, C)
def cross_entropy(x, y, *, label_smoothing=0.0):
    """``F.cross_entropy`` with class indices ``y`` (int) or probabilities ``y`` (float)."""
    if y.dtype.kind == "f":
        if label_smoothing:
            raise NotImplementedError("probability targets with label smoothing")
        return _cross_entropy_probs(x, y)
    n, c = x.shape
    eps = float(label_smoothing)
    rows = np.arange(n)
    g = _shifted(x)  # becomes the gradient
    per = -g[rows, y] * _f(1.0 - eps)
    if eps:
        per -= g.sum(axis=1) * _f(eps / c)
    np.exp(g, out=g)
    s = g.sum(axis=1)
    per += np.log(s)
    g *= (_f(1.0 / n) / s)[:, None]  # softmax / n
    g[rows, y] -= _f((1.0 - eps) / n)
    if eps:
        g -= _f(eps / (c * n))
    return _f(per.sum() / n), g


def _cross_entropy_probs(x, t):
    n = x.shape[0]
    g = _shifted(x)
    tx = _rowdot(t, g)  # sum_c t (x - max)
    ts = t.sum(axis=1)
    np.exp(g, out=g)
    s = g.sum(axis=1)
    per = ts * np.log(s) - tx
    g *= (ts / s)[:, None]  # (sum t) softmax
    g -= t
    g *= _f(1.0 / n)
    return _f(per.sum() / n), g


def nll_loss(x, y):
    n = x.shape[0]
    rows = np.arange(n)
    loss = -x[rows, y].sum() / n
    g = np.zeros_like(x)
    g[rows, y] = _f(-1.0 / n)
    return _f(loss), g


def softmax_focal_loss(x, y, *, gamma=2.0):
    n = x.shape[0]
    rows = np.arange(n)
    g = _shifted(x)
    zy = g[rows, y]
    np.exp(g, out=g)
    s = g.sum(axis=1)
    lpy = zy - np.log(s)  # log p_y
    py = np.exp(lpy)
    q = -np.expm1(lpy)  # 1 - p_y
    mod = q**gamma
    per = -mod * lpy
    a = (gamma * py * lpy * q ** (gamma - 1)) if gamma else np.zeros_like(q)
    coef = (a - mod) * _f(1.0 / n)  # gradient = coef (onehot - p)
    g *= (-coef / s)[:, None]
    g[rows, y] += coef
    return _f(per.sum() / n), g


def kl_div_with_logits(s, t, *, temperature=1.0):
    """``T^2 KL(softmax(t/T) || softmax(s/T))``, batchmean; gradient ``T (p_s - p_t) / n``."""
    n = s.shape[0]
    T = float(temperature)
    ls = _shifted(s, 1.0 / T)
    lt = _shifted(t, 1.0 / T)
    d = np.subtract(lt, ls)
    np.exp(ls, out=ls)  # unnormalised student probabilities
    np.exp(lt, out=lt)  # unnormalised teacher probabilities
    ss = ls.sum(axis=1)
    st = lt.sum(axis=1)
    per = _rowdot(lt, d) / st - np.log(st) + np.log(ss)
    ls *= (_f(T / n) / ss)[:, None]
    lt *= (_f(T / n) / st)[:, None]
    ls -= lt
    return _f(per.sum() * (T * T) / n), ls


def js_div_with_logits(a, b, *, temperature=1.0):
    """Jensen-Shannon divergence of ``softmax(a/T)`` and ``softmax(b/T)``, batchmean."""
    n = a.shape[0]
    T = float(temperature)
    za = _shifted(a, 1.0 / T)
    zb = _shifted(b, 1.0 / T)
    P = np.exp(za)
    Q = np.exp(zb)
    sp = P.sum(axis=1)
    sq = Q.sum(axis=1)
    P /= sp[:, None]
    Q /= sq[:, None]
    za -= np.log(sp)[:, None]  # log P
    zb -= np.log(sq)[:, None]  # log Q
    logm = np.add(P, Q)
    np.log(logm, out=logm)
    logm -= LN2  # log M
    za -= logm  # log P - log M
    zb -= logm  # log Q - log M
    dp = _rowdot(P, za)
    per = _f(0.5) * (dp + _rowdot(Q, zb))
    za -= dp[:, None]
    za *= P
    za *= _f(0.5 / (T * n))
    return _f(per.sum() / n), za


def softmax_entropy(x):
    n = x.shape[0]
    z = _shifted(x)
    p = np.exp(z)
    s = p.sum(axis=1)
    p /= s[:, None]
    m = _rowdot(p, z)  # sum p (x - max)
    per = np.log(s) - m
    z -= m[:, None]
    z *= p
    z *= _f(-1.0 / n)
    return _f(per.sum() / n), z


def multi_margin_loss(x, y, *, p=1, margin=1.0):
    n, c = x.shape
    rows = np.arange(n)
    z = x - x[rows, y][:, None]
    z += _f(margin)  # margin - x_y + x_j
    z[rows, y] = 0  # j == y does not count
    pos = z > 0
    np.maximum(z, 0, out=z)
    scale = _f(1.0 / (c * n))
    if p == 1:
        loss = z.sum()
        g = np.multiply(pos, scale, dtype=F32)
    else:
        loss = _rowdot(z, z).sum()
        z *= 2 * scale
        g = z
    g[rows, y] = -g.sum(axis=1)
    return _f(loss * scale), g


# ======================================================================= elementwise
def binary_cross_entropy(x, t):
    n = x.size
    lx = np.log(x)
    np.maximum(lx, -100, out=lx)
    l1 = np.log1p(-x)
    np.maximum(l1, -100, out=l1)
    lx -= l1
    lx *= t
    lx += l1  # t log x + (1 - t) log(1 - x)
    d = np.subtract(1, x, dtype=F32)
    d *= x
    np.maximum(d, _f(1e-12), out=d)
    g = np.subtract(x, t)
    g /= d
    g *= _f(1.0 / n)
    return _f(-lx.sum() / n), g


def _exp_neg_abs(x):
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)  # exp(-|x|) in (0, 1]
    return e


def _sigmoid_from(x, e):
    """sigmoid(x) from e = exp(-|x|): 1/(1+e) for x >= 0, e/(1+e) below."""
    s = np.where(x >= 0, _f(1.0), e)
    s /= e + _f(1.0)
    return s


def binary_cross_entropy_with_logits(x, t):
    n = x.size
    e = _exp_neg_abs(x)
    g = _sigmoid_from(x, e)
    loss = np.log1p(e, out=e)
    loss += np.maximum(x, 0)
    loss -= x * t
    g -= t
    g *= _f(1.0 / n)
    return _f(loss.sum() / n), g


def sigmoid_focal_loss(x, t, *, alpha=0.25, gamma=2.0):
    n = x.size
    e = _exp_neg_abs(x)
    p = _sigmoid_from(x, e)
    ce = np.log1p(e, out=e)
    ce += np.maximum(x, 0)
    ce -= x * t  # BCE with logits
    pt = p * t
    m = p + t
    m -= pt + pt  # 1 - p_t = p + t - 2 p t
    at = t * _f(2 * alpha - 1)
    at += _f(1 - alpha)  # alpha t + (1 - alpha)(1 - t)
    mg = m**gamma
    loss = at * ce * mg
    dm = p * (p - 1)
    dm *= t + t - 1  # -p (1 - p)(2t - 1)
    g = np.subtract(p, t)
    g *= mg
    dm *= ce
    dm *= gamma * m ** (gamma - 1)
    g += dm
    g *= at
    g *= _f(1.0 / n)
    return _f(loss.sum() / n), g


def soft_margin_loss(x, t):
    n = x.size
    z = x * t
    np.negative(z, out=z)  # -y x
    e = _exp_neg_abs(z)
    g = _sigmoid_from(z, e)
    loss = np.log1p(e, out=e)
    loss += np.maximum(z, 0)
    g *= t
    g *= _f(-1.0 / n)
    return _f(loss.sum() / n), g


def mse_loss(x, t):
    n = x.size
    d = np.subtract(x, t)
    loss = float(np.vdot(d, d)) / n
    d *= _f(2.0 / n)
    return _f(loss), d


def l1_loss(x, t):
    n = x.size
    d = np.subtract(x, t)
    loss = np.abs(d).sum() / n
    np.sign(d, out=d)
    d *= _f(1.0 / n)
    return _f(loss), d


def huber_loss(x, t, *, delta=1.0):
    n = x.size
    d = np.subtract(x, t)
    a = np.abs(d)
    q = np.minimum(a, _f(delta))
    a -= _f(0.5) * q  # |d| - q/2
    loss = float(np.vdot(q, a)) / n  # 0.5 d^2 inside, delta (|d| - delta/2) outside
    np.clip(d, -delta, delta, out=d)
    d *= _f(1.0 / n)
    return _f(loss), d


def smooth_l1_loss(x, t, *, beta=1.0):
    if beta == 0:
        return l1_loss(x, t)
    loss, g = huber_loss(x, t, delta=beta)  # smooth_l1 = huber / beta
    g *= _f(1.0 / beta)
    return _f(loss / beta), g


def log_cosh_loss(x, t):
    """``log cosh d = |d| + log1p(exp(-2|d|)) - log 2``; gradient ``tanh d``."""
    n = x.size
    d = np.subtract(x, t)
    a = np.abs(d)
    e = np.multiply(a, _f(-2.0))
    np.exp(e, out=e)  # exp(-2|d|)
    g = np.subtract(1, e, dtype=F32)
    g /= e + _f(1.0)  # tanh |d|
    np.copysign(g, d, out=g)
    loss = np.log1p(e, out=e)
    loss += a
    g *= _f(1.0 / n)
    return _f(loss.sum() / n - float(LN2)), g


def hinge_loss(x, t, *, margin=1.0):
    n = x.size
    z = x * t
    h = np.subtract(_f(margin), z)
    np.maximum(h, 0, out=h)
    g = np.where(z <= margin, t * _f(-1.0 / n), _f(0.0))
    return _f(h.sum() / n), g


def perceptron_loss(x, t):
    return hinge_loss(x, t, margin=0.0)


def squared_hinge_loss(x, t, *, margin=1.0):
    n = x.size
    h = x * t
    np.subtract(_f(margin), h, out=h)
    np.maximum(h, 0, out=h)
    loss = float(np.vdot(h, h)) / n
    h *= t
    h *= _f(-2.0 / n)
    return _f(loss), h


def exponential_loss(x, t):
    n = x.size
    e = x * t
    np.negative(e, out=e)
    np.exp(e, out=e)
    loss = e.sum() / n
    e *= t
    e *= _f(-1.0 / n)
    return _f(loss), e


def zero_one_loss(x, t):
    n = x.size
    z = x * t
    loss = np.count_nonzero(z <= 0) / n
    return _f(loss), np.zeros_like(x)


def poisson_nll_loss(x, t, *, log_input=True, full=False, eps=1e-8):
    if not log_input or full:
        raise NotImplementedError("poisson_nll_loss: only log_input=True, full=False")
    n = x.size
    e = np.exp(x)
    loss = (float(e.sum()) - float(np.vdot(t, x))) / n
    e -= t
    e *= _f(1.0 / n)
    return _f(loss), e


def kl_div(x, t, *, log_target=False):
    """``F.kl_div(x, t, reduction="batchmean")``: sum(t log t - t x) / N; gradient -t / N."""
    if log_target:
        raise NotImplementedError("kl_div: only log_target=False")
    n = x.shape[0]
    lt = np.zeros_like(t)
    np.log(t, out=lt, where=t > 0)  # 0 log 0 = 0
    lt -= x
    loss = float(np.vdot(t, lt)) / n
    g = np.multiply(t, _f(-1.0 / n))
    return _f(loss), g


FUNCTIONS = {
    f.__name__: f
    for f in (
        cross_entropy, nll_loss, softmax_focal_loss, kl_div_with_logits, js_div_with_logits,
        softmax_entropy, multi_margin_loss, binary_cross_entropy,
        binary_cross_entropy_with_logits, sigmoid_focal_loss, soft_margin_loss, mse_loss,
        l1_loss, huber_loss, smooth_l1_loss, log_cosh_loss, hinge_loss, perceptron_loss,
        squared_hinge_loss, exponential_loss, zero_one_loss, poisson_nll_loss, kl_div,
    )
}
