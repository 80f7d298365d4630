"""The vectorisable math of fastloss._vmath against NumPy (libm), in ulps."""

import numba
import numpy as np
import pytest

from fastloss import _vmath as vm


def _loop(f):
    @numba.njit(error_model="numpy")
    def run(a, o):
        for i in range(a.shape[0]):
            o[i] = f(a[i])

    return run


LOOPS = {
    "exp": (_loop(vm.vexp), np.exp),
    "expm1": (_loop(vm.vexpm1), np.expm1),
    "log": (_loop(vm.vlog), np.log),
    "log1p": (_loop(vm.vlog1p), np.log1p),
    "log1p_unit": (_loop(vm.vlog1p_unit), np.log1p),
    "tanh": (_loop(vm.vtanh), np.tanh),
}
ULPS = {"exp": 1, "expm1": 2, "log": 1, "log1p": 1, "log1p_unit": 1, "tanh": 3}
SPECIAL = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e30, -1e30]


def _inputs(name, dt):
    rng = np.random.default_rng(1)
    fi = np.finfo(dt)
    hi = float(np.log(fi.max))
    if name == "exp":
        x = rng.uniform(-hi * 1.2, hi * 1.05, 200_000)
    elif name == "expm1":
        x = np.concatenate(
            [
                rng.uniform(-30, hi, 100_000),
                rng.uniform(-1, 1, 100_000),
                -np.exp(rng.uniform(-60, 0, 10_000)),
                np.exp(rng.uniform(-60, 0, 10_000)),
            ]
        )
    elif name == "log":
        x = np.concatenate(
            [
                np.exp(rng.uniform(-hi, hi, 200_000)),
                [fi.tiny, fi.tiny / 8, fi.smallest_subnormal, fi.max],
            ]
        )
    elif name == "log1p_unit":  # its domain: e = exp(-|x|) in [0, 1], or NaN
        e = np.exp(-np.abs(rng.uniform(-hi * 1.2, hi * 1.2, 200_000)))
        special = [0.0, 1.0, np.nan, fi.tiny, fi.smallest_subnormal, fi.eps, 1 - fi.epsneg]
        return np.concatenate([e, special]).astype(dt)
    elif name == "log1p":
        x = np.concatenate(
            [
                rng.uniform(-0.999, 10, 100_000),
                np.exp(rng.uniform(-80, 2, 100_000)),
                -np.exp(rng.uniform(-80, -0.01, 10_000)),
                [-2.0],
            ]
        )
    else:
        x = np.concatenate([rng.uniform(-25, 25, 100_000), np.exp(rng.uniform(-40, 3, 100_000))])
        x = np.concatenate([x, -x])
    return np.concatenate([x, SPECIAL]).astype(dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(LOOPS))
