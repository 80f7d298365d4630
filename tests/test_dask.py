"""fastloss.dask: every loss on Dask arrays equals the in-memory call.

(a) the threaded scheduler: every loss and case of ``tests/test_chunked.py``, every
    reduction, gradients included, float64 to 1e-12; laziness (the logits are read once),
    chunks, eager validation with the NumPy API's errors, the lazy import;
(b) a real ``dask.distributed.LocalCluster`` with two worker processes: a few losses,
    class-weighted cross-entropy with ``ignore_index`` among them;
(c) a data set several times larger than the workers' memory limit, generated lazily
    per chunk, scored with ``grad=False``.  ``FASTLOSS_DASK_BIG_GB=<GB>`` runs a bigger one.
"""

from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastloss as fl
from fastloss import _chunked as ch
from tests.test_chunked import CASE_PARAMS, CASES, C, _idx, assert_same, bounds_of, in_memory

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
import fastloss.dask as fld  # noqa: E402

SCHED = "threads"


def _chunks_of(shape, row_sizes, split_axis1=False):
    rest = tuple((s,) if not (split_axis1 and k == 0 and s > 1) else (s // 2, s - s // 2)
                 for k, s in enumerate(shape[1:]))
    return (tuple(row_sizes),) + rest


def _to_dask(row_args, row_sizes, split_axis1=False):
    out = []
    for v in row_args:
        v = np.asarray(v)
        out.append(da.from_array(v, chunks=_chunks_of(v.shape, row_sizes, split_axis1)))
    return out


def _sizes(bounds):
    return [b - a for a, b in itertools.pairwise(bounds)]


def _call(name, dargs, weight, options, reduction, grad=True):
    kw = dict(options)
    if weight is not None:
        kw["weight"] = weight
    return getattr(fld, name)(*dargs, **kw, reduction=reduction, grad=grad)


# ------------------------------------------------------------------ (a) local scheduler
def test_every_loss_is_wrapped():
    assert sorted(fld.__all__) == sorted(fl.LOSSES)
    for name, info in fl.LOSSES.items():
        f = getattr(fld, name)
        ref = inspect.signature(info.fn)
        sig = inspect.signature(f)
        assert list(sig.parameters) == [p for p in ref.parameters if p != "out"], name
        for p, q in sig.parameters.items():
            assert q.default == ref.parameters[p].default, (name, p)
        assert f.__name__ == name and f.__doc__


@pytest.mark.parametrize("name, build", CASE_PARAMS)
def test_dask_equals_in_memory(name, build):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    n = int(rng.integers(80, 160))
    row_args, weight, options = build(rng, n, np.float64)
    sizes = _sizes(bounds_of("random", n, rng))
    split = len(CASES[name]) > 1 and build is CASES[name][1][1]  # chunked along axis 1 too
    dargs = _to_dask(row_args, sizes, split)
    for reduction in fl.LOSSES[name].reductions:
        ref = in_memory(name, row_args, weight, options, reduction)
        res = _call(name, dargs, weight, options, reduction)
        assert isinstance(res.loss, da.Array) and isinstance(res.grad, da.Array)
        assert res.grad.chunks == dargs[0].chunks
        assert res.grad.dtype == dargs[0].dtype
        if reduction == "none":
            assert res.loss.shape == ref.loss.shape
            assert res.loss.chunks[0] == dargs[0].chunks[0]
        else:
            assert res.loss.shape == () and res.loss.dtype == np.float64
        loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
        assert_same(loss, ref.loss, what=f"{reduction} loss")
        assert_same(g, ref.grad, what=f"{reduction} grad")
        lossonly = _call(name, dargs, weight, options, reduction, grad=False)
        assert lossonly.grad is None
        assert_same(lossonly.loss.compute(scheduler=SCHED), ref.loss, what=f"{reduction} scoring")


@pytest.mark.parametrize("name", ["cross_entropy", "mse_loss", "kl_div_with_logits"])
def test_float32(name):
    rng = np.random.default_rng(1)
    cid, build = CASES[name][0]
    row_args, weight, options = build(rng, 100, np.float32)
    dargs = _to_dask(row_args, [30, 0, 1, 69])
    for reduction in fl.LOSSES[name].reductions:
        ref = in_memory(name, row_args, weight, options, reduction)
        res = _call(name, dargs, weight, options, reduction)
        loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
        assert np.asarray(loss).dtype == np.float32 and g.dtype == np.float32
        assert_same(loss, ref.loss, rtol=2e-6, what=reduction)
        assert_same(g, ref.grad, rtol=2e-6, what=reduction)


def test_logits_read_once_and_lazily():
    """Building the graph reads nothing; computing loss and gradient together reads each
    logits block once (the "mean" denominator comes from the targets alone)."""
    calls = []
    lock = threading.Lock()

    def block(block_info=None):
        (r0, r1), _ = block_info[None]["array-location"]
        with lock:
            calls.append(r0)
        return np.random.default_rng(r0).standard_normal((r1 - r0, C))

    rows = (40, 25, 0, 35)
    x = da.map_blocks(block, chunks=(rows, (C,)), dtype=np.float64,
                      meta=np.empty((0, 0), np.float64))
    rng = np.random.default_rng(0)
    y = _idx(rng, 100, C)
    w = rng.random(C) + 0.5
    res = fld.cross_entropy(x, da.from_array(y, chunks=30), weight=w, label_smoothing=0.1)
    assert calls == []
    loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
    assert sorted(calls) == [0, 40, 65, 65]
    xn = np.concatenate([np.random.default_rng(r).standard_normal((n, C))
                         for r, n in zip((0, 40, 65, 65), rows, strict=True)])
    ref = fl.cross_entropy(xn, y, weight=w, label_smoothing=0.1)
    assert_same(loss, ref.loss)
    assert_same(g, ref.grad)


def test_one_fused_kernel_call_per_chunk(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((90, C))
    y = _idx(rng, 90, C)
    w = rng.random(C) + 0.5
    info = fl.LOSSES["cross_entropy"]
    calls = []

    def counting(*args, **kwargs):
        calls.append(np.shape(args[0]))
        return info.fn(*args, **kwargs)

    for opts in ({}, {"z_loss": 1e-3, "label_smoothing": 0.1}):
        res = fld.cross_entropy(da.from_array(x, chunks=(30, 2)), y, weight=w, **opts)
        monkeypatch.setitem(fl.LOSSES, "cross_entropy", info._replace(fn=counting))
        calls.clear()
        loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
        monkeypatch.setitem(fl.LOSSES, "cross_entropy", info)
        assert sorted(calls) == [(30, C)] * 3
        ref = fl.cross_entropy(x, y, weight=w, **opts)
        assert_same(loss, ref.loss)
        assert_same(g, ref.grad)


def test_graphs_of_different_calls_do_not_collide():
    rng = np.random.default_rng(8)
    x = da.from_array(rng.standard_normal((40, C)), chunks=15)
    y = da.from_array(rng.integers(0, C, 40), chunks=15)
    a = fld.cross_entropy(x, y, weight=np.ones(C))
    b = fld.cross_entropy(x, y, weight=np.arange(1.0, C + 1))
    c = fld.cross_entropy(x, y, weight=np.ones(C), label_smoothing=0.1)
    assert len({a.loss.name, b.loss.name, c.loss.name}) == 3
    assert len({a.grad.name, b.grad.name, c.grad.name}) == 3
    assert fld.cross_entropy(x, y, weight=np.ones(C)).loss.name == a.loss.name  # deterministic
    got = dask.compute(a.loss, b.loss, c.loss, scheduler=SCHED)
    xn, yn = x.compute(), y.compute()
    for v, kw in zip(got, [{"weight": np.ones(C)}, {"weight": np.arange(1.0, C + 1)},
                           {"weight": np.ones(C), "label_smoothing": 0.1}], strict=True):
        assert_same(v, fl.cross_entropy(xn, yn, **kw).loss)


def test_numpy_operands_and_dask_class_weights():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, C))
    y = _idx(rng, 50, C)
    w = rng.random(C)
    ref = fl.cross_entropy(x, y, weight=w)
    res = fld.cross_entropy(x, y, weight=da.from_array(w, chunks=3))
    loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
    assert_same(loss, ref.loss)
    assert_same(g, ref.grad)
    # operands chunked differently from the input, whole ones as Dask arrays
    t = (x > 0).astype(float)
    pw = rng.random((50, C)) + 1
    ref = fl.binary_cross_entropy_with_logits(x, t, w, pw)
    res = fld.binary_cross_entropy_with_logits(
        da.from_array(x, chunks=(20, 3)), da.from_array(t, chunks=(9, 2)),
        weight=da.from_array(w, chunks=2), pos_weight=da.from_array(pw, chunks=(13, 7)))
    loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
    assert res.grad.chunks == ((20, 20, 10), (3, 3, 1))
    assert_same(loss, ref.loss)
    assert_same(g, ref.grad)
    teacher = rng.standard_normal((50, C))
    ref = fl.kl_div_with_logits(x, teacher, temperature=3.0)
    res = fld.kl_div_with_logits(da.from_array(x, chunks=11), da.from_array(teacher, chunks=17),
                                 temperature=3.0)
    loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
    assert_same(loss, ref.loss)
    assert_same(g, ref.grad)
    res = fld.cross_entropy(da.from_array(x, chunks=(7, 3)), y, weight=w, reduction="none")
    assert_same(res.loss.compute(scheduler=SCHED), fl.cross_entropy(x, y, weight=w,
                                                                    reduction="none").loss)


