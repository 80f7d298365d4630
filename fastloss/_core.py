"""The public layer's shared machinery: ``LossResult``, input normalisation, option
checks with SPEC section 5's errors, ``out=`` handling, reductions and the loss registry.

Kernels never validate; everything here runs once per call, before any kernel.
Checks that need a full pass over a big array (probabilities in [0, 1], +-1 targets)
are done inside the fused kernels and reported back through a status code.
"""

from __future__ import annotations

import math
import operator
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "LossResult",
    "LOSSES",
    "register",
    "as_input",
    "as_float_like",
    "as_index_target",
    "target_out_of_bounds",
    "check_reduction",
    "check_same_shape",
    "prepare_out",
    "readonly",
    "finish",
    "normalize_axis",
    "to_dtype",
    "array_to_dtype",
    "float64_totals",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class LossResult(NamedTuple):
    """What every loss returns: the loss and its gradient with respect to the input."""

    loss: Any
    """NumPy scalar of the input dtype ("sum"/"mean"), or ndarray ("none")."""
    grad: np.ndarray | None
    """d loss / d input, the input's shape and dtype; ``None`` when ``grad=False``."""


# ---------------------------------------------------------------------------- registry
class LossInfo(NamedTuple):
    name: str
    fn: Callable
    group: str
    reductions: tuple
    example: Callable | None = None
    """``example(dtype) -> (args, kwargs)``: a tiny valid call, used by ``fastloss.warmup``."""


#: name -> LossInfo for every public loss; tests and benchmarks parametrise over it.
LOSSES: dict[str, LossInfo] = {}


def _default_example(group):
    def example(dtype):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, 4)).astype(dtype)
        if group == "classification":
            # int32 labels take the general path of cross_entropy, so warmup also
            # compiles the parallel builds (its int64 small-call fast path would not)
            return (x, np.array([0, 3, 1], dtype=np.int32)), {}
        if group == "margin":
            return (x, np.where(rng.random((3, 4)) < 0.5, -1.0, 1.0).astype(dtype)), {}
        if group == "binary":
            return (x, rng.random((3, 4)).astype(dtype)), {}
        if group == "count":
            return (x, rng.poisson(2.0, (3, 4)).astype(dtype)), {}
        return (x, rng.standard_normal((3, 4)).astype(dtype)), {}

    return example


def register(group: str, reductions=("none", "sum", "mean"), example=None):
    """Enter a public loss in :data:`LOSSES` under ``group``.  ``example(dtype)`` returns
    ``(args, kwargs)`` of a tiny valid call (default: by group) for ``fastloss.warmup``."""

    def deco(fn):
        ex = example or _default_example(group)
        LOSSES[fn.__name__] = LossInfo(fn.__name__, fn, group, tuple(reductions), ex)
        fn.__module__ = "fastloss"
        return fn

    return deco


# ------------------------------------------------------------------------ normalisation
def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: kernels are compiled once for read-only inputs, so writeable,
    read-only and memmap inputs all share one compiled specialisation."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def as_input(x, name: str = "input") -> np.ndarray:
    """``x`` as a float32/float64 ndarray (C-contiguous, read-only view); TypeError otherwise."""
    a = x if type(x) is np.ndarray else np.asarray(x)
    if a.dtype not in _FLOATS:
        if a.dtype.kind == "f" and a.dtype.newbyteorder("=") in _FLOATS:
            a = a.astype(a.dtype.newbyteorder("="))  # byte-swapped float32/float64
        else:
            raise TypeError(
                f"{name} must have dtype float32 or float64, got {a.dtype}"
            )
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    elif type(a) is not np.ndarray:
        a = a.view(np.ndarray)  # memmap and other subclasses
    return readonly(a)


def as_float_like(t, x: np.ndarray, name: str = "target", shape=None) -> np.ndarray:
    """A float array with ``x``'s dtype (C-contiguous, read-only) and, if given, ``shape``."""
    a = t if type(t) is np.ndarray else np.asarray(t)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(
            f"{name} shape {a.shape} does not match input shape {tuple(shape)}"
        )
    if a.dtype != x.dtype or not a.flags.c_contiguous or type(a) is not np.ndarray:
        a = np.asarray(a, dtype=x.dtype, order="C")  # (ascontiguousarray makes 0-D 1-D)
    return readonly(a)


_INT_MAX = np.iinfo(np.int64).max


def target_out_of_bounds(value: int, C: int, ignorable: bool = False) -> IndexError:
    """SPEC 5's error for a class index outside [0, C) (naming the value and C); the value
    is also its attribute ``value`` (the command line finds the row from it)."""
    also = " or ignore_index" if ignorable else ""
    err = IndexError(
        f"Target {value} is out of bounds for {C} classes (valid range [0, {C}){also})"
    )
    err.value = value
    return err


