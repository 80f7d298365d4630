"""The one edge-array generator every fastloss test uses.

Every loss test draws its awkward inputs from here, so that a new edge (a shape, a value,
a memory layout) is added once and reaches every loss.  Nothing here knows about a
particular loss; the functions return plain NumPy arrays with descriptive names, meant for
``pytest.mark.parametrize(..., ids=...)`` or a loop with ``subTest``-style messages.

API
---
``float_dtypes()``
    ``[np.float32, np.float64]``, the native input dtypes.
``int_dtypes()``
    every integer dtype a target may have: int8, int16, int32, int64, uint8 .. uint64.
``layouts(a, tmp_path=None)``
    yields ``(name, array)`` pairs holding the *same values* as ``a`` in different memory
    layouts: C-contiguous copy, Fortran order, transposed view, strided (``[::2]``) view,
    negative-stride view, read-only, byte-swapped (floats and multi-byte ints) and, when
    ``tmp_path`` is given and ``a`` is not empty, a read-only ``np.memmap``.
    Use it for inputs *and* targets: a kernel must give the same answer for all of them.
``special_values(dtype)``
    the extremal values PyTorch's suites use: ±inf, NaN, ±1e30 (±1e20 for float32 too),
    ±0.0, tiny and denormal numbers.
``with_specials(shape, dtype, rng, values=None, offset=63, step=101)``
    a random normal array with ``values`` written at odd flat offsets (63, 164, ...), the
    way PyTorch's ``generate_tensors_from_vals`` hides them inside large arrays so that SIMD
    tails and parallel-chunk edges see them.
``float_arrays(dtype, rng)``
    yields ``(name, array)`` for elementwise losses: 0-d, empty ``(0,)`` and ``(2, 0, 3)``,
    one element, odd lengths that hit loop tails (7, 812+3, 1029x917), arrays with special
    values at odd offsets.
``class_cases(dtype, rng)``
    yields :class:`ClassCase` ``(name, x, target)`` for softmax-family losses with the class
    axis last: ``x`` logits ``(N, C)``, ``target`` int64 class indices ``(N,)``.  Empty batch,
    one row, one class, odd sizes (incl. the 1029x917 PyTorch size), ±1e30 logits,
    ``-inf``-masked logits, all ``-inf`` rows, ``+inf`` and NaN logits at odd offsets.
``kdim_shapes()``
    ``(N, C, d1, ...)`` shapes for class-axis-1 losses, including zero-size trailing dims.

All generators are deterministic for a given ``rng`` (``np.random.default_rng(seed)``).
Keep the set small: every case costs a kernel call on every loss it is used with.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

__all__ = [
    "ClassCase",
    "BIG_SHAPE",
    "class_cases",
    "float_arrays",
    "float_dtypes",
    "int_dtypes",
    "kdim_shapes",
    "layouts",
    "special_values",
    "with_specials",
]

#: PyTorch's ``_large_size``: odd in both dimensions, so vector loops and row blocks have tails.
BIG_SHAPE = (1029, 917)


def float_dtypes() -> list:
    """The two native input dtypes."""
    return [np.float32, np.float64]


def int_dtypes() -> list:
    """Every integer dtype a class-index target may have."""
    return [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


# --------------------------------------------------------------------------- layouts
def layouts(a, tmp_path=None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, view)`` pairs equal in value to ``a`` but laid out differently.

    Every yielded array compares equal to ``a`` (``np.array_equal(v, a, equal_nan=True)``)
    and has ``a``'s dtype (byte order aside).  ``tmp_path`` (a ``pathlib.Path``, e.g. pytest's
    ``tmp_path``) enables the memmap case.  0-d arrays only get the C, read-only and
    byte-swapped variants.
    """
    a = np.asarray(a)
    yield "C", np.ascontiguousarray(a).copy()

    if a.ndim >= 1:
        # Fortran order: same logical array, column-major memory.
        yield "fortran", np.asfortranarray(a)
        # Transposed view of a transposed copy: non-C-contiguous, same values.
        yield "transposed", np.ascontiguousarray(a.T).T
        # Strided: every other row of an array twice as long along axis 0.
        big = np.empty((2 * a.shape[0],) + a.shape[1:], dtype=a.dtype)
        big[::2] = a
        if big.size:
            big[1::2] = a[::-1] if a.shape[0] else a
        yield "strided", big[::2]
        # Negative strides along every axis.
        rev = tuple(slice(None, None, -1) for _ in range(a.ndim))
        yield "reversed", np.ascontiguousarray(a[rev])[rev]

    ro = a.copy()
    ro.flags.writeable = False
    yield "readonly", ro

    if a.dtype.itemsize > 1 and a.dtype.kind in "fiu":
        yield "byteswapped", a.astype(a.dtype.newbyteorder())

    if tmp_path is not None and a.size:
        os.makedirs(str(tmp_path), exist_ok=True)
        fd, fn = tempfile.mkstemp(suffix=".dat", prefix="edge_", dir=str(tmp_path))
        os.close(fd)
        mm = np.memmap(fn, dtype=a.dtype, mode="w+", shape=a.shape)
        mm[...] = a
        mm.flush()
        del mm
        yield "memmap", np.memmap(fn, dtype=a.dtype, mode="r", shape=a.shape)