@pytest.mark.parametrize("name", sorted(ch.INDEX_LOSSES))
def test_edge_cases(name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, C))
    x[4] = -np.inf
    cases = [
        (np.full(30, -100), None),  # all ignored: NaN mean
        (np.tile([0, 1], 15), np.array([1.0, -1.0, 1, 1, 1, 1, 1])),  # zero total weight
        (np.tile([0, 1, 3], 10), np.array([1.0, np.nan, 1, 1, 1, 1, 1])),  # NaN weight
    ]
    for y, w in cases:
        for reduction in ("mean", "sum", "none"):
            ref = in_memory(name, (x, y), w, {}, reduction)
            res = _call(name, _to_dask((x, y), [10, 0, 1, 19]), w, {}, reduction)
            loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
            assert_same(loss, ref.loss, what=f"{reduction}")
            assert_same(g, ref.grad, what=f"{reduction} grad")
            res = _call(name, _to_dask((x, y), [10, 0, 1, 19]), w, {}, reduction, grad=False)
            assert_same(res.loss.compute(scheduler=SCHED), ref.loss, what=f"{reduction} scoring")
    # an empty data set
    res = fld.cross_entropy(da.zeros((0, C), chunks=5), da.zeros((0,), dtype=np.int64, chunks=5))
    assert np.isnan(res.loss.compute(scheduler=SCHED))
    assert res.grad.compute(scheduler=SCHED).shape == (0, C)


