"""``fastloss bench``: run every case, then write ``REPORT.md``, ``results.json`` and the
plots to the output directory."""

from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import pathlib
import sys
import time

from . import UsageError, machine, report
from . import cases as _cases
from . import derive as _derive
from .peers import Peers
from .timing import Bandwidth, CpuMonitor, run_case, wait_quiet

DEFAULT_DIR = "fastloss-bench"

#: Other processes' CPU use (cores) above which a case is flagged as measured under contention.
CONTENDED = 0.25

#: Rounds per case, seconds per sample, seconds per case by role, copy array size (MiB).
PLANS = {
    "full": {"min_rounds": 7, "max_rounds": 25, "min_sample": 0.05, "copy_mib": 512,
             "budget": {"latency": 2.5, "medium": 3.0, "large": 10.0, "extra": 10.0,
                        "sweep": 1.5}},
    "quick": {"min_rounds": 3, "max_rounds": 5, "min_sample": 0.01, "copy_mib": 128,
              "calibrate": 1,
              "budget": {"latency": 0.2, "medium": 0.25, "large": 0.6, "extra": 0.6,
                         "sweep": 0.1}},
    # a size scale below SMOKE_SCALE: a smoke test of the whole pipeline, not a measurement
    "smoke": {"min_rounds": 2, "max_rounds": 2, "min_sample": 0.0005, "copy_mib": 8,
              "calibrate": 1,
              "budget": {"latency": 0.0, "large": 0.0}},
}
SMOKE_SCALE = 0.1


def _impls(case) -> list[str]:
    base = ["fastloss", "fastloss_out", "numpy", "torch", "jax"]
    if case.role == "sweep":
        return ["fastloss", "numpy", "torch", "jax"]
    if case.role == "latency":
        return base + ["torch_1t"]
    if case.role == "medium":
        return base[:2] + ["fastloss_inplace"] + base[2:]
    return base[:2] + ["fastloss_inplace", "fastloss_1t"] + base[2:] + ["torch_1t"]


def _cache_index_files() -> int:
    import numba

    import fastloss

    pkg = pathlib.Path(fastloss.__file__).parent
    d = pathlib.Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else pkg
    try:
        return sum(1 for _ in d.rglob("*.nbi"))
    except OSError:
        return -1


def run(outdir=DEFAULT_DIR, *, quick=False, threads=None, scale=None, select=None,
        wait=0.0, modules=None, command="fastloss bench", log=None) -> dict:
    """Measure every case and write the report; returns the results (as saved)."""
    import numba

    import fastloss

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    scale = _cases.scale_from_env() if scale is None else float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise UsageError(f"the size scale must be a positive number, got {scale}")
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = min(2, max_threads) if threads is None else int(threads)
    if not 1 <= threads <= max_threads:
        raise UsageError(f"--threads must be in [1, {max_threads}] (NUMBA_NUM_THREADS), "
                         f"got {threads}")
    case_list = _cases.case_list(quick, scale)
    if select:
        case_list = [c for c in case_list if any(s in c.id for s in select)]
        if not case_list:
            raise UsageError(f"no case id contains {' or '.join(map(repr, select))}")
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    plan = PLANS["smoke" if scale < SMOKE_SCALE else "quick" if quick else "full"]

    cached_before = _cache_index_files()
    fl_threads_before = fastloss.get_num_threads()
    fastloss.set_num_threads(threads)
    layer = fastloss.threading_layer()
    peers = Peers(modules, threads)
    torch_threads_before = None
    if peers.torch is not None:
        torch_threads_before = peers.torch.get_num_threads()
        peers.torch.set_num_threads(threads)
    try:
        data = _measure(case_list, quick, threads, scale, wait, plan, peers, layer, command,
                        log)
    finally:  # leave the process's thread settings as they were
        fastloss.set_num_threads(fl_threads_before)
        if torch_threads_before is not None:
            peers.torch.set_num_threads(torch_threads_before)
    data["meta"]["numba_cache_index_files_before"] = cached_before
    write(outdir, data, peers, log)
    log(f"wrote {outdir / 'REPORT.md'}, results.json and the plots in "
        f"{time.perf_counter() - t_start:.0f} s")
    return data


