"""Elementwise kernels: one generic fused engine, one small ``@inline`` function per loss.

The engine
----------
Every elementwise loss is a per-element function (an ``@inline`` "elem") returning
``(loss_i, dloss_i/dx_i, bad_i)`` for one input element ``x_i`` and its target ``t_i``.
:func:`elementwise` (and :func:`weighted` for losses with broadcast ``weight`` /
``pos_weight`` arrays) turns an elem into a kernel:

* the flat input is cut into blocks of :data:`BLOCK_ELEMS` elements;
* a *range function* (compiled once per dtype) runs blocks ``k0 .. k1-1``: for each block
  one vectorisable loop reads each ``x_i``, ``t_i`` once and writes ``loss_i`` and
  ``g_i = dloss_i * scale``, ORing the ``bad_i`` flags.  An output that shares no memory
  with the operands (the usual case) is written by that loop directly; a gradient that
  overwrites an operand (``out=input``) goes to a block-sized scratch buffer and is
  copied to ``g`` after the loop (the block has been read before it is overwritten, and
  the hot loop never runs on aliasing pointers, which would make LLVM fall back to its
  scalar loop).  The block's losses are summed in float64 over 64 fixed lanes
  (vectorised in registers, no reassociation);
* the serial build *is* the range function (one call, all blocks); the parallel build is
  a ``prange`` over the blocks calling it block by block.  Per-block float64 partial sums
  and flags go to small arrays that the Python layer reduces in block order: the result
  has the same bits at any thread count and in both builds.

Kernel arguments (all 1-D, C-contiguous): ``x``, ``t`` read-only arrays of the input
dtype; ``p = [a, b, c, scale]``: the loss's options and the gradient scale, in the input
dtype (float32 math stays float32 and vectorises 16-wide on AVX-512); ``k0, k1`` the block
range; ``lout`` (size 0 unless ``"none"``); ``g`` (size 0 when no gradient is wanted);
``partial`` (float64, one per block); ``flags`` (bool, one per block).  Weighted kernels
also take ``w``, ``pw`` (flat read-only arrays) and ``geom = [B, w_row_stride,
w_col_stride, pw_row_stride, pw_col_stride]``: the input is seen as rows of ``B`` elements
and ``w[r*rs + c*cs]`` is the weight of element ``(r, c)``, which covers scalar,
per-column ``(C,)``, per-row ``(N, 1)`` and full-shape weights without materialising
anything input-sized (the block's weights are gathered into a block-sized buffer).

Adding a loss: write its elem below (branch-free: conditional expressions, ``_vmath``
functions, constants through :func:`F`), add one ``NAME = elementwise("NAME", _elem)``
line, and its public function in ``fastloss/pointwise.py`` (plus its reference in
``tests/reference_pointwise.py``).

Why a factory and not a closure: each kernel is a copy of the template's code object with
its own globals (``ELEM`` / ``RANGE`` bound to this loss's functions) and its own
``__qualname__``.  Numba's on-disk cache keys files by qualified name and hashes closure
cells (a closed-over dispatcher pickles with a per-process uuid, which would miss the
cache every time); globals are not part of the key, and the distinct names keep two
losses from sharing a cache file.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange, types
from numba.extending import overload

from .._config import as_readonly, inline, instantiate, kernel, rowfn
from .._vmath import lane_totals, vexp, vexpm1, vlog, vlog1p, vlog1p_unit, vtanh

#: Elements per block: the unit of parallel work and of the deterministic reduction.
#: Two scratch buffers of this size (32 KiB in float64) stay in L1/L2.
BLOCK_ELEMS = 4096
LANES = 64

_LN2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------- helpers
def F(like, v):
    """The constant ``v`` in the float type of ``like`` (float32 math stays float32)."""
    return v


@overload(F)
def _ov_F(like, v):
    if like == types.float32:
        return lambda like, v: np.float32(v)
    return lambda like, v: np.float64(v)


@rowfn
def _lane_sum(a, m):
    """float64 sum of ``a[:m]`` over 64 fixed lanes (lane l sums a[l], a[l+64], ...,
    then the lanes in order, then the tail): vectorises without reassociation and gives
    the same bits on every machine.  The lanes stay in registers (:func:`lane_totals`).
    Called, not inlined: inlined into the range functions it compiles 4x slower."""
    k = m - m % LANES
    s = lane_totals(a, k, LANES)
    for i in range(k, m):
        s += a[i]
    return s


@inline
def _overlaps(a, b):
    """Whether the memory of two 1-D C-contiguous arrays overlaps."""
    if a.size == 0 or b.size == 0:
        return False
    a0 = a.ctypes.data
    b0 = b.ctypes.data
    return a0 < b0 + b.size * b.itemsize and b0 < a0 + a.size * a.itemsize


@inline
def _dest(out, lo, hi, direct, scratch):
    """Where a block's values go: straight into ``out[lo:hi]`` when ``out`` shares no
    memory with the operands (``direct``), else the block-sized scratch buffer."""
    return out[lo:hi] if direct else scratch


@inline
def _finish_block(lb, gb, ld, lo, hi, lout, g, ldirect, gdirect):
    """Copy the block's scratch values to their outputs (where they were not written
    straight there) and return the float64 sum of its losses (``ld``: where they are)."""
    m = hi - lo
    if g.size != 0 and not gdirect:
        gv = g[lo:hi]
        for j in range(m):
            gv[j] = gb[j]
    if lout.size != 0 and not ldirect:
        lv = lout[lo:hi]
        for j in range(m):
            lv[j] = lb[j]
    return _lane_sum(ld, m)


# ------------------------------------------------------------------------- templates
# The templates below are never compiled themselves: elementwise()/weighted() copy
# them with ELEM / RANGE bound in their globals.
ELEM = None
RANGE = None


def _range_template(x, t, p, k0, k1, lout, g, partial, flags):
    """Blocks k0 .. k1-1: partial[k] = float64 sum of the block's losses, flags[k] = any
    bad element; the block's gradient goes to g (if non-empty), its losses to lout (if
    non-empty)."""
    a = p[0]
    b = p[1]
    c = p[2]
    scale = p[3]
    n = x.size
    size = min(BLOCK_ELEMS, n)
    # outputs that share no memory with the operands are written in the hot loop itself;
    # an in-place gradient (g is x or t) goes through the scratch block (see the module
    # docstring)
    gdirect = g.size != 0 and not (_overlaps(g, x) or _overlaps(g, t))
    ldirect = lout.size != 0 and not (_overlaps(lout, x) or _overlaps(lout, t))
    lb = np.empty(0 if ldirect else size, dtype=p.dtype)
    gb = np.empty(0 if gdirect else size, dtype=p.dtype)
    for k in range(k0, k1):
        lo = k * BLOCK_ELEMS
        hi = min(lo + BLOCK_ELEMS, n)
        m = hi - lo
        xb = x[lo:hi]
        tb = t[lo:hi]
        ld = _dest(lout, lo, hi, ldirect, lb)
        gd = _dest(g, lo, hi, gdirect, gb)
        bad = False
        for j in range(m):
            li, di, ei = ELEM(xb[j], tb[j], a, b, c)
            ld[j] = li
            gd[j] = di * scale
            bad |= ei
        partial[k] = _finish_block(lb, gb, ld, lo, hi, lout, g, ldirect, gdirect)
        flags[k] = bad


def _parallel_template(x, t, p, k0, k1, lout, g, partial, flags):
    for k in prange(k0, k1):
        RANGE(x, t, p, k, k + 1, lout, g, partial, flags)


@inline
def _fill(buf, o, arr, base, cs, m):
    """buf[o:o+m] = arr[base + j*cs] for j < m, with cs in {0, 1}.  Loops over slices
    from index 0: with ``buf[o + j]`` Numba cannot rule out a negative index, and the
    wraparound check keeps LLVM from vectorising the copy."""
    bv = buf[o : o + m]
    if cs == 0:
        v = arr[base]
        for j in range(m):
            bv[j] = v
    else:
        av = arr[base : base + m]
        for j in range(m):
            bv[j] = av[j]


def _wrange_template(x, t, w, pw, geom, p, k0, k1, lout, g, partial, flags):
    a = p[0]
    b = p[1]
    c = p[2]
    scale = p[3]
    B = geom[0]
    n = x.size
    size = min(BLOCK_ELEMS, n)
    wb = np.empty(size, dtype=p.dtype)
    pb = np.empty(size, dtype=p.dtype)
    gdirect = g.size != 0 and not (_overlaps(g, x) or _overlaps(g, t) or _overlaps(g, w)
                                   or _overlaps(g, pw))
    ldirect = lout.size != 0 and not (_overlaps(lout, x) or _overlaps(lout, t)
                                      or _overlaps(lout, w) or _overlaps(lout, pw))
    lb = np.empty(0 if ldirect else size, dtype=p.dtype)
    gb = np.empty(0 if gdirect else size, dtype=p.dtype)
    for k in range(k0, k1):
        lo = k * BLOCK_ELEMS
        hi = min(lo + BLOCK_ELEMS, n)
        m = hi - lo
        # Gather the block's weights row segment by row segment (constant or contiguous).
        i = lo
        while i < hi:
            r = i // B
            c0 = i - r * B
            e = min(hi, i + (B - c0))
            _fill(wb, i - lo, w, r * geom[1] + c0 * geom[2], geom[2], e - i)
            _fill(pb, i - lo, pw, r * geom[3] + c0 * geom[4], geom[4], e - i)
            i = e
        xb = x[lo:hi]
        tb = t[lo:hi]
        ld = _dest(lout, lo, hi, ldirect, lb)
        gd = _dest(g, lo, hi, gdirect, gb)
        bad = False
        for j in range(m):
            li, di, ei = ELEM(xb[j], tb[j], pb[j], a, b, c)
            wj = wb[j]
            ld[j] = li * wj
            gd[j] = di * wj * scale
            bad |= ei
        partial[k] = _finish_block(lb, gb, ld, lo, hi, lout, g, ldirect, gdirect)
        flags[k] = bad


def _wparallel_template(x, t, w, pw, geom, p, k0, k1, lout, g, partial, flags):
    for k in prange(k0, k1):
        RANGE(x, t, w, pw, geom, p, k, k + 1, lout, g, partial, flags)


def _small_template(x, t, a, b, c, scale, grad):
    """One call for a small C-contiguous input of any shape (at most one block, a reduced
    loss): builds the arguments of the range function ``RANGE`` inside the kernel and
    returns ``(float64 sum of the losses, any bad element, flat gradient or a size-0
    array)``.  The values are those of the general call (``p`` rounded to the input dtype
    as NumPy rounds)."""
    dt = x.dtype
    p = np.empty(4, dtype=dt)
    p[0] = a
    p[1] = b
    p[2] = c
    p[3] = scale
    g = np.empty(x.size if grad else 0, dtype=dt)
    partial = np.empty(1)
    flags = np.empty(1, dtype=np.bool_)
    RANGE(as_readonly(x.reshape(x.size)), as_readonly(t.reshape(t.size)), p, np.int64(0),
          np.int64(1), np.empty(0, dtype=dt), g, partial, flags)
    return partial[0], flags[0], g


def _instantiate(template, name, **bind):
    return instantiate(template, name, f"{template.__name__} instantiated for {name!r}", **bind)


class Elementwise:
    """What :func:`fastloss._config.pick` expects of a kernel: a ``parallel`` and a
    ``serial`` build with the same signature.  The serial build is the range function
    itself (one call covers every block); the parallel build runs it block by block in a
    ``prange``.  So the heavy per-element code is compiled once per dtype and shared."""

    __slots__ = ("parallel", "serial", "small", "__name__")

    def __init__(self, name, range_template, parallel_template, elem, small=False, **bind):
        self.serial = rowfn(_instantiate(range_template, f"{name}_range", ELEM=elem, **bind))
        # kernel() supplies the project's parallel build (its serial twin is never used).
        self.parallel = kernel(_instantiate(parallel_template, name, RANGE=self.serial)).parallel
        #: ``small(x, t, a, b, c, scale, grad)`` (unweighted kernels): one block in one call
        self.small = (rowfn(_instantiate(_small_template, f"{name}_small", RANGE=self.serial))
                      if small else None)
        self.__name__ = name

    def __repr__(self):
        return f"<fastloss elementwise kernel {self.__name__}>"


def elementwise(name, elem):
    """Kernel for ``elem(x, t, a, b, c) -> (loss, grad, bad)``."""
    return Elementwise(name, _range_template, _parallel_template, elem, small=True)


def weighted(name, elem):
    """Kernel for ``elem(x, t, pos_weight, a, b, c) -> (loss, grad, bad)``; the engine
    multiplies loss and gradient by the (broadcast) weight."""
    return Elementwise(name, _wrange_template, _wparallel_template, elem)


# ------------------------------------------------------------------ shared element math
@inline
def _sigmoid_e(x):
    """``(sigmoid(x), sigmoid(-x), exp(-|x|))`` without overflow (NaN propagates)."""
    one = F(x, 1.0)
    e = vexp(-abs(x))
    r = one / (one + e)
    er = e * r
    pos = x >= F(x, 0.0)
    return (r if pos else er), (er if pos else r), e


@inline
def _bce_logits_value(x, t, pwt, lw, e):
    """(1 - t) x - lw log(sigmoid(x)) with pwt = pos_weight * t and lw = 1 + pwt - t,
    e = exp(-|x|), written without cancellation: for x < 0 it equals
    -pwt x + lw log1p(e), for x >= 0 it is (1 - t) x + lw log1p(e).  (PyTorch's own form
    loses digits for soft targets at large |x| in float32.)"""
    zero = F(x, 0.0)
    neg = x < zero
    lin = -pwt * x if neg else (F(x, 1.0) - t) * x
    l1p = vlog1p_unit(e)
    # x < 0 with e underflowed to 0: PyTorch's log_sigmoid(x) is x itself, so an infinite
    # lw leaves no lw * log1p(e) = inf * 0 term (NaN) to add; a NaN lw still gives NaN
    tail = zero if neg & (l1p == zero) & (lw == lw) else lw * l1p
    v = lin + tail
    # x = -inf: PyTorch's (1 - t) x - lw log_sigmoid(x) with log_sigmoid(-inf) = -inf
    # (NaN, or +-inf for targets above 1 / a negative lw)
    return (F(x, 1.0) - t) * x - lw * x if x == F(x, -np.inf) else v


@inline
def _log_sigmoid_e(x, e):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), given e = exp(-|x|)."""
    zero = F(x, 0.0)
    return (x if x < zero else zero) - vlog1p_unit(e)


