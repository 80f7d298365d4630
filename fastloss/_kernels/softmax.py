"""Row kernels of the softmax family.

Every kernel works on a C-contiguous ``(R, C)`` view (one row = one distribution over the
``C`` classes) and computes the loss and its gradient row by row: the row is read from
memory once and stays in cache (L1 for C ~ 1000, L2 up to ~10^5 classes) for the passes
over it, and the gradient row is written once.  Rows are spread over threads in blocks;
each row's loss goes to a float64 array (``rl``) that the Python layer reduces in a fixed
order, so the result has the same bits at any thread count.

Pass structure of a row (cross-entropy):
  A. max of the row (integer-key max, vectorised) and the values needed later that the
     gradient write would destroy when ``out`` is the input (the target logit, the
     label-smoothing sum);
  B. e_j = exp(x_j - max) written into the gradient row (or a scratch row), then summed
     in float64 by ``row_sum`` (vectorised, fixed order);
  C. g_j = e_j * a - b_j in place.
No N x C temporary is created: scratch rows are per block of rows.

Status codes returned to the Python layer: 0 ok, 1 class index out of range (with the
offending value).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._config import as_readonly, inline, instantiate, kernel, rowfn
from .._vmath import prefetch, rounded, row_max, row_sum, select, vexp_neg, vlog, vtanh

#: Rows per parallel block (scratch buffers are allocated once per block).
ROWS_PER_BLOCK = 16

#: Rows of at least this many bytes prefetch the next row while their exp pass runs
#: (rows larger than L1: the hardware prefetcher alone leaves the next row's first pass
#: waiting on memory; measured 5-7 % faster at 8192 x 32000 and 32768 x 8192 float32,
#: no gain at 4096 columns).
PREFETCH_ROW_BYTES = 32768
_CHUNK = 64  # elements per prefetch step (4 cache lines of float32, 8 of float64)


@inline
def _nblocks(R):
    return (R + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK


# Row helpers: each loops over one row with the vector math inlined, and is *called*
# from the kernels (compiled once per dtype, not once per kernel).
@rowfn
def _ahead(x, i):
    """The row to prefetch while row i is processed: row i + 1 for wide rows, else an
    empty row (no prefetch)."""
    R, C = x.shape
    if i + 1 < R and C * x.itemsize >= PREFETCH_ROW_BYTES:
        return x[i + 1]
    return x[i, :0]


@inline
def _same(a, b):
    """``a`` and ``b`` are the same row (``out=input``).  A loop reading one array and
    writing the other is vectorised by LLVM behind a runtime overlap check, which sends
    the *same* row to the scalar loop: such loops get a one-array twin for that case."""
    return a.ctypes.data == b.ctypes.data


@rowfn
def _exp_shifted_same(buf, m, nx):
    """buf[j] = exp(buf[j] - m): :func:`_exp_shifted` when the row is its own output."""
    C = buf.shape[0]
    done = 0
    if nx.shape[0] >= C:
        step = 64 // buf.itemsize
        nch = C // _CHUNK
        for c in range(nch):
            o = c * _CHUNK
            for k in range(0, _CHUNK, step):
                prefetch(nx, o + k)
            bs = buf[o : o + _CHUNK]
            for j in range(_CHUNK):
                bs[j] = vexp_neg(bs[j] - m)
        done = nch * _CHUNK
    bs = buf[done:]
    for j in range(bs.shape[0]):
        bs[j] = vexp_neg(bs[j] - m)


@rowfn
def _exp_shifted(xi, m, buf, nx):
    """buf[j] = exp(x_j - m), m the row max (so the argument is <= 0 or NaN).  When ``nx``
    (the next row, see :func:`_ahead`) is not empty, its cache lines are prefetched
    along the way, so its first pass reads from cache while this pass computes."""
    if _same(xi, buf):
        _exp_shifted_same(buf, m, nx)
        return
    C = xi.shape[0]
    done = 0
    if nx.shape[0] >= C:
        step = 64 // xi.itemsize  # elements per cache line
        nch = C // _CHUNK
        for c in range(nch):
            o = c * _CHUNK
            for k in range(0, _CHUNK, step):
                prefetch(nx, o + k)
            xs = xi[o : o + _CHUNK]
            bs = buf[o : o + _CHUNK]
            for j in range(_CHUNK):
                bs[j] = vexp_neg(xs[j] - m)
        done = nch * _CHUNK
    xs = xi[done:]
    bs = buf[done:]
    for j in range(xs.shape[0]):
        bs[j] = vexp_neg(xs[j] - m)


@inline
def _cap1(v, c, ic):
    """One soft-capped logit ``c * tanh(v * ic)`` (v, c = cap, ic = 1/cap in the logits'
    dtype).  Every capped value of a row -- the row max, the exp pass, the target's and
    the probability-target terms -- comes from this one expression: a row max taken from
    another formula (float64 ``cap * tanh(v / cap)``) differs from the exp pass's values by
    ulps of ``cap``, which for a large cap (1e31) are far beyond exp's range."""
    return c * vtanh(v * ic)


@rowfn
def _cap_into(xi, cap, buf):
    """buf[j] = cap*tanh(x_j/cap) (:func:`_cap1`)."""
    c = xi.dtype.type(cap)
    ic = xi.dtype.type(1.0 / cap)
    for j in range(xi.shape[0]):
        buf[j] = _cap1(xi[j], c, ic)


