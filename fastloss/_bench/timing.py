"""Timing: the same-run copy bandwidth, other processes' CPU use, and one case's
interleaved rounds.

* Every implementation of a case runs in the same process on the same arrays, in rounds;
  the order rotates every round; the figure is the median over rounds.  The first call of
  each implementation (JIT compile, cache load, tracing, lazy init) is a warm-up and is
  not timed (fastloss's is recorded as its first-call cost).
* A sample is a loop of calls, as many as last ``min_sample`` seconds, divided by their
  number (a per-call time at the latency sizes); an in-place sample restores the input
  (untimed) before each of its calls.  Samples are 2 ms apart, so that the previous
  library's worker threads (OpenMP, XLA) have stopped spinning.
* The copy bandwidth is (bytes read + bytes written) / time of a parallel Numba copy of
  a large float32 array on the benchmark's thread count.  For the large cases the copy is
  one more entry in the case's own rounds, and a case's fraction of it is the median over
  rounds of its sample against the copy sample of the same round: memory bandwidth on a
  shared (virtualised) machine drifts by 30 % or more over minutes, and a pair measured
  seconds apart sees the same conditions.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import statistics
import time

import numba
import numpy as np

from fastloss._config import kernel

from . import peers as _peers


# ---------------------------------------------------------------------- bandwidth
@kernel
def _copy(src, dst):  # pragma: no cover - compiled
    for i in numba.prange(src.size):
        dst[i] = src[i]


class Bandwidth:
    """Parallel copy of a float32 array: (bytes read + bytes written) / time, in bytes/s."""

    def __init__(self, mib: float, threads: int):
        n = max(1024, int(mib * (1 << 20)) // 4)
        self.src = np.ones(n, dtype=np.float32)
        self.dst = np.zeros(n, dtype=np.float32)
        self.mib = mib
        self.threads = threads
        self.samples: list[float] = []
        self.measure(2, record=False)  # compile + map the pages

    @property
    def bytes_moved(self) -> int:
        return 2 * self.src.nbytes

    def once(self):
        """One copy (a timed entry in a case's rounds)."""
        numba.set_num_threads(self.threads)
        _copy.parallel(self.src, self.dst)

    def measure(self, k: int = 1, record: bool = True):
        for _ in range(k):
            t0 = time.perf_counter()
            self.once()
            dt = time.perf_counter() - t0
            if record:
                self.samples.append(self.bytes_moved / dt)

    def free(self):
        self.src = self.dst = None


# --------------------------------------------------------------------- contention
class CpuMonitor:
    """CPU time other processes used while a block ran, in cores (Linux ``/proc/stat``)."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.foreign_cores = None

    def _read(self):
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = sum(v) - v[3] - v[4]  # minus idle and iowait
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return busy / self.tick, ru.ru_utime + ru.ru_stime, time.perf_counter()

    def __enter__(self):
        self.start = self._read()
        return self

    def __exit__(self, *exc):
        end = self._read()
        if self.start and end:
            busy, own, wall = (e - s for e, s in zip(end, self.start, strict=True))
            self.foreign_cores = max(0.0, (busy - own) / wall) if wall > 0 else None


def wait_quiet(timeout: float, log, window: float = 3.0, limit: float = 0.2) -> float | None:
    """Wait (up to ``timeout`` s) for a ``window`` during which other processes use less
    than ``limit`` cores; returns the last window's foreign use."""
    t_end = time.perf_counter() + timeout
    while True:
        with CpuMonitor() as mon:
            time.sleep(window)
        last = mon.foreign_cores
        if last is None or last < limit or time.perf_counter() >= t_end:
            return last
        log(f"waiting for a quiet machine: other processes use {last:.2f} cores")


# ------------------------------------------------------------------------- samples
class _Threads:
    """Switch fastloss's / PyTorch's thread count for one sample."""

    def __init__(self, call, torch):
        self.call, self.torch = call, torch

    def __enter__(self):
        import fastloss

        self.fl_old = self.torch_old = None
        if self.call.fl_threads is not None:
            self.fl_old = fastloss.get_num_threads()
            fastloss.set_num_threads(self.call.fl_threads)
        if self.call.torch_threads is not None and self.torch is not None:
            self.torch_old = self.torch.get_num_threads()
            self.torch.set_num_threads(self.call.torch_threads)

    def __exit__(self, *exc):
        import fastloss

        if self.fl_old is not None:
            fastloss.set_num_threads(self.fl_old)
        if self.torch_old is not None:
            self.torch.set_num_threads(self.torch_old)


def sample(call, inner: int, torch=None, cap: float = math.inf) -> float:
    """Seconds per call over one sample of ``inner`` calls (results dropped at once);
    a sample stops early after ``cap`` seconds (a machine busy with other work)."""
    fn, prepare = call.fn, call.prepare
    with _Threads(call, torch):
        if prepare is not None:
            total, n = 0.0, 0
            while n < inner and total < cap:
                prepare()
                t0 = time.perf_counter()
                fn()
                total += time.perf_counter() - t0
                n += 1
            return total / n
        t0 = time.perf_counter()
        if inner == 1:
            fn()
            return time.perf_counter() - t0
        n, dt = 0, 0.0
        while n < inner and dt < cap:
            for _ in range(min(64, inner - n)):  # the clock is read every 64 calls
                fn()
            n = min(inner, n + 64)
            dt = time.perf_counter() - t0
        return dt / n


def _rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    if a.shape != ref.shape:
        return math.inf
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = float(np.max(np.abs(a - ref))) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


COPY = "copy"

#: Seconds between two samples: the previous library's worker threads stop spinning and
#: go idle (OpenMP and XLA pools spin for a while after a parallel region).
PAUSE = 0.002

#: A sample stops after CAP x min_sample seconds even if it has not made all its calls
#: (the calibration was done on a quieter moment of a shared machine).
CAP = 20


def run_case(case, impls, plan, peers, first_call, log, bw=None) -> dict:
    """Time ``impls`` on ``case`` in interleaved rounds (with ``bw``, a :class:`Bandwidth`,
    the copy runs in the same rounds).  Returns the case's raw record."""
    from .cases import bytes_moved

    arrays = case.make()
    res = {
        "id": case.id, "loss": case.loss, "shape": list(case.shape), "label": case.label,
        "role": case.role, "options": case.all_options, "variant": case.variant,
        "reduction": case.spec.reduction, "elements": case.elements,
        "bytes_moved": bytes_moved(arrays, case.loss), "memory_bound": case.spec.memory_bound,
        "impls": {}, "check": {}, "unavailable": {}, "warmup_s": {},
    }
    calls = {}
    for impl in impls:
        try:
            c = _peers.make_call(case, impl, arrays, peers)
        except Exception as e:  # noqa: BLE001 - a peer that cannot run this case
            res["unavailable"][impl] = f"{type(e).__name__}: {e}"
            continue
        if c is None:
            res["unavailable"][impl] = "no implementation"
        else:
            calls[impl] = c

    # Warm-up (untimed apart from fastloss's first call of each loss) and the check of
    # every result against fastloss's default call, one gradient alive at a time.
    ref = None
    for impl in list(calls):
        t0 = time.perf_counter()
        try:
            if calls[impl].prepare is not None:
                calls[impl].prepare()
            with _Threads(calls[impl], peers.torch):
                out = calls[impl].fn()
            loss, grad = _peers.as_numpy(out)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on without it
            res["unavailable"][impl] = f"failed: {type(e).__name__}: {e}"
            del calls[impl]
            if impl == "fastloss":  # nothing to compare with: the case is reported failed
                res["failed"] = res["unavailable"][impl]
                log(f"  {res['failed']}")
                return res
            continue
        dt = time.perf_counter() - t0
        res["warmup_s"][impl] = dt
        if impl == "fastloss" and case.loss not in first_call:
            first_call[case.loss] = {"seconds": dt, "case": case.id}
        del out
        if ref is None:
            ref = (loss, grad)
        res["check"][impl] = {
            "loss": loss,
            "loss_rel_diff": abs(loss - ref[0]) / max(abs(ref[0]), 1e-30),
            "grad_rel_err": _rel_err(grad, ref[1]),
        }
        del grad
    del ref
    gc.collect(1)  # the young generations: cheap; the runner collects fully per case
    names = list(calls)
    if bw is not None:
        calls[COPY] = _peers.Call(bw.once)
        names.append(COPY)

    # Calls per sample: enough for a sample to last min_sample seconds.
    est, inner = {}, {}
    for impl in names:
        k = plan.get("calibrate", 2 if case.elements > 1e7 else 3)
        est[impl] = min(sample(calls[impl], 1, peers.torch) for _ in range(k))
        inner[impl] = max(1, math.ceil(plan["min_sample"] / max(est[impl], 1e-9)))
        inner[impl] = min(inner[impl], 100_000 if case.per_call else 50)
    per_round = sum(est[i] * inner[i] for i in names) or 1e-9
    budget = plan["budget"].get(case.role, plan["budget"]["large"])
    rounds = int(min(plan["max_rounds"], max(plan["min_rounds"], budget // per_round)))

    samples = {impl: [] for impl in names}
    cap = CAP * plan["min_sample"]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with CpuMonitor() as mon:
            for r in range(rounds):
                k = r % len(names)
                for impl in names[k:] + names[:k]:
                    time.sleep(PAUSE)
                    samples[impl].append(sample(calls[impl], inner[impl], peers.torch, cap))
    finally:
        if gc_was:
            gc.enable()
    res["foreign_cpu_cores"] = mon.foreign_cores
    del calls, arrays

    if bw is not None:
        copy = [bw.bytes_moved / t for t in samples.pop(COPY)]
        bw.samples.extend(copy)
        res["copy_GBps"] = [v / 1e9 for v in copy]
        names.remove(COPY)
    for impl in names:
        s = samples[impl]
        q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
        med = statistics.median(s)
        res["impls"][impl] = {
            "median_s": med, "min_s": min(s), "iqr_rel": (q[2] - q[0]) / med if med else 0.0,
            "rounds": rounds, "calls_per_sample": inner[impl], "samples_s": s,
        }
    line = ", ".join(f"{i} {fmt_time(res['impls'][i]['median_s'])}" for i in names)
    copy_note = f"; copy {statistics.median(res['copy_GBps']):.1f} GB/s" if bw else ""
    log(f"  {line}{copy_note} ({rounds} rounds)")
    return res


def fmt_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.3g} µs"
    return f"{s * 1e9:.3g} ns"
