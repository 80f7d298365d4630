"""``fastloss.warmup()``: compile (or load from the on-disk cache) kernels up front."""

from __future__ import annotations

import time

import numpy as np

from ._config import force_parallel
from ._core import LOSSES

__all__ = ["warmup"]


def warmup(losses=None, dtypes=("float32", "float64"), parallel: bool = True) -> dict:
    """Compile the kernels of ``losses`` (default: all) for ``dtypes``, serial and
    (if ``parallel``) parallel builds, so the first real call does not pay the JIT.

    With the on-disk cache (default) the compile happens once per machine and Numba
    version; later processes load machine code in milliseconds.

    Returns:
        ``{loss_name: seconds}`` spent per loss.

    Example:
        >>> import fastloss as fl
        >>> t = fl.warmup(["cross_entropy"], dtypes=["float64"])
        >>> sorted(t)
        ['cross_entropy']
    """
    names = sorted(LOSSES) if losses is None else list(losses)
    unknown = [n for n in names if n not in LOSSES]
    if unknown:
        raise ValueError(f"unknown loss(es) {unknown}; valid names are {sorted(LOSSES)}")
    spent = {}
    for name in names:
        info = LOSSES[name]
        t0 = time.perf_counter()
        for dt in dtypes:
            args, kwargs = info.example(np.dtype(dt))
            info.fn(*args, **kwargs)
            info.fn(*args, grad=False, **kwargs)
            if parallel:
                with force_parallel():
                    info.fn(*args, **kwargs)
                    info.fn(*args, grad=False, **kwargs)
        spent[name] = time.perf_counter() - t0
    return spent