@rowfn
def _exp_inplace(buf):
    """buf[j] = exp(buf[j]) for arguments <= 0 (already shifted by the row max)."""
    for j in range(buf.shape[0]):
        buf[j] = vexp_neg(buf[j])


@rowfn
def _weighted_shift(xi, m, w, out):
    """out[j] = w_j * (x_j - m) in float64 (w empty: weight 1).  Float64 before the
    subtraction: with float32 logits, x - m rounded to float32 would cost the label-
    smoothing and probability-target sums their last digits where terms cancel."""
    mf = float(m)
    if w.shape[0] > 0:
        for j in range(xi.shape[0]):
            out[j] = w[j] * (float(xi[j]) - mf)
    else:
        for j in range(xi.shape[0]):
            out[j] = float(xi[j]) - mf


@rowfn
def _scale(gi, a):
    """gi *= a."""
    ad = gi.dtype.type(a)
    for j in range(gi.shape[0]):
        gi[j] = gi[j] * ad


@rowfn
def _scale_sub(gi, a, b):
    """gi = gi*a - b."""
    ad = gi.dtype.type(a)
    bd = gi.dtype.type(b)
    for j in range(gi.shape[0]):
        gi[j] = gi[j] * ad - bd


@rowfn
def _scale_sub_w(gi, e, a, b, w):
    """gi = e*a - b*w (e may be gi itself)."""
    ad = gi.dtype.type(a)
    if _same(gi, e):
        for j in range(gi.shape[0]):
            gi[j] = gi[j] * ad - gi.dtype.type(b * w[j])
        return
    for j in range(gi.shape[0]):
        gi[j] = e[j] * ad - gi.dtype.type(b * w[j])


@rowfn
def _capped_grad(gi, e, xi, cap, a, b, w, has_w):
    """gi = (e*a - b*w) * (1 - tanh(x/cap)^2)."""
    ad = gi.dtype.type(a)
    ic = xi.dtype.type(1.0 / cap)
    one = gi.dtype.type(1.0)
    if _same(gi, xi):
        for j in range(gi.shape[0]):
            th = vtanh(gi[j] * ic)
            bw = gi.dtype.type(b * w[j]) if has_w else gi.dtype.type(b)
            gi[j] = (e[j] * ad - bw) * (one - th * th)
        return
    for j in range(gi.shape[0]):
        th = vtanh(xi[j] * ic)
        bw = gi.dtype.type(b * w[j]) if has_w else gi.dtype.type(b)
        gi[j] = (e[j] * ad - bw) * (one - th * th)


@rowfn
def _fill(row, value):
    v = row.dtype.type(value)
    for j in range(row.shape[0]):
        row[j] = v


def _ce_row_scalars_py(wy, eps, ec, W, r, zl, rz, ls, lse, m, zt, sw, s, et):
    """One row's loss, gradient scale ``a`` and target gradient element of the index
    cross-entropy (before the softcap's derivative), in a function compiled once and
    called by the serial and the parallel build alike: inlined into each, fastmath's
    ``contract`` let LLVM fuse these multiply-adds into FMAs differently in the two
    builds (1 ulp of the target's gradient with label smoothing, z-loss and softcap), and
    the thread count must not change a bit.  ``gt``, softmax minus target in one float64
    expression, is exactly 0 where the softmax is exactly 1 (one class, a saturated row)
    without label smoothing, as PyTorch's: the last product is :func:`rounded`, so
    ``contract`` cannot fuse it into an FMA that would leave its rounding error (1e-17
    of the gradient's scale with a class weight); with label smoothing the terms' own
    roundings can leave that much.  ``wy`` is the target's class weight (1 without)."""
    loss = wy * (1.0 - eps) * (ls - (zt - m))
    if eps > 0.0:
        loss += ec * (W * ls - sw)
    a = ((wy * (1.0 - eps) + ec * W) * r + 2.0 * zl * lse * rz) / s
    gt = et * a - ec * r * wy - rounded(wy * (1.0 - eps) * r)
    return loss, a, gt


_ce_row_scalars = rowfn(_ce_row_scalars_py)
# the few-class kernel's rows are ~10 elements: a call per row would be a tenth of a
# 32 x 10 call, so it inlines the same code (its serial and parallel builds were checked
# bit for bit, tests/test_softmax.py)
_ce_row_scalars_inline = inline(_ce_row_scalars_py)


@rowfn
def _dcap(v, cap):
    """d(cap*tanh(v/cap))/dv (compiled once for both builds, as :func:`_ce_row_scalars`)."""
    if cap > 0.0:
        t = math.tanh(v / cap)
        return 1.0 - t * t
    return 1.0


# The softcap's row helpers (tanh, its derivative) and label smoothing's are about half of
# the cross-entropy kernels' compile time, and most calls use neither: those kernels are
# built twice from one body, ``<name>`` with the no-op twins below bound to the names
# CAP_INTO, CAPPED_GRAD, DCAP, EXP_SELF, SHIFT_W, SCALE_SUB and SCALE_SUB_W (which its
# body calls only under ``cap > 0`` / ``eps > 0``), and ``<name>_full`` with the real
# helpers.  The wrappers pick the build by the options.
@rowfn
def _no_cap_into(xi, cap, buf):
    pass


