"""``fastloss.warmup()``: compile (or load from the on-disk cache) kernels up front."""

from __future__ import annotations

import time
from functools import partial

import numpy as np

from . import _load_losses
from ._config import _CACHE, force_parallel
from ._core import LOSSES

_load_losses()  # every loss family registers itself in LOSSES

__all__ = ["warmup"]

_LINEAR_CE = "linear_cross_entropy"

#: A row wider than the few-class cross-entropy kernel's limit (``SMALL_C``), so that warm-up
#: also compiles the kernel of wide rows.
_WIDE = 40


def _objective_calls(name, dt):
    """Tiny valid calls of objective ``name`` covering the layouts the adapters use:
    C-ordered margins and outputs (XGBoost), for softmax also F-ordered float64 margins
    into F-ordered float32 buffers (LightGBM), and CatBoost's callbacks."""
    from .boost import grad_hess, objective_loss

    rng = np.random.default_rng(0)
    if name == "softmax":
        x = rng.standard_normal((3, 4)).astype(dt)
        y = np.array([0, 3, 1], dtype=dt)
    else:
        x = rng.standard_normal(3).astype(dt)
        y = np.array([0.0, 1.0, 0.5], dtype=dt) if name != "poisson" else np.ones(3, dt)
    w = np.ones(3, dt)
    calls = [
        partial(grad_hess, name, x, y),
        partial(grad_hess, name, x, y, sample_weight=w),
        partial(objective_loss, name, x, y),
    ]
    if name == "softmax" and dt == np.float64:
        g = np.empty(x.shape, np.float32, order="F")
        h = np.empty(x.shape, np.float32, order="F")
        calls.append(partial(grad_hess, name, np.asfortranarray(x), y, grad_out=g, hess_out=h))
    if dt == np.float64:  # CatBoost's own kernels: float64 margins, float32 labels, weights
        from .catboost import ElementwiseObjective, SoftmaxObjective

        if name == "softmax":
            calls.append(partial(SoftmaxObjective({}, "full").calc_ders_multi, x[0], 1.0, 1.0))
        else:
            obj = ElementwiseObjective(name, 1, {})
            y32, w32 = y.astype(np.float32), w.astype(np.float32)
            calls += [partial(obj.calc_ders_range, x, y32, None),
                      partial(obj.calc_ders_range, x, y32, w32)]
    return calls


def warmup(
    losses=None, dtypes=("float32", "float64"), parallel: bool = True, processes: int = 1
) -> dict:
    """Compile the kernels of ``losses`` (default: all) for ``dtypes``, serial and
    (if ``parallel``) parallel builds, so the first real call does not pay the JIT.

    ``losses`` holds loss names (``fl.LOSSES``), boosting objectives as
    ``"grad_hess:<objective>"`` (``fl.OBJECTIVES``; the kernels behind ``fl.grad_hess``,
    ``fl.objective_loss`` and the booster adapters) and ``"linear_cross_entropy"`` (the
    fused linear + cross-entropy's own kernels; its loss kernels are
    ``"cross_entropy"``'s).  With the on-disk cache (default)
    the compile happens once per machine and Numba version; later processes load
    machine code in milliseconds.

    ``processes > 1`` compiles in that many fresh (spawned) processes, each a share of
    the names, into the on-disk cache (Numba compiles under one lock per process, so
    threads would not help); this process then loads the results.  Ignored when the
    cache is off (``FASTLOSS_CACHE=0``).

    Returns:
        ``{name: seconds}`` spent per loss / objective (in the worker, with processes).

    Example:
        >>> import fastloss as fl
        >>> t = fl.warmup(["cross_entropy", "grad_hess:logistic"], dtypes=["float64"])
        >>> sorted(t)
        ['cross_entropy', 'grad_hess:logistic']
    """
    from .boost import OBJECTIVES

    objectives = [f"grad_hess:{n}" for n in sorted(OBJECTIVES)]
    valid = sorted(LOSSES) + objectives + [_LINEAR_CE]
    if isinstance(losses, str):  # one name, not its characters
        losses = [losses]
    if isinstance(dtypes, (str, np.dtype, type)):
        dtypes = [dtypes]
    # each name once, in the order given (a repeat would time a cache load)
    names = valid if losses is None else list(dict.fromkeys(losses))
    dtypes = list(dict.fromkeys(np.dtype(dt).name for dt in dtypes))
    if any(dt not in ("float32", "float64") for dt in dtypes):
        raise ValueError(f"dtypes must be float32 and/or float64, got {dtypes}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown loss(es) {unknown}; valid names are {valid}")
    if processes > 1 and _CACHE and len(names) > 1:
        return _warmup_processes(names, list(dtypes), parallel, processes)
    spent = {}
    for name in names:
        t0 = time.perf_counter()
        for dt in dtypes:
            if name in LOSSES:
                info = LOSSES[name]
                args, kwargs = info.example(np.dtype(dt))
                calls = [partial(info.fn, *args, **kwargs),
                         partial(info.fn, *args, grad=False, **kwargs)]
                if name == "cross_entropy":  # more classes than the few-class kernel takes
                    wide = (np.zeros((3, _WIDE), np.dtype(dt)), np.array([0, _WIDE - 1, 1]))
                    calls += [partial(info.fn, *wide), partial(info.fn, *wide, grad=False),
                              partial(info.fn, *wide, softcap=30.0),  # the capped build
                              partial(info.fn, *wide, softcap=30.0, grad=False)]
                if name == "poisson_nll_loss":  # the default options have their own kernel
                    calls += [partial(info.fn, *args, **kwargs, full=True),
                              partial(info.fn, *args, **kwargs, full=True, grad=False)]
            elif name == _LINEAR_CE:
                from .linear_ce import _warmup_calls

                calls = _warmup_calls(np.dtype(dt))
            else:
                calls = _objective_calls(name.split(":", 1)[1], np.dtype(dt))
            for call in calls:
                call()
            if parallel:
                with force_parallel():
                    for call in calls:
                        call()
        spent[name] = time.perf_counter() - t0
    return spent


#: Relative compile cost, for sharing names out between processes (cross-entropy, with
#: every option in one kernel and a wide-row variant, is the largest by far).
_COST = {"cross_entropy": 6.0, "softmax_focal_loss": 2.0, "grad_hess:softmax": 2.0}


def _warmup_processes(names, dtypes, parallel, processes):
    import concurrent.futures as cf
    import multiprocessing as mp

    shares = [[] for _ in range(min(processes, len(names)))]
    load = [0.0] * len(shares)
    for name in sorted(names, key=lambda n: -_COST.get(n, 1.0)):  # longest first
        i = load.index(min(load))
        shares[i].append(name)
        load[i] += _COST.get(name, 1.0)
    spent = {}
    with cf.ProcessPoolExecutor(len(shares), mp_context=mp.get_context("spawn")) as pool:
        for part in pool.map(partial(warmup, dtypes=dtypes, parallel=parallel), shares):
            spent.update(part)
    warmup(names, dtypes, parallel)  # loads from the cache into this process
    return {n: spent[n] for n in names}