def test_one_sample_input():
    x = np.array([1.0, 2.0, 0.5])
    for reduction in ("mean", "none"):
        ref = fl.cross_entropy(x, np.array(1), reduction=reduction)
        res = fld.cross_entropy(da.from_array(x, chunks=2), np.array(1), reduction=reduction)
        loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
        assert_same(loss, ref.loss)
        assert_same(g, ref.grad)
        assert res.grad.chunks == ((2, 1),)


@pytest.mark.parametrize("name", sorted(ch.INDEX_LOSSES))
def test_one_or_no_rows_in_several_chunks(name):
    """One row (or none) spread over several row chunks, e.g. after a boolean filter:
    dask's alignment would broadcast a length-1 row axis to every block."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, C))
    for keep in ([False] * 5 + [True], [False] * 6, [True] + [False] * 5):
        keep = np.array(keep)
        xd = da.from_array(x, chunks=(2, 3))[da.from_array(keep, chunks=2)]
        xd.compute_chunk_sizes()
        y = np.arange(int(keep.sum())) % C
        for reduction in ("mean", "sum", "none"):
            ref = in_memory(name, (x[keep], y), None, {}, reduction)
            res = _call(name, (xd, y), None, {}, reduction)
            assert res.grad.chunks == xd.chunks
            loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
            assert_same(loss, ref.loss, what=f"{keep.sum()} rows {reduction}")
            assert_same(g, ref.grad, what=f"{keep.sum()} rows {reduction} grad")
            assert g.shape == ref.grad.shape
    # elementwise, one element in a chunk of its own
    xe = da.from_array(np.array([0.5]), chunks=((1,),))
    xe = da.concatenate([xe[:0], xe])
    res = fld.mse_loss(xe, np.array([2.0]), reduction="sum")
    assert res.loss.compute(scheduler=SCHED) == 2.25


def test_array_likes_and_unknown_target_chunks():
    pd = pytest.importorskip("pandas")
    x = np.random.default_rng(5).standard_normal((7, C))
    y = np.arange(7) % C
    ref = fl.cross_entropy(x, y)
    res = fld.cross_entropy(pd.DataFrame(x), pd.Series(y))
    assert_same(res.loss.compute(scheduler=SCHED), ref.loss)
    res = fld.cross_entropy(x.tolist(), y.tolist())
    assert_same(res.loss.compute(scheduler=SCHED), ref.loss)
    yd = da.from_array(y, chunks=3)
    with pytest.raises(ValueError, match=r"target has unknown chunk sizes.*compute_chunk_sizes"):
        fld.cross_entropy(x, yd[yd >= 0])


def _same_error(f_dask, f_numpy):
    with pytest.raises(Exception) as ed:
        f_dask()
    with pytest.raises(Exception) as en:
        f_numpy()
    assert type(ed.value) is type(en.value)
    assert str(ed.value) == str(en.value)
    return ed.value


def test_options_are_validated_when_the_graph_is_built():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, C))
    y = rng.integers(0, C, 20)
    X = da.from_array(x, chunks=6)
    Y = da.from_array(y, chunks=6)
    for kw in [{"reduction": "avg"}, {"label_smoothing": 1.5}, {"z_loss": -1.0},
               {"softcap": 0.0}, {"ignore_index": 1.5}, {"weight": np.ones(3)},
               {"axis": 5}]:
        _same_error(lambda kw=kw: fld.cross_entropy(X, Y, **kw),
                    lambda kw=kw: fl.cross_entropy(x, y, **kw))
    _same_error(lambda: fld.cross_entropy(X.astype(np.int32), Y),
                lambda: fl.cross_entropy(x.astype(np.int32), y))
    _same_error(lambda: fld.huber_loss(X, X, delta=0.0), lambda: fl.huber_loss(x, x, delta=0.0))
    _same_error(lambda: fld.kl_div_with_logits(X, X[:, :3]),
                lambda: fl.kl_div_with_logits(x, x[:, :3]))
    _same_error(lambda: fld.multi_margin_loss(X, Y, p=3), lambda: fl.multi_margin_loss(x, y, p=3))
    _same_error(lambda: fld.mse_loss(X, X[:, :2]), lambda: fl.mse_loss(x, x[:, :2]))
    _same_error(lambda: fld.cross_entropy(X, X[:, :2].astype(np.int64)),
                lambda: fl.cross_entropy(x, x[:, :2].astype(np.int64)))
    with pytest.raises(ValueError, match=r"target shape \(19,\) does not match input shape"):
        fld.cross_entropy(X, Y[:19])
    with pytest.raises(ValueError, match="axis 0, the batch axis"):
        fld.cross_entropy(X, Y[:C], axis=0)
    with pytest.raises(TypeError):
        fld.mse_loss(X, X, out=x)  # no out= for lazy results
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fld.mse_loss(X[X[:, 0] > 0], X[X[:, 0] > 0])


def test_value_errors_are_raised_by_compute():
    x = np.zeros((10, C))
    y = np.arange(10)  # 7, 8, 9 out of range
    res = fld.cross_entropy(da.from_array(x, chunks=4), da.from_array(y, chunks=4))
    with pytest.raises(IndexError, match="Target [789] is out of bounds for 7 classes"):
        dask.compute(res.loss, res.grad, scheduler=SCHED)
    res = fld.hinge_loss(da.from_array(x, chunks=4), da.from_array(x, chunks=4), reduction="sum")
    with pytest.raises(ValueError, match="target must contain only -1 and \\+1"):
        res.loss.compute(scheduler=SCHED)


def _run(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          timeout=120)


def test_import_fastloss_does_not_import_dask():
    r = _run("import sys, fastloss, fastloss.dask as fld; assert fld.cross_entropy; "
             "assert 'dask' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m)")
    assert r.returncode == 0, r.stderr


def test_missing_dask_names_the_extra():
    r = _run("import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
             "import numpy as np, fastloss.dask as fld\n"
             "try:\n    fld.mse_loss(np.zeros(3), np.zeros(3))\n"
             "except ImportError as e:\n    print(e)\n")
    assert r.returncode == 0, r.stderr
    assert "pip install 'fastloss[dask]'" in r.stdout


# --------------------------------------------------------- (b) a real LocalCluster
WORKER_MEMORY = "400MB"  # an idle worker with fastloss loaded takes about 190 MB


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # compile (or load) the kernels here first: the workers then load them from the
    # on-disk cache instead of spending their memory on LLVM
    fl.warmup(["cross_entropy", "nll_loss", "kl_div_with_logits", "mse_loss",
               "binary_cross_entropy_with_logits"])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit=WORKER_MEMORY,
        dashboard_address=None, silence_logs=50,
    )
    c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _dist_cases():
    rng = np.random.default_rng(21)
    n = 130
    x = rng.standard_normal((n, C))
    y = _idx(rng, n, C, ignore=3)
    w = rng.random(C) + 0.2
    x3 = rng.standard_normal((n, C, 3))
    y3 = _idx(rng, n, C, (3,))
    return [
        ("cross_entropy", (x, y), w, {"ignore_index": 3}),
        ("cross_entropy", (x, y), w, {"ignore_index": 3, "label_smoothing": 0.1,
                                      "z_loss": 1e-2}),
        ("nll_loss", (fl.log_softmax(x3, axis=1), y3), w, {"axis": 1}),
        ("kl_div_with_logits", (x, rng.standard_normal((n, C))), None, {"temperature": 2.0}),
        ("mse_loss", (x, rng.standard_normal((n, C))), None, {}),
        ("binary_cross_entropy_with_logits", (x, (x > 0.3).astype(float), rng.random((n, 1))),
         None, {"pos_weight": rng.random(C) + 1}),
    ]


@pytest.mark.parametrize("case", range(6))
def test_local_cluster_equals_in_memory(client, case):
    name, row_args, weight, options = _dist_cases()[case]
    dargs = _to_dask(row_args, [40, 1, 0, 50, 39])
    for reduction in fl.LOSSES[name].reductions:
        ref = in_memory(name, row_args, weight, options, reduction)
        res = _call(name, dargs, weight, options, reduction)
        loss, g = client.gather(client.compute([res.loss, res.grad]))
        assert_same(loss, ref.loss, what=f"{name} {reduction} loss")
        assert_same(g, ref.grad, what=f"{name} {reduction} grad")
    res = _call(name, dargs, weight, options, "mean" if "mean" in fl.LOSSES[name].reductions
                else "sum", grad=False)
    assert res.grad is None
    assert np.isfinite(client.compute(res.loss).result())


def test_local_cluster_reports_bad_targets(client):
    res = fld.cross_entropy(da.zeros((10, C), chunks=4), da.arange(10, chunks=4))
    with pytest.raises(IndexError, match="out of bounds for 7 classes"):
        client.compute(res.loss).result()


# ------------------------------------------------- (c) larger than the workers' memory
def _logits_block(block_info=None, C=1000):
    (r0, r1), _ = block_info[None]["array-location"]
    return np.random.default_rng(r0).random((r1 - r0, C), dtype=np.float32) * 4


def _labels_block(block_info=None, C=1000):
    ((r0, r1),) = block_info[None]["array-location"]
    y = np.random.default_rng(r0 + 1).integers(0, C, r1 - r0)
    y[::10] = -100
    return y


def _big(gb, rows=5000, C=1000):
    N = int(gb * 1e9 / (4 * C)) // rows * rows
    x = da.map_blocks(_logits_block, chunks=((rows,) * (N // rows), (C,)), dtype=np.float32,
                      meta=np.empty((0, 0), np.float32), C=C)
    y = da.map_blocks(_labels_block, chunks=((rows,) * (N // rows),), dtype=np.int64,
                      meta=np.empty((0,), np.int64), C=C)
    return x, y, N


def _score_big(client, gb):
    x, y, N = _big(gb)
    w = np.random.default_rng(0).random(1000) + 0.5
    t0 = time.perf_counter()
    mean = client.compute(fld.cross_entropy(x, y, weight=w, grad=False).loss).result()
    t1 = time.perf_counter()
    total = client.compute(fld.cross_entropy(x, y, weight=w, reduction="sum",
                                             grad=False).loss).result()
    t2 = time.perf_counter()
    print(f"\n{x.nbytes / 1e9:.2f} GB of float32 logits ({N} x 1000, {x.numblocks[0]} chunks), "
          f"workers 2 x {WORKER_MEMORY}: mean {t1 - t0:.2f} s, sum {t2 - t1:.2f} s")
    assert x.nbytes > 5 * 400e6  # several times one worker's limit, and the cluster's
    # the same blocks, chunk by chunk in this process (fastloss._chunked directly)
    blocks = x.numblocks[0]

    def chunks():
        for b in range(blocks):
            info = {None: {"array-location": [(b * 5000, (b + 1) * 5000), (0, 1000)]}}
            yinfo = {None: {"array-location": [(b * 5000, (b + 1) * 5000)]}}
            yield _logits_block(info), _labels_block(yinfo)

    ref = ch.chunked_loss("cross_entropy", chunks, weight=w)
    assert np.isfinite(mean) and mean.dtype == np.float32
    assert_same(mean, ref.loss, rtol=1e-6)
    assert np.isfinite(total)
    return t2 - t0


def test_larger_than_worker_memory(client):
    _score_big(client, 3.0)


@pytest.mark.skipif(not os.environ.get("FASTLOSS_DASK_BIG_GB"),
                    reason="set FASTLOSS_DASK_BIG_GB=<GB> to score a bigger data set")
def test_larger_than_worker_memory_big(client):
    _score_big(client, float(os.environ["FASTLOSS_DASK_BIG_GB"]))


# --------------------------------------------- audit findings, 2026-12-04 (dask)
@pytest.mark.parametrize("ndim", [11, 12])
def test_eleven_and_twelve_dimensions_reduce(ndim):
    """The partial sums' extra axis letter is not one of the input's (a 12-D input uses
    a .. l; "k" clashed from 11 dimensions on)."""
    rng = np.random.default_rng(ndim)
    x = rng.standard_normal((3,) + (2,) * (ndim - 1))
    t = rng.standard_normal(x.shape)
    X = da.from_array(x, chunks=(1,) + (2,) * (ndim - 1))
    for reduction in ("sum", "mean"):
        res = fld.mse_loss(X, t, reduction=reduction)
        loss, g = dask.compute(res.loss, res.grad, scheduler=SCHED)
        ref = fl.mse_loss(x, t, reduction=reduction)
        assert_same(loss, ref.loss, what=reduction)
        assert_same(g, ref.grad, what=reduction)


def test_build_time_errors_name_an_empty_operands_own_shape():
    """An operand passed whole that really has 0 rows keeps its shape in the message
    (the 0-row probe's "(0," was rewritten everywhere), and a broadcast weight that fits
    the 0-row probe but not the input is refused when the graph is built."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 3))
    t = np.zeros(50, np.int64)
    X = da.from_array(x, chunks=10)
    _same_error(lambda: fld.cross_entropy(X, t, np.zeros(0)),
                lambda: fl.cross_entropy(x, t, np.zeros(0)))
    _same_error(lambda: fld.multi_margin_loss(X, t, weight=np.zeros(0)),
                lambda: fl.multi_margin_loss(x, t, weight=np.zeros(0)))
    for kw in ({"weight": np.zeros((0, 3))}, {"pos_weight": np.zeros((7, 3))},
               {"weight": np.ones((2, 1, 3))}):
        _same_error(lambda kw=kw: fld.binary_cross_entropy_with_logits(X, x, **kw),
                    lambda kw=kw: fl.binary_cross_entropy_with_logits(x, x, **kw))


def test_graphs_with_and_without_grad_give_one_spec_per_key(client):
    """Two graphs of the same data on one distributed client (with and without the
    gradient) share the plan's key: it must have one spec in both (a dask array passed
    to delayed() got a finalize task of a random name: "Detected different run_spec")."""
    import logging

    rng = np.random.default_rng(0)
    x, t, w = rng.normal(size=(40, 5)), rng.integers(0, 5, 40), rng.uniform(0.1, 2, 5)
    X, T = da.from_array(x, chunks=10), da.from_array(t, chunks=10)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    h = Keep(logging.WARNING)
    loggers = [logging.getLogger(n) for n in ("distributed", "distributed.scheduler")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # (the cluster was started with silence_logs)
        lg.setLevel(logging.WARNING)
    loggers[0].addHandler(h)
    try:
        r1 = fld.cross_entropy(X, T, w)
        f1 = client.compute([r1.loss, r1.grad])
        r2 = fld.cross_entropy(X, T, w, grad=False)
        f2 = client.compute(r2.loss)
        want = fl.cross_entropy(x, t, w).loss
        assert_same(f1[0].result(), want)
        assert_same(f2.result(), want)
    finally:
        loggers[0].removeHandler(h)
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
    assert not [m for m in records if "run_spec" in m], records