@rowfn
def _no_capped_grad(gi, e, xi, cap, a, b, w, has_w):
    pass


@inline
def _no_dcap(v, cap):
    return 1.0


@rowfn
def _no_row(buf, m):
    pass


@rowfn
def _no_shift_w(xi, m, w, out):
    pass


@rowfn
def _no_scale_sub(gi, a, b):
    pass


@rowfn
def _no_scale_sub_w(gi, e, a, b, w):
    pass


@rowfn
def _exp_self(buf, m):
    """buf[j] = exp(buf[j] - m)."""
    _exp_shifted_same(buf, m, buf[:0])


_PLAIN = dict(CAP_INTO=_no_cap_into, CAPPED_GRAD=_no_capped_grad, DCAP=_no_dcap,
              EXP_SELF=_no_row, SHIFT_W=_no_shift_w, SCALE_SUB=_no_scale_sub,
              SCALE_SUB_W=_no_scale_sub_w)
_FULL = dict(CAP_INTO=_cap_into, CAPPED_GRAD=_capped_grad, DCAP=_dcap, EXP_SELF=_exp_self,
             SHIFT_W=_weighted_shift, SCALE_SUB=_scale_sub, SCALE_SUB_W=_scale_sub_w)
CAP_INTO = CAPPED_GRAD = DCAP = EXP_SELF = SHIFT_W = SCALE_SUB = SCALE_SUB_W = None
CE_TERMS = None  # (bound per build)


def _builds(body, name, **pairs):
    """(plain, full) kernels of ``body``, see above; ``pairs``: more names bound to a
    (plain, full) pair of helpers."""
    out = []
    for k, (suffix, bind) in enumerate((("", _PLAIN), ("_full", _FULL))):
        bind = dict(bind, **{n: pair[k] for n, pair in pairs.items()})
        out.append(kernel(instantiate(body, name + suffix, **bind)))
    return out


# ----------------------------------------------------------------- cross-entropy (index)
@inline
def _targets(y, w, ignore_index, C):
    """Validate targets and sum the "mean" denominators, in a fixed order.
    Returns (status, bad, total_weight, n_valid)."""
    has_w = w.shape[0] > 0
    tw = 0.0
    nv = 0
    for i in range(y.shape[0]):
        t = y[i]
        if t == ignore_index:
            continue
        if t < 0 or t >= C:
            return 1, t, 0.0, 0
        tw += w[t] if has_w else 1.0
        nv += 1
    return 0, 0, tw, nv


@inline
def _ce_factors(w, tw, nv, eps, mean, C):
    """(W, r, rz): the class-weight sum that label smoothing spreads (0 without
    smoothing: a huge weight sum must not make 0 * inf), and the "mean" scales of the
    cross-entropy part (total weight) and of the z-loss part (number of valid targets)."""
    W = (row_sum(w) if w.shape[0] > 0 else float(C)) if eps > 0.0 else 0.0
    return W, (1.0 / tw if mean else 1.0), (1.0 / nv if mean else 1.0)


# Few classes (C <= SMALL_C, e.g. multiclass objectives of boosting): per-row helper
# calls and the scalar tails of short vector loops would dominate, so a block of rows is
# handled as one flat array: row maxima and shifts in one pass, one vectorised exp over
# the whole block, then short scalar loops per row.
SMALL_C = 32
SMALL_ROWS = 256


@rowfn
def _shift_rows(x, i0, i1, mx, e):
    """mx[k] = max of row i0+k; e[k*C + j] = x[i0+k, j] - mx[k]."""
    C = x.shape[1]
    for i in range(i0, i1):
        xi = x[i]
        if C == 0:  # no classes: nothing to read
            mx[i - i0] = np.nan
            continue
        m = xi[0]
        for j in range(1, C):
            v = xi[j]
            m = v if v > m else m
        if m != m:
            m = xi.dtype.type(np.nan)
        mx[i - i0] = m
        eo = e[(i - i0) * C : (i - i0 + 1) * C]  # a slice indexed from 0 vectorises
        for j in range(C):
            eo[j] = xi[j] - m


@rowfn
def _vlog_inplace(a):
    for j in range(a.shape[0]):
        a[j] = vlog(a[j])


