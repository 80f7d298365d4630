"""Soak test: many threads of mixed fastloss calls for minutes, watching the resident set.

    python bench/soak.py --duration 600 --threads 8          # the issue's 10-minute run
    python bench/soak.py --duration 120 --json               # + a JSON summary on stdout

Each worker thread repeatedly draws a function (every loss in ``fastloss.LOSSES`` with
its options, every ``grad_hess`` objective, the utilities), a size (1 x 1 up to
65536 x 1000 for row functions, 1 up to 16M elements for elementwise ones; big sizes
rarely, at most two of them in flight at once) and a dtype, and calls it on inputs built
before the clock starts (one set of arrays per shape and dtype, shared by the functions).
The first result of every (function, size, dtype, options) is recorded; every later call
on the same inputs must give the same bits (a race or a non-deterministic reduction would
show), and no call may raise.

Every ``--interval`` seconds the sampler waits until no call is in flight (workers hold a
shared permit during a call) and records the resident set (``VmRSS``) and the bytes the
gradient pool holds (``fastloss._core.POOL``; by design up to ``FASTLOSS_POOL_MB``).
The verdict uses ``RSS - pool`` (memory a leak would grow), measured after the warm-up
(``--warmup``, default 20 % of the run): the growth from the median of the first three
samples after warm-up to the median of the last three must stay under ``--max-growth-mb``
(50).  Exit status 0 on pass, 1 on an error, a mismatch or too much growth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script from a source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastloss as fl  # noqa: E402
from fastloss._core import POOL  # noqa: E402

ROW_SHAPES = [(1, 1), (1, 7), (7, 3), (64, 10), (65, 1000), (500, 203), (4096, 100),
              (2048, 1000), (65536, 1000)]
ELEM_SIZES = [1, 7, 100, 4099, 40_000, 250_003, 1_000_000, 16_777_216]
BIG_BYTES = 64 << 20  # inputs at least this big: rare, at most 2 in flight

_ROW = {"cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss",
        "kl_div_with_logits", "js_div_with_logits", "softmax_entropy"}
_MARGIN = {"hinge_loss", "squared_hinge_loss", "perceptron_loss", "exponential_loss",
           "zero_one_loss", "soft_margin_loss"}
_OPTIONS = {
    "cross_entropy": [{}, {"label_smoothing": 0.1}, {"z_loss": 1e-4, "reduction": "sum"},
                      {"softcap": 30.0, "reduction": "none"}],
    "nll_loss": [{"ignore_index": 0}],
    "softmax_focal_loss": [{"gamma": 1.5}],
    "multi_margin_loss": [{}, {"p": 2, "margin": 0.5}],
    "kl_div_with_logits": [{"temperature": 2.0}],
    "js_div_with_logits": [{}],
    "softmax_entropy": [{"reduction": "none"}],
    "smooth_l1_loss": [{"beta": 0.5}],
    "huber_loss": [{"delta": 0.7, "reduction": "sum"}],
    "hinge_loss": [{"margin": 0.5}],
    "sigmoid_focal_loss": [{"alpha": 0.4, "gamma": 1.5}],
    "poisson_nll_loss": [{}, {"log_input": False, "full": True}],
    "kl_div": [{"reduction": "batchmean"}],
}


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _funcs():
    out = [(name, "loss") for name in sorted(fl.LOSSES)]
    out += [(name, "grad_hess") for name in sorted(fl.OBJECTIVES)]
    out += [(name, "util") for name in ("softmax", "log_softmax", "logsumexp", "sigmoid",
                                        "log_sigmoid")]
    return out


def _is_row(name, kind):
    return (kind == "loss" and name in _ROW) or (
        kind == "util" and name in ("softmax", "log_softmax", "logsumexp")) or (
        kind == "grad_hess" and name == "softmax")


def _data(shape, dt, rng) -> dict:
    """Every array kind the functions take, for one (shape, dtype): shared by all of them."""
    d = {
        "x": (2 * rng.standard_normal(shape)).astype(dt),
        "other": rng.standard_normal(shape).astype(dt),
        "prob": rng.random(shape).astype(dt),
        "pm1": np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dt),
        "count": rng.poisson(2.0, shape).astype(dt),
    }
    d["x01"] = np.clip(d["prob"], 0.01, 0.99)
    if len(shape) == 2:
        d["index"] = rng.integers(0, shape[1], shape[0])
        d["index_f"] = d["index"].astype(dt)  # boosting labels, as XGBoost passes them
    return d


def _inputs(name, kind, d):
    """(args, kwargs variants) of a call on the shared arrays ``d``."""
    x = d["x"]
    if kind == "util":
        return (x,), [{}]
    if kind == "grad_hess":
        if name == "softmax":
            return (name, x, d["index_f"]), [{"hess_scale": 2.0}]
        y = {"logistic": "prob", "focal": "prob", "poisson": "count"}.get(name, "other")
        return (name, x, d[y]), [{}]
    opts = _OPTIONS.get(name, [{}])
    if name in ("cross_entropy", "nll_loss", "softmax_focal_loss", "multi_margin_loss"):
        return (x, d["index"]), opts
    if name in ("kl_div_with_logits", "js_div_with_logits"):
        return (x, d["other"]), opts
    if name == "softmax_entropy":
        return (x,), opts
    if name in _MARGIN:
        return (x, d["pm1"]), opts
    if name == "binary_cross_entropy":
        return (d["x01"], d["prob"]), opts
    if name == "poisson_nll_loss":
        return (d["x01"], d["count"]), opts
    if name == "kl_div":
        return (x, d["prob"]), opts
    return (x, d["other"]), opts


def _call(name, kind, args, kw):
    if kind == "grad_hess":
        return fl.grad_hess(*args, **kw)
    fn = getattr(fl, name)
    return fn(*args, **kw)


def _digest(res) -> str:
    h = hashlib.sha256()
    items = res if isinstance(res, tuple) else (res,)
    for a in items:
        a = np.asarray(a)
        if a.size > (1 << 22):
            a = a.reshape(-1)[::997]
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class _Permits:
    """Workers share it during a call; the sampler takes it exclusively (no call in flight)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._active = 0
        self._paused = False

    def enter(self):
        with self._cond:
            while self._paused:
                self._cond.wait()
            self._active += 1

    def leave(self):
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def pause(self):
        with self._cond:
            self._paused = True
            while self._active:
                self._cond.wait()

    def resume(self):
        with self._cond:
            self._paused = False
            self._cond.notify_all()