@inline
def _pow(m, gamma):
    """m ** gamma for m >= 0 (exact for gamma in {0, 1, 2}; 0 ** 0 == 1 like torch.pow)."""
    r = vexp(gamma * vlog(m))
    r = m * m if gamma == F(m, 2.0) else r
    r = m if gamma == F(m, 1.0) else r
    return F(m, 1.0) if gamma == F(m, 0.0) else r


@inline
def _not_pm1(t):
    return (t != F(t, 1.0)) & (t != F(t, -1.0))


# --------------------------------------------------------------------- binary family
@inline
def _bce(x, t, pw, a, b, c):
    """F.binary_cross_entropy: logs clamped at -100; backward (x - t) / max(x(1-x), 1e-12)."""
    one = F(x, 1.0)
    zero = F(x, 0.0)
    lo = F(x, -100.0)
    lx = vlog(x)
    lx = lx if lx > lo else lo
    l1 = vlog1p(-x)
    l1 = l1 if l1 > lo else lo
    loss = (t - one) * l1 - t * lx
    den = (one - x) * x
    den = den if den > F(x, 1e-12) else F(x, 1e-12)
    bad = not ((x >= zero) & (x <= one) & (t >= zero) & (t <= one))
    return loss, (x - t) / den, bad


@inline
def _bce_logits(x, t, pw, has_pw, b, c):
    """F.binary_cross_entropy_with_logits (PyTorch's formula, log-sigmoid based)."""
    one = F(x, 1.0)
    s, _, e = _sigmoid_e(x)
    use_pw = has_pw != F(x, 0.0)
    lw = one + (pw - one) * t if use_pw else one
    loss = _bce_logits_value(x, t, pw * t if use_pw else t, lw, e)
    pt = pw * t
    grad = (pt + one - t) * s - pt if use_pw else s - t
    return loss, grad, False


