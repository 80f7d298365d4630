"""Boosting benchmark: ``fl.grad_hess`` kernels and booster training, side by side.

Two parts, each timed in one process with the implementations interleaved round by round
(medians), on float32 data as the boosters hand it over:

* **kernels**: ``fl.grad_hess`` (preallocated outputs, 2 threads and 1 thread) against a
  straightforward NumPy objective and scikit-learn's ``sklearn._loss``
  ``gradient_hessian(n_threads=2)``, at 1M x 1 (logistic) and 1M x 10 (softmax, C order
  as XGBoost passes it and F order as LightGBM does);
* **training**: each booster with its built-in objective, the fastloss objective (kernel
  threads 1 and 2) and a NumPy objective (``bench/boost_<library>.py`` define the cases:
  200k x 20, 30 rounds, 2 booster threads).

Run on a quiet machine::

    .venv/bin/python bench/boost.py [--quick] [--skip-training] [-o bench/results]

writes ``BOOST.md`` and ``boost.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import sys
import time

import numpy as np

import fastloss as fl

HERE = pathlib.Path(__file__).resolve().parent


def _load(name):
    key = f"fastloss_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


# --------------------------------------------------------------------------- kernels
def numpy_logistic(x, y):
    """A careful NumPy logistic objective (no overflow for large |margin|)."""
    e = np.exp(-np.abs(x))
    p = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)
    return p - y, p * (1 - p)


def numpy_softmax(x, y):
    """A careful NumPy softmax objective (max subtracted), diagonal hessian."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    g = p.copy()
    g[np.arange(x.shape[0]), y.astype(np.intp)] -= 1
    return g, p * (1 - p)


def kernel_cases(n=1_000_000, K=10, seed=0):
    """[(case, {impl: fn}, check)]: each fn computes (grad, hess) once."""
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

    rng = np.random.default_rng(seed)
    out = []
    x = (rng.standard_normal(n) * 2).astype(np.float32)
    y = (rng.random(n) < 0.4).astype(np.float32)
    g, h = np.empty_like(x), np.empty_like(x)
    sk = HalfBinomialLoss()
    out.append((
        f"logistic {n // 1000}k",
        {
            "fastloss": lambda: fl.grad_hess("logistic", x, y, grad_out=g, hess_out=h,
                                             n_threads=2),
            "fastloss 1 thread": lambda: fl.grad_hess("logistic", x, y, grad_out=g,
                                                      hess_out=h, n_threads=1),
            "numpy": lambda: numpy_logistic(x, y),
            "sklearn": lambda: sk.gradient_hessian(y, x, gradient_out=g, hessian_out=h,
                                                   n_threads=2),
        },
    ))
    X = (rng.standard_normal((n, K)) * 2).astype(np.float32)
    Y = rng.integers(0, K, n).astype(np.float32)
    G, H = np.empty_like(X), np.empty_like(X)
    XF = np.asfortranarray(X)
    GF, HF = np.asfortranarray(G), np.asfortranarray(H)
    skm = HalfMultinomialLoss(n_classes=K)
    out.append((
        f"softmax {n // 1000}k x {K}",
        {
            "fastloss": lambda: fl.grad_hess("softmax", X, Y, grad_out=G, hess_out=H,
                                             n_threads=2),
            "fastloss 1 thread": lambda: fl.grad_hess("softmax", X, Y, grad_out=G,
                                                      hess_out=H, n_threads=1),
            "fastloss F order": lambda: fl.grad_hess("softmax", XF, Y, grad_out=GF,
                                                     hess_out=HF, n_threads=2),
            "numpy": lambda: numpy_softmax(X, Y),
            "sklearn": lambda: skm.gradient_hessian(Y, X, gradient_out=G, hessian_out=H,
                                                    n_threads=2),
        },
    ))
    return out


def time_interleaved(impls: dict, rounds: int, inner: int = 1) -> dict:
    """Median seconds per call of each impl, interleaved round by round."""
    for fn in impls.values():  # warm-up (JIT compile / cache load, page faults)
        fn()
    samples = {k: [] for k in impls}
    for _ in range(rounds):
        for k, fn in impls.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[k].append((time.perf_counter() - t0) / inner)
    return {k: {"median_s": statistics.median(v), "min_s": min(v)} for k, v in samples.items()}


