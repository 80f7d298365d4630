"""Side-by-side benchmark report: fastloss vs NumPy vs PyTorch, in one process.

    python bench/report.py            # the issue's shapes, ~3-6 minutes, ~6 GB RAM peak
    python bench/report.py --quick    # smaller shapes and fewer rounds, ~1 minute

Method
------
* float32 everywhere; fastloss (``fastloss.set_num_threads``) and PyTorch
  (``torch.set_num_threads``) on the same number of threads (default 2).
* All implementations of a case run in the same process on the same arrays, in
  interleaved rounds (the order rotates every round); the reported time is the median
  over rounds.  The first call of every implementation (JIT compile, cache load, lazy
  init) is a warm-up and is not timed; fastloss's first-call cost is reported separately.
* Tiny inputs (32x10) are timed per call through the public API: each sample is a loop
  of many calls, divided by their number.
* The machine's copy bandwidth is measured in the same run with a parallel Numba copy
  kernel on the same thread count: (bytes read + bytes written) / time.  The ``out=`` call's
  fraction of it is (input + target read + gradient written) / time / bandwidth.  The copy
  is one more entry in the interleaved rounds of every case timed with ``out=`` (not the
  per-call ones), and the fraction is the median over rounds of the ``out=`` sample against
  the copy sample of the same round: memory bandwidth on a shared (virtualised) machine
  drifts by 30 % or more over minutes, and a pair measured seconds apart sees the same
  conditions.  The run-wide median copy is reported alongside.

Writes ``REPORT.md``, ``report.png`` and ``results.json`` to ``bench/results/`` (``-o``).
Targets from the issue are reported as met / not met, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

import fastloss  # noqa: E402

IMPL_LABEL = {
    "fastloss": "fastloss",
    "fastloss_out": "fastloss `out=`",
    "numpy": "NumPy",
    "torch": "PyTorch",
    "torch_1t": "PyTorch, 1 thread",
}

#: Tiny (per-call) cases also time PyTorch on one thread: with two, its per-call time on a
#: shared 2-core machine swings from ~0.2 to 10+ ms (thread hand-offs), which would make
#: any speedup meaningless.  Ratios then use PyTorch's faster setting.
TORCH_1T = "torch_1t"


#: Other processes' CPU use (cores) above which a case is flagged as measured under contention.
CONTENDED = 0.25

TARGET_TEXT = {
    "vs_torch": "default call ≥ {:g}× faster than PyTorch (F.{loss} + backward)",
    "bw_out": "`out=` call ≥ {:.0%} of 2-thread copy bandwidth",
}


# ------------------------------------------------------------------------- bandwidth
@numba.njit(parallel=True, nogil=True, cache=False)
def _copy(src, dst):
    for i in numba.prange(src.size):
        dst[i] = src[i]


class Bandwidth:
    """Parallel copy of a float32 array: (bytes read + bytes written) / time, in bytes/s."""

    def __init__(self, mib: int, threads: int):
        n = mib * (1 << 20) // 4
        self.src = np.ones(n, dtype=np.float32)
        self.dst = np.zeros(n, dtype=np.float32)
        self.threads = threads
        self.samples: list[float] = []
        self.measure(2, record=False)  # compile + warm the pages

    def once(self):
        """One copy (a timed entry in a case's rounds)."""
        numba.set_num_threads(self.threads)
        _copy(self.src, self.dst)

    @property
    def bytes_moved(self) -> int:
        return 2 * self.src.nbytes

    def measure(self, k: int = 1, record: bool = True):
        numba.set_num_threads(self.threads)
        for _ in range(k):
            t0 = time.perf_counter()
            _copy(self.src, self.dst)
            dt = time.perf_counter() - t0
            if record:
                self.samples.append(2 * self.src.nbytes / dt)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def free(self):
        self.src = self.dst = None


# ------------------------------------------------------------------------ contention
class CpuMonitor:
    """CPU time other processes used while a block ran, in cores (Linux ``/proc/stat``).

    A benchmark on a shared 2-core machine is only as good as its quiet: this is reported
    per case so noisy numbers are visible as such.
    """

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _read(self):
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except OSError:
            return None
        busy = sum(v) - v[3] - v[4]  # minus idle and iowait
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return busy / self.tick, ru.ru_utime + ru.ru_stime, time.perf_counter()

    def __enter__(self):
        self.start = self._read()
        self.foreign_cores = None
        return self

    def __exit__(self, *exc):
        end = self._read()
        if self.start and end:
            busy, own, wall = (e - s for e, s in zip(end, self.start, strict=True))
            self.foreign_cores = max(0.0, (busy - own) / wall) if wall > 0 else None


def wait_quiet(timeout: float, log, window: float = 3.0, limit: float = 0.2) -> float | None:
    """Wait (up to ``timeout`` s) for a ``window`` during which other processes use less than
    ``limit`` cores.  Returns the last window's foreign use."""
    t_end = time.perf_counter() + timeout
    last = None
    while True:
        with CpuMonitor() as mon:
            time.sleep(window)
        last = mon.foreign_cores
        if last is None or last < limit or time.perf_counter() >= t_end:
            return last
        log(f"waiting for a quiet machine: other processes use {last:.2f} cores")


# ---------------------------------------------------------------------------- timing
def _one_thread(fn):
    """``fn`` marked to run with ``torch.set_num_threads(1)`` (switched per sample)."""

    def run():
        return fn()

    run.torch_threads = 1
    return run


def _sample(fn, inner: int) -> float:
    n = getattr(fn, "torch_threads", None)
    if n is None:
        return _sample_plain(fn, inner)
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return _sample_plain(fn, inner)
    finally:
        torch.set_num_threads(old)


def _sample_plain(fn, inner: int) -> float:
    """Seconds per call over one sample of ``inner`` calls (results dropped at once)."""
    if inner == 1:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    rng = range(inner)
    t0 = time.perf_counter()
    for _ in rng:
        fn()
    return (time.perf_counter() - t0) / inner


def _rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = np.abs(a - ref)
    return float(diff.max() / scale) if scale > 0 else float(diff.max())


COPY = "copy"


def run_case(case, impls, plan, first_call, log, bw=None):
    """Time ``impls`` on ``case`` in interleaved rounds; with ``bw`` (a :class:`Bandwidth`)
    the parallel copy runs in the same rounds, so each ``out=`` sample has a copy sample
    measured under the same conditions."""
    data = cases.get_data(case)
    res = {
        "loss": case.loss,
        "shape": list(case.shape),
        "label": case.label,
        "elements": case.elements,
        "bytes_moved": cases.bytes_moved(case, data),
        "per_call": case.per_call,
        "impls": {},
        "missing": [i for i in cases.IMPLS if i not in impls],
        "check": {},
    }
    fns = {impl: cases.setup(case, impl, data) for impl in impls if impl != TORCH_1T}
    if TORCH_1T in impls:
        fns[TORCH_1T] = _one_thread(fns["torch"])

    # Warm-up (untimed apart from fastloss's first call in the process) + cross-check of
    # the loss and gradient against PyTorch's, one gradient alive at a time.
    ref = cases.as_numpy(fns["torch"]())
    for impl in impls:
        if impl == "fastloss" and case.loss not in first_call:
            t0 = time.perf_counter()
            out = fns[impl]()
            first_call[case.loss] = {"seconds": time.perf_counter() - t0, "case": case.id}
        else:
            out = fns[impl]()
        loss, grad = cases.as_numpy(out)
        del out
        res["check"][impl] = {
            "loss": loss,
            "loss_rel_diff_vs_torch": abs(loss - ref[0]) / max(abs(ref[0]), 1e-30),
            "grad_rel_err_vs_torch": _rel_err(grad, ref[1]),
        }
        del grad
    del ref
    gc.collect()
    if bw is not None:
        fns[COPY] = bw.once
        impls = [*impls, COPY]

    # Calibrate: calls per sample so that a sample lasts at least min_sample seconds.
    est, inner = {}, {}
    for impl in impls:
        est[impl] = min(_sample(fns[impl], 1) for _ in range(2 if case.elements > 1e7 else 5))
        inner[impl] = max(1, math.ceil(plan["min_sample"] / max(est[impl], 1e-9)))
        if not case.per_call:
            inner[impl] = min(inner[impl], 50)
    per_round = sum(est[i] * inner[i] for i in impls)
    rounds = int(min(plan["max_rounds"], max(plan["min_rounds"], plan["case_budget"] // per_round)))

    samples = {impl: [] for impl in impls}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with CpuMonitor() as mon:
            for r in range(rounds):
                order = impls[r % len(impls) :] + impls[: r % len(impls)]
                for impl in order:
                    samples[impl].append(_sample(fns[impl], inner[impl]))
    finally:
        if gc_was:
            gc.enable()
    res["foreign_cpu_cores"] = mon.foreign_cores
    if mon.foreign_cores is not None and mon.foreign_cores > CONTENDED:
        log(f"  warning: other processes used {mon.foreign_cores:.2f} cores during this case")
    del fns
    gc.collect()

    if bw is not None:
        copy_bw = [bw.bytes_moved / t for t in samples.pop(COPY)]
        bw.samples.extend(copy_bw)
        res["copy_GBps"] = [v / 1e9 for v in copy_bw]
        impls = impls[:-1]
        log(
            f"  {'copy':13s} median {statistics.median(copy_bw) / 1e9:.1f} GB/s "
            f"(range {min(copy_bw) / 1e9:.1f}-{max(copy_bw) / 1e9:.1f})"
        )
    for impl in impls:
        s = samples[impl]
        q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
        res["impls"][impl] = {
            "median_s": statistics.median(s),
            "min_s": min(s),
            "iqr_rel": (q[2] - q[0]) / statistics.median(s),
            "rounds": rounds,
            "calls_per_sample": inner[impl],
            "samples_s": s,
        }
        log(
            f"  {impl:13s} median {fmt_time(statistics.median(s)):>9s}  "
            f"(rounds {rounds}, calls/sample {inner[impl]}, "
            f"IQR {res['impls'][impl]['iqr_rel']:.1%})"
        )
    return res


# ---------------------------------------------------------------------------- derive
def derive(res, bw, bw_best):
    t = {k: v["median_s"] for k, v in res["impls"].items()}
    d = {}
    torch_t = min(t["torch"], t.get(TORCH_1T, math.inf))  # PyTorch's faster thread setting
    d["torch_best_s"] = torch_t
    if "fastloss" in t:
        d["vs_torch"] = torch_t / t["fastloss"]
        d["vs_numpy"] = t["numpy"] / t["fastloss"]
    if "fastloss_out" in t:
        d["out_vs_torch"] = torch_t / t["fastloss_out"]
        d["out_vs_numpy"] = t["numpy"] / t["fastloss_out"]
        d["out_GBps"] = res["bytes_moved"] / t["fastloss_out"] / 1e9
        # against the run-wide copy: median time vs median copy
        d["bw_out_run"] = res["bytes_moved"] / t["fastloss_out"] / bw
        out_s = res["impls"]["fastloss_out"]
        copy = res.get("copy_GBps")
        if copy and len(copy) == len(out_s.get("samples_s", ())):
            # paired: each out= sample against the copy sample of the same round
            pairs = zip(out_s["samples_s"], copy, strict=True)
            d["bw_out"] = statistics.median(res["bytes_moved"] / ts / (c * 1e9) for ts, c in pairs)
            d["bw_out_best"] = res["bytes_moved"] / out_s["min_s"] / (max(copy) * 1e9)
            d["copy_GBps_case"] = statistics.median(copy)
        else:
            d["bw_out"] = d["bw_out_run"]
            # best vs best: fastest out= sample against the fastest copy sample
            # (contention slows both; this pairing is the least affected by it)
            d["bw_out_best"] = res["bytes_moved"] / out_s["min_s"] / bw_best
    if "fastloss" in t:
        d["default_GBps"] = res["bytes_moved"] / t["fastloss"] / 1e9
        d["bw_default"] = res["bytes_moved"] / t["fastloss"] / bw
    res["derived"] = d
    return res


def targets(results, case_list, quick):
    out = []
    by_id = {f"{r['loss']}-{r['label']}": r for r in results}
    for case in case_list:
        r = by_id.get(case.id)
        for metric, thr in case.targets:
            text = TARGET_TEXT[metric].format(thr, loss=case.loss)
            value = None if r is None else r["derived"].get(metric)
            met = None if value is None else bool(value >= thr)
            best = None
            if metric == "bw_out" and r is not None and "bw_out_best" in r["derived"]:
                best = r["derived"]["bw_out_best"]
                if (best >= thr) != met:
                    met = "inconclusive"
            out.append(
                {
                    "case": case.id,
                    "metric": metric,
                    "threshold": thr,
                    "text": text,
                    "value": value,
                    "met": met,
                    "best_vs_best": best,
                    "indicative_only": quick,
                }
            )
    return out


# ---------------------------------------------------------------------------- output
def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.3g} µs"
    return f"{s * 1e9:.3g} ns"


def fmt_x(v) -> str:
    return "—" if v is None else f"{v:.2f}×" if v < 10 else f"{v:.1f}×"


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_rev() -> str:
    """The benchmarked fastloss's commit (``+dirty`` if its sources differ from it).

    ``FASTLOSS_GIT_REV`` overrides, for a snapshot outside git (``git archive``)."""
    if os.environ.get("FASTLOSS_GIT_REV"):
        return os.environ["FASTLOSS_GIT_REV"]
    try:
        root = pathlib.Path(fastloss.__file__).resolve().parent.parent
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "fastloss"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "unknown"
    except OSError:
        return "unknown"


def write_markdown(path, meta, results, tgts, bw, first_call):
    L = []
    quick = meta["quick"]
    L.append("# fastloss benchmark report" + (" (quick run)" if quick else ""))
    L.append("")
    L.append(
        f"Time per call (loss **and** gradient), float32, median of interleaved rounds, "
        f"{meta['threads']} threads for every implementation.[^m] "
        "Speedup = the other implementation's time / fastloss's time (higher is better). "
        "For per-call rows PyTorch is also timed on 1 thread and the ratios use its faster "
        "setting."
    )
    if quick:
        L.append("")
        L.append("> `--quick`: reduced shapes and rounds; numbers are indicative only.")
    L.append("")
    L.append(
        "| loss | shape | fastloss | fastloss `out=` | NumPy | PyTorch "
        "| fastloss vs PyTorch | fastloss vs NumPy | `out=` vs PyTorch "
        "| `out=` GB/s | `out=` % of copy BW |"
    )
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        t = r["impls"]
        d = r["derived"]

        def cell(i, t=t):
            return fmt_time(t[i]["median_s"]) if i in t else "n/a"

        shape = r["label"] + (" (per call)" if r["per_call"] else "")
        torch_cell = cell("torch")
        if TORCH_1T in t:
            torch_cell += f" (1 thread: {cell(TORCH_1T)})"
        gbps = "—" if r["per_call"] or "out_GBps" not in d else f"{d['out_GBps']:.1f}"
        frac = (
            "—"
            if r["per_call"] or "bw_out" not in d
            else f"{d['bw_out']:.0%} ({d['bw_out_best']:.0%})"
        )
        L.append(
            f"| `{r['loss']}` | {shape} | {cell('fastloss')} | {cell('fastloss_out')} "
            f"| {cell('numpy')} | {torch_cell} | {fmt_x(d.get('vs_torch'))} "
            f"| {fmt_x(d.get('vs_numpy'))} | {fmt_x(d.get('out_vs_torch'))} | {gbps} | {frac} |"
        )
    missing = sorted({r["loss"] for r in results if r["missing"]})
    if missing:
        L.append("")
        L.append(
            "n/a: not in `fastloss.LOSSES` at this commit ("
            + ", ".join(f"`{m}`" for m in missing)
            + ")."
        )
    noisy = [
        (f"{r['loss']}-{r['label']}", r["foreign_cpu_cores"])
        for r in results
        if (r.get("foreign_cpu_cores") or 0) > CONTENDED
    ]
    if noisy:
        L.append("")
        L.append(
            "**Measured under contention** -- other processes used CPU time during: "
            + ", ".join(f"{c} ({v:.2f} cores)" for c, v in noisy)
            + ". Those rows are noisy; rerun on a quiet machine."
        )
    L.append("")
    L.append(
        f"Copy bandwidth measured in the same run: **{bw / 1e9:.1f} GB/s** median, "
        f"{meta['bandwidth']['best_GBps']:.1f} GB/s best "
        f"({meta['bandwidth']['threads']}-thread Numba copy of a "
        f"{meta['bandwidth']['mib']} MiB float32 array, bytes read + written, "
        f"{len(meta['bandwidth']['samples_GBps'])} samples spread over the run). "
        "`out=` GB/s counts the minimum traffic: input and target read once, gradient "
        "written once. `% of copy BW`: the copy runs in the case's own interleaved rounds, "
        "and the figure is the median over rounds of the `out=` sample against the copy "
        "sample of the same round (in parentheses: the fastest `out=` sample against the "
        "case's fastest copy, best vs best)."
    )
    paired = [r for r in results if "copy_GBps_case" in r["derived"]]
    if paired:
        L.append("")
        L.append(
            "Copy measured in the rounds of: "
            + "; ".join(
                f"{r['loss']}-{r['label']} {r['derived']['copy_GBps_case']:.1f} GB/s median "
                f"({min(r['copy_GBps']):.1f}-{max(r['copy_GBps']):.1f}); `out=` against the "
                f"run's median copy {r['derived']['bw_out_run']:.0%}"
                for r in paired
            )
            + "."
        )
    L.append("")
    L.append("![time per call and speedups](report.png)")
    L.append("")

    L.append("## Targets (from the issue)")
    L.append("")
    if tgts:
        L.append("| case | target | measured | verdict |")
        L.append("|---|---|--:|---|")
        for g in tgts:
            if g["value"] is None:
                val, verdict = "n/a", "not measured (loss not registered)"
            else:
                val = f"{g['value']:.0%}" if g["metric"] == "bw_out" else f"{g['value']:.1f}×"
                if g.get("best_vs_best") is not None:
                    val += f" (best vs best: {g['best_vs_best']:.0%})"
                verdict = {True: "met", False: "**not met**"}.get(g["met"], "inconclusive")
                if quick:
                    verdict += " (quick shapes)"
            L.append(f"| {g['case']} | {g['text']} | {val} | {verdict} |")
    L.append("")

    if first_call:
        L.append("## First call")
        L.append("")
        L.append(
            "The first call of a loss in a process compiles its kernels, or loads them from "
            "Numba's on-disk cache (`cache=True`). Measured here, including one run of the "
            "kernel on the case's data; "
            + (
                "the on-disk cache was empty at the start (cold: compile)."
                if meta["numba_cache_index_files_before"] == 0
                else f"the on-disk cache held {meta['numba_cache_index_files_before']} index "
                "files at the start (warm for what they cover: cache load)."
            )
        )
        L.append("")
        L.append("| loss | first call | on | later calls (median) |")
        L.append("|---|--:|---|--:|")
        for loss, fc in first_call.items():
            r = next((r for r in results if f"{r['loss']}-{r['label']}" == fc["case"]), None)
            later = fmt_time(r["impls"]["fastloss"]["median_s"]) if r else "—"
            L.append(f"| `{loss}` | {fmt_time(fc['seconds'])} | {fc['case']} | {later} |")
        L.append("")

    L.append("## Details")
    L.append("")
    L.append(
        "Per implementation: median and fastest sample, rounds × calls per sample, spread "
        "(interquartile range / median), CPU cores other processes used during the case, "
        "and the result's agreement with PyTorch (relative loss difference; max gradient "
        "difference / max |gradient|)."
    )
    L.append("")
    L.append(
        "| case | implementation | median | min | rounds × calls | IQR | other CPU "
        "| loss diff | grad diff |"
    )
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        fc = r.get("foreign_cpu_cores")
        fc = "?" if fc is None else f"{fc:.2f}"
        for impl, v in r["impls"].items():
            c = r["check"].get(impl, {})
            L.append(
                f"| {r['loss']}-{r['label']} | {IMPL_LABEL[impl]} | {fmt_time(v['median_s'])} "
                f"| {fmt_time(v['min_s'])} | {v['rounds']} × {v['calls_per_sample']} "
                f"| {v['iqr_rel']:.1%} | {fc} "
                f"| {c.get('loss_rel_diff_vs_torch', float('nan')):.1e} "
                f"| {c.get('grad_rel_err_vs_torch', float('nan')):.1e} |"
            )
    L.append("")

    m = meta["machine"]
    v = meta["versions"]
    mem = f", {m['memory_bytes'] / 2**30:.0f} GiB RAM" if m["memory_bytes"] else ""
    L.append(
        f"[^m]: Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable)"
        f"{mem}; {m['platform']}; Python {m['python']}. "
        f"Versions: NumPy {v['numpy']}, Numba {v['numba']}, PyTorch {v['torch']}, "
        f"fastloss {v['fastloss']} (git {v['fastloss_git']}). "
        f"Threads: fastloss {meta['fastloss_threads']} "
        f"(Numba threading layer `{meta['threading_layer']}`, "
        f"NUMBA_NUM_THREADS={meta['numba_num_threads']}), PyTorch {meta['torch_threads']}. "
        f"PyTorch = `F.<loss>(x.requires_grad_(), y)` + `.backward()` on a fresh leaf per call. "
        f"Load average at start / end: {meta['loadavg'][0]:.2f} / {meta['loadavg'][1]:.2f}. "
        f"Command: `{meta['command']}` ({meta['date']}, {meta['elapsed_s']:.0f} s of measurement)."
    )
    L.append("")
    path.write_text("\n".join(L))


def write_plot(path, results, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['loss']}\n{r['label']}" for r in results]
    x = np.arange(len(results))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(results)), 9))
    w = 0.2
    colors = {"fastloss": "C0", "fastloss_out": "C9", "numpy": "C2", "torch": "C3"}
    for k, impl in enumerate(cases.IMPLS):
        vals = [r["impls"][impl]["median_s"] if impl in r["impls"] else np.nan for r in results]
        ax1.bar(
            x + (k - 1.5) * w, vals, w, label=IMPL_LABEL[impl].replace("`", ""), color=colors[impl]
        )
    ax1.set_yscale("log")
    ax1.set_ylabel("time per call (s, log)")
    ax1.set_xticks(x, labels, fontsize=8)
    ax1.legend(fontsize=8)
    ax1.set_title(
        f"loss + gradient, float32, {meta['threads']} threads ({meta['machine']['cpu']})",
        fontsize=10,
    )
    series = [
        ("vs_torch", "vs PyTorch"),
        ("out_vs_torch", "out= vs PyTorch"),
        ("vs_numpy", "vs NumPy"),
    ]
    for k, (key, lab) in enumerate(series):
        vals = [r["derived"].get(key, np.nan) for r in results]
        ax2.bar(x + (k - 1) * 0.27, vals, 0.27, label=f"fastloss {lab}")
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_yscale("log")
    ax2.set_ylabel("speedup (their time / fastloss time)")
    ax2.set_xticks(x, labels, fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ main
def render(src: pathlib.Path, outdir: pathlib.Path):
    """Re-derive ratios and targets from a results.json and rewrite the report."""
    d = json.loads(src.read_text())
    meta, results = d["meta"], d["results"]
    bwm = meta["bandwidth"]
    bwm.setdefault("best_GBps", max(bwm["samples_GBps"]))
    for r in results:
        derive(r, bwm["median_GBps"] * 1e9, bwm["best_GBps"] * 1e9)
    by_id = {c.id: c for c in cases.FULL_CASES + cases.QUICK_CASES}
    case_list = [
        by_id[f"{r['loss']}-{r['label']}"] for r in results if f"{r['loss']}-{r['label']}" in by_id
    ]
    tgts = targets(results, case_list, meta["quick"])
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "results.json").write_text(
        json.dumps(
            {"meta": meta, "results": results, "targets": tgts, "first_call": d["first_call"]},
            indent=1,
        )
    )
    write_plot(outdir / "report.png", results, meta)
    write_markdown(
        outdir / "REPORT.md", meta, results, tgts, bwm["median_GBps"] * 1e9, d["first_call"]
    )
    print((outdir / "REPORT.md").read_text())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer rounds (~1 min)")
    p.add_argument("-o", "--out", default=str(HERE / "results"), help="output directory")
    p.add_argument("--threads", type=int, default=2, help="threads for fastloss and torch")
    p.add_argument(
        "-k",
        dest="select",
        default=None,
        help="only cases whose id contains this string (e.g. 32x10)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for other processes to leave the CPUs idle",
    )
    p.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="no measuring: rewrite REPORT.md and report.png from a results.json",
    )
    args = p.parse_args(argv)
    if args.render:
        return render(pathlib.Path(args.render), pathlib.Path(args.out))

    t_start = time.perf_counter()
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    pkg = pathlib.Path(fastloss.__file__).parent
    cache_dir = pathlib.Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else pkg
    cached_before = len(list(cache_dir.rglob("*.nbi")))
    threads = min(args.threads, numba.config.NUMBA_NUM_THREADS)
    fastloss.set_num_threads(threads)
    torch = cases.torch_setup()
    torch.set_num_threads(args.threads)
    layer = fastloss.threading_layer()

    case_list = cases.QUICK_CASES if args.quick else cases.FULL_CASES
    if args.select:
        case_list = [c for c in case_list if args.select in c.id]
    plan = (
        dict(min_rounds=3, max_rounds=15, case_budget=4.0, min_sample=0.02)
        if args.quick
        else dict(min_rounds=7, max_rounds=31, case_budget=25.0, min_sample=0.05)
    )
    bw_mib = 128 if args.quick else 512

    log(
        f"fastloss {fastloss.__version__}: {threads} threads ({layer}), torch {args.threads} "
        f"threads; registered: {sorted(fastloss.LOSSES)}"
    )
    if args.wait_quiet > 0:
        q = wait_quiet(args.wait_quiet, log)
        log(f"starting; other processes use {q:.2f} cores" if q is not None else "starting")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t_measure = time.perf_counter()
    bw = Bandwidth(bw_mib, threads)
    bw.measure(5)
    log(f"copy bandwidth: {bw.median / 1e9:.1f} GB/s")

    results, first_call = [], {}
    for case in case_list:
        impls = list(cases.available(case))
        if case.per_call:
            impls.append(TORCH_1T)
        log(f"{case.id}: {', '.join(impls)}")
        paired = not case.per_call and "fastloss_out" in impls
        r = run_case(case, impls, plan, first_call, log, bw if paired else None)
        cases.clear_data()
        gc.collect()
        bw.measure(2)
        results.append(r)
    bw.measure(5)
    bandwidth = bw.median
    bw_best = max(bw.samples)
    log(f"copy bandwidth (median over the run): {bandwidth / 1e9:.1f} GB/s")
    bw_samples = [s / 1e9 for s in bw.samples]
    bw.free()

    for r in results:
        derive(r, bandwidth, bw_best)
    tgts = targets(results, case_list, args.quick)

    cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    meta = {
        "quick": args.quick,
        "threads": args.threads,
        "fastloss_threads": fastloss.get_num_threads(),
        "torch_threads": torch.get_num_threads(),
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": layer,
        "machine": machine_info(),
        "versions": {
            "numpy": np.__version__,
            "numba": numba.__version__,
            "torch": torch.__version__,
            "fastloss": fastloss.__version__,
            "fastloss_git": git_rev(),
            "fastloss_path": str(pathlib.Path(fastloss.__file__).parent),
        },
        "bandwidth": {
            "threads": threads,
            "mib": bw_mib,
            "median_GBps": bandwidth / 1e9,
            "best_GBps": bw_best / 1e9,
            "samples_GBps": bw_samples,
        },
        "registered": sorted(fastloss.LOSSES),
        "numba_cache_index_files_before": cached_before,
        "command": cmd,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    meta["elapsed_s"] = time.perf_counter() - t_measure
    meta["waited_s"] = t_measure - t_start
    meta["loadavg"] = [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")]

    (outdir / "results.json").write_text(
        json.dumps(
            {"meta": meta, "results": results, "targets": tgts, "first_call": first_call}, indent=1
        )
    )
    try:
        write_plot(outdir / "report.png", results, meta)
    except ImportError as e:  # matplotlib missing: table and JSON are still written
        log(f"no plot: {e}")
    write_markdown(outdir / "REPORT.md", meta, results, tgts, bandwidth, first_call)

    log("")
    log((outdir / "REPORT.md").read_text())
    log(
        f"wrote {outdir / 'REPORT.md'}, report.png, results.json "
        f"in {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()