def _measure(case_list, quick, threads, scale, wait, plan, peers, layer, command, log):
    import numba

    import fastloss

    t0 = time.perf_counter()
    log(f"fastloss {fastloss.__version__}: {len(case_list)} cases, {threads} threads "
        f"({layer}); PyTorch {peers.label('torch')}; JAX {peers.label('jax')}")
    if wait > 0:
        q = wait_quiet(wait, log)
        log("starting" + (f"; other processes use {q:.2f} cores" if q is not None else ""))
    load0 = machine.loadavg()
    t_measure = time.perf_counter()
    mib = plan["copy_mib"] * (scale if scale < SMOKE_SCALE else 1.0)
    bw = Bandwidth(max(1.0, mib), threads)
    bw.measure(3)

    results, first_call = [], {}
    with CpuMonitor() as whole:
        for i, case in enumerate(case_list, 1):
            log(f"[{i}/{len(case_list)}] {case.id}")
            t_case = time.perf_counter()
            r = run_case(case, _impls(case), plan, peers, first_call, log,
                         bw if case.big else None)
            sp = case.spec
            r.update(group=fastloss.LOSSES[case.loss].group, known=sp.known,
                     torch_kind=sp.torch_kind)
            r["case_s"] = time.perf_counter() - t_case
            results.append(_derive.derive(r))
            fastloss.release_buffers()
            gc.collect(2 if case.big and plan is not PLANS["smoke"] else 1)
            if case.big:
                bw.measure(1)
    bw.measure(3)
    bw_samples = [s / 1e9 for s in bw.samples]
    bw_mib = bw.mib
    bw.free()

    from .torch_impl import RECIPES

    meta = {
        "quick": quick,
        "scale": scale,
        "threads": threads,
        "plan": plan,
        "contended": CONTENDED,
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": layer,
        "machine": machine.machine_info(),
        "versions": machine.versions(peers),
        "peers": {p: peers.status[p] for p in ("torch", "jax")},
        "torch_recipes": RECIPES,
        "memory_bound": sorted(n for n in fastloss.LOSSES if _cases.spec(n).memory_bound),
        "bandwidth": {"threads": threads, "mib": bw_mib, "samples_GBps": bw_samples},
        "registered": list(fastloss.LOSSES),
        "command": command,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "elapsed_s": time.perf_counter() - t_measure,
        "waited_s": t_measure - t0,
        "loadavg": [load0, machine.loadavg()],
        "foreign_cpu_cores": whole.foreign_cores,
    }
    return {"meta": meta, "results": results, "first_call": first_call}


def write(outdir: pathlib.Path, data: dict, peers: Peers, log) -> None:
    """Goals, plots, ``results.json`` and ``REPORT.md`` from measured (or loaded) data."""
    data["goals"] = _derive.goals(data["results"], data["meta"]["quick"]
                                  or data["meta"]["scale"] != 1.0)
    meta = data["meta"]
    meta.pop("plots_reason", None)
    mpl = peers.matplotlib()
    meta["versions"]["matplotlib"] = peers.label("matplotlib")
    if mpl is None:
        meta["plots"] = {}
        meta["plots_reason"] = f"matplotlib {peers.status['matplotlib']['reason']}"
    else:
        from .plots import write_plots

        meta["plots"] = write_plots(mpl, outdir, data["results"], meta)
        if not meta["plots"]:
            meta["plots_reason"] = "nothing to plot in the cases run"
    (outdir / "results.json").write_text(json.dumps(data, indent=1, default=_json_default),
                                         encoding="utf-8")
    report.write_markdown(outdir / "REPORT.md", data)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load(path) -> dict:
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def render(results_json, outdir, modules=None, log=None) -> dict:
    """No measuring: re-derive and rewrite the report and plots from a ``results.json``."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    data = load(results_json)
    for r in data["results"]:
        _derive.derive(r)
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    peers = Peers(modules, load=())  # only matplotlib is needed
    write(outdir, data, peers, log)
    return data