@kernel
def ce_index_small(x, y, w, ignore_index, eps, zl, mean, g, rl, rzl):
    """``ce_index`` without softcap for C <= SMALL_C, a block of rows at a time."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    status, bad, tw, nv = _targets(y, w, ignore_index, C)
    if status != 0:
        return status, bad, tw, nv, 0.0, 0.0
    W, r, rz = _ce_factors(w, tw, nv, eps, mean, C)
    ec = eps / C
    for b in prange((R + SMALL_ROWS - 1) // SMALL_ROWS):
        i0 = b * SMALL_ROWS
        i1 = min(R, i0 + SMALL_ROWS)
        e = np.empty((i1 - i0) * C, x.dtype)
        mx = np.empty(i1 - i0, x.dtype)
        ss = np.empty(i1 - i0, np.float64)
        _shift_rows(x, i0, i1, mx, e)
        _exp_inplace(e)
        for k in range(i1 - i0):
            s = 0.0
            ek = e[k * C : (k + 1) * C]
            for j in range(C):
                s += ek[j]
            ss[k] = s
        lss = ss.copy()
        _vlog_inplace(lss)
        for i in range(i0, i1):
            k = i - i0
            eo = e[k * C : (k + 1) * C]
            m = float(mx[k])
            s = ss[k]
            ls = lss[k]
            lse = m + ls
            t = y[i]
            if t == ignore_index:
                rl[i] = 0.0
                if zl > 0.0:
                    rzl[i] = 0.0
                if want_g:
                    _fill(g[i], np.nan if lse != lse else 0.0)
                continue
            xi = x[i]
            xt = float(xi[t])
            wy = w[t] if has_w else 1.0
            sw = 0.0
            if eps > 0.0:
                for j in range(C):
                    sw += (w[j] if has_w else 1.0) * (float(xi[j]) - m)
            loss, a, gt = _ce_row_scalars_inline(wy, eps, ec, W, r, zl, rz, ls, lse, m, xt,
                                                 sw, s, float(eo[t]))
            rl[i] = loss
            if zl > 0.0:
                rzl[i] = zl * lse * lse
            if want_g:
                gi = g[i]
                bc = ec * r
                for j in range(C):
                    gi[j] = eo[j] * a - bc * (w[j] if has_w else 1.0)
                gi[t] = gt  # in float64: no float32 cancellation of softmax - 1
    return 0, 0, tw, nv, row_sum(rl), (row_sum(rzl) if zl > 0.0 else 0.0)


@rowfn
def ce_index_small_call(x, y, ignore_index, mean, grad):
    """:data:`ce_index_small` (serial) for the most common small call, with its arguments
    and buffers made here: no class weight, label smoothing or z-loss; ``x`` and ``y`` as
    the caller has them (writeable or not: :func:`as_readonly` keeps one compiled kernel).
    Returns ``(status, bad_target, loss, g)``: the mean (IEEE division: 0/0 is NaN, as the
    general path) or the sum in float64, and the gradient (``(0, 0)`` without ``grad``)."""
    R, C = x.shape
    g = np.empty((R, C) if grad else (0, 0), dtype=x.dtype)
    rl = np.empty(R)
    status, bad, tw, _, total, _ = _ce_index_small_serial(
        as_readonly(x), as_readonly(y), as_readonly(np.empty(0)), ignore_index, 0.0, 0.0,
        mean, g, rl, np.empty(0))
    return status, bad, (total / tw if mean else total), g


@rowfn
def nll_small_call(x, y, ignore_index, mean, grad):
    """:data:`nll` (serial) for the most common small call (no class weight), as
    :func:`ce_index_small_call`."""
    R, C = x.shape
    g = np.empty((R, C) if grad else (0, 0), dtype=x.dtype)
    rl = np.empty(R)
    status, bad, tw, _, total = _nll_serial(
        as_readonly(x), as_readonly(y), as_readonly(np.empty(0)), ignore_index, mean, g, rl)
    return status, bad, (total / tw if mean else total), g


def _ce_index(x, y, w, ignore_index, eps, zl, cap, mean, g, rl, rzl):
    """Class-index cross-entropy with weights, ignore_index, label smoothing, z-loss and
    softcap.  Returns (status, bad_target, total_weight, n_valid, sum of rl, sum of rzl)."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    status, bad, tw, nv = _targets(y, w, ignore_index, C)
    if status != 0:
        return status, bad, tw, nv, 0.0, 0.0
    W, r, rz = _ce_factors(w, tw, nv, eps, mean, C)
    ec = eps / C
    # a scratch row only where the gradient row cannot serve (a 128 KiB+ allocation per
    # block would be an mmap/munmap pair for wide rows)
    ns = C if (eps > 0.0 or cap > 0.0 or not want_g) else 0
    for b in prange(_nblocks(R)):
        scratch = np.empty(ns, x.dtype)
        s64 = np.empty(C if eps > 0.0 else 0, np.float64)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            t = y[i]
            ignored = t == ignore_index
            # z: the logits, or with a softcap their capped values (in the scratch row)
            z = xi
            if cap > 0.0:
                CAP_INTO(xi, cap, scratch)
                z = scratch
            m = row_max(z)
            # values the in-place gradient write would destroy (when out is input)
            xt = 0.0 if ignored else float(xi[t])
            zt = 0.0 if ignored else float(z[t])
            sw = 0.0
            if eps > 0.0 and not ignored:
                SHIFT_W(z, m, w, s64)
                sw = row_sum(s64)
            # exp pass: into the gradient row (scaled in place below) or a scratch row
            buf = g[i] if (want_g and cap == 0.0) else scratch
            if cap > 0.0:
                EXP_SELF(scratch, m)
            else:
                _exp_shifted(xi, m, buf, _ahead(x, i))
            s = row_sum(buf)
            et = 0.0 if ignored else float(buf[t])
            ls = math.log(s)
            lse = float(m) + ls
            if ignored:
                rl[i] = 0.0
                if zl > 0.0:
                    rzl[i] = 0.0
                if want_g:
                    # PyTorch: 0 * softmax, i.e. NaN where log_softmax is NaN
                    _fill(g[i], np.nan if lse != lse else 0.0)
                continue
            wy = w[t] if has_w else 1.0
            loss, a, gt = _ce_row_scalars(wy, eps, ec, W, r, zl, rz, ls, lse, float(m), zt,
                                          sw, s, et)
            rl[i] = loss
            if zl > 0.0:
                rzl[i] = zl * lse * lse
            if want_g:
                gi = g[i]
                if cap > 0.0:
                    CAPPED_GRAD(gi, scratch, xi, cap, a, ec * r, w, has_w)
                elif eps > 0.0 and has_w:
                    SCALE_SUB_W(gi, gi, a, ec * r, w)
                elif eps > 0.0:
                    SCALE_SUB(gi, a, ec * r)
                else:
                    _scale(gi, a)
                gi[t] = gt * DCAP(xt, cap)
    # totals in a fixed order (saves the caller a NumPy reduction on small inputs)
    return 0, 0, tw, nv, row_sum(rl), (row_sum(rzl) if zl > 0.0 else 0.0)