def as_index_target(t, C: int, ignorable: bool = False, name: str = "target") -> np.ndarray:
    """Class indices (of ``C`` classes; ``ignorable``: an ignore_index applies) as a
    C-contiguous read-only int64 array (any integer dtype)."""
    a = t if type(t) is np.ndarray else np.asarray(t)
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "b":
            raise TypeError(f"{name} must hold integer class indices, got dtype bool")
        raise TypeError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > _INT_MAX:
        raise target_out_of_bounds(int(a.max()), C, ignorable)
    if a.dtype != np.int64 or not a.flags.c_contiguous or type(a) is not np.ndarray:
        a = np.asarray(a, dtype=np.int64, order="C")  # (ascontiguousarray makes 0-D 1-D)
    return readonly(a)


def check_same_shape(x: np.ndarray, t: np.ndarray, what: str = "target") -> None:
    if x.shape != t.shape:
        raise ValueError(
            f"{what} shape {t.shape} does not match input shape {x.shape}"
        )


def real_option(value, name: str) -> float:
    """A numeric option as a float; ``TypeError`` for anything ``float()`` cannot take
    and for strings (``float("2")`` would parse one; PyTorch's functions refuse it)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def check_reduction(reduction: str, allowed=("none", "sum", "mean")) -> None:
    if reduction not in allowed:
        valid = ", ".join(repr(r) for r in allowed)
        raise ValueError(
            f"{reduction!r} is not a valid value for reduction; valid values are {valid}"
        )


def normalize_axis(axis, ndim: int) -> int:
    if isinstance(axis, (bool, np.bool_)):  # NumPy and PyTorch refuse a bool axis too
        raise TypeError(f"axis must be an integer, got {axis!r}")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for input of dimension {ndim}")
    return axis % ndim


# ------------------------------------------------------------------ gradient buffers
class _Owner:
    """Base object of a pooled array (NumPy keeps it as ``arr.base`` for every view)."""

    __slots__ = ("mem", "__array_interface__", "__weakref__")

    def __init__(self, mem, shape, dtype):
        self.mem = mem
        self.__array_interface__ = {
            "shape": tuple(shape),
            "typestr": dtype.str,
            "data": (mem.ctypes.data, False),
            "version": 3,
        }


def _pool_limit(value: str) -> int:
    """``FASTLOSS_POOL_MB`` in bytes (a number of MiB >= 0)."""
    try:
        mb = float(value)
    except ValueError:
        mb = math.nan
    if not (0.0 <= mb < math.inf):
        raise ValueError(
            f"FASTLOSS_POOL_MB must be a number of MiB >= 0 (0 disables the buffer pool), "
            f"got {value!r}"
        )
    return int(mb * (1 << 20))


class _BufferPool:
    """Recycles the memory of large gradient arrays the caller has dropped.

    A fresh multi-megabyte ``np.empty`` is backed by untouched pages: the kernel's first
    write to each page faults and the OS zeroes it, which costs as much again as writing
    the gradient.  Arrays handed out here keep their block alive through their base object;
    when the last array (or view) using a block is garbage-collected, the block returns
    to the pool and the next call of the same size reuses its already-mapped pages.
    Blocks held by the pool are bounded by ``FASTLOSS_POOL_MB`` (default 2048; 0
    disables pooling); :func:`fastloss.release_buffers` empties it.
    """

    MIN_BYTES = 1 << 22

    def __init__(self):
        self.limit = _pool_limit(os.environ.get("FASTLOSS_POOL_MB", "2048"))
        self._free: dict[int, list] = {}
        self._held = 0
        self._lock = threading.Lock()

    def empty(self, shape, dtype) -> np.ndarray:
        n = math.prod(shape) * dtype.itemsize
        if n < self.MIN_BYTES or self.limit <= 0:
            return np.empty(shape, dtype)
        with self._lock:
            blocks = self._free.get(n)
            mem = blocks.pop() if blocks else None
            if mem is not None:
                self._held -= n
        if mem is None:
            mem = np.empty(n, np.uint8)
        owner = _Owner(mem, shape, dtype)
        # atexit=False: at interpreter exit the finalizers of live gradients must not
        # put their memory back (an atexit handler or daemon thread could still call)
        weakref.finalize(owner, self._put, mem).atexit = False
        return np.asarray(owner)

    def _put(self, mem) -> None:
        n = mem.nbytes
        with self._lock:
            if self._held + n <= self.limit:
                self._free.setdefault(n, []).append(mem)
                self._held += n

    def release(self) -> None:
        with self._lock:
            self._free.clear()
            self._held = 0


POOL = _BufferPool()


def same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` and ``b`` view exactly the same elements (same start, shape and strides)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
    )


def _copy_overlapping(out, arrays, keep_same: bool):
    """``arrays`` with each one that shares memory with ``out`` replaced by a read-only
    copy, except (``keep_same``) one that is exactly ``out``'s elements."""
    if not isinstance(out, np.ndarray):
        return arrays
    return tuple(
        readonly(np.array(a, order="C"))
        if a is not None and a.size and np.may_share_memory(out, a)
        and not (keep_same and same_buffer(out, a))
        else a
        for a in arrays
    )


