"""Fused multi-class margin (hinge) loss and its gradient, one pass per row.

Per row ``i`` with target ``y`` and ``z_j = (margin - x_y) + x_j`` (in the input dtype,
as PyTorch computes it), the kernel writes

* ``losses[i] = sum_{j != y, z_j > 0} w_y * z_j**p / C`` (terms in the input dtype,
  accumulated in float64), and
* ``g[i, j] = gscale * w_y`` (p == 1) or ``(2 * gscale) * z_j * w_y`` (p == 2) where
  ``z_j > 0`` and ``j != y``, else 0; ``g[i, y] = -sum_j g[i, j]``.

``z_j > 0`` is false at the kink (``z_j == 0``) and for NaN, so both contribute nothing,
exactly as PyTorch's ``if (z > 0)``.  The inner loop uses selects only.

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

from .._config import BLOCK, kernel

__all__ = ["multi_margin"]


@kernel
def multi_margin(x, t, w, margin, p2, gscale, want_grad, losses, g, status):
    n, c = x.shape
    zero = x.dtype.type(0.0)
    two_g = gscale + gscale
    nblocks = (n + BLOCK - 1) // BLOCK
    for b in prange(nblocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        bad = -1
        for i in range(lo, hi):
            y = t[i]
            if y < 0 or y >= c:
                if bad < 0:
                    bad = i
                losses[i] = 0.0
                continue
            xr = x[i]
            wy = w[y]
            base = margin - xr[y]  # read before the row's gradient is written
            acc = 0.0
            if want_grad:
                gr = g[i]
                gy = 0.0
                gw = gscale * wy
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
