"""The markdown report (``REPORT.md``) and the README's performance table, both from the
saved results (``results.json``)."""

from __future__ import annotations

import statistics

from .derive import fmt_ratio
from .timing import fmt_time

FAMILIES = {
    "classification": "Classification (softmax over classes)",
    "divergence": "Divergences and entropy",
    "binary": "Binary (sigmoid) losses",
    "regression": "Regression",
    "margin": "Margin losses",
    "count": "Count data",
}

IMPL_LABEL = {
    "fastloss": "fastloss", "fastloss_out": "fastloss `out=`",
    "fastloss_inplace": "fastloss in place", "fastloss_1t": "fastloss, 1 thread",
    "numpy": "NumPy", "torch": "PyTorch", "torch_1t": "PyTorch, 1 thread", "jax": "JAX",
}
PEER_LABEL = {"torch": "PyTorch", "jax": "JAX"}
NOT_INSTALLED = "not installed"


def _pct(v) -> str:
    return "—" if v is None else f"{v:.0%}"


def _fl_cell(r, impl):
    v = r["impls"].get(impl)
    if v is not None:
        return fmt_time(v["median_s"])
    return "**failed**" if impl == "fastloss" and r.get("failed") else "—"


def _peer_cell(r, impl, meta):
    """A peer's time, or why there is none."""
    peer = "torch" if impl.startswith("torch") else impl
    v = r["impls"].get(impl)
    if v is not None:
        return fmt_time(v["median_s"])
    if peer in PEER_LABEL and not meta["peers"][peer]["available"]:
        return NOT_INSTALLED
    why = r.get("unavailable", {}).get(impl, "")
    return "failed" if why.startswith("failed") else "—"


def _torch_cell(r, meta):
    cell = _peer_cell(r, "torch", meta)
    if "torch" in r["impls"]:
        if r["loss"] in meta.get("torch_recipes", {}):
            cell += " ‡"
        if "torch_1t" in r["impls"]:  # the ratio uses the faster of the two
            cell += f" (1 thread: {fmt_time(r['impls']['torch_1t']['median_s'])})"
    return cell


def _ratio_cell(r, peer, meta):
    v = r["derived"].get(f"vs_{peer}")
    if v is not None:
        return fmt_ratio(v)
    if peer in PEER_LABEL and not meta["peers"][peer]["available"]:
        return NOT_INSTALLED
    return "—"


def _size(r):
    s = r["label"].replace("x", "×")
    return s + (" (per call)" if r["role"] == "latency" else "")


