"""Gradient-boosting kernels: first and second derivatives with respect to raw margins.

Two engines, both on the architecture of the loss kernels (policy from ``_config``,
vector math from ``_vmath``, a serial build that *is* the range function and a parallel
build that runs it block by block in a ``prange``, so the heavy code is compiled once per
signature and results do not depend on the thread count):

* **Elementwise objectives** (``logistic``, ``squared_error``, ``huber``,
  ``pseudo_huber``, ``poisson``, ``focal``): an ``@inline`` *elem* per objective returns
  ``(grad, hess, loss, bad)`` for one margin ``x`` and label ``y``; :func:`elementwise`
  turns it into a kernel over flat arrays, cut into blocks of :data:`BLOCK_ELEMS`.
  Arguments: ``x``, ``y`` (read-only, the margins' dtype), ``w`` (sample weights, or
  size 0 for none), ``p = [a, b, c]`` (the objective's options), ``k0, k1`` (the block
  range), ``g``, ``h`` (outputs, size 0 when not wanted; float32 or float64 whatever the
  margins' dtype), ``lout`` (float64 weighted per-element losses, size 0 when not
  wanted) and ``status`` (one int64 per block: 0, or 1 + the flat index of the first
  label outside the objective's domain).
* **Softmax** (:data:`softmax_gh`): margins ``(n, K)`` in C or F order.  Each block of
  rows is gathered into a class-major scratch tile (``K x R``), so every loop runs over
  the block's rows and vectorises whatever ``K`` is (boosting has few classes: a loop
  over 5 or 10 classes would not), and the outputs are written in their own order (C,
  or F as LightGBM wants) without a transpose elsewhere.  The max is subtracted, the
  exponentials are summed in float64, ``p = e / sum``, then ``g = (p - t) w`` and
  ``h = max(hess_scale p (1 - p), min_hess) w`` with ``t`` the smoothed one-hot target
  and ``w`` the sample weight times the class weight of the row's label.

Labels are checked inside the kernels (a class index must be an integer in ``[0, K)``,
probabilities in ``[0, 1]``, counts ``>= 0``; NaN is outside every checked domain) and
reported through ``status``; the Python layer turns that into the exception.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._config import inline, kernel, rowfn
from .._vmath import vexp, vexp_neg
from .pointwise import (
    BLOCK_ELEMS,
    Elementwise,
    F,
    _bce_logits_value,
    _instantiate,
    _pow,
    _sigmoid_e,
)

__all__ = [
    "BLOCK_ELEMS",
    "ELEMENTWISE",
    "Objective",
    "softmax_gh",
    "softmax_row_ders",
    "softmax_rows_per_block",
]


# ------------------------------------------------------------------------- templates
# Never compiled themselves: elementwise() copies them with ELEM / RANGE bound.  The
# gradient template drops the elem's loss and the loss template its derivatives (dead
# code after inlining), so neither pays for the other's math.
ELEM = None
RANGE = None


def _gh_range_template(x, y, w, p, k0, k1, g, h, status):
    """Blocks k0 .. k1-1 of the flat arrays: g, h = weighted derivatives."""
    a = p[0]
    b = p[1]
    c = p[2]
    n = x.size
    weighted = w.size != 0
    size = min(BLOCK_ELEMS, n)
    gb = np.empty(size, dtype=p.dtype)
    hb = np.empty(size, dtype=p.dtype)
    for k in range(k0, k1):
        lo = k * BLOCK_ELEMS
        hi = min(lo + BLOCK_ELEMS, n)
        m = hi - lo
        xb = x[lo:hi]
        yb = y[lo:hi]
        anybad = False
        for j in range(m):
            gj, hj, _, bad = ELEM(xb[j], yb[j], a, b, c)
            gb[j] = gj
            hb[j] = hj
            anybad |= bad
        if weighted:
            wb = w[lo:hi]
            for j in range(m):
                gb[j] *= wb[j]
                hb[j] *= wb[j]
        status[k] = lo + _first_bad(xb, yb, a, b, c, m) + 1 if anybad else 0
        gv = g[lo:hi]
        hv = h[lo:hi]
        for j in range(m):
            gv[j] = gb[j]
            hv[j] = hb[j]


def _loss_range_template(x, y, w, p, k0, k1, lout, status):
    """Blocks k0 .. k1-1: lout = weighted per-element losses (float64)."""
    a = p[0]
    b = p[1]
    c = p[2]
    n = x.size
    weighted = w.size != 0
    for k in range(k0, k1):
        lo = k * BLOCK_ELEMS
        hi = min(lo + BLOCK_ELEMS, n)
        m = hi - lo
        xb = x[lo:hi]
        yb = y[lo:hi]
        lv = lout[lo:hi]
        anybad = False
        for j in range(m):
            _, _, lj, bad = ELEM(xb[j], yb[j], a, b, c)
            lv[j] = float(lj)
            anybad |= bad
        if weighted:
            wb = w[lo:hi]
            for j in range(m):
                lv[j] *= float(wb[j])
        status[k] = lo + _first_bad(xb, yb, a, b, c, m) + 1 if anybad else 0


def _first_bad_template(xb, yb, a, b, c, m):
    for j in range(m):
        _, _, _, bad = ELEM(xb[j], yb[j], a, b, c)
        if bad:
            return j
    return 0


def _gh_parallel_template(x, y, w, p, k0, k1, g, h, status):
    for k in prange(k0, k1):
        RANGE(x, y, w, p, k, k + 1, g, h, status)


def _loss_parallel_template(x, y, w, p, k0, k1, lout, status):
    for k in prange(k0, k1):
        RANGE(x, y, w, p, k, k + 1, lout, status)


def _ders_template(x, y, w, p, d):
    """CatBoost's ``calc_ders_range`` in one call: ``d[0] = -grad * w``, ``d[1] = -hess *
    w`` (``w`` float32, or size 0 for none) for float64 margins ``x`` and float32 labels
    ``y``, as CatBoost hands them over.  The values are those of the gradient template
    with weights ``-w`` (``x * -1 == -x`` exactly).  Returns 0, or 1 + the index of the
    first label outside the objective's domain."""
    a = p[0]
    b = p[1]
    c = p[2]
    n = x.size
    g = d[0]
    h = d[1]
    weighted = w.size != 0
    anybad = False
    for j in range(n):
        xj = x[j]
        gj, hj, _, bad = ELEM(xj, F(xj, y[j]), a, b, c)
        s = -F(xj, w[j]) if weighted else F(xj, -1.0)
        g[j] = gj * s
        h[j] = hj * s
        anybad |= bad
    if anybad:
        for j in range(n):
            xj = x[j]
            _, _, _, bad = ELEM(xj, F(xj, y[j]), a, b, c)
            if bad:
                return j + 1
    return 0