ce_index, ce_index_full = _builds(_ce_index, "ce_index", CE_TERMS=(None, None))


# ------------------------------------------------- cross-entropy, class axis not last
# PyTorch's (N, C, d1, ...) layout seen as (A, C, B): the B positions of a slab are
# contiguous, so tiles of positions are processed with the class loop outside and the
# position loop inside -- every inner loop runs over contiguous memory and vectorises,
# and the per-position sums are elementwise (no reduction to reassociate).  Nothing the
# size of the input is allocated: per-tile buffers only.
AXIS_TILE = 256


@rowfn
def _axis_tile(x3, y2, w, ignore_index, eps, zl, r, rz, W, a, b0, b1, g3, rl2, rzl2, m, s, sw, ka):
    C = x3.shape[1]
    has_w = w.shape[0] > 0
    want_g = g3.shape[0] > 0
    n = b1 - b0
    ec = eps / C
    for k in range(n):
        m[k] = -np.inf
    for c in range(C):
        xc = x3[a, c, b0:b1]
        for k in range(n):
            v = xc[k]
            m[k] = v if v > m[k] else m[k]
    if eps > 0.0:
        for k in range(n):
            sw[k] = 0.0
        for c in range(C):
            wc = w[c] if has_w else 1.0
            xc = x3[a, c, b0:b1]
            for k in range(n):
                sw[k] += wc * (float(xc[k]) - float(m[k]))
    xt = np.empty(n, np.float64)
    for k in range(n):
        t = y2[a, b0 + k]
        xt[k] = 0.0 if t == ignore_index else float(x3[a, t, b0 + k])
        s[k] = 0.0
    for c in range(C):
        xc = x3[a, c, b0:b1]
        if want_g:
            gc = g3[a, c, b0:b1]
            for k in range(n):
                e = vexp_neg(xc[k] - m[k])
                gc[k] = e
                s[k] += e
        else:
            for k in range(n):
                s[k] += vexp_neg(xc[k] - m[k])
    for k in range(n):
        t = y2[a, b0 + k]
        ls = math.log(s[k])
        lse = float(m[k]) + ls
        if t == ignore_index:
            rl2[a, b0 + k] = 0.0
            if zl > 0.0:
                rzl2[a, b0 + k] = 0.0
            # PyTorch: 0 * softmax, i.e. NaN across the column where log_softmax is NaN
            ka[k] = 0.0 if lse == lse else np.nan
            sw[k] = 0.0
            continue
        wy = w[t] if has_w else 1.0
        loss = wy * (1.0 - eps) * (ls - (xt[k] - float(m[k])))
        if eps > 0.0:
            loss += ec * (W * ls - sw[k])
        rl2[a, b0 + k] = loss
        if zl > 0.0:
            rzl2[a, b0 + k] = zl * lse * lse
        ka[k] = ((wy * (1.0 - eps) + ec * W) * r + 2.0 * zl * lse * rz) / s[k]
        sw[k] = ec * r  # reused: the label-smoothing subtrahend of this position
    if want_g:
        # the target's exp, kept (xt is free now): its gradient, softmax minus target, is
        # one float64 expression as in the row kernels (_ce_row_scalars), not the float32
        # scaled value minus (1 - eps) r, which cancels as p -> 1 (0, not 1e-8, at p == 1)
        for k in range(n):
            t = y2[a, b0 + k]
            xt[k] = 0.0 if t == ignore_index else float(g3[a, t, b0 + k])
        for c in range(C):
            gc = g3[a, c, b0:b1]
            wc = w[c] if has_w else 1.0
            for k in range(n):
                gc[k] = gc[k] * ka[k] - sw[k] * wc
        for k in range(n):
            t = y2[a, b0 + k]
            if t != ignore_index:
                wy = w[t] if has_w else 1.0
                g3[a, t, b0 + k] = xt[k] * ka[k] - sw[k] * wy - rounded(wy * (1.0 - eps) * r)


