"""Measure where fastloss's parallel kernels start to beat the serial ones.

    python bench/threshold.py                      # cross_entropy, several class counts
    python bench/threshold.py --loss mse_loss      # an elementwise loss
    python bench/threshold.py --classes 10,1000 --max-work 4194304 --threads 2

``fastloss._config.PARALLEL_MIN_WORK`` (work = elements touched) decides which build
``pick`` runs.  This script sets ``FASTLOSS_PARALLEL_MIN_WORK=0`` before importing
fastloss, so every call is eligible for the parallel build, and switches between

* serial:   ``fastloss.set_num_threads(1)`` -- ``pick`` then always runs the serial build;
* parallel: ``fastloss.set_num_threads(T)`` -- with the threshold at 0, the parallel build.

Both go through the public call with a preallocated ``out=`` buffer (so allocation does
not blur the kernel difference), in interleaved rounds, medians.  The crossover for one
row shape is the smallest work from which the parallel build is faster at every larger
size measured; the suggested threshold is the largest crossover over the row shapes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import sys
import time

os.environ["FASTLOSS_PARALLEL_MIN_WORK"] = "0"  # before fastloss is imported

import numba  # noqa: E402
import numpy as np  # noqa: E402

import fastloss  # noqa: E402
from fastloss import _config  # noqa: E402
from fastloss._bench.timing import CpuMonitor, wait_quiet  # noqa: E402


def _per_call(fn, min_sample: float) -> float:
    """Seconds per call over a loop lasting at least ``min_sample``."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    k = max(1, int(min_sample / one))
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t0) / k


def _data(loss: str, work: int, classes: int | None, rng):
    if classes is not None:
        n = max(1, round(work / classes))
        x = rng.standard_normal((n, classes), dtype=np.float32)
        y = rng.integers(0, classes, size=n, dtype=np.int64)
        return x, y
    x = rng.standard_normal(work, dtype=np.float32)
    if loss == "binary_cross_entropy_with_logits":
        y = rng.random(work, dtype=np.float32)
    else:
        y = rng.standard_normal(work, dtype=np.float32)
    return x, y


def measure(loss, classes, works, threads, rounds, min_sample, log):
    f = fastloss.LOSSES[loss].fn
    rng = np.random.default_rng(0)
    rows = []
    for work in works:
        x, y = _data(loss, work, classes, rng)
        out = np.zeros_like(x)

        def call(x=x, y=y, out=out):
            f(x, y, out=out)

        t = {"serial": [], "parallel": []}
        for mode in t:  # warm both builds (compile / cache load) before timing
            fastloss.set_num_threads(1 if mode == "serial" else threads)
            call()
        with CpuMonitor() as mon:
            for r in range(rounds):
                for mode in ("serial", "parallel") if r % 2 == 0 else ("parallel", "serial"):
                    fastloss.set_num_threads(1 if mode == "serial" else threads)
                    t[mode].append(_per_call(call, min_sample))
        s, p = statistics.median(t["serial"]), statistics.median(t["parallel"])
        fc = mon.foreign_cores
        rows.append({"work": x.size, "shape": x.shape, "serial": s, "parallel": p, "other": fc})
        log(
            f"  {str(x.shape):>18s} work {x.size:>10d}  serial {s * 1e6:10.2f} us  "
            f"parallel {p * 1e6:10.2f} us  parallel/serial {p / s:5.2f}"
            + (f"  (other processes: {fc:.2f} cores)" if fc is not None and fc > 0.25 else "")
        )
    fastloss.set_num_threads(threads)
    return rows


def crossover(rows):
    """The first size from which parallel wins at every larger measured size (None: never)."""
    best = None
    for row in reversed(rows):
        if row["parallel"] < row["serial"]:
            best = row
        else:
            break
    return best


def library_default() -> str:
    """PARALLEL_MIN_WORK's default as written in _config.py (the env var overrides it here)."""
    src = pathlib.Path(_config.__file__).read_text()
    m = re.search(r'FASTLOSS_PARALLEL_MIN_WORK",\s*([0-9_]+)', src)
    return m.group(1) if m else "?"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loss", default="cross_entropy")
    p.add_argument(
        "--classes",
        default="10,100,1000,32000",
        help="class counts (row lengths) for class-indexed losses",
    )
    p.add_argument("--min-work", type=int, default=1 << 8)
    p.add_argument("--max-work", type=int, default=1 << 22)
    p.add_argument("--threads", type=int, default=min(2, numba.config.NUMBA_NUM_THREADS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--min-sample", type=float, default=0.005, help="seconds per sample")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for other processes to leave the CPUs idle",
    )
    args = p.parse_args(argv)

    if args.loss not in fastloss.LOSSES:
        sys.exit(f"fastloss.{args.loss} is not registered (have: {sorted(fastloss.LOSSES)})")
    if _config.PARALLEL_MIN_WORK != 0:
        sys.exit("FASTLOSS_PARALLEL_MIN_WORK=0 did not take effect; cannot force parallel")
    if args.threads < 2:
        sys.exit("need at least 2 threads to compare serial and parallel")

    def log(msg):
        print(msg, flush=True)

    works = []
    w = args.min_work
    while w <= args.max_work:
        works.append(w)
        w *= 2
    indexed = fastloss.LOSSES[args.loss].group in ("classification",) or args.loss in (
        "nll_loss",
        "multi_margin_loss",
        "softmax_focal_loss",
    )
    shapes = [int(c) for c in args.classes.split(",")] if indexed else [None]

    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet, log)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    log(
        f"fastloss {fastloss.__version__}, {args.loss}, threads {args.threads} "
        f"({fastloss.threading_layer()}); load average {load:.2f}"
    )
    cross = {}
    for c in shapes:
        log(f"{args.loss}" + (f", {c} classes" if c else "") + ":")
        rows = measure(
            args.loss,
            c,
            [w for w in works if c is None or w >= c],
            args.threads,
            args.rounds,
            args.min_sample,
            log,
        )
        cross[c] = crossover(rows)
        if rows and rows[-1]["parallel"] > 0.8 * rows[-1]["serial"]:
            log(
                "  note: little parallel gain even at the largest size -- is the parallel "
                "build actually taken (pick(k, work))? is the machine busy?"
            )
        log(f"  crossover: {_fmt(cross[c])}")

    found = [v["work"] for v in cross.values() if v is not None]
    log("")
    log(
        "crossover (work = elements) per row length: "
        + "; ".join(f"{c if c else 'elementwise'}: {_fmt(v)}" for c, v in cross.items())
    )
    log(f"PARALLEL_MIN_WORK default in fastloss/_config.py: {library_default()}")
    if found:
        log(
            f"suggested PARALLEL_MIN_WORK (largest crossover, sizes doubling): {max(found)}; "
            "if the crossovers differ a lot between row lengths, the work count alone cannot "
            "place the switch (see the rows)"
        )
    else:
        log("no crossover found in the measured range")


def _fmt(row) -> str:
    if row is None:
        return "none in range"
    shape = row["shape"]
    rows = f" ({shape[0]} rows)" if len(shape) == 2 else ""
    return f"{row['work']}{rows}"


if __name__ == "__main__":
    main()