class Objective:
    """The kernels of one elementwise objective: ``gh`` (weighted gradient and hessian),
    ``loss`` (weighted per-element losses) and ``ders`` (CatBoost's negated pair)."""

    __slots__ = ("gh", "loss", "ders", "__name__")

    def __init__(self, name, elem):
        # (n,) float64 margins, float32 labels and weights -> CatBoost's (2, n) negated
        # derivatives: one serial call per CatBoost block (compiled on first use)
        self.ders = rowfn(_instantiate(_ders_template, f"{name}_ders", ELEM=elem))
        first_bad = rowfn(_instantiate(_first_bad_template, f"{name}_first_bad", ELEM=elem))
        self.gh = Elementwise(f"{name}_gh", _gh_range_template, _gh_parallel_template, elem,
                              _first_bad=first_bad)
        self.loss = Elementwise(f"{name}_loss", _loss_range_template, _loss_parallel_template,
                                elem, _first_bad=first_bad)
        self.__name__ = name

    def __repr__(self):
        return f"<fastloss objective kernels {self.__name__}>"


_first_bad = None  # bound per objective in the instantiated templates


# ---------------------------------------------------------------- objective elements
@inline
def _floor(hv, mh):
    """max(hv, mh), NaN propagating."""
    return mh if hv < mh else hv