@inline
def _sigmoid_focal(x, t, alpha, gamma, c):
    """torchvision.ops.sigmoid_focal_loss and its analytic gradient."""
    one = F(x, 1.0)
    zero = F(x, 0.0)
    p, q, e = _sigmoid_e(x)
    ce = _bce_logits_value(x, t, t, one, e)
    # 1 - p_t written as a sum of non-negative terms (no cancellation when p -> 1).
    m = p * (one - t) + q * t
    mg = _pow(m, gamma)
    dm = p * q * (one - F(x, 2.0) * t)
    # d m**gamma = gamma m**(gamma-1) dm, written m**gamma (dm / m): m**(gamma-1) alone
    # overflows for gamma < 1 once m underflows (a confident correct logit), and inf * 0
    # would be NaN.  m == 0 (p or q underflowed to 0): the limit, 0 for gamma > 0 (times
    # ce, so a NaN ce at x = -inf still propagates).  gamma == 0: torch's pow backward is
    # exactly 0, even where ce is infinite.
    mdm = mg * (dm / m) if m > zero else zero
    dfocal = zero if gamma == zero else ce * (gamma * mdm)
    at = alpha * t + (one - alpha) * (one - t) if alpha >= zero else one
    loss = at * (ce * mg)
    # p - t as p (1 - t) - q t: no cancellation for a confident correct 0/1 target
    grad = at * ((p * (one - t) - q * t) * mg + dfocal)
    return loss, grad, False


