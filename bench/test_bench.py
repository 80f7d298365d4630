"""Side-by-side benchmarks: fastloss (default call and ``out=``) vs NumPy vs PyTorch.

Normal test run (``python -m pytest``; pyproject adds ``--benchmark-disable``): each small
case runs once per implementation and is checked against PyTorch, so the benchmark code
cannot rot.  No timing is asserted.

Benchmarks::

    python -m pytest bench --benchmark-enable                 # all shapes, incl. 0.26-1 GB
    FASTLOSS_BENCH_FULL=1 python -m pytest bench --benchmark-enable -k 65536x1000

Groups are ``loss|shape``; the first call (JIT compile / cache load) is a warm-up round
and is not timed.  ``bench/report.py`` is the interleaved, same-process comparison that
writes the report.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest


def _load_cases():
    # Loaded by path under a unique name so a ``cases`` module elsewhere cannot shadow it.
    name = "fastloss_bench_cases"
    if name not in sys.modules:
        path = pathlib.Path(__file__).with_name("cases.py")
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


cases = _load_cases()


def _params():
    out, seen = [], set()
    for case in cases.SMALL_CASES + cases.FULL_CASES:
        if case.id in seen:
            continue
        seen.add(case.id)
        marks = [pytest.mark.bench_full] if case.size == "full" else []
        for impl in cases.IMPLS:
            out.append(pytest.param(case, impl, id=f"{case.id}-{impl}", marks=marks))
    return out


def _plan(case):
    """(iterations per round, rounds) when benchmarks are enabled."""
    if case.per_call:
        return 1000, 30
    if case.elements >= 10_000_000:
        return 1, 5
    return max(1, min(100, (1 << 20) // case.elements)), 15


_ref_cache: dict = {}


def _reference(case, data):
    """PyTorch's result in float64 on the same (float32) data: the contract's reference."""
    if case.id not in _ref_cache:
        _ref_cache.clear()
        d64 = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in data.items()}
        _ref_cache[case.id] = cases.as_numpy(cases.setup(case, "torch", d64)())
    return _ref_cache[case.id]


@pytest.mark.parametrize("case,impl", _params())
def test_bench(benchmark, case, impl):
    if impl in cases.FASTLOSS_IMPLS and not cases.registered(case.loss):
        pytest.skip(f"fastloss.{case.loss} is not in fastloss.LOSSES yet")
    data = cases.get_data(case)
    fn = cases.setup(case, impl, data)

    benchmark.group = f"{case.loss}|{case.label}"
    benchmark.extra_info.update(
        impl=impl, elements=case.elements, bytes_moved=cases.bytes_moved(case, data)
    )
    iterations, rounds = _plan(case)
    res = benchmark.pedantic(fn, iterations=iterations, rounds=rounds, warmup_rounds=1)

    loss, grad = cases.as_numpy(res)
    del res
    ref_loss, ref_grad = _reference(case, data)
    assert grad.shape == data["input"].shape
    assert grad.dtype == np.float32
    # float32 tolerances (SPEC: rtol 2e-5); the NumPy baseline sums in float32 with BLAS,
    # so its loss gets a looser bound.
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4 if impl == "numpy" else 2e-5)
    scale = float(np.max(np.abs(ref_grad))) if ref_grad.size else 0.0
    np.testing.assert_allclose(grad, ref_grad, rtol=2e-5, atol=1e-5 * scale)
