"""cross_entropy's small-call fast path gives the same bits as the general path."""

import math
import warnings

import numpy as np
import pytest

import fastloss as fl
from fastloss._kernels import pointwise as _kpw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (32, 10), (257, 32), (3000, 7)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fast_path_equals_general_path(dtype, shape, reduction):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x[::7, 0] = -np.inf
    y = rng.integers(0, shape[1], shape[0])
    y[::5] = -100
    fast = fl.cross_entropy(x, y, reduction=reduction)  # int64 labels: fast path
    general = fl.cross_entropy(x, y.astype(np.int32), reduction=reduction)  # general path
    assert fast.loss.dtype == dtype and type(fast.loss) is type(general.loss)
    np.testing.assert_array_equal(fast.loss, general.loss)
    np.testing.assert_array_equal(fast.grad, general.grad)
    nog = fl.cross_entropy(x, y, reduction=reduction, grad=False)
    assert nog.grad is None and np.array_equal(nog.loss, fast.loss, equal_nan=True)


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_call_small_path_takes_read_only_inputs(fn, dtype):
    """The small calls of cross_entropy / nll_loss make their buffers inside one kernel
    call and take writeable and read-only logits and labels alike, with one compiled
    serial kernel behind them (the general path's)."""
    from fastloss._kernels import softmax as ks

    rng = np.random.default_rng(8)
    x = rng.standard_normal((40, 9)).astype(dtype)
    x[3] = [np.nan] + [0.0] * 8
    x[4, 2] = np.inf
    y = rng.integers(0, 9, 40)
    y[::6] = -100
    f = getattr(fl, fn)
    ref = f(x, y, out=np.empty_like(x))  # the general path
    xr, yr = x.copy(), y.copy()
    xr.flags.writeable = yr.flags.writeable = False
    for xv, yv in ((x, y), (xr, y), (x, yr), (xr, yr)):
        r = f(xv, yv)
        assert type(r.loss) is type(ref.loss)
        np.testing.assert_array_equal(r.loss, ref.loss)
        np.testing.assert_array_equal(r.grad, ref.grad)
    serial = (ks.ce_index_small if fn == "cross_entropy" else ks.nll).serial
    name = np.dtype(dtype).name
    assert len([s for s in serial.signatures if str(s[0].dtype) == name]) == 1


def test_fast_path_errors():
    x = np.zeros((3, 4))
    with pytest.raises(IndexError, match="Target 4 is out of bounds for 4 classes"):
        fl.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="Target -1 is out of bounds"):
        fl.cross_entropy(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="target shape"):
        fl.cross_entropy(x, np.array([0, 1]))
    # options the fast path would take as "off" still get the general path's checks
    y = np.array([0, 1, 2])
    for opt in ("label_smoothing", "z_loss"):
        for bad in (None, []):
            with pytest.raises(TypeError, match=opt):
                fl.cross_entropy(x, y, **{opt: bad})
            with pytest.raises(TypeError, match=opt):
                fl.cross_entropy(x, y.astype(np.int32), **{opt: bad})
    for ok in (0, 0.0, np.float64(0.0), np.float32(0.0), False):
        got = fl.cross_entropy(x, y, label_smoothing=ok, z_loss=ok).loss
        assert got == fl.cross_entropy(x, y).loss