# --------------------------------------------------------------------------- training
def training_cases(quick: bool):
    """[(case, {impl: fn})] from bench/boost_<library>.py (libraries that import)."""
    out = []
    kw = dict(n=20_000, rounds=10) if quick else {}
    for lib in ("xgboost", "lightgbm", "catboost"):
        try:
            mod = _load(f"boost_{lib}")
            base = mod.cases(kernel_threads=1, **kw)
            two = dict(mod.cases(kernel_threads=2, **kw))
        except ImportError as e:
            print(f"skipping {lib}: {e}", file=sys.stderr)
            continue
        for name, impls in base:
            impls = dict(impls)
            if name in two:
                impls["fastloss, kernel 2 threads"] = two[name]["fastloss"]
            out.append((name, impls))
    return out


# ---------------------------------------------------------------------------- report
def fmt(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def write_report(path, meta, kern, train):
    lines = ["# fastloss boosting benchmark", ""]
    lines.append(
        "Median of interleaved rounds in one process; float32; ratio = the other's time / "
        "fastloss's (above 1: fastloss is faster).  Training: time of the whole fit / "
        "the built-in objective's.[^1]"
    )
    if kern:
        lines += ["", "## `fl.grad_hess` against NumPy and scikit-learn", ""]
        lines.append("| case | fastloss | fastloss 1 thread | F order | NumPy | sklearn "
                     "(2 threads) | vs NumPy | vs sklearn |")
        lines.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        for case, r in kern.items():
            f = r["fastloss"]["median_s"]
            fo = r.get("fastloss F order", {}).get("median_s")
            lines.append(
                f"| {case} | {fmt(f)} | {fmt(r['fastloss 1 thread']['median_s'])} | "
                f"{fmt(fo) if fo else '—'} | {fmt(r['numpy']['median_s'])} | "
                f"{fmt(r['sklearn']['median_s'])} | {r['numpy']['median_s'] / f:.1f}× | "
                f"{r['sklearn']['median_s'] / f:.1f}× |"
            )
    if train:
        lines += ["", "## Training wall time (relative to the built-in objective)", ""]
        lines.append("| case | built-in | fastloss (kernel 1 thread) | fastloss (kernel 2 "
                     "threads) | NumPy objective |")
        lines.append("|---|--:|--:|--:|--:|")
        for case, r in train.items():
            b = r["builtin"]["median_s"]

            def cell(k, r=r, b=b):
                if k not in r:
                    return "—"
                return f"{fmt(r[k]['median_s'])} ({r[k]['median_s'] / b:.2f}×)"

            lines.append(
                f"| {case} | {fmt(b)} | {cell('fastloss')} | "
                f"{cell('fastloss, kernel 2 threads')} | {cell('numpy')} |"
            )
    lines += ["", f"[^1]: {meta['machine']['cpu']}, {meta['machine']['logical_cpus']} "
              f"CPUs; fastloss {meta['fastloss']} (git {meta['git']}); "
              + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
              + f"; Numba threading layer {meta['threading_layer']}; other processes "
              f"used {meta['foreign_cores']} cores during the run; command "
              f"`{meta['command']}`."]
    path.write_text("\n".join(lines) + "\n")


def _versions():
    out = {}
    for mod in ("numpy", "numba", "sklearn", "xgboost", "lightgbm", "catboost"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-kernels", action="store_true")
    ap.add_argument("-o", "--outdir", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    from fastloss._bench.machine import git_rev, machine_info
    from fastloss._bench.timing import CpuMonitor

    outdir = pathlib.Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fl.set_num_threads(2)
    kern, train = {}, {}
    with CpuMonitor() as mon:
        if not args.skip_kernels:
            n = 100_000 if args.quick else 1_000_000
            for case, impls in kernel_cases(n=n):
                print(f"kernels: {case}", file=sys.stderr)
                kern[case] = time_interleaved(impls, rounds=5 if args.quick else 15)
        if not args.skip_training:
            for case, impls in training_cases(args.quick):
                print(f"training: {case}", file=sys.stderr)
                train[case] = time_interleaved(impls, rounds=1 if args.quick else 3)
    meta = {
        "machine": machine_info(),
        "fastloss": fl.__version__,
        "git": git_rev(),
        "versions": _versions(),
        "threading_layer": fl.threading_layer(),
        "foreign_cores": None if mon.foreign_cores is None else round(mon.foreign_cores, 2),
        "command": " ".join(["python bench/boost.py", *(argv or sys.argv[1:])]),
    }
    (outdir / "boost.json").write_text(json.dumps(
        {"meta": meta, "kernels": kern, "training": train}, indent=1))
    write_report(outdir / "BOOST.md", meta, kern, train)
    print((outdir / "BOOST.md").read_text())


if __name__ == "__main__":
    main()
