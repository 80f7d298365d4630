"""Fused multi-class margin (hinge) loss and its gradient, one pass per row.

Per row ``i`` with target ``y`` and ``z_j = (margin - x_y) + x_j`` (in the input dtype,
as PyTorch computes it), the kernel writes

* ``losses[i] = sum_{j != y, z_j > 0} (z_j**p * w_y) / C`` (each term in the input
  dtype, as PyTorch, accumulated in float64), and
* ``g[i, j] = gscale * w_y`` (p == 1) or ``((2 * gscale) * z_j) * w_y`` (p == 2) where
  ``z_j > 0`` and ``j != y``, else 0; ``g[i, y] = -sum_{j != y} g[i, j]``.

``z_j > 0`` is false at the kink (``z_j == 0``) and for NaN, so both contribute nothing,
exactly as PyTorch's ``if (z > 0)``.  Inner loops use selects, not branches.

Two row strategies, chosen by ``C`` only (so never by the thread count):

* ``C < WIDE``: one loop per row computing the terms and both float64 sums.
* ``C >= WIDE``: a branch-free loop that vectorises (terms into a per-block scratch row,
  gradient into ``g``), then both rows summed by :func:`row_sum` (float64, vectorised, in
  a fixed order for a given length); the row is still in cache for the sums.

``x_y`` is read before the row's gradient is written and every ``x_j`` is read before
``g[i, j]`` is written, so ``g`` may be ``x`` itself.

Rows run in parallel in blocks of ``BLOCK``; each row's loss goes to its own float64
slot and the caller reduces them, so no result depends on the thread count.  A target
outside ``[0, C)`` skips its row and records the first such row of the block in
``status`` (``-1`` when the block is clean).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._config import BLOCK, as_readonly, inline, kernel, rowfn
from .._vmath import row_sum

__all__ = ["multi_margin", "multi_margin_small_call", "WIDE"]

#: Rows at least this long take the vectorised two-loop path.
WIDE = 32


@inline
def _wide_terms(xr, gr, hs, base, wy, gw, two_g, p2):
    """A wide row's terms into ``hs`` and gradient into ``gr`` (one vectorised loop).
    Inlined at each call site, so the ``out=input`` site (``xr`` is ``gr``) is a loop
    over one array."""
    zero = hs.dtype.type(0.0)
    for j in range(hs.shape[0]):
        z = base + xr[j]
        on = z > zero
        h = (z * z if p2 else z) * wy
        d = (two_g * z) * wy if p2 else gw
        hs[j] = h if on else zero
        gr[j] = d if on else zero


@kernel
def multi_margin(x, t, w, margin, p2, gscale, want_grad, losses, g, status):
    n, c = x.shape
    zero = x.dtype.type(0.0)
    two_g = gscale + gscale
    wide = c >= WIDE
    nblocks = (n + BLOCK - 1) // BLOCK
    for b in prange(nblocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        bad = -1
        hs = np.empty(c if wide else 0, dtype=x.dtype)
        for i in range(lo, hi):
            y = t[i]
            if y < 0 or y >= c:
                if bad < 0:
                    bad = i
                losses[i] = 0.0
                continue
            xr = x[i]
            wy = w[y]
            gw = gscale * wy
            base = margin - xr[y]  # read before the row's gradient is written
            if wide:
                if want_grad:
                    gr = g[i]
                    if gr.ctypes.data == xr.ctypes.data:
                        # out is input: the loop over the one array (reading x_j, then
                        # writing g_j in its place); LLVM's runtime overlap check would
                        # send the two-array loop to its scalar version
                        _wide_terms(gr, gr, hs, base, wy, gw, two_g, p2)
                    else:
                        _wide_terms(xr, gr, hs, base, wy, gw, two_g, p2)
                    hs[y] = zero
                    gr[y] = zero
                    gr[y] = 0.0 - row_sum(gr)
                else:
                    for j in range(c):
                        z = base + xr[j]
                        h = (z * z if p2 else z) * wy
                        hs[j] = h if z > zero else zero
                    hs[y] = zero
                losses[i] = row_sum(hs) / c
            else:
                acc = 0.0
                if want_grad:
                    gr = g[i]
                    gy = 0.0
                    for j in range(c):
                        z = base + xr[j]
                        on = (z > zero) & (j != y)
                        h = (z * z if p2 else z) * wy
                        d = (two_g * z) * wy if p2 else gw
                        h = h if on else zero
                        d = d if on else zero
                        acc += np.float64(h)
                        gy += np.float64(d)
                        gr[j] = d
                    gr[y] = 0.0 - gy
                else:
                    for j in range(c):
                        z = base + xr[j]
                        on = (z > zero) & (j != y)
                        h = (z * z if p2 else z) * wy
                        acc += np.float64(h if on else zero)
                losses[i] = acc / c
        status[b] = bad


_multi_margin_serial = multi_margin.serial  # Numba resolves globals, not attributes


@rowfn
def multi_margin_small_call(x, t, margin, p2, gscale, want_grad):
    """The serial kernel for a small call without class weights or ``out=``, with its
    buffers made here and ``x``, ``t`` as the caller has them (:func:`as_readonly`: one
    compiled kernel).  Returns ``(first bad row or -1, float64 sum of the per-row losses
    (row_sum, as the general path), gradient or a (0, 0) array)``."""
    n, c = x.shape
    losses = np.empty(n)
    status = np.empty((n + BLOCK - 1) // BLOCK, dtype=np.int64)
    g = np.empty((n, c) if want_grad else (0, 0), dtype=x.dtype)
    _multi_margin_serial(as_readonly(x), as_readonly(t), as_readonly(np.ones(c, dtype=x.dtype)),
                         margin, p2, gscale, want_grad, losses, g, status)
    bad = -1
    for b in range(status.shape[0]):
        if status[b] >= 0:
            bad = status[b]
            break
    return bad, row_sum(losses), g
