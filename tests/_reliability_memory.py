"""Peak-memory probe for ``tests/test_memory.py`` (run as a fresh subprocess).

``python -m tests._reliability_memory JOBS_JSON`` runs each job and prints one JSON line
per job.  A job is ``{"func": name, "shape": [...], "mode": m, "reduction": r}`` with
``m`` one of ``"fresh"`` (the gradient allocated by the call, pool emptied first),
``"inplace"`` (``out=input``), ``"nograd"`` (``grad=False``) and, for ``grad_hess``,
``"given"`` (``grad_out``/``hess_out`` passed, allocated and touched before the call).
Every figure is *extra* memory of one call beyond its inputs:

``traced``  tracemalloc's peak during the call (every NumPy allocation is traced).
``rss``     the growth of the process's peak resident set (``VmHWM``, reset through
            ``/proc/self/clear_refs`` just before the call) over the resident set before
            it: what the kernels' own (Numba, untraced) allocations and the touched pages
            of the result really cost.  ``None`` where ``clear_refs`` cannot be written.
``result``  bytes of the arrays the call returns (the gradient, a ``"none"`` loss, a
            utility's output) that were not passed in by the caller.
``input``   bytes of the input (``preds`` for ``grad_hess``).

Before measuring, each job runs once on the same arrays (compiling or loading the
kernels), its result is dropped and ``fl.release_buffers()`` empties the pool, so the
measured call starts from an empty pool.  Run with ``MALLOC_MMAP_THRESHOLD_=65536``
(the test sets it) so that every large block is its own ``mmap``: freed memory leaves the
resident set, and a new one is counted when its pages are touched.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

import numpy as np

import fastloss as fl

__all__ = ["make_args", "measure"]


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_MARGIN = {"hinge_loss", "squared_hinge_loss", "perceptron_loss", "exponential_loss",
           "zero_one_loss", "soft_margin_loss"}
_TWO_LOGITS = {"kl_div_with_logits", "js_div_with_logits"}
_INDEX = {"cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss"}
_UTIL = {"softmax", "log_softmax", "logsumexp", "sigmoid", "log_sigmoid"}


def make_args(func: str, shape, rng) -> tuple:
    """Benchmark-style float32 arguments of ``func`` (targets in the input's dtype, so no
    argument is converted)."""
    f32 = np.float32
    shape = tuple(shape)
    if func.startswith("grad_hess:"):
        name = func.partition(":")[2]
        if name == "softmax":  # float labels, as XGBoost's get_label() gives them
            return (name, rng.standard_normal(shape, f32),
                    rng.integers(0, shape[1], shape[0]).astype(f32))
        y = rng.random(shape, f32) if name in ("logistic", "focal") else rng.poisson(
            2.0, shape).astype(f32)
        return (name, rng.standard_normal(shape, f32), y)
    x = rng.standard_normal(shape, f32)
    if func in _UTIL or func == "softmax_entropy":
        return (x,)
    if func in _INDEX:
        return (x, rng.integers(0, shape[-1], shape[:-1]))
    if func in _TWO_LOGITS:
        return (x, rng.standard_normal(shape, f32))
    if func in _MARGIN:
        return (x, np.where(rng.random(shape) < 0.5, f32(-1), f32(1)))
    if func == "binary_cross_entropy":
        return (rng.uniform(0.01, 0.99, shape).astype(f32), rng.random(shape, f32))
    if func == "poisson_nll_loss":
        return (x, rng.poisson(2.0, shape).astype(f32))
    if func == "kl_div":
        return (x - 3, rng.random(shape, f32))
    return (x, rng.standard_normal(shape, f32))


def _call(func, args, mode, reduction, bufs=()):
    if func.startswith("grad_hess:"):
        name, x, y = args
        if mode == "given":
            g, h = bufs
            return fl.grad_hess(name, x, y, grad_out=g, hess_out=h), (g, h)
        return fl.grad_hess(name, x, y), ()
    fn = getattr(fl, func)
    if func in _UTIL:
        return fn(args[0]), ()
    if mode == "inplace":
        return fn(*args, out=args[0], reduction=reduction), (args[0],)
    if mode == "nograd":
        return fn(*args, grad=False, reduction=reduction), ()
    return fn(*args, reduction=reduction), ()


def _result_bytes(res, given) -> int:
    items = res if isinstance(res, tuple) else (res,)
    n = 0
    for a in items:
        if isinstance(a, np.ndarray) and a.ndim and not any(a is g for g in given):
            n += a.nbytes
    return n


def measure(job: dict, seed: int = 0) -> dict:
    func, mode, red = job["func"], job["mode"], job.get("reduction", "mean")
    rng = np.random.default_rng(seed)
    args = make_args(func, job["shape"], rng)
    keep = [np.array(a) if isinstance(a, np.ndarray) else a for a in args]
    x = args[1] if func.startswith("grad_hess:") else args[0]
    input_bytes = x.nbytes

    def fresh_args():  # the in-place call overwrites its input: restore it
        if mode == "inplace":
            np.copyto(args[0], keep[0])
        return args

    bufs = ()
    if mode == "given":  # the caller's buffers exist (and are resident) before the call
        bufs = (np.zeros_like(x), np.zeros_like(x))
    # warm-up: compile / load the kernels this exact call takes
    _call(func, fresh_args(), mode, red, bufs)
    gc.collect()
    fl.release_buffers()

    # RSS: peak resident set growth during the call
    fresh_args()
    gc.collect()
    rss = None
    if _reset_hwm():
        before = _status("VmRSS")
        _reset_hwm()
        res, given = _call(func, args, mode, red, bufs)
        rss = _status("VmHWM") - before
        del res, given
        gc.collect()
        fl.release_buffers()

    # tracemalloc: peak of traced allocations during the call
    fresh_args()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        res, given = _call(func, args, mode, red, bufs)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    out = {
        **job,
        "input": int(input_bytes),
        "result": _result_bytes(res, given),
        "traced": int(peak),
        "rss": rss,
    }
    del res, given
    gc.collect()
    fl.release_buffers()
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for job in json.loads(argv[0]):
        print(json.dumps(measure(job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