def family_table(rows, meta) -> list[str]:
    n = meta["threads"]
    L = [
        f"| loss | size | fastloss | `out=` | in place | NumPy | PyTorch | JAX | vs NumPy "
        f"| vs PyTorch | vs JAX | `out=` % of copy | in place % of copy | 1→{n} threads |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        d = r["derived"]
        cell = lambda i, r=r: _fl_cell(r, i)  # noqa: E731
        bw_out = f"{_pct(d.get('bw_out'))} ({_pct(d.get('bw_out_best'))})" \
            if d.get("bw_out") is not None else "—"
        bw_in = f"{_pct(d.get('bw_inplace'))} ({_pct(d.get('bw_inplace_best'))})" \
            if d.get("bw_inplace") is not None else "—"
        sp = d.get("thread_speedup")
        L.append(
            f"| `{r['loss']}` | {_size(r)} | {cell('fastloss')} | {cell('fastloss_out')} "
            f"| {cell('fastloss_inplace')} | {_peer_cell(r, 'numpy', meta)} "
            f"| {_torch_cell(r, meta)} | {_peer_cell(r, 'jax', meta)} "
            f"| {_ratio_cell(r, 'numpy', meta)} | {_ratio_cell(r, 'torch', meta)} "
            f"| {_ratio_cell(r, 'jax', meta)} | {bw_out} | {bw_in} "
            f"| {'—' if sp is None else f'{sp:.2f}×'} |"
        )
    return L


def _goal_number(v, fmt, extra=0):
    if fmt == "%":
        return f"{v:.{extra}%}"
    if fmt == "s":
        return fmt_time(v) if not extra else f"{v * 1e6:.{3 + extra}g} µs"
    if fmt == "r":
        return f"{v:.{2 + extra}f}× the `out=` time"
    return fmt_ratio(v) if not extra else f"{v:.{(2 if v < 10 else 1) + extra}f}×"


def _goal_value(g):
    v = g["value"]
    if v is None:
        return "not measured"
    # as many digits as it takes for a figure on the other side of the threshold not to
    # read as the threshold itself ("5 µs ... not met" for 5.003 µs)
    t, fmt = g.get("threshold"), g["fmt"]
    extra = 0
    while (t is not None and v != t and extra < 4
           and _goal_number(v, fmt, extra) == _goal_number(t, fmt, extra)):
        extra += 1
    return _goal_number(v, fmt, extra)


def goal_table(goals, results) -> list[str]:
    labels = {r["id"]: r["label"].replace("x", "×") for r in results}
    L = ["| goal | measured at | measured | verdict |", "|---|---|--:|---|"]
    for g in goals:
        verdict = {True: "met", False: "**not met**", None: "not measured"}[g["met"]]
        if g["met"] is not None and g["indicative_only"]:
            verdict += " (indicative)"
        note = f" ({g['note']})" if g.get("note") else ""
        L.append(f"| {g['text']} | {labels.get(g['case'], '—')} | {_goal_value(g)}{note} "
                 f"| {verdict} |")
    return L


def write_markdown(path, data) -> None:
    meta, results, goals, first_call = (data["meta"], data["results"], data["goals"],
                                        data["first_call"])
    n = meta["threads"]
    peers = meta["peers"]
    L = ["# fastloss benchmark report", ""]
    L.append(
        f"Loss **and** gradient with respect to the input, float32, {n} threads for fastloss "
        f"and PyTorch, medians of interleaved rounds in one process.[^method] Ratio = the "
        f"peer's time / fastloss's default call (above 1: fastloss is faster).[^peers] "
        f"Machine, versions and command in the footnotes.[^m]"
    )
    if meta["quick"] or meta["scale"] != 1.0:
        L += ["", "**Not a full run** ("
              + ("`--quick`: smaller sizes, fewer rounds" if meta["quick"] else "")
              + ("; " if meta["quick"] and meta["scale"] != 1.0 else "")
              + (f"sizes scaled by {meta['scale']:g}" if meta["scale"] != 1.0 else "")
              + "): the goals are defined at the full sizes, so their verdicts here are "
              "indicative only."]
    noisy = [(r["id"], r["foreign_cpu_cores"]) for r in results
             if (r.get("foreign_cpu_cores") or 0) > meta["contended"]]
    if noisy:
        L += ["", "**Measured under contention**: other processes used CPU time during "
              + ", ".join(f"{c} ({v:.2f} cores)" for c, v in noisy[:12])
              + (f" and {len(noisy) - 12} more cases" if len(noisy) > 12 else "")
              + ". Those rows are noisy; rerun on a quiet machine."]
    L += ["", "Peers: NumPy " + meta["versions"]["numpy"] + "; "
          + "; ".join(f"{PEER_LABEL[p]} "
                      + (peers[p]["version"] if peers[p]["available"] else f"**{NOT_INSTALLED}**")
                      for p in PEER_LABEL) + "."]

    L += ["", "## Goals (issue 11)", ""]
    L += goal_table(goals, results)

    L += ["", "## Results by family", "",
          "Sizes: a latency size timed per call through the public API (a loop of many "
          "calls), a medium and a large one; `cross_entropy` also at wider rows and with "
          "options. `% of copy`: the call's minimum traffic (every input read once, the "
          "gradient written once) per second against the copy bandwidth measured in the same "
          "rounds, median over rounds (in parentheses: fastest sample against fastest copy); "
          f"large sizes only.[^bw] `1→{n} threads`: fastloss's 1-thread time / its "
          f"{n}-thread time. — : not timed at this size, or the library has no such loss.", ""]
    main = [r for r in results if r["role"] != "sweep"]
    for fam, title in FAMILIES.items():
        rows = [r for r in main if r.get("group") == fam]
        if not rows:
            continue
        L += [f"### {title}", ""] + family_table(rows, meta) + [""]
    other = [r for r in main if r.get("group") not in FAMILIES]
    if other:
        L += ["### Other", ""] + family_table(other, meta) + [""]
    recipes = meta.get("torch_recipes", {})
    used = sorted({r["loss"] for r in main if r["loss"] in recipes and "torch" in r["impls"]})
    if used:
        L += ["‡ PyTorch has no single function for this loss; its column times the usual "
              "recipe: " + "; ".join(f"`{k}`: {recipes[k]}" for k in used) + "."]
    none = sorted({r["loss"] for r in main if r.get("torch_kind") is None and r["known"]})
    if none and peers["torch"]["available"]:
        L += ["", "No PyTorch column (—) for " + ", ".join(f"`{k}`" for k in none)
              + ": PyTorch has no such loss (decision: no hand-written stand-in; NumPy and "
              "JAX are the peers there)."]
    unknown = sorted({r["loss"] for r in main if not r["known"]})
    if unknown:
        L += ["", "Benchmarked with data made from their family and no peers (no case defined "
              "in `fastloss._bench.cases` yet): " + ", ".join(f"`{k}`" for k in unknown) + "."]
    failed = [(r["id"], i, w) for r in results for i, w in r.get("unavailable", {}).items()
              if w.startswith("failed")]
    if failed:
        L += ["", "**Failed calls** (no figure): " + "; ".join(
            f"{c} {IMPL_LABEL.get(i, i)}: {w[len('failed: '):]}" for c, i, w in failed) + "."]

    bw = meta["bandwidth"]
    L += ["", "## Copy bandwidth", ""]
    if bw["samples_GBps"]:
        L.append(
            f"{bw['threads']}-thread parallel Numba copy of a {bw['mib']:g} MiB float32 array "
            f"(bytes read + written): **{statistics.median(bw['samples_GBps']):.1f} GB/s** "
            f"median, {max(bw['samples_GBps']):.1f} GB/s best, {len(bw['samples_GBps'])} "
            "samples spread over the run. Per large case (copy in the case's own rounds): "
            + "; ".join(f"{r['id']} {r['derived']['copy_GBps_case']:.1f}"
                        for r in results if "copy_GBps_case" in r["derived"]) + " GB/s.")

    L += ["", "## Plots", ""]
    if meta.get("plots"):
        L += [f"![{alt}]({name})" for name, alt in meta["plots"].items()]
    else:
        L.append(f"No plots: {meta.get('plots_reason', 'matplotlib ' + NOT_INSTALLED)}.")

    L += ["", "## First call", "",
          "The first call of a loss in a process compiles its kernels or loads them from "
          "Numba's on-disk cache; " + (
              "the cache was empty at the start (compile)."
              if meta["numba_cache_index_files_before"] == 0 else
              f"the cache held {meta['numba_cache_index_files_before']} index files at the "
              "start (a load where they cover the kernel).")
          + " The first larger size also loads the parallel build. Each includes one run of "
          "the kernel. Excluded from every other figure.", "",
          "| loss | first call (latency size) | first call, medium size | later calls, medium |",
          "|---|--:|--:|--:|"]
    for loss, fc in first_call.items():
        med = next((r for r in results if r["loss"] == loss and r["role"] == "medium"), None)
        w = fmt_time(med["warmup_s"].get("fastloss")) if med else "—"
        later = fmt_time(med["impls"]["fastloss"]["median_s"]) \
            if med and "fastloss" in med["impls"] else "—"
        L.append(f"| `{loss}` | {fmt_time(fc['seconds'])} | {w} | {later} |")

    L += ["", "## Details", "",
          "Every timed implementation: median and fastest sample, rounds × calls per sample, "
          "spread (interquartile range / median), CPU cores other processes used during the "
          "case, and agreement with fastloss's default call (relative loss difference; max "
          "gradient difference / max |gradient|).", "",
          "| case | implementation | median | min | rounds × calls | IQR | other CPU "
          "| loss diff | grad diff |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        fc = r.get("foreign_cpu_cores")
        fc = "?" if fc is None else f"{fc:.2f}"
        for impl, v in r["impls"].items():
            c = r["check"].get(impl, {})
            L.append(
                f"| {r['id']} | {IMPL_LABEL.get(impl, impl)} | {fmt_time(v['median_s'])} "
                f"| {fmt_time(v['min_s'])} | {v['rounds']} × {v['calls_per_sample']} "
                f"| {v['iqr_rel']:.1%} | {fc} | {c.get('loss_rel_diff', float('nan')):.1e} "
                f"| {c.get('grad_rel_err', float('nan')):.1e} |")
    for f in footnotes(meta):
        L += ["", f]
    L.append("")
    path.write_text("\n".join(L), encoding="utf-8")


def footnotes(meta) -> list[str]:
    m, v, n = meta["machine"], meta["versions"], meta["threads"]
    mem = f", {m['memory_bytes'] / 2**30:.0f} GiB RAM" if m.get("memory_bytes") else ""
    peers = meta["peers"]
    torch_v = peers["torch"]["version"] if peers["torch"]["available"] else NOT_INSTALLED
    jax_v = peers["jax"]["version"] if peers["jax"]["available"] else NOT_INSTALLED
    return [
        f"[^m]: Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} "
        f"usable){mem}; {m['platform']}. Versions: Python {v['python']}, NumPy {v['numpy']}, "
        f"Numba {v['numba']} (threading layer `{meta['threading_layer']}`), PyTorch {torch_v}, "
        f"JAX {jax_v}" + (f" (jaxlib {v['jaxlib']})" if "jaxlib" in v else "")
        + f", fastloss {v['fastloss']} (git {v['fastloss_git']}, {v['fastloss_path']}). "
        f"Threads: fastloss {n} (`fastloss.set_num_threads`; NUMBA_NUM_THREADS="
        f"{meta['numba_num_threads']}), PyTorch {n} (`torch.set_num_threads`); 1 thread for "
        f"the `1→{n}` column. Load average at start / end: {meta['loadavg'][0]:.2f} / "
        f"{meta['loadavg'][1]:.2f}. Command: `{meta['command']}` ({meta['date']}, "
        f"{meta['elapsed_s']:.0f} s).",
        "[^method]: Every implementation of a case runs in the same process on the same "
        "arrays, in rounds whose order rotates; the first call of each is a warm-up and is "
        "not timed. A sample is a loop of calls lasting at least "
        f"{meta['plan']['min_sample'] * 1e3:g} ms (cut short after 20 times that on a busy "
        "machine), divided by the number of calls; samples are 2 ms apart (other "
        "libraries' worker threads stop spinning); "
        f"{meta['plan']['min_rounds']}–{meta['plan']['max_rounds']} rounds per case. The "
        "default call allocates its gradient; `out=` writes it into a preallocated buffer; "
        "in place is `out=input` on a fresh copy of the input made (untimed) before each "
        "timed call, since the call overwrites its input; the `out=` call also reads a "
        "fresh copy of its input made the same way, so both read an input that has just "
        "been written.",
        "[^peers]: NumPy: float32, vectorised, in-place ufuncs, one thread (its BLAS, used "
        "for dot products, may use more); `fastloss._bench.numpy_impl`. PyTorch: `F.<loss>` "
        "(or the recipe marked ‡) on a fresh leaf `requires_grad_()`, then `.backward()`, "
        f"{n} threads, and also 1 thread where a cell shows \"(1 thread: ...)\" (the latency "
        "and large sizes): the ratio then uses the faster of the two. "
        "JAX: `jax.value_and_grad(loss)` compiled by `jax.jit`, the loss in `jax.numpy`, "
        "`block_until_ready` on the gradient, on arrays already on the device; XLA's CPU "
        "thread pool sizes itself (it cannot be set per call). Every peer uses the case's "
        "reduction and options; agreement with fastloss is in the details table.",
        "[^bw]: The copy runs once in each round of a large case; memory bandwidth on a "
        "shared virtual machine drifts over minutes, and a pair measured seconds apart sees "
        "the same conditions. Medium sizes may sit in the last-level cache and get no "
        "figure. Memory-bound (no exp/log per element): "
        + ", ".join(f"`{x}`" for x in meta["memory_bound"]) + ".",
    ]


# ========================================================================== README
HEADLINE = (
    ("cross_entropy", "large", ""), ("cross_entropy", "extra", "8192x32000"),
    ("cross_entropy", "extra", "256x128000"), ("cross_entropy", "latency", ""),
    ("kl_div_with_logits", "large", ""), ("binary_cross_entropy_with_logits", "large", ""),
    ("mse_loss", "large", ""), ("huber_loss", "large", ""),
)


def readme_table(data: dict, which: str = "headline") -> str:
    """The README's performance table (markdown) from a ``results.json``'s contents:
    ``"headline"`` (the issue's cases) or ``"large"`` (every loss at its large size)."""
    results, meta = data["results"], data["meta"]
    if which == "headline":
        rows = []
        for loss, role, label in HEADLINE:
            r = next((r for r in results if r["loss"] == loss and r["role"] == role
                      and (not label or r["label"] == label)), None)
            if r is not None:
                rows.append(r)
    elif which == "large":
        rows = [r for r in results if r["role"] == "large"]
    else:
        raise ValueError(f"which must be 'headline' or 'large', got {which!r}")
    n = meta["threads"]
    L = [f"| loss | size | fastloss | NumPy | PyTorch | JAX | vs NumPy | vs PyTorch | vs JAX "
         f"| `out=` / in place, % of copy | 1→{n} threads |",
         "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        d = r["derived"]
        opts = ", ".join(f"{k}={v:g}" for k, v in r["options"].items())
        size = _size(r) + (f", {opts}" if opts and r["loss"] != "cross_entropy" else "")
        bw = "—" if d.get("bw_out") is None else \
            f"{_pct(d['bw_out'])} / {_pct(d.get('bw_inplace'))}"
        sp = d.get("thread_speedup")
        L.append(
            f"| `{r['loss']}` | {size} | {_fl_cell(r, 'fastloss')} "
            f"| {_peer_cell(r, 'numpy', meta)} | {_torch_cell(r, meta).replace(' ‡', '')} "
            f"| {_peer_cell(r, 'jax', meta)} | {_ratio_cell(r, 'numpy', meta)} "
            f"| {_ratio_cell(r, 'torch', meta)} | {_ratio_cell(r, 'jax', meta)} | {bw} "
            f"| {'—' if sp is None else f'{sp:.2f}×'} |")
    bwm = meta["bandwidth"]["samples_GBps"]
    copy = f"; copy bandwidth {statistics.median(bwm):.1f} GB/s (median)" if bwm else ""
    v = meta["versions"]
    L += ["", f"float32, {n} threads, medians of interleaved rounds in one process; "
          f"{meta['machine']['cpu']}, {meta['machine']['logical_cpus']} CPUs; NumPy "
          f"{v['numpy']}, Numba {v['numba']}, PyTorch {v.get('torch', '—')}, JAX "
          f"{v.get('jax', '—')}; git {v['fastloss_git']}, {meta['date'][:10]}{copy}. "
          f"Generated by `fastloss bench --readme-table results.json` from the run "
          f"`{meta['command']}`."]
    return "\n".join(L)