@kernel
def ce_index_axis(x3, y2, w, ignore_index, eps, zl, mean, g3, rl2, rzl2):
    """Class-index cross-entropy (no softcap) along axis 1 of an (A, C, B) array.
    Returns (status, bad_target, total_weight, n_valid, sum of rl2, sum of rzl2)."""
    A, C, B = x3.shape
    status, bad, tw, nv = _targets(y2.ravel(), w, ignore_index, C)
    if status != 0:
        return status, bad, tw, nv, 0.0, 0.0
    W, r, rz = _ce_factors(w, tw, nv, eps, mean, C)
    nt = (B + AXIS_TILE - 1) // AXIS_TILE
    for job in prange(A * nt):
        a = job // nt
        b0 = (job % nt) * AXIS_TILE
        b1 = min(B, b0 + AXIS_TILE)
        m = np.empty(AXIS_TILE, x3.dtype)
        s = np.empty(AXIS_TILE, np.float64)
        sw = np.empty(AXIS_TILE, np.float64)
        ka = np.empty(AXIS_TILE, np.float64)
        _axis_tile(
            x3, y2, w, ignore_index, eps, zl, r, rz, W, a, b0, b1, g3, rl2, rzl2, m, s, sw, ka
        )
    return 0, 0, tw, nv, row_sum(rl2.ravel()), (row_sum(rzl2.ravel()) if zl > 0.0 else 0.0)


# ----------------------------------------------------------- cross-entropy (probabilities)
@rowfn
def _smoothed_target(ti, eps, ec, w, out):
    """out[j] = (t_j (1 - eps) + eps/C) * w_j."""
    has_w = w.shape[0] > 0
    for j in range(ti.shape[0]):
        out[j] = (ti[j] * (1.0 - eps) + ec) * (w[j] if has_w else 1.0)


@rowfn
def _ce_terms(xi, cap, m, ls, tw):
    """-sum_j tw_j (log_softmax_j) term by term, log_softmax_j = (x_j - m) - ls: PyTorch's
    order, for rows whose weighted target sum is not finite."""
    mf = float(m)
    acc = 0.0
    for j in range(xi.shape[0]):
        acc -= ((float(xi[j]) - mf) - ls) * tw[j]
    return acc


@rowfn
def _ce_terms_capped(xi, cap, m, ls, tw):
    """:func:`_ce_terms` of the soft-capped logits z (each from :func:`_cap1`)."""
    mf = float(m)
    acc = 0.0
    c = xi.dtype.type(cap)
    ic = xi.dtype.type(1.0 / cap)
    for j in range(xi.shape[0]):
        acc -= ((float(_cap1(xi[j], c, ic)) - mf) - ls) * tw[j]
    return acc


