"""Benchmark of ``fastloss.linear_cross_entropy`` against the bare matrix products and PyTorch.

Methods, all float32, same process, same data, same thread count:

* ``3 products``: NumPy ``matmul`` of ``H @ W.T``, ``G @ W`` and ``G.T @ H`` into
  preallocated outputs -- the arithmetic any exact method must do (``6 N D V`` flops);
* ``fastloss``: ``fl.linear_cross_entropy(H, W, y)``, loss and the gradients of ``H`` and ``W``;
* ``torch eager``: ``F.cross_entropy(F.linear(h, w), y)`` + ``backward()``;
* ``torch F.linear_cross_entropy``: PyTorch 2.13's chunked op
  (``options=LinearCrossEntropyOptions()``) + ``backward()``;
* scoring (loss only): ``forward product`` (``H @ W.T`` into a preallocated output),
  ``fastloss grad=False``, ``torch eager`` and ``torch F.linear_cross_entropy`` under
  ``torch.no_grad()``.

Timings: rounds interleave the methods; the table gives medians, and the CPU load of
other processes during the timed calls (``/proc/stat``; ``--wait-quiet`` waits for a
quiet machine before each call).  Memory ("peak extra"):
each method runs once in a fresh subprocess (after a small warm-up call); the peak
resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
resident size before the call minus the bytes of the returned gradients.  For the NumPy
methods the tracemalloc peak (NumPy's own allocations) is given as well.

Usage::

    python bench/linear_ce.py --quick            # small shapes, a few seconds
    python bench/linear_ce.py                    # N=4096 D=1024 V=32000, N=2048 D=2048 V=128256
    python bench/linear_ce.py --rounds 3 -o bench/results/LINEAR_CE.md

The full shapes take tens of seconds per method and round.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

FULL_SHAPES = [(4096, 1024, 32000), (2048, 2048, 128256)]
QUICK_SHAPES = [(1024, 256, 8000), (512, 512, 16000)]

TRAIN = ["3 products", "fastloss", "torch eager", "torch F.linear_cross_entropy"]
SCORE = ["forward product", "fastloss grad=False", "torch eager no_grad",
         "torch F.linear_cross_entropy no_grad"]
METHODS = TRAIN + SCORE


def make_data(shape, seed=0):
    """float32 hidden states, an LM-head-like weight and int64 targets."""
    import numpy as np

    N, D, V = shape
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((N, D), dtype=np.float32)
    W = rng.standard_normal((V, D), dtype=np.float32)
    W *= np.float32(2.0 / np.sqrt(D))
    y = rng.integers(0, V, N)
    return H, W, y


def setup(method, H, W, y):
    """``fn()`` running ``method`` once; returns the gradients it produced (a tuple)."""
    import numpy as np

    from fastloss.linear_ce import linear_cross_entropy

    N, D = H.shape
    V = W.shape[0]
    if method in ("3 products", "forward product"):
        Z = np.empty((N, V), np.float32)
        dH = np.empty((N, D), np.float32)
        dW = np.empty((V, D), np.float32)
        if method == "forward product":
            def forward():
                np.matmul(H, W.T, out=Z)
                return ()

            return forward

        def products():
            np.matmul(H, W.T, out=Z)
            np.matmul(Z, W, out=dH)
            np.matmul(Z.T, H, out=dW)
            return ()

        return products
    if method == "fastloss":
        def run():
            r = linear_cross_entropy(H, W, y)
            return (r.grad_input, r.grad_linear_weight)

        return run
    if method == "fastloss grad=False":
        def score():
            linear_cross_entropy(H, W, y, grad=False)
            return ()

        return score

    import torch
    import torch.nn.functional as F

    yt = torch.from_numpy(y)
    if method.startswith("torch eager"):
        if method.endswith("no_grad"):
            def eager_score():
                with torch.no_grad():
                    F.cross_entropy(F.linear(torch.from_numpy(H), torch.from_numpy(W)), yt)
                return ()

            return eager_score

        def eager():
            h = torch.from_numpy(H).requires_grad_()
            w = torch.from_numpy(W).requires_grad_()
            F.cross_entropy(F.linear(h, w), yt).backward()
            return (h.grad, w.grad)

        return eager
    opts = torch.nn.LinearCrossEntropyOptions()
    if method.endswith("no_grad"):
        def lce_score():
            with torch.no_grad():
                F.linear_cross_entropy(torch.from_numpy(H), torch.from_numpy(W), yt,
                                       options=opts)
            return ()

        return lce_score

    def lce():
        h = torch.from_numpy(H).requires_grad_()
        w = torch.from_numpy(W).requires_grad_()
        F.linear_cross_entropy(h, w, yt, options=opts).backward()
        return (h.grad, w.grad)

    return lce


def _nbytes(arrays):
    return sum(a.numel() * a.element_size() if hasattr(a, "numel") else a.nbytes
               for a in arrays if a is not None)


def _warm(method):
    """One call at a tiny shape: JIT/cache load and library initialisation."""
    H, W, y = make_data((512, 128, 4096))  # large enough for the parallel kernels
    setup(method, H, W, y)()


# ---------------------------------------------------------------------------- memory
def _rss_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(method, shape):
    """(In a fresh process.) Peak RSS beyond the inputs and returned gradients, bytes.

    A first call on half the rows, at most 1024 (same D and V), compiles the kernels and
    makes BLAS / MKL allocate their work buffers, which belong to the process, not the method."""
    import gc

    import fastloss as fl

    H, W, y = make_data(shape)
    n = max(1, min(1024, H.shape[0] // 2))
    setup(method, H[:n], W, y[:n])()
    fl.release_buffers()
    fn = setup(method, H, W, y)
    gc.collect()
    base = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    out = fn()
    peak = _rss_kb("VmHWM")
    return (peak - base) * 1024 - _nbytes(out)


def memory_subprocess(method, shape, threads):
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import linear_ce as b; "
        f"print(json.dumps(b.child_memory({method!r}, {tuple(shape)!r})))"
    )
    env = dict(os.environ, **_thread_env(threads))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode:
        return None, r.stderr.strip().splitlines()[-1:]
    return json.loads(r.stdout.strip().splitlines()[-1]), None


def traced_peak(fn):
    """tracemalloc peak of one call (NumPy's allocations) minus the returned arrays."""
    import gc
    import tracemalloc

    import fastloss as fl

    gc.collect()
    fl.release_buffers()  # pooled blocks would hide the call's allocations
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - _nbytes(out)


# ---------------------------------------------------------------------------- timing
def _cpu_now():
    """(busy CPU seconds of the whole machine, of this process, wall time); Linux."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    t = os.times()
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.perf_counter()


def foreign_cores(start, end):
    """Cores other processes kept busy between two ``_cpu_now()`` readings."""
    if start is None or end is None:
        return None
    busy, own, wall = (e - s for e, s in zip(end, start, strict=True))
    return max(0.0, (busy - own) / wall) if wall > 0 else None


def wait_quiet(timeout, log, limit=0.2, window=3.0):
    """Wait up to ``timeout`` s for a ``window`` in which others use < ``limit`` cores."""
    t_end = time.perf_counter() + timeout
    while True:
        a = _cpu_now()
        time.sleep(window)
        f = foreign_cores(a, _cpu_now())
        if f is None or f < limit or time.perf_counter() >= t_end:
            return f
        log(f"  waiting for a quiet machine: other processes use {f:.2f} cores")


def run_shape(shape, rounds, methods, memory, threads, log, wait=0.0):
    import numpy as np

    H, W, y = make_data(shape)
    fns = {m: setup(m, H, W, y) for m in methods}
    times = {m: [] for m in methods}
    load = {m: [] for m in methods}
    if rounds == 0:  # memory only
        times = {m: [math.nan] for m in methods}
        load = {m: [None] for m in methods}
    for r in range(rounds):
        for m in methods:
            if wait:
                wait_quiet(wait, log)
            a = _cpu_now()
            t0 = time.perf_counter()
            out = fns[m]()
            times[m].append(time.perf_counter() - t0)
            load[m].append(foreign_cores(a, _cpu_now()))
            del out
            log(f"  {shape} round {r + 1}/{rounds} {m}: {times[m][-1]:.3f} s "
                f"(other processes: {load[m][-1] or 0:.2f} cores)")
    res = {m: {"time": statistics.median(times[m]), "times": times[m],
               "foreign_cores": load[m]} for m in methods}
    if memory:
        for m in methods:
            if m in ("3 products", "forward product", "fastloss", "fastloss grad=False"):
                res[m]["traced"] = traced_peak(fns[m])
            res[m]["rss"], err = memory_subprocess(m, shape, threads)
            if err:
                res[m]["rss_error"] = err
            log(f"  {shape} memory {m}: {res[m].get('rss')}")
    # a sanity check that fastloss computed the same thing as PyTorch (loss only)
    if "fastloss" in methods:
        import torch
        import torch.nn.functional as F

        from fastloss.linear_ce import linear_cross_entropy

        a = float(linear_cross_entropy(H, W, y, grad=False).loss)
        b = float(F.cross_entropy(torch.from_numpy(H) @ torch.from_numpy(W).T,
                                  torch.from_numpy(y)))
        res["_check"] = {"fastloss_loss": a, "torch_loss": b}
        if not np.isclose(a, b, rtol=1e-5):
            log(f"  WARNING: losses differ: fastloss {a} torch {b}")
    return res


def _thread_env(threads):
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "NUMBA_NUM_THREADS": n}


def _mb(b):
    return "" if b is None else f"{b / 1e6:.0f}"


def report(results, threads, rounds, note):
    lines = [
        "# fastloss.linear_cross_entropy: time and memory",
        "",
        f"float32, {threads} threads, median of {rounds} interleaved round(s); peak extra = "
        "peak RSS beyond the inputs and the returned gradients (one call in a fresh "
        "process, after a first call on half the rows, at most 1024, so that BLAS work buffers "
        "are not counted); traced = tracemalloc peak of the NumPy allocations during the "
        "call, same accounting (the bare products' outputs are allocated beforehand: 0).",
    ]
    if note:
        lines += ["", note]
    for key, res in results.items():
        N, D, V = json.loads(key)
        lines += ["", f"## N={N}, D={D}, V={V}", "",
                  "| method | time (s) | vs 3 products / forward | fastloss speed-up | "
                  "peak extra (MB) | traced (MB) | other load (cores) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for group, base, ours in ((TRAIN, "3 products", "fastloss"),
                                  (SCORE, "forward product", "fastloss grad=False")):
            for m in group:
                if m not in res:
                    continue
                t = res[m]["time"]
                rel = t / res[base]["time"] if base in res else float("nan")
                sp = t / res[ours]["time"] if ours in res else float("nan")
                fc = [c for c in res[m].get("foreign_cores", []) if c is not None]
                lines.append(
                    f"| {m} | {t:.3f} | {rel:.3f} | {sp:.2f}x | {_mb(res[m].get('rss'))} | "
                    f"{_mb(res[m].get('traced'))} | "
                    f"{(sum(fc) / len(fc)) if fc else float('nan'):.2f} |"
                )
        if "_check" in res:
            c = res["_check"]
            lines += ["", f"loss: fastloss {c['fastloss_loss']:.7g}, torch {c['torch_loss']:.7g}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes (seconds)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds (3; quick 5; 0: memory only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shape", action="append", default=None, metavar="N,D,V",
                   help="shape(s) instead of the defaults")
    p.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each timed call wait up to SECONDS for a quiet machine")
    p.add_argument("--note", default="", help="a line added to the report (e.g. the load)")
    p.add_argument("-o", "--output", default=None, help="markdown report path (default stdout)")
    p.add_argument("--json", default=None, help="also write the raw results here")
    a = p.parse_args(argv)
    for k, v in _thread_env(a.threads).items():
        os.environ.setdefault(k, v)
    import numpy as np  # noqa: F401  (after the thread variables)
    import torch

    import fastloss as fl

    torch.set_num_threads(a.threads)
    fl.set_num_threads(min(a.threads, fl.get_num_threads()))
    if a.shape:
        shapes = [tuple(int(v) for v in s.split(",")) for s in a.shape]
    else:
        shapes = QUICK_SHAPES if a.quick else FULL_SHAPES
    rounds = a.rounds if a.rounds is not None else (5 if a.quick else 3)
    methods = METHODS if not a.methods else [m.strip() for m in a.methods.split(",")]
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; known: {METHODS}")
    for m in methods:
        _warm(m)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results = {}
    for s in shapes:
        results[json.dumps(list(s))] = run_shape(s, rounds, methods, not a.no_memory,
                                                 a.threads, log, a.wait_quiet)
    text = report(results, a.threads, rounds, a.note)
    if a.output:
        with open(a.output, "w") as fh:
            fh.write(text)
    else:
        print(text)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