def test_accuracy_and_special_values(name, dt):
    run, ref = LOOPS[name]
    x = _inputs(name, dt)
    out = np.empty_like(x)
    run(x, out)
    with np.errstate(all="ignore"):
        expect = ref(x.astype(np.float64)).astype(dt)
    fi = np.finfo(dt)
    same = (out == expect) | (np.isnan(out) & np.isnan(expect))
    normal = np.isfinite(expect) & (np.abs(expect) >= fi.tiny)
    # non-finite and exactly-representable cases must match exactly (inf, nan, 0, -1 ...)
    assert same[~normal & ~((np.abs(expect) < fi.tiny) & (expect != 0))].all()
    with np.errstate(all="ignore"):
        ulp = np.abs(out.astype(np.float64) - expect) / np.spacing(np.abs(expect)).astype(
            np.float64
        )
    assert ulp[normal].max() <= ULPS[name], (name, ulp[normal].max())
    # subnormal results: within one subnormal step
    sub = (np.abs(expect) < fi.tiny) & (expect != 0)
    if sub.any():
        assert (np.abs(out[sub].astype(np.float64) - expect[sub]) <= fi.smallest_subnormal).all()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_row_max_and_sum(dt):
    rng = np.random.default_rng(2)
    for n in (1, 7, 16, 17, 1000):
        x = rng.standard_normal(n).astype(dt)
        assert vm.row_max(x) == x.max()
        assert vm.row_sum(x) == pytest.approx(float(x.astype(np.float64).sum()), rel=1e-12)
    assert vm.row_max(np.array([-np.inf, -np.inf], dt)) == -np.inf
    assert vm.row_max(np.array([-3.0, -0.0, -1.0], dt)) == 0.0
    assert np.isnan(vm.row_max(np.array([1.0, np.nan, 2.0], dt)))
    assert np.isnan(vm.row_sum(np.array([1.0, np.inf, -np.inf], dt)))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_max_key_orders_like_the_floats_in_their_own_width(dt):
    """Keys sort like the floats (-0.0 just below +0.0), invert exactly, and stay in the
    float's width (an int64 key for float32 halves the vector width of row_max)."""
    fi = np.finfo(dt)
    x = np.array(
        [-np.inf, -fi.max, -1.5, -fi.tiny, -fi.smallest_subnormal, -0.0, 0.0,
         fi.smallest_subnormal, fi.tiny, 1.0, 2.5, fi.max, np.inf],
        dt,
    )

    @numba.njit
    def keys(a):
        out = np.empty(a.shape[0], np.int64)
        back = np.empty_like(a)
        for i in range(a.shape[0]):
            k = vm.max_key(a[i])
            out[i] = k
            back[i] = vm.key_to_float(k, a[i])
        return out, back

    k, back = keys(x)
    assert (np.diff(k) > 0).all()
    assert np.array_equal(back.view(np.uint8), x.view(np.uint8))  # -0.0 included
    key_of = numba.njit(lambda v: vm.max_key(v))
    key_of(x[0])
    assert key_of.nopython_signatures[0].return_type.bitwidth == np.dtype(dt).itemsize * 8


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_exp_neg(dt):
    run = _loop(vm.vexp_neg)
    rng = np.random.default_rng(3)
    fi = np.finfo(dt)
    x = np.concatenate(
        [
            -np.exp(rng.uniform(-30, 6.6, 200_000)),
            rng.uniform(np.log(fi.smallest_subnormal) - 2, np.log(fi.tiny) + 2, 50_000),
            [0.0, -0.0, -np.inf, np.nan],
        ]
    ).astype(dt)
    out = np.empty_like(x)
    run(x, out)
    expect = np.exp(x.astype(np.float64)).astype(dt)
    normal = expect >= fi.tiny
    ulp = np.abs(out.astype(np.float64) - expect) / np.spacing(expect).astype(np.float64)
    assert ulp[normal].max() <= 1
    # subnormal results (as PyTorch's exp gives them): within one subnormal step
    sub = ~normal & ~np.isnan(x)
    exact = np.exp(x[sub].astype(np.float64) if dt == np.float32 else x[sub])
    assert (np.abs(out[sub].astype(np.float64) - exact) <= fi.smallest_subnormal).all()
    assert np.isnan(out[np.isnan(x)]).all()
    assert out[x == -np.inf].tolist() == [0.0]


@numba.njit
def _two_loop_lane_sum(a, m):
    acc = np.zeros(64)
    k = m - m % 64
    for i in range(0, k, 64):
        for lane in range(64):
            acc[lane] += a[i + lane]
    s = 0.0
    for lane in range(64):
        s += acc[lane]
    for i in range(k, m):
        s += a[i]
    return s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_totals_in_registers_give_the_two_loop_bits(dtype):
    """The elementwise engine's block sum (lane sums held in one LLVM vector) adds in the
    order of the plain two-loop version: same bits, inf / NaN / huge values included."""
    from fastloss._kernels.pointwise import _lane_sum

    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(0, 5000))
        a = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(dtype)
        if trial % 7 == 0 and n:
            a[rng.integers(0, n)] = np.inf
        if trial % 11 == 0 and n:
            a[rng.integers(0, n)] = np.nan
        m = int(rng.integers(0, n + 1))
        want, got = _two_loop_lane_sum(a, m), _lane_sum(a, m)
        assert np.float64(want).tobytes() == np.float64(got).tobytes(), (n, m, want, got)
