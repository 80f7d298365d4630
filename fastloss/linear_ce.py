"""Fused linear + cross-entropy: ``cross_entropy(hidden @ linear_weight.T + bias, target)``
and its gradients without ever holding the ``N x V`` logits.

Algorithm (token chunks, three matrix products per chunk, as Liger-Kernel and PyTorch
2.13's chunked op):

* Rows are processed ``M`` at a time through one reused ``M x V`` logits buffer ``Z``:
  ``np.matmul(H_c, W.T, out=Z)`` (+ bias), then :func:`fastloss.cross_entropy` with
  ``reduction="sum"`` writes the logits' gradient ``G`` in place into ``Z`` (its float64
  totals stay unrounded across chunks).  The matrix products stay in NumPy (Numba cannot
  call BLAS without SciPy); small kernels here do the row work around them.
* **One-hot part taken out.**  ``G = P - T e_y`` where the target term ``T_i`` is known
  (``w_y (1 - label_smoothing)``, times the softcap derivative).  ``T`` is added back into
  ``Z`` and applied exactly afterwards: ``dH = P @ W - T W[y]``, ``dW = P.T @ H`` minus
  ``T_i H_i`` at row ``y_i``, ``db = colsum(P) - bincount(y, T)``.  The products then sum
  only the small softmax terms instead of cancelling them against ``-1``: the float32
  gradients' error falls to about the floor set by the float32 logits (PyTorch 2.13's
  chunked op does the same).
* **Scales on the small side.**  A token's factor (``1/denominator`` of ``"mean"``, times
  the private ``row_scale``) multiplies ``H_c`` (``M x D``) for ``dW`` and ``dH``'s rows
  (in the kernel that also subtracts ``T W[y]``), never the ``M x V`` buffer.
* **dW accumulation.**  The first chunk writes ``dW`` (``np.matmul(P.T, f H_c, out=dW)``).
  NumPy's ``matmul`` always calls gemm with beta = 0, and ``dW += P.T @ H_c`` would
  allocate a ``V x D`` temporary per chunk.  When NumPy's BLAS is the wheels'
  scipy-openblas (ILP64 CBLAS), later chunks call its gemm with beta = 1 through ctypes
  (same library and thread pool as NumPy; checked once against NumPy); otherwise they add
  vocabulary blocks through one reused buffer of at most ``_ACC_BYTES`` (8 MiB) -- that
  path costs 10-20 % more for those products.  ``dW`` accumulates in the input dtype
  (for float32: a few additions per element on top of the BLAS kernel's own float32
  accumulation along the same axis; measured more accurate than PyTorch's single
  product, docs/linear_ce.md).  ``db`` accumulates in float64.
* **Ignored rows** (target ``ignore_index``) are dropped before any product (their
  ``grad_input`` rows are 0), unless their hidden states, the weight or the bias hold
  NaN/inf: then they are kept, so NaN propagates as in :func:`fastloss.cross_entropy`
  and PyTorch.
* ``grad=False`` does the forward product and the loss kernel only (``2 N D V`` flops).

Memory: the default ``chunk_rows`` keeps the working set -- logits buffer, one ``M x D``
hidden buffer, the dW block buffer (allowed for even when BLAS accumulates) and the
float64 bias accumulator -- within ``_BUDGET_BYTES`` (272 MiB = 285 MB), never below 512
rows (products of fewer rows run 10-55 % below the BLAS plateau); the rows are split into
equal chunks.  Beyond that only the returned gradients are allocated.  Large buffers come
from fastloss's buffer pool (``fastloss.release_buffers()`` frees what it holds).

Degenerate class weights -- a NaN/inf weight under ``"mean"``, or a total weight of the
counted targets whose reciprocal is not finite -- follow PyTorch's inf/NaN arithmetic,
which depends on its order of operations: these rare inputs go through the full logits
(``N x V`` memory).
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
import threading
from typing import Any, NamedTuple

import numpy as np
from numba import prange

from ._config import kernel, pick
from ._core import (
    POOL,
    array_to_dtype,
    as_index_target,
    check_reduction,
    float64_totals,
    readonly,
    target_out_of_bounds,
    to_dtype,
)
from .softmax import _float_option, _index_option, _mean_div, _weight, cross_entropy

__all__ = ["LinearCEResult", "linear_cross_entropy"]

#: Default working-set budget (bytes) beyond the inputs and the returned gradients.
_BUDGET_BYTES = 272 << 20
#: Smallest default chunk: matrix products of fewer rows lose 10-55 % of BLAS speed.
_MIN_ROWS = 512
#: Size of the buffer through which later chunks add their dW block by block.
_ACC_BYTES = 8 << 20
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class LinearCEResult(NamedTuple):
    """Loss and gradients of :func:`linear_cross_entropy` (gradients None when
    ``grad=False``; ``grad_linear_bias`` None without a bias)."""

    loss: Any
    grad_input: np.ndarray | None
    grad_linear_weight: np.ndarray | None
    grad_linear_bias: np.ndarray | None


# ----------------------------------------------------------------------------- kernels
# Row work around the products, in float64 arithmetic with one rounding per element;
# each output element is computed by one thread in a fixed order (results do not depend
# on the thread count).
_CB = 256  # columns per block
_RB = 128  # rows per block of the column sums


@kernel
def _add_colsums(z, f, acc):
    """``acc[c] += sum_i f[i] * z[i, c]`` (``f`` empty: 1): partial sums over fixed blocks
    of rows (each streaming whole rows into an accumulator row that stays in cache),
    then added block by block."""
    R, C = z.shape
    scaled = f.shape[0] > 0
    nb = (R + _RB - 1) // _RB
    part = np.zeros((nb, C))
    for blk in prange(nb):
        p = part[blk]
        for i in range(blk * _RB, min(R, (blk + 1) * _RB)):
            zi = z[i]
            if scaled:
                fi = f[i]
                for c in range(C):
                    p[c] += fi * zi[c]
            else:
                for c in range(C):
                    p[c] += zi[c]
    for cb in prange((C + _CB - 1) // _CB):
        for blk in range(nb):
            p = part[blk]
            for c in range(cb * _CB, min(C, (cb + 1) * _CB)):
                acc[c] += p[c]


@kernel
def _sub_rows(t, c, hs, dw):
    """``dw[t[k]] -= c[k] * hs[k]`` for k in order (m rows: serial, a few milliseconds)."""
    m, D = hs.shape
    for k in range(m):
        ck = c[k]
        if ck != 0.0:
            row = dw[t[k]]
            hk = hs[k]
            for d in range(D):
                row[d] = row[d] - ck * hk[d]


@kernel
def _scale_rows(h, f, out):
    """``out[i] = f[i] * h[i]`` (``out`` may be ``h``)."""
    m, D = h.shape
    for i in prange(m):
        fi = f[i]
        hi = h[i]
        oi = out[i]
        for d in range(D):
            oi[d] = fi * hi[d]


@kernel
def _add_bias(b, z):
    """``z[i] += b`` for every row (NumPy's add is single-threaded)."""
    R, C = z.shape
    for i in prange(R):
        zi = z[i]
        for c in range(C):
            zi[c] = zi[c] + b[c]


@kernel
def _finish_rows(p, w, t, c, f, rows, out):
    """``out[rows[k]] = f[k] * (p[k] - c[k] * w[t[k]])`` (``t``/``c`` empty: no ``w``
    term; ``f`` empty: 1; ``rows`` empty: ``out[k]``, which may be ``p`` itself)."""
    m, D = p.shape
    has_c = c.shape[0] > 0
    has_f = f.shape[0] > 0
    has_r = rows.shape[0] > 0
    for k in prange(m):
        fk = f[k] if has_f else 1.0
        ck = c[k] if has_c else 0.0
        pk = p[k]
        o = out[rows[k]] if has_r else out[k]
        if ck != 0.0:
            wk = w[t[k]]
            for d in range(D):
                o[d] = fk * (pk[d] - ck * wk[d])
        else:
            for d in range(D):
                o[d] = fk * pk[d]


_NO_SCALE = readonly(np.empty(0, np.float64))
_NO_ROWS = readonly(np.empty(0, np.int64))


def _call(k, work, *args):
    """Run kernel ``k``; every argument but the last (the output) is read only."""
    pick(k, work)(*(readonly(a) for a in args[:-1]), args[-1])


# ------------------------------------------------------------- BLAS accumulate (beta=1)
# NumPy's matmul always calls gemm with beta = 0.  When NumPy's BLAS is the scipy-openblas
# library of the NumPy wheels (ILP64 CBLAS, symbols ``scipy_cblas_?gemm64_``), later
# chunks call its gemm directly with beta = 1 (ctypes; the same library, hence the same
# thread pool), so dW accumulates inside the product instead of through a block buffer
# and an extra pass over dW (measured: 10-20 % of that product).  Checked once against
# NumPy; any failure, another BLAS, or FASTLOSS_BLAS_ACCUMULATE=0 selects the block path.
_GEMM_LOCK = threading.Lock()
_GEMM: dict | None = None
_GEMM_LOADED = False


def _blas_library():
    """Path of NumPy's own scipy-openblas64 shared library, or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    mine = [os.path.join(root, "numpy.libs"), os.path.join(root, "numpy", ".dylibs")]
    loaded = []
    try:
        with open("/proc/self/maps") as fh:  # Linux: the copies actually loaded
            loaded = [ln[ln.index("/") :].strip() for ln in fh
                      if "scipy_openblas64_" in ln and "/" in ln]
    except OSError:
        pass
    for path in loaded:
        if any(path.startswith(d + os.sep) for d in mine):
            return path
    for d in mine:
        found = sorted(glob.glob(os.path.join(d, "*scipy_openblas64_*")))
        if found:
            return found[0]
    return None


def _load_gemm() -> dict | None:
    if os.environ.get("FASTLOSS_BLAS_ACCUMULATE", "1").lower() in ("0", "false", "no", "off"):
        return None
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        if blas.get("name") != "scipy-openblas" or "USE64BITINT" not in blas.get(
            "openblas configuration", ""
        ):
            return None
        path = _blas_library()
        if path is None:
            return None
        lib = ctypes.CDLL(path)
        i64, vp, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        fns = {}
        for dt, name, real in ((np.float32, "scipy_cblas_sgemm64_", ctypes.c_float),
                               (np.float64, "scipy_cblas_dgemm64_", ctypes.c_double)):
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [cint, cint, cint, i64, i64, i64, real, vp, i64, vp, i64, real, vp, i64]
            fns[np.dtype(dt)] = fn
        rng = np.random.default_rng(0)
        for dt in fns:
            a = rng.standard_normal((7, 5)).astype(dt)
            b = rng.standard_normal((7, 3)).astype(dt)
            c = rng.standard_normal((5, 3)).astype(dt)
            # both forms used: dW += P.T @ H (ta) and the logits' parts Z += H @ W.T (tb)
            for ta, tb, x, y in ((True, False, a, b), (False, True, a.T.copy(), b.T.copy())):
                cc = c.copy()
                want = cc + 0.5 * ((x.T if ta else x) @ (y.T if tb else y))
                if not _gemm_acc(fns, cc, x, y, ta=ta, tb=tb, alpha=0.5) or not np.allclose(
                    cc, want, rtol=1e-5
                ):
                    return None
        return fns
    except Exception:  # any trouble: the NumPy-only path
        return None


def _gemm_acc(fns, c, a, b, *, ta, tb, alpha=1.0) -> bool:
    """``c += alpha * op(a) @ op(b)`` with ``op(x)`` = ``x.T`` where ``ta`` / ``tb`` is set
    (row-major, unit inner strides); False if not applicable."""
    isz = c.itemsize
    for x in (a, b, c):
        if x.dtype != c.dtype or x.strides[1] != isz or x.strides[0] % isz or (
            x.strides[0] < x.shape[1] * isz
        ):
            return False
    if not c.flags.writeable or 0 in a.shape or 0 in b.shape:
        return False
    K, M = a.shape if ta else a.shape[::-1]
    N = b.shape[0] if tb else b.shape[1]
    fns[c.dtype](101, 112 if ta else 111, 112 if tb else 111, M, N, K, alpha, a.ctypes.data,
                 a.strides[0] // isz, b.ctypes.data, b.strides[0] // isz, 1.0, c.ctypes.data,
                 c.strides[0] // isz)
    return True


#: The float32 logits are computed as the sum of up to this many products over equal
#: parts of the hidden dimension (the later ones accumulated by BLAS with beta = 1):
#: each output element's float32 dot product then runs in shorter chains, which lowers
#: the logits' rounding error and with it the gradients' (measured on an AMD EPYC, where
#: NumPy's OpenBLAS sgemm is ~1.4x less accurate than PyTorch's GEMM: dH's error against
#: float64 5.3e-7 in one part, 2.0e-7 in four, PyTorch float32 3.9e-7; docs/linear_ce.md).
#: No measurable cost at N=4096, D=1024, V=32000 (BLAS splits the inner dimension into
#: blocks of its own anyway).
LOGIT_PARTS = 4
#: ... of at least this many columns each.
_PART_MIN_D = 64


def _logits(Hc, W, Zc):
    """``Zc = Hc @ W.T`` (float32: in up to :data:`LOGIT_PARTS` accumulated parts when BLAS
    accumulation is available)."""
    D = Hc.shape[1]
    isz = Zc.itemsize
    parts = min(LOGIT_PARTS, D // _PART_MIN_D) if Zc.dtype == np.float32 else 1
    fns = _gemm() if parts >= 2 and Hc.strides[1] == isz and W.strides[1] == isz else None
    if fns is None:
        return np.matmul(Hc, W.T, out=Zc)
    bounds = [D * k // parts for k in range(parts + 1)]
    np.matmul(Hc[:, : bounds[1]], W[:, : bounds[1]].T, out=Zc)
    for k0, k1 in zip(bounds[1:-1], bounds[2:], strict=True):
        if not _gemm_acc(fns, Zc, Hc[:, k0:k1], W[:, k0:k1], ta=False, tb=True):
            return np.matmul(Hc, W.T, out=Zc)  # (not reached: the strides were checked)
    return Zc


def _gemm():
    global _GEMM, _GEMM_LOADED
    if not _GEMM_LOADED:
        with _GEMM_LOCK:
            if not _GEMM_LOADED:
                _GEMM = _load_gemm()
                _GEMM_LOADED = True
    return _GEMM


# -------------------------------------------------------------------------- validation
def _float_array(a, name: str) -> np.ndarray:
    a = a if isinstance(a, np.ndarray) else np.asarray(a)
    if a.dtype not in _FLOATS:
        if a.dtype.kind == "f" and a.dtype.newbyteorder("=") in _FLOATS:
            return a.astype(a.dtype.newbyteorder("="))  # byte-swapped float32/float64
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if type(a) is not np.ndarray:
        a = a.view(np.ndarray)  # memmap and other subclasses
    return a


def _blasable(a: np.ndarray) -> bool:
    """BLAS reads ``a`` (2-D) or its transpose in place: unit stride along one axis."""
    s0, s1 = a.strides
    n0, n1 = a.shape
    isz = a.itemsize
    return (s1 == isz and s0 % isz == 0 and s0 >= max(n1, 1) * isz) or (
        s0 == isz and s1 % isz == 0 and s1 >= max(n0, 1) * isz
    )


def _all_finite(*arrays) -> bool:
    """No NaN/inf in the arrays (a float sum per array; a spurious overflow only
    answers False, which is the safe answer here)."""
    with np.errstate(all="ignore"):
        return all(a is None or a.size == 0 or np.isfinite(np.sum(a)) for a in arrays)


def _chunk_rows(chunk_rows, n: int, V: int, D: int, isz: int) -> int:
    """Rows per chunk: equal chunks of at most ``chunk_rows`` (default: the budget)."""
    if chunk_rows is None:
        fixed = _acc_rows(V, D, isz) * D * isz + 8 * V
        per_row = (V + D) * isz
        cap = max(_MIN_ROWS, (_BUDGET_BYTES - fixed) // max(per_row, 1))
    else:
        if isinstance(chunk_rows, (bool, np.bool_)) or not isinstance(
            chunk_rows, (int, np.integer)
        ):
            raise TypeError(f"chunk_rows must be an integer or None, got {chunk_rows!r}")
        cap = int(chunk_rows)
        if cap < 1:
            raise ValueError(f"chunk_rows must be >= 1 (or None), got {chunk_rows!r}")
    if n <= cap:
        return max(n, 1)
    k = -(-n // cap)
    return -(-n // k)


# ------------------------------------------------------------------------- public API
def linear_cross_entropy(
    hidden,
    linear_weight,
    target,
    linear_bias=None,
    weight=None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    grad: bool = True,
    chunk_rows: int | None = None,
) -> LinearCEResult:
    """Cross-entropy of the logits ``hidden @ linear_weight.T + linear_bias`` and its
    gradients, computed ``chunk_rows`` rows at a time so the logits never exist whole.

    Same result as ``cross_entropy(hidden @ linear_weight.T + linear_bias, target, weight,
    ...)`` (semantics of ``torch.nn.functional.linear`` + ``cross_entropy``; names of
    PyTorch 2.13's ``F.linear_cross_entropy``).

    Args:
        hidden: ``(N, D)`` (or ``(D,)``: one token) float32 or float64.
        linear_weight: ``(V, D)`` as in ``torch.nn.Linear``, the dtype of ``hidden``.
        target: class indices ``(N,)`` in ``[0, V)`` or ``ignore_index``, or class
            probabilities ``(N, V)``.
        linear_bias: optional ``(V,)``; cast to ``hidden``'s dtype.
        weight: optional per-class weights ``(V,)``.
        ignore_index, label_smoothing, z_loss, softcap: as in
            :func:`fastloss.cross_entropy`.
        reduction: ``"none"`` (per-token losses, ignored tokens 0) | ``"sum"`` | ``"mean"``
            (PyTorch's: divided by the summed class weight of the non-ignored targets).
        grad: compute the gradients (default True); ``False`` only scores.
        chunk_rows: most rows per chunk (at most ``chunk_rows * V`` logits exist).  Default:
            the most that keep the working set within 272 MiB, but at least 512.

    Returns:
        LinearCEResult(loss, grad_input, grad_linear_weight, grad_linear_bias): the loss
        (a scalar of the input dtype; ``(N,)`` for ``"none"``) and the gradients of the
        reduced loss (of the sum of the per-token losses for ``"none"``) w.r.t. ``hidden``,
        ``linear_weight`` and ``linear_bias`` (None without a bias); gradients None when
        ``grad=False``.

    Example:
        >>> import numpy as np
        >>> from fastloss.linear_ce import linear_cross_entropy
        >>> h = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> w = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]])
        >>> res = linear_cross_entropy(h, w, np.array([0, 1, -100]))
        >>> print(f"{res.loss:.6f}")
        0.543938
        >>> res.grad_input[2].tolist()
        [0.0, 0.0]
    """
    return _linear_cross_entropy(
        hidden,
        linear_weight,
        target,
        linear_bias,
        weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        reduction=reduction,
        grad=grad,
        chunk_rows=chunk_rows,
    )


def _linear_cross_entropy(
    hidden,
    linear_weight,
    target,
    linear_bias=None,
    weight=None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    grad: bool = True,
    chunk_rows: int | None = None,
    row_scale=None,
) -> LinearCEResult:
    """:func:`linear_cross_entropy` with ``row_scale`` ``(N,)``: each token's logit
    gradient is multiplied by ``row_scale[i]`` before the projections (per-token upstream
    gradients, e.g. of ``reduction="none"``; ignored tokens stay 0).  The loss is not
    affected."""
    H = _float_array(hidden, "hidden")
    W = _float_array(linear_weight, "linear_weight")
    if H.ndim not in (1, 2):
        raise ValueError(f"hidden must be 1-D (D,) or 2-D (N, D), got shape {H.shape}")
    if W.ndim != 2:
        raise ValueError(f"linear_weight must be 2-D (V, D), got shape {W.shape}")
    if H.shape[-1] != W.shape[1]:
        raise ValueError(
            f"hidden shape {H.shape} and linear_weight shape {W.shape} do not match: "
            f"expected linear_weight of shape (V, {H.shape[-1]})"
        )
    if H.dtype != W.dtype:
        raise TypeError(
            f"hidden ({H.dtype}) and linear_weight ({W.dtype}) must have the same dtype, "
            "float32 or float64"
        )
    dt = H.dtype
    unbatched = H.ndim == 1
    if unbatched:
        H = H[None, :]
    N, D = H.shape
    V = W.shape[0]
    check_reduction(reduction)
    ii = _index_option(ignore_index)
    eps = _float_option("label_smoothing", label_smoothing, 0.0, 1.0, desc="between 0.0 and 1.0")
    zl = _float_option("z_loss", z_loss, 0.0, desc="a finite number >= 0")
    if softcap is not None:
        _float_option("softcap", softcap, 0.0, lo_open=True, desc="finite and > 0, or None")
    grad = bool(grad)

    b = None
    if linear_bias is not None:
        b = np.asarray(linear_bias)
        if b.dtype.kind not in "fiu":
            raise TypeError(f"linear_bias must be a real numeric array, got dtype {b.dtype}")
        if b.shape != (V,):
            raise ValueError(
                f"linear_bias shape {b.shape} does not match linear_weight shape {W.shape}: "
                f"expected ({V},)"
            )
        b = readonly(np.ascontiguousarray(b, dtype=dt))
    w = _weight(weight, V)
    has_w = weight is not None

    t = target if isinstance(target, np.ndarray) else np.asarray(target)
    prob = t.dtype.kind == "f"
    if prob:
        t = np.asarray(t, dtype=dt)
        if unbatched and t.shape == (V,):
            t = t[None, :]
        if t.shape != (N, V):
            raise ValueError(
                f"probability target shape {t.shape} does not match the logits' shape "
                f"{(N, V)} (hidden {H.shape if not unbatched else (D,)}, linear_weight "
                f"{W.shape})"
            )
        if ii >= 0:
            raise ValueError(
                "ignore_index is not supported for probability (floating point) targets; "
                f"got ignore_index={ii}"
            )
        y = None
    else:
        y = as_index_target(t, V, ignorable=True)
        if unbatched and y.shape == ():
            y = y.reshape(1)
        if y.shape != (N,):
            raise ValueError(
                f"target shape {t.shape} does not match hidden shape "
                f"{H.shape if not unbatched else (D,)}: expected "
                f"{() if unbatched else (N,)}"
            )
        valid = y != ii
        yv = y[valid]
        if yv.size and (yv.min() < 0 or yv.max() >= V):
            raise target_out_of_bounds(int(yv[(yv < 0) | (yv >= V)][0]), V, ignorable=True)

    rs = None
    if row_scale is not None:
        rs = np.asarray(row_scale, dtype=np.float64)
        if rs.shape == () and unbatched:
            rs = rs.reshape(1)
        if rs.shape != (N,):
            raise ValueError(f"row_scale shape {rs.shape} does not match {(N,)} tokens")

    # --- the mean's denominators, the rows to compute
    mean = reduction == "mean"
    finite_w = bool(np.isfinite(w).all()) if has_w else True
    if prob:
        nv = N
        den = float(N)
        rows = None
    else:
        nv = int(yv.size)
        den = float(np.sum(w[yv])) if has_w else float(nv)
        degenerate = not finite_w or (
            mean and nv > 0 and (den == 0.0 or not math.isfinite(1.0 / den))
        )
        if degenerate and mean:
            return _materialised(H, W, b, y, w if has_w else None, ii, eps, zl, softcap,
                                 reduction, grad, rs, unbatched)
        rows = None
        if nv < N and finite_w and _all_finite(H[~valid], W, b):
            rows = np.flatnonzero(valid)
    ce_w = w if has_w else None
    scale = 1.0
    if mean and nv > 0:
        if has_w and zl > 0.0:
            # the z-loss is averaged over tokens, the CE over weights: run the chunks with
            # weights w * nv/den so that one 1/nv scales both
            ce_w = w * (nv / den)
            scale = 1.0 / nv
            if not np.isfinite(ce_w).all():
                return _materialised(H, W, b, y, w, ii, eps, zl, softcap, reduction, grad, rs,
                                     unbatched)
        else:
            scale = 1.0 / den

    n = N if rows is None else rows.size
    M = _chunk_rows(chunk_rows, n, V, D, dt.itemsize)
    ce_opts = dict(weight=ce_w, ignore_index=ii, label_smoothing=eps, z_loss=zl,
                   softcap=softcap, reduction="none" if reduction == "none" else "sum")
    if not _blasable(W):
        W = np.ascontiguousarray(W)  # BLAS would copy it for every product
    per_tok = np.zeros(N, dt) if reduction == "none" else None
    if not grad:
        total = _score(H, W, b, t if prob else y, rows, M, ce_opts, per_tok)
        loss = _reduce(per_tok, total, reduction, den, nv, has_w and zl > 0.0, dt)
        return LinearCEResult(loss.reshape(()) if unbatched and per_tok is not None else loss,
                              None, None, None)

    # per-token gradient factors f (None: all 1)
    f_all = None
    if rs is not None or scale != 1.0:
        f_all = np.full(N, scale) if rs is None else rs * scale
        if rs is not None and y is not None:
            f_all[~valid] = 1.0  # kept ignored rows: their gradient is 0 (or NaN) as is
        if rows is not None:
            f_all = f_all[rows]
    # the one-hot part of the gradient, T_i at (i, y_i), is taken out of the products
    # and applied exactly (as PyTorch 2.13's chunked op does): the products then sum
    # only the small softmax terms, which halves their float32 rounding error
    split = not prob and finite_w
    if split:
        tw = (ce_w[np.where(valid, y, 0)] if has_w else np.ones(N)) * (1.0 - eps)
        tw[~valid] = 0.0
        if rows is not None:
            tw = tw[rows]
        cap = None if softcap is None else float(softcap)

    # (the pool recycles the pages of large arrays the caller has dropped: a fresh
    # np.empty of hundreds of MB costs a page fault and a zeroing per page)
    dH = POOL.empty((N, D), dt)
    if rows is not None:
        dH[~valid] = 0.0
    dW = POOL.empty((V, D), dt)
    if n == 0:
        dW.fill(0.0)
    db = np.zeros(V, np.float64) if b is not None else None
    hb = np.empty((M, D), dt) if (rows is not None or f_all is not None) else None
    acc = None  # the block buffer, allocated by the first accumulation that needs it
    Z = POOL.empty((M, V), dt)
    total = 0.0
    with float64_totals(), np.errstate(all="ignore"):  # NaN/inf propagate silently
        for c0 in range(0, n, M):
            c1 = min(n, c0 + M)
            m = c1 - c0
            Zc = Z[:m]
            if rows is None:
                Hc = H[c0:c1]
                tc = t[c0:c1] if prob else y[c0:c1]
            else:
                idx = rows[c0:c1]
                Hc = np.take(H, idx, axis=0, out=hb[:m])
                tc = y[idx]
            _logits(Hc, W, Zc)
            if b is not None:
                _call(_add_bias, Zc.size, b, Zc)
            if split:
                ts = np.where(tc == ii, 0, tc) if rows is None else tc
                T = tw[c0:c1]
                if cap is not None:
                    T = T * (1.0 - np.tanh(Zc[_ar(m), ts] / cap) ** 2)
            res = cross_entropy(Zc, tc, out=Zc, **ce_opts)
            if reduction == "none":
                if rows is None:
                    per_tok[c0:c1] = res.loss
                else:
                    per_tok[idx] = res.loss
            else:
                total += float(res.loss)
            if split:
                Zc[_ar(m), ts] += T  # Zc: the softmax part P of the gradient
            f = _NO_SCALE if f_all is None else f_all[c0:c1]
            # dW = P.T @ (f H) - sum_i T_i f_i H_i at row y_i
            Hs = Hc
            if f_all is not None:
                Hs = hb[:m]
                _call(_scale_rows, m * D, Hc, f, Hs)
            if c0 == 0:
                np.matmul(Zc.T, Hs, out=dW)
            else:
                acc = _accumulate(dW, Zc, Hs, acc)
            if split:
                _sub_rows.serial(readonly(ts), readonly(T), readonly(Hs), dW)
            # db = colsum(f P) - sum_i f_i T_i at y_i (float64)
            if db is not None:
                _call(_add_colsums, Zc.size, Zc, f, db)
                if split:
                    fT = T if f_all is None else f * T
                    db -= np.bincount(ts, weights=fT, minlength=V)
            # dH = f (P @ W - T W[y])
            if rows is None:
                P = np.matmul(Zc, W, out=dH[c0:c1])
                dst, at = P, _NO_ROWS
            else:
                P = np.matmul(Zc, W, out=hb[:m])
                dst, at = dH, idx
            if split or f_all is not None or rows is not None:
                _call(_finish_rows, m * D, P, W, ts if split else _NO_ROWS,
                      T if split else _NO_SCALE, f, at, dst)

    loss = _reduce(per_tok, total, reduction, den, nv, has_w and zl > 0.0, dt)
    if unbatched and reduction == "none":
        loss = loss.reshape(())
    gb = None if db is None else array_to_dtype(db, dt)
    return LinearCEResult(loss, dH[0] if unbatched else dH, dW, gb)


def _ar(m):
    return np.arange(m)


def _score(H, W, b, t, rows, M, ce_opts, per_tok) -> float:
    """grad=False: the forward product and the loss kernel, chunk by chunk."""
    n = H.shape[0] if rows is None else rows.size
    Z = POOL.empty((M, W.shape[0]), H.dtype)
    hb = np.empty((M, H.shape[1]), H.dtype) if rows is not None else None
    total = 0.0
    with float64_totals(), np.errstate(all="ignore"):  # NaN/inf propagate silently
        for c0 in range(0, n, M):
            c1 = min(n, c0 + M)
            m = c1 - c0
            if rows is None:
                Hc, tc = H[c0:c1], t[c0:c1]
            else:
                idx = rows[c0:c1]
                Hc, tc = np.take(H, idx, axis=0, out=hb[:m]), t[idx]
            Zc = np.matmul(Hc, W.T, out=Z[:m])
            if b is not None:
                _call(_add_bias, Zc.size, b, Zc)
            res = cross_entropy(Zc, tc, grad=False, **ce_opts)
            if per_tok is None:
                total += float(res.loss)
            elif rows is None:
                per_tok[c0:c1] = res.loss
            else:
                per_tok[idx] = res.loss
    return total


def _accumulate(dW, Zc, Hs, acc):
    """``dW += Zc.T @ Hs``: BLAS with beta = 1, or through the block buffer ``acc`` (no
    ``V x D`` temporary)."""
    fns = _gemm()
    if fns is not None and _gemm_acc(fns, dW, Zc, Hs, ta=True, tb=False):
        return acc
    if acc is None or acc.dtype != dW.dtype:
        acc = np.empty((_acc_rows(*dW.shape, dW.itemsize), dW.shape[1]), dW.dtype)
    V = dW.shape[0]
    vs = acc.shape[0]
    for v0 in range(0, V, vs):
        v1 = min(V, v0 + vs)
        blk = np.matmul(Zc[:, v0:v1].T, Hs, out=acc[: v1 - v0])
        np.add(dW[v0:v1], blk, out=dW[v0:v1])
    return acc


def _acc_rows(V, D, isz):
    return max(1, min(V, _ACC_BYTES // max(D * isz, 1)))


def _reduce(per_tok, total, reduction, den, nv, rescaled, dt):
    if reduction == "none":
        return per_tok
    if reduction == "sum":
        return to_dtype(total, dt)
    if nv == 0:
        return to_dtype(math.nan, dt)
    return to_dtype(_mean_div(total, nv if rescaled else den), dt)


def _materialised(H, W, b, y, w, ii, eps, zl, softcap, reduction, grad, rs, unbatched):
    """Degenerate class weights: fl.cross_entropy on the whole logits (N x V memory)."""
    with np.errstate(all="ignore"):
        return _materialised_body(H, W, b, y, w, ii, eps, zl, softcap, reduction, grad, rs,
                                  unbatched)


def _materialised_body(H, W, b, y, w, ii, eps, zl, softcap, reduction, grad, rs, unbatched):
    Z = np.matmul(H, W.T)
    if b is not None:
        Z += b
    res = cross_entropy(Z, y, w, ignore_index=ii, label_smoothing=eps, z_loss=zl,
                        softcap=softcap, reduction=reduction, grad=grad,
                        out=Z if grad else None)
    loss = res.loss.reshape(()) if (unbatched and reduction == "none") else res.loss
    if not grad:
        return LinearCEResult(loss, None, None, None)
    if rs is not None:
        f = np.where(y != ii, rs, 1.0)
        Z *= f[:, None].astype(Z.dtype)
    dH = Z @ W
    dW = Z.T @ H
    db = None if b is None else array_to_dtype(np.sum(Z, axis=0, dtype=np.float64), Z.dtype)
    return LinearCEResult(loss, dH[0] if unbatched else dH, dW, db)


def _warmup_calls(dt) -> list:
    """Small calls that compile (or load) this module's kernels for ``dt`` with the
    array layouts the public function passes (for ``fastloss.warmup``; run them also
    under ``force_parallel`` for the parallel builds)."""
    from functools import partial

    rng = np.random.default_rng(0)
    H = rng.standard_normal((6, 3)).astype(dt)
    W = rng.standard_normal((5, 3)).astype(dt)
    b = np.zeros(5, dt)
    y = np.array([0, 4, -100, 1, 2, 3])
    return [
        partial(linear_cross_entropy, H, W, y, b, chunk_rows=4),  # rows dropped, scaled
        partial(linear_cross_entropy, H, W, y % 5, b, reduction="sum", chunk_rows=4),
        partial(linear_cross_entropy, H, W, y % 5, reduction="mean"),
        partial(linear_cross_entropy, H, W, y, b, grad=False),
    ]