def test_few_class_kernel_is_thread_count_invariant(threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 5)).astype(np.float32)  # parallel few-class path
    y = rng.integers(0, 5, 20000)
    two = fl.cross_entropy(x, y, label_smoothing=0.1)
    threads.set_num_threads(1)  # the fixture restores the thread count
    one = fl.cross_entropy(x, y, label_smoothing=0.1)
    assert two.loss == one.loss and np.array_equal(two.grad, one.grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_out_buffers(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 9)).astype(dtype)
    y = rng.integers(0, 9, 40)
    ref = fl.cross_entropy(x, y.astype(np.int32))  # general path
    buf = np.empty_like(x)
    res = fl.cross_entropy(x, y, out=buf)
    assert res.grad is buf and np.array_equal(buf, ref.grad) and res.loss == ref.loss
    xi = x.copy()
    res = fl.cross_entropy(xi, y, out=xi)
    assert res.grad is xi and np.array_equal(xi, ref.grad) and res.loss == ref.loss
    with pytest.raises(ValueError, match="out has dtype"):
        fl.cross_entropy(x, y, out=np.empty(x.shape, np.float16))
    with pytest.raises(ValueError, match="grad=False"):
        fl.cross_entropy(x, y, grad=False, out=buf)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fl.cross_entropy(x, y, out=ro)


# ------------------------------------------------------- elementwise: the one-block path
def _elementwise():
    from tests.registry import REGISTRY

    return sorted(n for n, e in REGISTRY.items() if e["group"] != "softmax")


@pytest.mark.parametrize("name", _elementwise())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (1000,), (32, 128), (4096,), (4097,)])
def test_one_block_path_equals_general_path(name, dtype, shape):
    """A small call without ``out=`` (the one-block path, up to 4096 elements) gives the
    bits of the general path, which an ``out=`` buffer forces."""
    from tests.registry import REGISTRY

    args, kw = REGISTRY[name]["inputs"](np.random.default_rng(3), shape, dtype)
    f = getattr(fl, name)
    for reduction in ("mean", "sum") + (("batchmean",) if name == "kl_div" else ()):
        lean = f(*args, **kw, reduction=reduction)
        buf = np.empty(shape, dtype)
        general = f(*args, **kw, reduction=reduction, out=buf)
        assert general.grad is buf
        assert type(lean.loss) is type(general.loss) and lean.loss.dtype == dtype
        np.testing.assert_array_equal(lean.loss, general.loss)
        assert lean.grad.shape == shape and lean.grad.dtype == dtype
        np.testing.assert_array_equal(lean.grad, general.grad)
        nog = f(*args, **kw, reduction=reduction, grad=False)
        assert nog.grad is None
        np.testing.assert_array_equal(nog.loss, general.loss)


def _outcome(f, *args, **kw):
    try:
        r = f(*args, **kw)
    except (ValueError, IndexError) as e:
        return type(e), str(e)
    return r.loss, None if r.grad is None else r.grad.copy()


@pytest.mark.parametrize("name", _elementwise())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_path_takes_any_input_and_matches_the_general_path(name, dtype, tmp_path):
    """The one-call small build (1-D, one block) takes writeable, read-only and memmap
    inputs alike (one compiled range function behind them) and edge values: the same
    outcome, bits or error, as the general path; the inputs are never written."""
    from tests.registry import REGISTRY

    args, kw = REGISTRY[name]["inputs"](np.random.default_rng(5), (300,), dtype)
    x = args[0].copy()
    x[:4] = [np.nan, np.inf, -np.inf, 1e30]
    args = (x,) + tuple(args[1:])
    f = getattr(fl, name)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=dtype, shape=x.shape)
    mm[...] = x
    mm.flush()
    variants = {"writeable": x, "read-only": x.copy(), "memmap": np.load(tmp_path / "x.npy",
                                                                         mmap_mode="r")}
    variants["read-only"].flags.writeable = False
    before = [np.array(a, copy=True) for a in args]
    for label, xv in variants.items():
        for reduction in ("mean", "sum"):
            lean = _outcome(f, xv, *args[1:], **kw, reduction=reduction)
            general = _outcome(f, xv, *args[1:], **kw, reduction=reduction,
                               out=np.empty(x.shape, dtype))
            assert type(lean[0]) is type(general[0]), (label, lean, general)
            if isinstance(lean[0], type):  # both raised
                assert lean == general, label
            else:
                np.testing.assert_array_equal(lean[0], general[0], err_msg=label)
                np.testing.assert_array_equal(lean[1], general[1], err_msg=label)
    for a, b in zip(args, before, strict=True):
        np.testing.assert_array_equal(a, b)
    kern = getattr(_kpw, {"poisson_nll_loss": "poisson_nll_loss_log"}.get(name, name), None)
    if kern is not None and kern.small is not None:
        # writeable and read-only callers share one range function (as_readonly)
        name32 = np.dtype(dtype).name
        assert len({sig[:2] for sig in kern.serial.signatures
                    if str(sig[0].dtype) == name32}) == 1