@inline
def _logistic(x, y, min_hess, b, c):
    """Log loss of sigmoid(x): g = p - y (as p (1 - y) - q y: no cancellation when p
    -> 1), h = p q with q = sigmoid(-x) computed on its own (p (1 - p) would be 0 for
    x > 37 in float64)."""
    one = F(x, 1.0)
    zero = F(x, 0.0)
    p, q, e = _sigmoid_e(x)
    g = p * (one - y) - q * y
    hh = _floor(p * q, min_hess)
    loss = _bce_logits_value(x, y, y, one, e)
    bad = not ((y >= zero) & (y <= one))
    return g, hh, loss, bad


@inline
def _squared_error(x, y, a, b, c):
    d = x - y
    return d, F(x, 1.0), F(x, 0.5) * d * d, False


@inline
def _huber(x, y, delta, min_hess, c):
    """g = clip(d, -delta, delta); h = 1 for |d| <= delta, min_hess beyond."""
    half = F(x, 0.5)
    d = x - y
    z = abs(d)
    g = delta if d > delta else d
    g = -delta if d < -delta else g
    hh = F(x, 1.0) if z <= delta else min_hess
    hh = d if d != d else hh
    loss = half * d * d if z <= delta else delta * (z - half * delta)
    return g, hh, loss, False


@inline
def _pseudo_huber(x, y, delta, b, c):
    """delta^2 (sqrt(1 + a^2) - 1), a = |d| / delta; beyond a = 1 written in 1/a so
    that neither a^2 nor the cube overflows (margins of 1e20 in float32)."""
    one = F(x, 1.0)
    d = x - y
    a = abs(d) / delta
    small = a <= one
    s = np.sqrt(one + a * a)  # a <= 1
    ia = one / a
    s2 = np.sqrt(one + ia * ia)  # a > 1: s = a * s2
    sg = one if d > F(x, 0.0) else -one
    g = d / s if small else sg * delta / s2
    hs = one / (s * s * s)
    hl = ia * ia * ia / (s2 * s2 * s2)
    hh = hs if small else hl
    dd = delta * delta
    loss = dd * (a * a / (s + one)) if small else dd * (a * s2 - one)
    return g, hh, loss, False


@inline
def _poisson(x, y, mds, b, c):
    """Poisson deviance / 2 with log link: g = e^x - y, h = e^(x + max_delta_step)."""
    zero = F(x, 0.0)
    ex = vexp(x)
    yx = zero if y == zero else y * x
    return ex - y, vexp(x + mds), ex - yx, not (y >= zero)


@inline
def _focal(x, y, gamma, alpha, min_hess):
    """torchvision's sigmoid focal loss alpha_t (1 - p_t)^gamma BCE(x, y) and its exact
    first and second derivatives (soft labels allowed).

    With m = 1 - p_t = p (1 - y) + q y, f = m^gamma, u = m'/m = p q (1 - 2y) / m
    (bounded: -p for y = 1, q for y = 0), ce = BCE, ce' = p - y:
    g = alpha_t f (gamma u ce + ce'),
    h = alpha_t f (gamma u ((gamma - 1) u + q - p) ce + 2 gamma u ce' + p q).
    """
    one = F(x, 1.0)
    zero = F(x, 0.0)
    p, q, e = _sigmoid_e(x)
    ce = _bce_logits_value(x, y, y, one, e)
    ce1 = p * (one - y) - q * y
    m = p * (one - y) + q * y
    pq = p * q
    u = pq * (one - F(x, 2.0) * y) / m if m > zero else zero
    f = _pow(m, gamma)
    at = alpha * y + (one - alpha) * (one - y) if alpha >= zero else one
    gu = gamma * u
    gu_ce = zero if gu == zero else gu * ce  # gamma = 0 or u = 0: no 0 * inf
    g = at * f * (gu_ce + ce1)
    curv = zero if gu == zero else gu_ce * ((gamma - one) * u + q - p) + F(x, 2.0) * gu * ce1
    hh = _floor(at * f * (curv + pq), min_hess)
    bad = not ((y >= zero) & (y <= one))
    return g, hh, at * f * ce, bad