@inline
def _soft_margin(x, t, a, b, c):
    """log(1 + exp(-t x)) in the stable softplus form; grad -t * sigmoid(-t x), NaN at
    -t x = +inf (an infinite score), as PyTorch's exp(-t x) / (1 + exp(-t x)); bad: a
    target that is not -1 or +1."""
    z = -t * x
    s, _, e = _sigmoid_e(z)
    zero = F(x, 0.0)
    loss = (z if z > zero else zero) + vlog1p_unit(e)
    loss = z if z != z else loss
    g = -t * s
    g = F(x, np.nan) if z == F(x, np.inf) else g
    return loss, g, _not_pm1(t)


# ----------------------------------------------------------------- regression family
@inline
def _mse(x, t, a, b, c):
    d = x - t
    return d * d, F(x, 2.0) * d, False


@inline
def _l1(x, t, a, b, c):
    """|x - t|; gradient sgn(x - t) with sgn(0) = 0 and, like torch.sgn, sgn(NaN) = 0."""
    d = x - t
    one = F(x, 1.0)
    zero = F(x, 0.0)
    g = one if d > zero else zero
    g = -one if d < zero else g
    return abs(d), g, False


@inline
def _smooth_l1(x, t, beta, b, c):
    """F.smooth_l1_loss for beta > 0 (beta == 0 runs the L1 kernel)."""
    half = F(x, 0.5)
    one = F(x, 1.0)
    d = x - t
    z = abs(d)
    loss = half * z * z / beta if z < beta else z - half * beta
    g = d / beta
    g = one if d >= beta else g
    g = -one if d <= -beta else g
    return loss, g, False