def _ce_prob(x, tg, w, eps, zl, cap, r, g, rl, rzl):
    """Cross-entropy with probability targets (PyTorch: smoothing t*(1-eps)+eps/C, then
    class weights; "mean" divides by the number of rows, passed in as ``r``)."""
    R, C = x.shape
    want_g = g.shape[0] > 0
    ec = eps / C
    for b in prange(_nblocks(R)):
        tw = np.empty(C, np.float64)
        s1 = np.empty(C, np.float64)
        s2 = np.empty(C, x.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            z = xi
            if cap > 0.0:
                CAP_INTO(xi, cap, s2)
                z = s2
            m = row_max(z)
            # T = sum w t', TX = sum w t' (x' - m), before the gradient overwrites x
            _smoothed_target(tg[i], eps, ec, w, tw)
            T = row_sum(tw)
            # an infinite or NaN target or class weight: the loss is taken term by term
            # below, as PyTorch does (T * ls - TX would make inf * 0 at the row max, and
            # inf - inf), and the exp goes to the scratch row so that x is still there
            # (out=x) when it is read; the gradient's inf/NaN pattern is PyTorch's as is
            direct = not math.isfinite(T)
            _weighted_shift(z, m, tw, s1)
            TX = row_sum(s1)
            buf = g[i] if (want_g and cap == 0.0 and not direct) else s2
            if cap > 0.0:
                EXP_SELF(s2, m)
            else:
                _exp_shifted(xi, m, buf, _ahead(x, i))
            s = row_sum(buf)
            ls = math.log(s)
            lse = float(m) + ls
            rl[i] = CE_TERMS(xi, cap, m, ls, tw) if direct else T * ls - TX
            if zl > 0.0:
                rzl[i] = zl * lse * lse
            if want_g:
                gi = g[i]
                a = (T * r + 2.0 * zl * lse * r) / s
                if cap > 0.0:
                    CAPPED_GRAD(gi, s2, xi, cap, a, r, tw, True)
                else:
                    _scale_sub_w(gi, buf, a, r, tw)
    return 0


# (label smoothing in ce_prob is an affine map of the target: the build is by softcap)
ce_prob, ce_prob_full = _builds(_ce_prob, "ce_prob", CE_TERMS=(_ce_terms, _ce_terms_capped))


# ------------------------------------------------------------------------------- nll
@kernel
def nll(x, y, w, ignore_index, mean, g, rl):
    """Negative log-likelihood of log-probabilities.  Returns (status, bad, tw, nv, sum of
    rl)."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    status, bad, tw, nv = _targets(y, w, ignore_index, C)
    if status != 0:
        return status, bad, tw, nv, 0.0
    r = 1.0 / tw if mean else 1.0
    for b in prange(_nblocks(R)):
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            t = y[i]
            if t == ignore_index:
                rl[i] = 0.0
                if want_g:
                    _fill(g[i], 0.0)
                continue
            wy = w[t] if has_w else 1.0
            rl[i] = -wy * float(x[i, t])
            if want_g:
                _fill(g[i], 0.0)
                g[i, t] = -wy * r
    return 0, 0, tw, nv, row_sum(rl)


@kernel
def nll_axis(x3, y2, w, ignore_index, mean, g3, rl2):
    """nll along axis 1 of an (A, C, B) array (no copy of the input).
    Returns (status, bad, tw, nv)."""
    A, C, B = x3.shape
    has_w = w.shape[0] > 0
    want_g = g3.shape[0] > 0
    status, bad, tw, nv = _targets(y2.ravel(), w, ignore_index, C)
    if status != 0:
        return status, bad, tw, nv
    r = 1.0 / tw if mean else 1.0
    for a in prange(A):
        for b in range(B):  # read every loss before the gradient (out may be the input)
            t = y2[a, b]
            rl2[a, b] = 0.0 if t == ignore_index else -(w[t] if has_w else 1.0) * float(x3[a, t, b])
        if want_g:
            _fill(g3[a].ravel(), 0.0)
            for b in range(B):
                t = y2[a, b]
                if t != ignore_index:
                    g3[a, t, b] = -(w[t] if has_w else 1.0) * r
    return 0, 0, tw, nv


# ------------------------------------------------------------------------ focal loss
@kernel
def focal(x, y, w, ignore_index, gamma, mean, g, rl):
    """Softmax focal loss -w_y (1-p_y)^gamma log p_y.  Returns (status, bad, tw, nv)."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    status, bad, tw, nv = _targets(y, w, ignore_index, C)
    if status != 0:
        return status, bad, tw, nv
    r = 1.0 / tw if mean else 1.0
    for b in prange(_nblocks(R)):
        scratch = np.empty(0 if want_g else C, x.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            t = y[i]
            if t == ignore_index:
                rl[i] = 0.0
                if want_g:
                    _fill(g[i], 0.0)
                continue
            m = row_max(xi)
            xt = float(xi[t])
            buf = g[i] if want_g else scratch
            _exp_shifted(xi, m, buf, _ahead(x, i))
            s = row_sum(buf)
            lp = (xt - float(m)) - math.log(s)
            p = math.exp(lp)
            omp = -math.expm1(lp)
            wy = w[t] if has_w else 1.0
            pw = omp**gamma
            rl[i] = -wy * pw * lp
            if want_g:
                # dL/dx_j = w K (delta_jy - p_j), K = gamma (1-p)^(gamma-1) p log p - (1-p)^gamma
                # p log p -> 0 as p -> 0, and (1-p)^(gamma-1) p log p -> 0 as p -> 1
                t1 = gamma * omp ** (gamma - 1.0) * p * lp if (omp > 0.0 and p > 0.0) else 0.0
                K = t1 - pw
                gi = g[i]
                c = -wy * r * K / s
                et = float(gi[t])  # the target's exp: w K (1 - p_t) in float64 (no
                _scale(gi, c)  # float32 cancellation as p_t -> 1; 0 where p_t == 1)
                gi[t] = et * c + wy * r * K
    return 0, 0, tw, nv


# ------------------------------------------------------------- distillation divergences
@rowfn
def _exp_scaled(xi, it, M, buf):
    """buf[j] = exp((x_j - M) / T), M the row max (shift first: exact 0 at the max)."""
    ic = xi.dtype.type(it)
    if _same(xi, buf):
        for j in range(buf.shape[0]):
            buf[j] = vexp_neg((buf[j] - M) * ic)
        return
    for j in range(xi.shape[0]):
        buf[j] = vexp_neg((xi[j] - M) * ic)


@rowfn
def _scaled_softmax_sums(xi, it, buf):
    """(M, S): the row max and sum_j exp((x_j - M)/T), with the exponentials in buf."""
    M = row_max(xi)
    _exp_scaled(xi, it, M, buf)
    return M, row_sum(buf)


@rowfn
def _kl_terms(si, ti, it, Ms, Mt, eb, d):
    """d_j = e_t,j ((t_j - Mt)/T - (s_j - Ms)/T), 0 where the teacher weight is 0."""
    for j in range(si.shape[0]):
        dj = (ti[j] - Mt) * it - (si[j] - Ms) * it
        d[j] = select(eb[j] == 0, 0.0, eb[j] * dj)  # 0 log 0 = 0; NaN propagates


@kernel
def kl_logits(xs, xt, temp, r, g, rl):
    """T^2 KL(softmax(t/T) || softmax(s/T)) per row (0 log 0 = 0); grad w.r.t. s."""
    R, C = xs.shape
    want_g = g.shape[0] > 0
    it = 1.0 / temp
    for b in prange(_nblocks(R)):
        eb = np.empty(C, xs.dtype)
        d = np.empty(C, np.float64)
        ea_s = np.empty(C, xs.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            si = xs[i]
            ti = xt[i]
            Mt, Sb = _scaled_softmax_sums(ti, it, eb)
            ea = g[i] if want_g else ea_s
            Ms = row_max(si)
            _kl_terms(si, ti, it, Ms, Mt, eb, d)  # reads s before ea (maybe s) is written
            D = row_sum(d)
            _exp_scaled(si, it, Ms, ea)
            Sa = row_sum(ea)
            rl[i] = temp * temp * (D / Sb - math.log(Sb) + math.log(Sa))
            if want_g:
                _scale_sub_w(g[i], g[i], temp * r / Sa, temp * r / Sb, eb)
    return 0


@rowfn
def _js_row(ai, bi, it, Ma, Mb, ea, eb, Sa, Sb, u, v):
    """u_j = p_j (log p_j - log m_j), v_j = q_j (log q_j - log m_j), 0 log 0 = 0."""
    la = math.log(Sa)
    lb = math.log(Sb)
    ia = 1.0 / Sa
    ib = 1.0 / Sb
    for j in range(ai.shape[0]):
        p = ea[j] * ia
        q = eb[j] * ib
        lm = vlog(0.5 * (p + q))
        lp = (ai[j] - Ma) * it - la
        lq = (bi[j] - Mb) * it - lb
        u[j] = select(p == 0, 0.0, p * (lp - lm))  # 0 log 0 = 0; NaN propagates
        v[j] = select(q == 0, 0.0, q * (lq - lm))


@rowfn
def _js_grad(gi, u, ea, ia, kp, f):
    for j in range(gi.shape[0]):
        gi[j] = f * (u[j] - ea[j] * ia * kp)


@kernel
def js_logits(xa, xb, temp, r, g, rl):
    """Jensen-Shannon divergence of softmax(a/T) and softmax(b/T) per row; grad w.r.t. a."""
    R, C = xa.shape
    want_g = g.shape[0] > 0
    it = 1.0 / temp
    for b in prange(_nblocks(R)):
        ea = np.empty(C, np.float64)
        eb = np.empty(C, np.float64)
        u = np.empty(C, np.float64)
        v = np.empty(C, np.float64)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            ai = xa[i]
            bi = xb[i]
            Ma, Sa = _scaled_softmax_sums(ai, it, ea)
            Mb, Sb = _scaled_softmax_sums(bi, it, eb)
            _js_row(ai, bi, it, Ma, Mb, ea, eb, Sa, Sb, u, v)
            kp = row_sum(u)
            kq = row_sum(v)
            rl[i] = 0.5 * (kp + kq)
            if want_g:
                _js_grad(g[i], u, ea, 1.0 / Sa, kp, 0.5 * it * r)
    return 0


@rowfn
def _entropy_terms(xi, m, e, d):
    for j in range(xi.shape[0]):
        d[j] = select(e[j] == 0, 0.0, e[j] * (xi[j] - m))  # NaN propagates


@rowfn
def _entropy_grad(gi, xi, m, e, iS, mu, r):
    if _same(gi, xi):
        for j in range(gi.shape[0]):
            gj = -(e[j] * iS) * ((gi[j] - m) - mu) * r
            gi[j] = select(e[j] == 0, 0.0, gj)
        return
    for j in range(gi.shape[0]):
        gj = -(e[j] * iS) * ((xi[j] - m) - mu) * r
        gi[j] = select(e[j] == 0, 0.0, gj)


@kernel
def entropy(x, r, g, rl):
    """Entropy of softmax(x) per row (0 log 0 = 0); grad -p_j (x_j - sum_k p_k x_k)."""
    R, C = x.shape
    want_g = g.shape[0] > 0
    for b in prange(_nblocks(R)):
        e = np.empty(C, x.dtype)
        d = np.empty(C, np.float64)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            m = row_max(xi)
            _exp_shifted(xi, m, e, _ahead(x, i))
            S = row_sum(e)
            _entropy_terms(xi, m, e, d)
            mu = row_sum(d) / S  # sum p (x - m)
            rl[i] = math.log(S) - mu
            if want_g:
                if mu != mu:  # NaN softmax (NaN, +inf or all -inf in the row): NaN gradient
                    _fill(g[i], np.nan)
                else:
                    _entropy_grad(g[i], xi, m, e, 1.0 / S, mu, r)
    return 0


# ------------------------------------------------------------------------- utilities
@rowfn
def _has_nan(xi):
    for j in range(xi.shape[0]):
        if xi[j] != xi[j]:
            return True
    return False


@rowfn
def _sub_const(xi, m, ls, oi):
    for j in range(xi.shape[0]):
        oi[j] = (xi[j] - m) - ls


@kernel
def softmax_rows(x, mode, out):
    """mode 0: softmax into out (R, C); 1: log_softmax into out; 2: logsumexp into out (R, 1)."""
    R, C = x.shape
    for b in prange(_nblocks(R)):
        e = np.empty(C, x.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            m = row_max(xi)
            buf = out[i] if mode == 0 else e
            _exp_shifted(xi, m, buf, _ahead(x, i))
            s = row_sum(buf)
            if mode == 0:
                _scale(out[i], 1.0 / s)
            elif mode == 1:
                _sub_const(xi, m, out.dtype.type(math.log(s)), out[i])
            else:
                lse = float(m) + math.log(s)
                if m == -np.inf:  # all -inf row: -inf, not nan
                    lse = -np.inf
                elif m == np.inf:  # +inf in the row: +inf, unless a NaN is there too
                    lse = np.nan if _has_nan(xi) else np.inf
                out[i, 0] = lse
    return 0


# the serial builds the one-call wrappers above call (Numba resolves globals, not attributes)
_ce_index_small_serial = ce_index_small.serial
_nll_serial = nll.serial