#: name -> elementwise kernel
ELEMENTWISE = {
    name: Objective(f"obj_{name}", elem)
    for name, elem in (
        ("logistic", _logistic),
        ("squared_error", _squared_error),
        ("huber", _huber),
        ("pseudo_huber", _pseudo_huber),
        ("poisson", _poisson),
        ("focal", _focal),
    )
}


# --------------------------------------------------------------------------- softmax
def softmax_rows_per_block(K: int) -> int:
    """Rows per block: the K x R scratch tiles stay within ~64 KiB."""
    return max(8, min(256, 8192 // max(K, 1)))


@inline
def _col(a, rs, cs, i0, r, k):
    """Rows i0 .. i0+r-1 of column k of a flat (n, K) array whose element (i, k) is
    a[i * rs + k * cs]: a 1-D view indexed from 0 (so the loops over it vectorise)."""
    start = i0 * rs + k * cs
    return a[start : start + (r - 1) * rs + 1 : rs]


def _softmax_range(x, xs, y, w, cw, p, K, R, k0, k1, g, gs, h, hs, lout, status):
    """Row blocks k0 .. k1-1 (R rows each) of the (n, K) margins.

    ``x``, ``g``, ``h`` are flat (memory-order) views; ``xs``, ``gs``, ``hs`` their
    element strides ``[row, column]`` (C order: ``[K, 1]``, F order: ``[1, n]``).
    ``p = [hess_scale, eps, min_hess]`` in the margins' dtype.  ``lout`` (float64, n)
    gets the weighted per-row cross-entropy against the smoothed target when non-empty;
    ``g`` and ``h`` (size 0 when not wanted) the weighted derivatives.
    """
    n = y.size
    scale = p[0]
    eps = p[1]
    mh = p[2]
    one = F(scale, 1.0)
    zero = F(scale, 0.0)
    off = eps / F(scale, K)  # eps / K: every class's share of the smoothing
    on = one - eps + off  # the label's target
    want_g = g.size != 0
    want_l = lout.size != 0
    weighted = w.size != 0
    cweighted = cw.size != 0
    tile = np.empty((K, R), dtype=x.dtype)
    mx = np.empty(R, dtype=x.dtype)
    acc = np.empty(R, dtype=np.float64)
    inv = np.empty(R, dtype=x.dtype)
    ww = np.empty(R, dtype=x.dtype)
    lab = np.empty(R, dtype=np.int32)  # int32: compared in float32-wide lanes
    tx = np.empty(R, dtype=np.float64)
    for blk in range(k0, k1):
        i0 = blk * R
        r = min(R, n - i0)
        # labels, weights and the first bad row
        first = -1
        yb = y[i0 : i0 + r]
        for j in range(r):
            yv = yb[j]
            ok = (yv >= zero) & (yv < F(scale, K)) & (yv == np.floor(yv))
            lab[j] = int(yv) if ok else -1
            if not ok and first < 0:
                first = j
        status[blk] = 0 if first < 0 else i0 + first + 1
        if weighted:
            wb = w[i0 : i0 + r]
            for j in range(r):
                ww[j] = wb[j]
        else:
            for j in range(r):
                ww[j] = one
        if cweighted:
            for j in range(r):
                li = lab[j]
                ww[j] *= cw[li] if li >= 0 else zero
        # gather the tile (class-major), the row maxima, exp and its float64 sums
        for j in range(r):
            mx[j] = -np.inf
            acc[j] = 0.0
        for k in range(K):
            tk = tile[k]
            xc = _col(x, xs[0], xs[1], i0, r, k)
            for j in range(r):
                v = xc[j]
                tk[j] = v
                mx[j] = v if v > mx[j] else mx[j]
        for k in range(K):
            tk = tile[k]
            for j in range(r):  # float32 lanes: the float64 sum in a loop of its own
                tk[j] = vexp_neg(tk[j] - mx[j])
            for j in range(r):
                acc[j] += tk[j]
        if want_l:
            # loss = log(sum) + max - sum_k t_k x_k, in float64
            for j in range(r):
                tx[j] = 0.0
            if eps != zero:
                for k in range(K):
                    xc = _col(x, xs[0], xs[1], i0, r, k)
                    for j in range(r):
                        tx[j] += float(xc[j])
                for j in range(r):
                    tx[j] *= float(off)
            for j in range(r):
                li = lab[j]
                lse = np.log(acc[j]) + float(mx[j])
                xl = float(x[(i0 + j) * xs[0] + li * xs[1]]) if li >= 0 else lse
                lout[i0 + j] = (lse - tx[j] - float(one - eps) * xl) * float(ww[j])
        if want_g:
            for j in range(r):
                inv[j] = one / x.dtype.type(acc[j])
            for k in range(K):
                tk = tile[k]
                kk = np.int32(k)
                gc = _col(g, gs[0], gs[1], i0, r, k)
                hc = _col(h, hs[0], hs[1], i0, r, k)
                for j in range(r):
                    pk = tk[j] * inv[j]
                    t = on if lab[j] == kk else off
                    wj = ww[j]
                    gc[j] = (pk - t) * wj
                    hc[j] = _floor(scale * pk * (one - pk), mh) * wj


_softmax_serial = rowfn(_softmax_range)


def _softmax_row_ders(a, k, c, p, full):
    """CatBoost's ``calc_ders_multi`` for one object: the K margins ``a`` (float64), class
    ``k``, weight ``c`` (sample weight times class weight), ``p = [hess_scale, eps,
    min_hess]``.  Returns a ``(K + 1, K)`` float64 array: row 0 the negated gradient
    ``(t - p) c`` with ``t = (1 - eps) onehot + eps / K``, rows 1.. the negated Hessian,
    ``full``: ``-(diag(p) - p p^T) c`` (CatBoost's MultiClass; ``(r p_i)(r p_j)`` with ``r =
    sqrt|c|`` is exactly symmetric), else ``-diag(max(hess_scale p (1 - p), min_hess)) c``.
    ``p = e / sum(e)``, ``e = exp(a - max a)``: the formulas of :data:`softmax_gh`."""
    K = a.size
    out = np.zeros((K + 1, K))
    pr = out[0]
    m = a[0]
    for i in range(1, K):
        m = a[i] if a[i] > m else m
    s = 0.0
    for i in range(K):
        e = np.exp(a[i] - m)
        pr[i] = e
        s += e
    inv = 1.0 / s
    for i in range(K):
        pr[i] = pr[i] * inv
    eps = p[1]
    off = eps / K
    if full:
        r = np.sqrt(abs(c))
        for i in range(K):
            left = r * pr[i]
            left = left if c >= 0.0 else -left
            hrow = out[1 + i]
            for j in range(K):
                hrow[j] = left * (r * pr[j])
            hrow[i] = pr[i] * (pr[i] - 1.0) * c
    else:
        hs = p[0]
        mh = p[2]
        for i in range(K):
            hv = hs * pr[i] * (1.0 - pr[i])
            hv = mh if mh > hv else hv
            out[1 + i, i] = -hv * c
    pk = pr[k]
    for i in range(K):
        pr[i] = (off - pr[i]) * c
    pr[k] = (1.0 - eps + off - pk) * c
    return out


softmax_row_ders = rowfn(_softmax_row_ders)


def _softmax_parallel(x, xs, y, w, cw, p, K, R, k0, k1, g, gs, h, hs, lout, status):
    for b in prange(k0, k1):
        _softmax_serial(x, xs, y, w, cw, p, K, R, b, b + 1, g, gs, h, hs, lout, status)


class _Softmax:
    """What :func:`fastloss._config.pick` expects: a ``serial`` build (the range function
    itself) and a ``parallel`` build running it block by block."""

    __slots__ = ("parallel", "serial", "__name__")

    def __init__(self):
        self.serial = _softmax_serial
        self.parallel = kernel(_softmax_parallel).parallel
        self.__name__ = "softmax_gh"

    def __repr__(self):
        return "<fastloss kernel softmax_gh>"


softmax_gh = _Softmax()