@inline
def _huber(x, t, delta, b, c):
    """F.huber_loss: 0.5 d^2 for |d| < delta, delta (|d| - delta/2) beyond."""
    half = F(x, 0.5)
    d = x - t
    z = abs(d)
    loss = half * z * z if z < delta else delta * (z - half * delta)
    g = delta if d >= delta else d
    g = -delta if d <= -delta else g
    return loss, g, False


@inline
def _log_cosh(x, t, a, b, c):
    """log(cosh(d)) = log1p(em^2 / (2 (1 + em))), em = expm1(|d|), for |d| < 20;
    |d| - log 2 beyond (the neglected log1p(exp(-2|d|)) is below one ulp)."""
    one = F(x, 1.0)
    two = F(x, 2.0)
    cut = F(x, 20.0)
    d = x - t
    z = abs(d)
    em = vexpm1(z if z < cut else cut)
    small = vlog1p(em * em / (two * (one + em)))
    loss = small if z < cut else z - F(x, _LN2)
    return loss, vtanh(d), False


# --------------------------------------------------------------------- margin family
@inline
def _hinge(x, t, margin, b, c):
    """max(0, margin - t x); subgradient -t where t x <= margin (sklearn's convention)."""
    zero = F(x, 0.0)
    z = margin - t * x
    loss = zero if z <= zero else z  # NaN propagates
    g = -t if z >= zero else zero
    g = z if z != z else g
    return loss, g, _not_pm1(t)


@inline
def _squared_hinge(x, t, margin, b, c):
    zero = F(x, 0.0)
    z = margin - t * x
    h = zero if z <= zero else z
    return h * h, F(x, -2.0) * t * h, _not_pm1(t)


@inline
def _exponential(x, t, a, b, c):
    e = vexp(-t * x)
    return e, -t * e, _not_pm1(t)