def unalias(out, *arrays):
    """``arrays`` with each one that overlaps ``out`` without being exactly ``out``'s
    elements replaced by a read-only copy.  Kernels support ``out=input`` (element for
    element, in place); any other overlap gives the results of non-overlapping arrays,
    as NumPy's ufuncs do."""
    return _copy_overlapping(out, arrays, True)


def separate(out, *arrays):
    """``arrays`` with each one that shares any memory with ``out`` replaced by a copy.
    For what a kernel reads beyond the element it writes (class weights, a row's class
    index or target row, read while other rows' gradients are written), where even
    ``out`` being that very array (which :func:`unalias` lets through) would change it
    under the kernel."""
    return _copy_overlapping(out, arrays, False)


def release_buffers() -> None:
    """Free the gradient memory fastloss keeps for reuse (see ``FASTLOSS_POOL_MB``)."""
    POOL.release()


def prepare_out(out, x: np.ndarray, grad: bool) -> np.ndarray:
    """The gradient buffer: ``out`` after checks, or a fresh array (``(0,)*ndim`` when
    ``grad=False`` so kernels keep one signature)."""
    if out is None:
        return POOL.empty(x.shape, x.dtype) if grad else np.empty((0,) * x.ndim, x.dtype)
    if not grad:
        raise ValueError("out= was given but grad=False: there is no gradient to write")
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"out has shape {out.shape}, expected the input's shape {x.shape}")
    if out.dtype != x.dtype:
        raise ValueError(f"out has dtype {out.dtype}, expected the input's dtype {x.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out is read-only; it must be writeable")
    return out  # a subclass (memmap) as is: Numba types it as a plain array


_F32_ROUNDS_TO_INF = 3.4028235677973366e38  # float32 max + half an ulp


class _Flag(threading.local):
    """A per-thread flag whose default is a class attribute: ``getattr(local, name,
    False)`` on a plain ``threading.local`` costs about a microsecond when the attribute
    is missing (an AttributeError raised and caught), on every small call."""

    on = False


_totals = _Flag()


class float64_totals:
    """Context manager: this thread's ``"sum"``/``"mean"`` results stay float64 (the
    kernels' float64 accumulation, unrounded), so that chunked reductions
    (``fastloss score``, ``fastloss.dask``) add chunk totals before the one final
    rounding to the input dtype, as the in-memory call does."""

    def __enter__(self):
        self.prev = _totals.on
        _totals.on = True
        return self

    def __exit__(self, *exc):
        _totals.on = self.prev


def to_dtype(value, dtype: np.dtype):
    """A float64 result as a NumPy scalar of ``dtype``, overflowing to +-inf silently
    (IEEE rounding, as PyTorch's float32 arithmetic would) instead of warning.  Inside
    :class:`float64_totals` the float64 value itself."""
    if _totals.on:
        return np.float64(value)
    v = float(value)
    # the identity tests first: this runs once per small call
    if dtype is _F32_DTYPE and -_F32_ROUNDS_TO_INF < v < _F32_ROUNDS_TO_INF:
        return _F32_TYPE(v)  # (NaN fails both comparisons: the general path below)
    if dtype is _F64_DTYPE:
        return np.float64(v)
    if abs(v) >= _F32_ROUNDS_TO_INF and v == v and dtype == np.float32:
        v = math.copysign(math.inf, v)
    return dtype.type(v)


_F64_DTYPE = np.dtype(np.float64)
_F32_DTYPE = np.dtype(np.float32)
_F32_TYPE = np.float32


def array_to_dtype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float64 per-sample results as ``dtype`` (silent overflow to +-inf)."""
    if a.dtype == dtype:
        return a
    with np.errstate(over="ignore"):
        return a.astype(dtype)


_tuple_new = tuple.__new__  # LossResult(a, b) without NamedTuple's Python-level __new__


def finish(loss, g: np.ndarray, grad: bool, out) -> LossResult:
    """Wrap the result; returns the caller's own ``out`` object as ``grad``."""
    if not grad:
        return _tuple_new(LossResult, (loss, None))
    return _tuple_new(LossResult, (loss, out if out is not None else g))


def small_result(value, dtype: np.dtype, g, grad: bool) -> LossResult:
    """A small call's result: the float64 total as a scalar of ``dtype`` (:func:`to_dtype`)
    and the gradient (``None`` without ``grad``)."""
    return _tuple_new(LossResult, (to_dtype(value, dtype), g if grad else None))