def run(duration=600.0, threads=8, warmup=None, interval=5.0, seed=0, max_growth_mb=50.0,
        big_every=40, log=sys.stderr):
    warmup = 0.2 * duration if warmup is None else warmup
    funcs = _funcs()
    # the inputs: one set of arrays per (shape, dtype), shared by every function; big
    # shapes float32 only; all built before the clock starts
    data: dict = {}
    for shapes in (ROW_SHAPES, [(n,) for n in ELEM_SIZES]):
        for shape in shapes:
            big = np.prod(shape) * 4 >= BIG_BYTES
            for dt in (("float32",) if big else ("float32", "float64")):
                r = np.random.default_rng([seed, zlib.crc32(repr((shape, dt)).encode())])
                data[(shape, dt)] = _data(shape, np.dtype(dt), r)
    expected: dict = {}
    stats = {"calls": 0, "errors": 0, "mismatches": 0, "big_calls": 0}
    errors: list = []
    stats_lock = threading.Lock()
    big_slots = threading.Semaphore(2)
    permits = _Permits()
    stop = threading.Event()

    def inputs_for(key):
        name, kind, shape, dt = key
        return _inputs(name, kind, data[(shape, dt)])

    def draw(r):
        name, kind = funcs[r.randrange(len(funcs))]
        if _is_row(name, kind):
            shapes = ROW_SHAPES
        else:
            shapes = [(n,) for n in ELEM_SIZES]
        big = [s for s in shapes if np.prod(s) * 4 >= BIG_BYTES]
        small = [s for s in shapes if s not in big]
        shape = big[r.randrange(len(big))] if (big and r.randrange(big_every) == 0) else \
            small[r.randrange(len(small))]
        dt = "float32" if shape in big or r.random() < 0.5 else "float64"
        return (name, kind, shape, dt), shape in big

    def worker(k):
        r = random.Random(seed * 1000 + k)
        while not stop.is_set():
            key, is_big = draw(r)
            args, variants = inputs_for(key)
            kw = variants[r.randrange(len(variants))]
            ekey = key + (json.dumps(kw, sort_keys=True),)
            if is_big:
                big_slots.acquire()
            permits.enter()
            try:
                res = _call(key[0], key[1], args, kw)
                d = _digest(tuple(res) if isinstance(res, tuple) else res)
                del res
            except Exception as e:  # a soak records every failure and goes on
                with stats_lock:
                    stats["errors"] += 1
                    if len(errors) < 20:
                        errors.append(f"{ekey}: {e!r}")
                continue
            finally:
                permits.leave()
                if is_big:
                    big_slots.release()
            with stats_lock:
                stats["calls"] += 1
                stats["big_calls"] += is_big
                prev = expected.setdefault(ekey, d)
                if prev != d:
                    stats["mismatches"] += 1
                    if len(errors) < 20:
                        errors.append(f"{ekey}: result bits changed between calls")

    rss0 = _rss()  # after the inputs are built
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    samples = []  # (t, rss, pool)
    try:
        while True:
            now = time.monotonic() - t0
            if now >= duration:
                break
            time.sleep(min(interval, max(0.0, duration - now)))
            permits.pause()
            try:
                samples.append((round(time.monotonic() - t0, 1), _rss(), POOL._held))
            finally:
                permits.resume()
            t_, rss, pool = samples[-1]
            with stats_lock:
                calls = stats["calls"]
            print(f"[soak] t={t_:7.1f}s rss={rss / 2**20:8.1f} MiB pool={pool / 2**20:7.1f} "
                  f"MiB rss-pool={(rss - pool) / 2**20:8.1f} MiB calls={calls}", file=log,
                  flush=True)
    finally:
        stop.set()
        for t in ts:
            t.join(timeout=120)
    hung = [t.name for t in ts if t.is_alive()]

    after = [s for s in samples if s[0] >= warmup]
    if len(after) < 2:
        after = samples[len(samples) // 2:]
    net = [s[1] - s[2] for s in after]
    first = float(np.median(net[:3])) if net else 0.0
    last = float(np.median(net[-3:])) if net else 0.0
    growth_mb = (last - first) / 2**20
    summary = {
        "duration_s": round(time.monotonic() - t0, 1),
        "threads": threads,
        "calls": stats["calls"],
        "big_calls": stats["big_calls"],
        "errors": stats["errors"] + stats["mismatches"] + len(hung),
        "mismatches": stats["mismatches"],
        "hung_threads": hung,
        "error_samples": errors,
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_after_warmup_mb": round(after[0][1] / 2**20, 1) if after else None,
        "rss_end_mb": round(samples[-1][1] / 2**20, 1) if samples else None,
        "rss_max_mb": round(max(s[1] for s in samples) / 2**20, 1) if samples else None,
        "pool_max_mb": round(max(s[2] for s in samples) / 2**20, 1) if samples else None,
        "pool_cap_mb": round(POOL.limit / 2**20, 1),
        "net_after_warmup_mb": round(first / 2**20, 1),
        "net_end_mb": round(last / 2**20, 1),
        "rss_growth_mb": round(growth_mb, 1),
        "max_growth_mb": max_growth_mb,
        "samples": [(t, round(r / 2**20, 1), round(p / 2**20, 1)) for t, r, p in samples],
        "threading_layer": fl.threading_layer(),
        "distinct_calls": len(expected),
    }
    ok = (summary["errors"] == 0 and growth_mb < max_growth_mb and bool(samples)
          and (not samples or max(s[2] for s in samples) <= POOL.limit))
    summary["passed"] = ok
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds excluded from the growth verdict (default 20%% of the run)")
    ap.add_argument("--interval", type=float, default=5.0, help="RSS sampling period (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-growth-mb", type=float, default=50.0)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    a = ap.parse_args(argv)
    s = run(a.duration, a.threads, a.warmup, a.interval, a.seed, a.max_growth_mb)
    print(
        f"[soak] {'PASS' if s['passed'] else 'FAIL'}: {s['calls']} calls "
        f"({s['big_calls']} big, {s['distinct_calls']} distinct) in {s['duration_s']} s on "
        f"{s['threads']} threads ({s['threading_layer']}), errors {s['errors']}; RSS start "
        f"{s['rss_start_mb']} MiB, after warm-up {s['rss_after_warmup_mb']}, end "
        f"{s['rss_end_mb']}, max {s['rss_max_mb']}; pool max {s['pool_max_mb']} MiB (cap "
        f"{s['pool_cap_mb']}); RSS-pool {s['net_after_warmup_mb']} -> {s['net_end_mb']} MiB "
        f"(growth {s['rss_growth_mb']} MiB, limit {s['max_growth_mb']})",
        file=sys.stderr,
    )
    for e in s["error_samples"]:
        print(f"[soak] error: {e}", file=sys.stderr)
    if a.json:
        print(json.dumps(s))
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