@inline
def _zero_one(x, t, a, b, c):
    """1[t x <= 0] (NaN scores give NaN); the gradient is zero everywhere."""
    zero = F(x, 0.0)
    loss = F(x, 1.0) if t * x <= zero else zero
    loss = x if x != x else loss
    return loss, zero, _not_pm1(t)


# ---------------------------------------------------------------------- count family
@inline
def _poisson_nll(x, t, log_input, full, eps):
    """F.poisson_nll_loss; a = log_input, b = full (as 0/1)."""
    one = F(x, 1.0)
    zero = F(x, 0.0)
    half = F(x, 0.5)
    ex = vexp(x)
    xe = x + eps
    li = log_input != zero
    loss = ex - t * x if li else x - t * vlog(xe)
    g = ex - t if li else one - t / xe
    lt = vlog(t)
    st = t * lt - t + half * (F(x, _LOG_2PI) + lt)
    st = zero if (t <= one) | (full == zero) else st
    return loss + st, g, False


@inline
def _poisson_nll_log(x, t, a, b, c):
    """:func:`_poisson_nll` for the default options (``log_input=True, full=False``):
    ``e^x - t x`` and ``e^x - t`` without the other branches' two logarithms (a select
    computes both sides).  The same values: the general form adds +0.0 to a loss that is
    never -0.0."""
    ex = vexp(x)
    return ex - t * x, ex - t, False


# ----------------------------------------------------------------- divergence family
@inline
def _kl_div(x, t, log_target, b, c):
    """F.kl_div pointwise: xlogy(t, t) - t x (or exp(t) (t - x) for log targets)."""
    zero = F(x, 0.0)
    lt = log_target != zero
    et = vexp(t)
    xl = zero if t == zero else t * vlog(t)
    loss = et * (t - x) if lt else xl - t * x
    g = -et if lt else -t
    return loss, g, False


# ------------------------------------------------------------------------- the kernels
binary_cross_entropy = weighted("binary_cross_entropy", _bce)
binary_cross_entropy_with_logits = weighted("binary_cross_entropy_with_logits", _bce_logits)
sigmoid_focal_loss = elementwise("sigmoid_focal_loss", _sigmoid_focal)
soft_margin_loss = elementwise("soft_margin_loss", _soft_margin)
mse_loss = elementwise("mse_loss", _mse)
l1_loss = elementwise("l1_loss", _l1)
smooth_l1_loss = elementwise("smooth_l1_loss", _smooth_l1)
huber_loss = elementwise("huber_loss", _huber)
log_cosh_loss = elementwise("log_cosh_loss", _log_cosh)
hinge_loss = elementwise("hinge_loss", _hinge)  # also perceptron_loss (margin 0)
squared_hinge_loss = elementwise("squared_hinge_loss", _squared_hinge)
exponential_loss = elementwise("exponential_loss", _exponential)
zero_one_loss = elementwise("zero_one_loss", _zero_one)
poisson_nll_loss = elementwise("poisson_nll_loss", _poisson_nll)
poisson_nll_loss_log = elementwise("poisson_nll_loss_log", _poisson_nll_log)
kl_div = elementwise("kl_div", _kl_div)


# ------------------------------------------------------------------------ utilities
@kernel
def sigmoid_map(x, out):
    """out = sigmoid(x), elementwise."""
    n = x.size
    for k in prange((n + BLOCK_ELEMS - 1) // BLOCK_ELEMS):
        lo = k * BLOCK_ELEMS
        hi = min(n, lo + BLOCK_ELEMS)
        xb = x[lo:hi]  # slices indexed from 0: vectorises (see _fill)
        ob = out[lo:hi]
        for i in range(hi - lo):
            s, _, _ = _sigmoid_e(xb[i])
            ob[i] = s


@kernel
def log_sigmoid_map(x, out):
    """out = log(sigmoid(x)), elementwise."""
    n = x.size
    for k in prange((n + BLOCK_ELEMS - 1) // BLOCK_ELEMS):
        lo = k * BLOCK_ELEMS
        hi = min(n, lo + BLOCK_ELEMS)
        xb = x[lo:hi]
        ob = out[lo:hi]
        for i in range(hi - lo):
            xi = xb[i]
            ob[i] = _log_sigmoid_e(xi, vexp(-abs(xi)))


__all__ = [
    "BLOCK_ELEMS",
    "elementwise",
    "weighted",
]
