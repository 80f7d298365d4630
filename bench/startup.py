"""First-call costs in fresh processes: ``import fastloss``, import + first call from a
warm and from an empty cache, and ``fl.warmup()`` of every kernel from an empty cache.

    python bench/startup.py                 # the README's table (a few minutes)
    python bench/startup.py --no-warmup     # skip the full warm-up runs (~2 min each)

Every figure is the median of ``--repeat`` fresh interpreter processes (one process per
sample, so nothing is shared but the disk cache).  "core install" hides SciPy from the
process, as a numpy + numba install: Numba's first compile or cache load imported
``scipy.linalg`` (0.2-0.4 s) when SciPy was installed, until fastloss deferred that probe
(fastloss/_config.py); the two columns should now agree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

BLOCK_SCIPY = (
    "import sys\n"
    "class _NoScipy:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'scipy' or name.startswith('scipy.'):\n"
    "            raise ImportError('hidden')\n"
    "sys.meta_path.insert(0, _NoScipy())\n"
)

FIRST_CALL = """
import time
t0 = time.perf_counter()
import fastloss as fl
t1 = time.perf_counter()
import numpy as np
rng = np.random.default_rng(0)
{setup}
t2 = time.perf_counter()
{call}
t3 = time.perf_counter()
print((t1 - t0), (t1 - t0) + (t3 - t2))
"""

CALLS = {
    "cross_entropy 32x10": (
        "x = rng.standard_normal((32, 10)).astype(np.float32); t = rng.integers(0, 10, 32)",
        "fl.cross_entropy(x, t)",
    ),
    "cross_entropy 4096x1000": (
        "x = rng.standard_normal((4096, 1000)).astype(np.float32); "
        "t = rng.integers(0, 1000, 4096)",
        "fl.cross_entropy(x, t)",
    ),
    "mse_loss 1M": (
        "x = rng.standard_normal(1 << 20).astype(np.float32); y = np.zeros_like(x)",
        "fl.mse_loss(x, y)",
    ),
}


def _run(code, env, timeout=1200):
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=timeout, check=True).stdout
    return [float(v) for v in out.split()]


def _env(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("FASTLOSS_CACHE", None)
    return env


def measure(repeat=3, warmup_runs=True):
    rows = {}
    for variant, prefix in (("with SciPy installed", ""), ("core install", BLOCK_SCIPY)):
        imports = []
        for name, (setup, call) in CALLS.items():
            code = prefix + FIRST_CALL.format(setup=setup, call=call)
            cold, warm = [], []
            for _ in range(repeat):
                with tempfile.TemporaryDirectory() as d:
                    cold.append(_run(code, _env(d))[1])  # empty cache
                    imp, total = _run(code, _env(d))     # the cache it just filled
                    warm.append(total)
                    imports.append(imp)
            rows[(variant, name)] = (statistics.median(warm), statistics.median(cold))
        rows[(variant, "import fastloss")] = (statistics.median(imports), None)
    full = {}
    if warmup_runs:
        for procs in (1, os.cpu_count() or 1):
            code = ("import time; t0 = time.perf_counter(); import fastloss as fl; "
                    f"fl.warmup(processes={procs}); print(time.perf_counter() - t0)")
            with tempfile.TemporaryDirectory() as d:
                full[procs] = _run(code, _env(d))[0]
    return rows, full


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args(argv)
    rows, full = measure(a.repeat, not a.no_warmup)
    print("| first use, fresh process | warm cache | empty cache |")
    print("|---|--:|--:|")
    for (variant, name), (warm, cold) in rows.items():
        c = "—" if cold is None else f"{cold:.2f} s"
        print(f"| {name} ({variant}) | {warm:.2f} s | {c} |")
    for procs, s in full.items():
        print(f"| `fl.warmup()` of every kernel, {procs} process(es) | | {s:.0f} s |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": [[*k, *v] for k, v in rows.items()], "warmup": full}, f)


if __name__ == "__main__":
    main()