def test_one_block_path_keeps_the_domain_checks():
    with pytest.raises(ValueError, match="between 0 and 1|in \\[0, 1\\]"):
        fl.binary_cross_entropy(np.array([0.5, 1.5]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="-1"):
        fl.hinge_loss(np.array([0.5, 1.5]), np.array([1.0, 0.0]))
    x = np.array([0.5, 1.5])
    with pytest.raises(ValueError, match="shape"):
        fl.mse_loss(x, np.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        fl.mse_loss(x, x, reduction="avg")
    assert fl.mse_loss(np.empty(0), np.empty(0)).loss != fl.mse_loss(x, x).loss  # nan vs 0


# -------------------------------------- cross-entropy: the plain and the full builds
def test_plain_build_binds_no_op_helpers_and_full_build_the_real_ones():
    from fastloss._kernels import softmax as K

    for plain, full in ((K.ce_index, K.ce_index_full), (K.ce_prob, K.ce_prob_full)):
        for build in ("serial", "parallel"):
            gp = getattr(plain, build).py_func.__globals__
            gf = getattr(full, build).py_func.__globals__
            assert gp["CAP_INTO"] is K._no_cap_into and gf["CAP_INTO"] is K._cap_into
            assert gp["CAPPED_GRAD"] is K._no_capped_grad
            assert gf["CAPPED_GRAD"] is K._capped_grad
    assert K.ce_index.serial.py_func.__globals__["SCALE_SUB_W"] is K._no_scale_sub_w
    assert K.ce_index_full.serial.py_func.__globals__["SCALE_SUB_W"] is K._scale_sub_w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_plain_build_equals_full_build_without_the_options(dtype, weighted):
    """With label smoothing and softcap off, the full build's arithmetic is the plain
    build's: the same bits (ignore_index, weights and z-loss included)."""
    from fastloss._core import readonly
    from fastloss._kernels import softmax as K

    rng = np.random.default_rng(4)
    R, C = 70, 300
    x = readonly(rng.standard_normal((R, C)).astype(dtype))
    y = rng.integers(0, C, R)
    y[::9] = -100
    y = readonly(y)
    w = readonly(rng.random(C) + 0.5) if weighted else readonly(np.empty(0))
    outs = []
    for k in (K.ce_index.serial, K.ce_index_full.serial):
        g = np.empty((R, C), dtype)
        rl = np.empty(R)
        rzl = np.empty(R)
        res = k(x, y, w, -100, 0.0, 1e-3, 0.0, True, g, rl, rzl)
        outs.append((res, g, rl, rzl))
    (r0, g0, l0, z0), (r1, g1, l1, z1) = outs
    assert r0 == r1
    for a, b in ((g0, g1), (l0, l1), (z0, z1)):
        np.testing.assert_array_equal(a, b)
    # and the public call takes the full build only for the options
    with_opts = fl.cross_entropy(np.asarray(x), np.asarray(y), label_smoothing=0.1)
    assert np.isfinite(with_opts.loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (32, 10), (257, 32), (3000, 700)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_nll_fast_path_equals_general_path(dtype, shape, reduction):
    rng = np.random.default_rng(5)
    x = np.log(rng.random(shape)).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    y[::4] = -100
    fast = fl.nll_loss(x, y, reduction=reduction)  # int64 labels: fast path
    general = fl.nll_loss(x, y.astype(np.int32), reduction=reduction)
    assert fast.loss.dtype == dtype and type(fast.loss) is type(general.loss)
    np.testing.assert_array_equal(fast.loss, general.loss)
    np.testing.assert_array_equal(fast.grad, general.grad)
    nog = fl.nll_loss(x, y, reduction=reduction, grad=False)
    assert nog.grad is None and np.array_equal(nog.loss, fast.loss, equal_nan=True)
    if shape[0]:
        with pytest.raises(IndexError, match=f"Target {shape[1]} is out of bounds"):
            fl.nll_loss(x, np.full(shape[0], shape[1]), reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 5000])
def test_poisson_default_kernel_equals_the_general_kernel(dtype, n):
    """poisson_nll_loss's default options (log_input=True, full=False) run a kernel without
    the logarithms of the other options: the same bits as the general kernel."""
    from fastloss import pointwise as pw

    rng = np.random.default_rng(9)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[:4] = [np.nan, np.inf, -np.inf, 80.0]
    t = rng.poisson(2.0, n).astype(dtype)
    t[4:6] = [0.0, np.inf]
    for reduction in ("none", "sum", "mean"):
        fast = fl.poisson_nll_loss(x, t, reduction=reduction)
        general = pw._run(_kpw.poisson_nll_loss, x, t, 1.0, 0.0, 1e-8, reduction=reduction,
                          grad=True, out=None)
        np.testing.assert_array_equal(fast.loss, general.loss)
        np.testing.assert_array_equal(fast.grad, general.grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (32, 10), (200, 40), (700, 45)])
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_small_call_equals_general_path(dtype, shape, p):
    """multi_margin_loss's small call (int64 labels, no weight or out=) is one kernel call:
    the general path's bits (int32 labels take the general path), read-only inputs too,
    and its bad-target error."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal(shape).astype(dtype)
    if x.size:
        x.flat[::11] = np.inf
        x.flat[5::13] = np.nan
    y = rng.integers(0, shape[1], shape[0])
    xr = x.copy()
    xr.flags.writeable = False
    for reduction in ("mean", "sum"):
        general = fl.multi_margin_loss(x, y.astype(np.int32), p=p, margin=0.7,
                                       reduction=reduction)
        for xv in (x, xr):
            for grad in (True, False):
                r = fl.multi_margin_loss(xv, y, p=p, margin=0.7, reduction=reduction, grad=grad)
                assert type(r.loss) is type(general.loss)
                np.testing.assert_array_equal(r.loss, general.loss)
                if grad:
                    np.testing.assert_array_equal(r.grad, general.grad)
                else:
                    assert r.grad is None
    if shape[0] > 1:
        bad = y.copy()
        bad[-1] = shape[1]
        with pytest.raises(IndexError, match=f"Target {shape[1]} is out of bounds"):
            fl.multi_margin_loss(x, bad, p=p)


@pytest.mark.parametrize(
    "total", [1.5, -2.25e-40, 3.4028234e38, 3.4028235e38, 3.4028236e38, 1e39, -1e39,
              math.inf, -math.inf, math.nan]
)
def test_small_call_result_rounds_to_float32_like_ieee(total):
    """The small calls' float64 total becomes a float32 scalar by IEEE rounding (no
    overflow warning; beyond float32's max + half an ulp it is +-inf), as a cast would."""
    from fastloss._core import to_dtype

    with np.errstate(over="ignore"):
        want = np.array(total).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = to_dtype(total, np.dtype(np.float32))
    assert type(got) is np.float32
    assert np.array_equal(got, want, equal_nan=True)


def test_small_call_overflowing_total_is_inf_without_warning():
    x = np.full(1024, 2e19, np.float32)
    t = np.zeros_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = fl.mse_loss(x, t, reduction="sum")
        general = fl.mse_loss(x, t, reduction="sum", out=np.empty_like(x))
    assert small.loss == general.loss == np.float32(np.inf)
    assert np.array_equal(small.grad, general.grad)