# --------------------------------------------------------------------- special values
def special_values(dtype) -> np.ndarray:
    """Extremal values (PyTorch's ``_float_extremals`` + ``_large_float_vals`` + tiny ones)."""
    dtype = np.dtype(dtype)
    tiny = np.finfo(dtype).tiny
    vals = [np.inf, -np.inf, np.nan, 1e30, -1e30, 1e20, -1e20, 0.0, -0.0,
            1e-3, -1e-3, tiny, tiny / 4, 4988429.2, -4988429.2]
    return np.array(vals, dtype=dtype)


def with_specials(shape, dtype, rng, values=None, offset: int = 63, step: int = 101):
    """Normal random array of ``shape``/``dtype`` with ``values`` at flat offsets
    ``offset, offset + step, ...`` (wrapping around when the array is small)."""
    x = rng.standard_normal(shape).astype(dtype)
    if x.size == 0:
        return x
    vals = special_values(dtype) if values is None else np.asarray(values, dtype=dtype)
    flat = x.reshape(-1)
    for k, v in enumerate(vals):
        flat[(offset + k * step) % flat.size] = v
    return x


def float_arrays(dtype, rng) -> Iterator[tuple[str, np.ndarray]]:
    """Named float arrays for elementwise losses (see module docstring)."""
    dtype = np.dtype(dtype)
    yield "0d", np.asarray(rng.standard_normal(), dtype=dtype)
    yield "empty", np.zeros((0,), dtype=dtype)
    yield "empty_3d", np.zeros((2, 0, 3), dtype=dtype)
    yield "one", rng.standard_normal((1,)).astype(dtype)
    yield "n7", rng.standard_normal((7,)).astype(dtype)
    yield "n815", rng.standard_normal((815,)).astype(dtype)
    yield "3x5x7", rng.standard_normal((3, 5, 7)).astype(dtype)
    yield "specials_815", with_specials((815,), dtype, rng)
    yield "big_1029x917", rng.standard_normal(BIG_SHAPE).astype(dtype)


# ------------------------------------------------------------------- class-index cases
class ClassCase(NamedTuple):
    """A softmax-family case: logits ``x`` (class axis last) and int64 class indices."""

    name: str
    x: np.ndarray
    target: np.ndarray


def class_cases(dtype, rng, big: bool = True) -> Iterator[ClassCase]:
    """Named (logits, class-index target) pairs with the class axis last.

    ``big=False`` drops the 1029x917 case (for slow references or many layouts).
    Targets never equal -100, so the default ``ignore_index`` ignores nothing.
    """
    dtype = np.dtype(dtype)

    def tgt(n, c):
        return rng.integers(0, c, size=n).astype(np.int64)

    def logits(n, c, scale=1.0):
        return (scale * rng.standard_normal((n, c))).astype(dtype)

    yield ClassCase("empty_0x5", np.zeros((0, 5), dtype), np.zeros((0,), np.int64))
    yield ClassCase("one_row", logits(1, 6), tgt(1, 6))
    yield ClassCase("one_class", logits(4, 1), np.zeros(4, np.int64))
    yield ClassCase("7x3", logits(7, 3), tgt(7, 3))
    yield ClassCase("odd_37x129", logits(37, 129, 3.0), tgt(37, 129))

    x = logits(9, 11)
    x[1, 4] = 1e30
    x[2, :] = -1e30
    x[3, 0] = -1e30
    x[4, 7] = 1e30
    x[4, 8] = 1e30
    x[5, 2] = 1e20
    yield ClassCase("huge_pm1e30", x, tgt(9, 11))

    # -inf-masked logits (the padding-mask case), never on the target.
    x = logits(13, 17)
    t = tgt(13, 17)
    mask = rng.random((13, 17)) < 0.4
    mask[np.arange(13), t] = False
    x[mask] = -np.inf
    x[5, :] = -np.inf
    x[5, t[5]] = 0.0  # a row where only the target survives
    yield ClassCase("neg_inf_masked", x, t)

    # -inf on the target logit: loss +inf.
    x = logits(5, 7)
    t = tgt(5, 7)
    x[2, t[2]] = -np.inf
    yield ClassCase("neg_inf_target", x, t)

    # A fully -inf row (log-softmax is NaN there), among finite rows.
    x = logits(6, 5)
    x[3, :] = -np.inf
    yield ClassCase("all_neg_inf_row", x, tgt(6, 5))

    # +inf and NaN logits at odd offsets (each poisons its own row only).
    x = logits(11, 19)
    x.reshape(-1)[63] = np.inf
    x.reshape(-1)[164] = np.nan
    yield ClassCase("inf_nan_odd_offsets", x, tgt(11, 19))

    if big:
        n, c = BIG_SHAPE
        x = logits(n, c, 2.0)
        flat = x.reshape(-1)
        flat[63] = -np.inf
        flat[63 + 917 * 400 + 1] = 1e30
        flat[-5] = -1e30
        yield ClassCase("big_1029x917", x, tgt(n, c))


def kdim_shapes() -> list[tuple[int, ...]]:
    """``(N, C, d1, ...)`` shapes for the class-axis-1 layout, incl. zero-size dims."""
    return [(3, 4, 5), (2, 5, 3, 4), (2, 3, 1, 2, 3), (0, 3, 5, 7), (2, 3, 0, 7), (2, 3, 5, 0)]
