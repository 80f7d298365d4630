"""pytest-benchmark suites: fastloss (default call, ``out=``, in place) vs NumPy vs
PyTorch vs JAX, on the cases of ``fastloss._bench.cases`` (the same table and peers as
``fastloss bench``).

Normal test run (``python -m pytest``; pyproject adds ``--benchmark-disable``): every loss
runs once per implementation at a small odd shape and is checked against the reference
(PyTorch in float64 where it has the loss, else fastloss in float64), so the benchmark
code cannot rot.  No timing is asserted.

Benchmarks::

    python -m pytest bench --benchmark-enable                 # also the large sizes
    FASTLOSS_BENCH_FULL=1 python -m pytest bench --benchmark-enable -k 65536x1000

Groups are ``loss|shape``; the first call (JIT compile / cache load) is a warm-up round
and is not timed.  ``fastloss bench`` is the interleaved, same-process comparison that
writes the report.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastloss._bench import cases, peers

IMPLS = ("fastloss", "fastloss_out", "fastloss_inplace", "numpy", "torch", "jax")


def _small_cases():
    out = []
    for name in cases.SPECS:
        sp = cases.spec(name)
        if cases.is_class_rows(sp):  # odd sizes hit the loop tails
            shapes = [(129, 917)] + ([(3, 32000), (2, 128000)] if name == "cross_entropy" else [])
        elif sp.layout == "rows":
            shapes = [(97, 1031)]
        else:
            shapes = [(100_003,)]
        out += [cases.Case(name, s, "small") for s in shapes]
    return out


def _params():
    out = []
    full = [c for c in cases.case_list() if c.role in ("large", "extra")]
    for case in _small_cases() + full:
        marks = [pytest.mark.bench_full] if case.role != "small" else []
        for impl in IMPLS:
            out.append(pytest.param(case, impl, id=f"{case.id}-{impl}", marks=marks))
    return out


_peers: dict = {}


def _get_peers():
    if not _peers:
        _peers["p"] = peers.Peers()
    return _peers["p"]


def _plan(case):
    """(iterations per round, rounds) when benchmarks are enabled."""
    if case.elements >= 10_000_000:
        return 1, 5
    return max(1, min(100, (1 << 20) // case.elements)), 15


_data: dict = {}


def _arrays(case):
    if case.id not in _data:
        _data.clear()  # one case's arrays at a time (the large ones are 0.26-1 GB)
        _data[case.id] = case.make()
    return _data[case.id]


_ref_cache: dict = {}


def _reference(case, arrays):
    """PyTorch's result in float64 on the same data where it has the loss, else
    fastloss's float64 result (itself tested against float64 references in tests/)."""
    if case.id not in _ref_cache:
        _ref_cache.clear()
        a64 = tuple(a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays)
        impl = "torch" if case.spec.torch is not None else "fastloss"
        _ref_cache[case.id] = peers.as_numpy(peers.make_call(case, impl, a64, _get_peers()).fn())
    return _ref_cache[case.id]


@pytest.mark.parametrize("case,impl", _params())
def test_bench(benchmark, case, impl):
    if impl == "jax":
        pytest.importorskip("jax")
    arrays = _arrays(case)
    call = peers.make_call(case, impl, arrays, _get_peers())
    if call is None:
        pytest.skip(f"{impl} has no {case.loss}")

    benchmark.group = f"{case.loss}|{case.label}"
    benchmark.extra_info.update(impl=impl, elements=case.elements,
                                bytes_moved=cases.bytes_moved(arrays))
    iterations, rounds = _plan(case)
    if call.prepare is not None:  # in place: a fresh copy of the input before each call
        res = benchmark.pedantic(call.fn, setup=call.prepare, rounds=rounds * iterations,
                                 warmup_rounds=1)
    else:
        res = benchmark.pedantic(call.fn, iterations=iterations, rounds=rounds,
                                 warmup_rounds=1)

    loss, grad = peers.as_numpy(res)
    del res
    ref_loss, ref_grad = _reference(case, arrays)
    assert grad.shape == arrays[0].shape
    assert grad.dtype == np.float32
    # float32 tolerances (SPEC: rtol 2e-5) for fastloss; the peers sum in float32 in
    # their own order, so their losses get a looser bound
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-5 if impl.startswith("fastloss")
                               else 1e-4)
    scale = float(np.max(np.abs(ref_grad))) if ref_grad.size else 0.0
    np.testing.assert_allclose(grad, ref_grad, rtol=2e-5 if impl.startswith("fastloss")
                               else 1e-4, atol=1e-5 * scale)
