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

from .._config import inline, kernel
from .._vmath import row_max, row_sum, vexp, vlog, vtanh

#: Rows per parallel block (scratch buffers are allocated once per block).
ROWS_PER_BLOCK = 16


@inline
def _nblocks(R):
    return (R + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK


@inline
def _exp_shifted(xi, m, cap, buf, C):
    """buf[j] = exp(x'_j - m) with x' = cap*tanh(x/cap) when cap > 0 (m already capped)."""
    if cap > 0.0:
        c = xi.dtype.type(cap)
        ic = xi.dtype.type(1.0 / cap)
        for j in range(C):
            buf[j] = vexp(c * vtanh(xi[j] * ic) - m)
    else:
        for j in range(C):
            buf[j] = vexp(xi[j] - m)


@inline
def _capped(v, cap):
    return cap * math.tanh(v / cap) if cap > 0.0 else v


@inline
def _dcap(v, cap):
    """d(cap*tanh(v/cap))/dv."""
    if cap > 0.0:
        t = math.tanh(v / cap)
        return 1.0 - t * t
    return 1.0


@inline
def _fill(row, value, C):
    for j in range(C):
        row[j] = value


# ----------------------------------------------------------------- cross-entropy (index)
@kernel
def ce_index(x, y, w, ignore_index, eps, zl, cap, mean, g, rl, rzl):
    """Class-index cross-entropy with weights, ignore_index, label smoothing, z-loss and
    softcap.  Returns (status, bad_target, total_weight, n_valid)."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    # Pre-pass over the targets: validate, and the "mean" denominators (fixed order).
    tw = 0.0
    nv = 0
    for i in range(R):
        t = y[i]
        if t == ignore_index:
            continue
        if t < 0 or t >= C:
            return 1, t, 0.0, 0
        tw += w[t] if has_w else 1.0
        nv += 1
    W = 0.0
    if has_w:
        for c in range(C):
            W += w[c]
    else:
        W = float(C)
    r = 1.0 / tw if mean else 1.0
    rz = 1.0 / nv if mean else 1.0
    ec = eps / C
    for b in prange(_nblocks(R)):
        scratch = np.empty(C, x.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            t = y[i]
            ignored = t == ignore_index
            mraw = row_max(xi, 0, C)
            m = xi.dtype.type(_capped(mraw, cap))
            # values the in-place gradient write would destroy (out is input)
            xt = 0.0 if ignored else float(xi[t])
            sw = 0.0
            if eps > 0.0 and not ignored:
                if cap > 0.0:
                    for j in range(C):
                        scratch[j] = xi.dtype.type(cap) * vtanh(xi[j] * xi.dtype.type(1.0 / cap)) - m
                else:
                    for j in range(C):
                        scratch[j] = xi[j] - m
                if has_w:
                    for j in range(C):
                        scratch[j] = scratch[j] * w[j]
                sw = row_sum(scratch)
            buf = g[i] if (want_g and cap == 0.0) else scratch
            _exp_shifted(xi, m, cap, buf, C)
            s = row_sum(buf)
            ls = math.log(s)
            lse = float(m) + ls
            if ignored:
                rl[i] = 0.0
                if zl > 0.0:
                    rzl[i] = 0.0
                if want_g:
                    # PyTorch: 0 * softmax, i.e. NaN where log_softmax is NaN
                    _fill(g[i], g.dtype.type(np.nan if lse != lse else 0.0), C)
                continue
            wy = w[t] if has_w else 1.0
            xct = _capped(xt, cap)
            loss = wy * (1.0 - eps) * (ls - (xct - float(m)))
            if eps > 0.0:
                loss += ec * (W * ls - sw)
            rl[i] = loss
            if zl > 0.0:
                rzl[i] = zl * lse * lse
            if want_g:
                gi = g[i]
                a = ((wy * (1.0 - eps) + ec * W) * r + 2.0 * zl * lse * rz) / s
                ad = gi.dtype.type(a)
                if cap > 0.0:
                    ic = xi.dtype.type(1.0 / cap)
                    bc = gi.dtype.type(ec * r)
                    one = gi.dtype.type(1.0)
                    if has_w:
                        for j in range(C):
                            th = vtanh(xi[j] * ic)
                            gi[j] = (scratch[j] * ad - bc * w[j]) * (one - th * th)
                    else:
                        for j in range(C):
                            th = vtanh(xi[j] * ic)
                            gi[j] = (scratch[j] * ad - bc) * (one - th * th)
                elif eps > 0.0:
                    bc = gi.dtype.type(ec * r)
                    if has_w:
                        for j in range(C):
                            gi[j] = gi[j] * ad - bc * w[j]
                    else:
                        for j in range(C):
                            gi[j] = gi[j] * ad - bc
                else:
                    for j in range(C):
                        gi[j] = gi[j] * ad
                gi[t] = gi[t] - wy * (1.0 - eps) * r * _dcap(xt, cap)
    return 0, 0, tw, nv


# ----------------------------------------------------------- cross-entropy (probabilities)
@kernel
def ce_prob(x, tg, w, eps, zl, cap, r, g, rl, rzl):
    """Cross-entropy with probability targets (PyTorch: smoothing t*(1-eps)+eps/C, then
    class weights; "mean" divides by the number of rows, passed in as ``r``)."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    ec = eps / C
    for b in prange(_nblocks(R)):
        s1 = np.empty(C, np.float64)
        s2 = np.empty(C, x.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            ti = tg[i]
            m = xi.dtype.type(_capped(row_max(xi, 0, C), cap))
            # A: T = sum w t', TX = sum w t' (x' - m)  (before the gradient overwrites x)
            for j in range(C):
                s1[j] = (ti[j] * (1.0 - eps) + ec) * (w[j] if has_w else 1.0)
            T = row_sum(s1)
            if cap > 0.0:
                for j in range(C):
                    s2[j] = xi.dtype.type(cap) * vtanh(xi[j] * xi.dtype.type(1.0 / cap)) - m
                for j in range(C):
                    s1[j] = s1[j] * s2[j]
            else:
                for j in range(C):
                    s1[j] = s1[j] * (xi[j] - m)
            TX = row_sum(s1)
            buf = g[i] if (want_g and cap == 0.0) else s2
            _exp_shifted(xi, m, cap, buf, C)
            s = row_sum(buf)
            ls = math.log(s)
            lse = float(m) + ls
            rl[i] = T * ls - TX
            if zl > 0.0:
                rzl[i] = zl * lse * lse
            if want_g:
                gi = g[i]
                ad = gi.dtype.type((T * r + 2.0 * zl * lse * r) / s)
                if cap > 0.0:
                    ic = xi.dtype.type(1.0 / cap)
                    one = gi.dtype.type(1.0)
                    for j in range(C):
                        th = vtanh(xi[j] * ic)
                        bt = (ti[j] * (1.0 - eps) + ec) * (w[j] if has_w else 1.0) * r
                        gi[j] = (s2[j] * ad - gi.dtype.type(bt)) * (one - th * th)
                else:
                    for j in range(C):
                        bt = (ti[j] * (1.0 - eps) + ec) * (w[j] if has_w else 1.0) * r
                        gi[j] = gi[j] * ad - gi.dtype.type(bt)
    return 0


# ------------------------------------------------------------------------------- nll
@kernel
def nll(x, y, w, ignore_index, mean, g, rl):
    """Negative log-likelihood of log-probabilities.  Returns (status, bad, tw, nv)."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    tw = 0.0
    nv = 0
    for i in range(R):
        t = y[i]
        if t == ignore_index:
            continue
        if t < 0 or t >= C:
            return 1, t, 0.0, 0
        tw += w[t] if has_w else 1.0
        nv += 1
    r = 1.0 / tw if mean else 1.0
    for b in prange(_nblocks(R)):
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            t = y[i]
            if t == ignore_index:
                rl[i] = 0.0
                if want_g:
                    _fill(g[i], g.dtype.type(0.0), C)
                continue
            wy = w[t] if has_w else 1.0
            rl[i] = -wy * float(x[i, t])
            if want_g:
                _fill(g[i], g.dtype.type(0.0), C)
                g[i, t] = -wy * r
    return 0, 0, tw, nv


# ------------------------------------------------------------------------ focal loss
@kernel
def focal(x, y, w, ignore_index, gamma, mean, g, rl):
    """Softmax focal loss -w_y (1-p_y)^gamma log p_y.  Returns (status, bad, tw, nv)."""
    R, C = x.shape
    has_w = w.shape[0] > 0
    want_g = g.shape[0] > 0
    tw = 0.0
    nv = 0
    for i in range(R):
        t = y[i]
        if t == ignore_index:
            continue
        if t < 0 or t >= C:
            return 1, t, 0.0, 0
        tw += w[t] if has_w else 1.0
        nv += 1
    r = 1.0 / tw if mean else 1.0
    for b in prange(_nblocks(R)):
        scratch = np.empty(C, x.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            t = y[i]
            if t == ignore_index:
                rl[i] = 0.0
                if want_g:
                    _fill(g[i], g.dtype.type(0.0), C)
                continue
            m = row_max(xi, 0, C)
            xt = float(xi[t])
            buf = g[i] if want_g else scratch
            _exp_shifted(xi, m, 0.0, buf, C)
            s = row_sum(buf)
            lp = (xt - float(m)) - math.log(s)
            p = math.exp(lp)
            omp = -math.expm1(lp)
            wy = w[t] if has_w else 1.0
            pw = omp**gamma
            rl[i] = -wy * pw * lp
            if want_g:
                # dL/dx_j = w K (delta_jy - p_j), K = gamma (1-p)^(gamma-1) p log p - (1-p)^gamma
                t1 = gamma * omp ** (gamma - 1.0) * p * lp if omp > 0.0 else 0.0
                K = t1 - pw
                gi = g[i]
                ad = gi.dtype.type(-wy * r * K / s)
                for j in range(C):
                    gi[j] = gi[j] * ad
                gi[t] = gi[t] + wy * r * K
    return 0, 0, tw, nv


# ------------------------------------------------------------- distillation divergences
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
            ic = si.dtype.type(it)
            ma = si.dtype.type(float(row_max(si, 0, C)) * it)
            mb = si.dtype.type(float(row_max(ti, 0, C)) * it)
            for j in range(C):
                eb[j] = vexp(ti[j] * ic - mb)
            Sb = row_sum(eb)
            for j in range(C):
                dj = (ti[j] * ic - mb) - (si[j] * ic - ma)
                d[j] = eb[j] * dj if eb[j] > 0 else 0.0
            D = row_sum(d)
            ea = g[i] if want_g else ea_s
            for j in range(C):
                ea[j] = vexp(si[j] * ic - ma)
            Sa = row_sum(ea)
            rl[i] = temp * temp * (D / Sb - math.log(Sb) + math.log(Sa))
            if want_g:
                gi = g[i]
                fa = gi.dtype.type(temp * r / Sa)
                fb = gi.dtype.type(temp * r / Sb)
                for j in range(C):
                    gi[j] = gi[j] * fa - eb[j] * fb
    return 0


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
            ma = float(row_max(ai, 0, C)) * it
            mb = float(row_max(bi, 0, C)) * it
            for j in range(C):
                ea[j] = vexp(ai[j] * it - ma)
            Sa = row_sum(ea)
            for j in range(C):
                eb[j] = vexp(bi[j] * it - mb)
            Sb = row_sum(eb)
            la = math.log(Sa)
            lb = math.log(Sb)
            ia = 1.0 / Sa
            ib = 1.0 / Sb
            for j in range(C):
                p = ea[j] * ia
                q = eb[j] * ib
                lm = vlog(0.5 * (p + q))
                lp = (ai[j] * it - ma) - la
                lq = (bi[j] * it - mb) - lb
                u[j] = p * (lp - lm) if p > 0 else 0.0
                v[j] = q * (lq - lm) if q > 0 else 0.0
            kp = row_sum(u)
            kq = row_sum(v)
            rl[i] = 0.5 * (kp + kq)
            if want_g:
                gi = g[i]
                f = 0.5 * it * r
                for j in range(C):
                    gi[j] = f * (u[j] - ea[j] * ia * kp)
    return 0


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
            m = row_max(xi, 0, C)
            for j in range(C):
                e[j] = vexp(xi[j] - m)
            S = row_sum(e)
            for j in range(C):
                d[j] = e[j] * (xi[j] - m) if e[j] > 0 else 0.0
            mu = row_sum(d) / S  # sum p (x - m)
            rl[i] = math.log(S) - mu
            if want_g:
                gi = g[i]
                iS = 1.0 / S
                for j in range(C):
                    gj = -(e[j] * iS) * ((xi[j] - m) - mu) * r
                    gi[j] = gj if e[j] > 0 else 0.0
    return 0


# ------------------------------------------------------------------------- utilities
@kernel
def softmax_rows(x, mode, out):
    """mode 0: softmax into out (R, C); 1: log_softmax into out; 2: logsumexp into out (R,)."""
    R, C = x.shape
    for b in prange(_nblocks(R)):
        e = np.empty(C, x.dtype)
        for i in range(b * ROWS_PER_BLOCK, min(R, (b + 1) * ROWS_PER_BLOCK)):
            xi = x[i]
            m = row_max(xi, 0, C)
            for j in range(C):
                e[j] = vexp(xi[j] - m)
            s = row_sum(e)
            if mode == 0:
                oi = out[i]
                f = oi.dtype.type(1.0 / s)
                for j in range(C):
                    oi[j] = e[j] * f
            elif mode == 1:
                oi = out[i]
                ls = oi.dtype.type(math.log(s))
                for j in range(C):
                    oi[j] = (xi[j] - m) - ls
            else:
                lse = float(m) + math.log(s)
                out[i, 0] = lse if m > -np.inf else m  # all -inf row: -inf, not nan
    return 0
