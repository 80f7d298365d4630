"""fastloss._chunked: a loss computed chunk by chunk along axis 0 equals the in-memory call.

Every loss in ``fl.LOSSES`` (a case table below, checked to cover the registry), every
reduction, random chunkings with empty and 1-row chunks, float64 to 1e-12 relative, the
concatenated chunk gradients included; then the edge cases (empty data set, all targets
ignored, zero / non-finite total weight, NaN and inf inputs, no classes).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import fastloss as fl
from fastloss import _chunked as ch

RTOL = 1e-12


# ------------------------------------------------------------------------ the cases
def _idx(rng, n, C, shape=None, ignore=-100, frac=0.15):
    y = rng.integers(0, C, (n,) if shape is None else (n, *shape))
    y[rng.random(y.shape) < frac] = ignore
    return y


def _pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


C = 7


def _cases():
    """name -> list of (id, build(rng, n, dtype) -> (row_args, weight, options))."""
    cs: dict[str, list] = {n: [] for n in fl.LOSSES}

    def add(name, cid, build):
        cs[name].append((cid, build))

    def x_(rng, n, dt, *rest):
        return rng.standard_normal((n, *rest) if rest else (n, C)).astype(dt)

    # softmax family, class indices
    add("cross_entropy", "plain", lambda r, n, dt: ((x_(r, n, dt), _idx(r, n, C)), None, {}))
    add("cross_entropy", "weight-ignore2", lambda r, n, dt: (
        (x_(r, n, dt), _idx(r, n, C, ignore=2)), r.random(C) + 0.1, {"ignore_index": 2}))
    add("cross_entropy", "weight-smoothing", lambda r, n, dt: (
        (x_(r, n, dt), _idx(r, n, C)), r.random(C) * 3, {"label_smoothing": 0.15}))
    add("cross_entropy", "weight-zloss-softcap-smoothing", lambda r, n, dt: (
        (x_(r, n, dt) * 4, _idx(r, n, C)), r.random(C) + 0.5,
        {"z_loss": 1e-2, "softcap": 5.0, "label_smoothing": 0.1}))
    add("cross_entropy", "zloss-unweighted", lambda r, n, dt: (
        (x_(r, n, dt) * 3, _idx(r, n, C)), None, {"z_loss": 0.05}))
    add("cross_entropy", "negative-weight-zloss", lambda r, n, dt: (
        (x_(r, n, dt), _idx(r, n, C)), -(r.random(C) + 0.2), {"z_loss": 0.02}))
    add("cross_entropy", "probabilities-weight-smoothing", lambda r, n, dt: (
        (x_(r, n, dt), fl.softmax(r.standard_normal((n, C))).astype(dt)), r.random(C) + 0.5,
        {"label_smoothing": 0.2}))
    add("cross_entropy", "axis1-weight-smoothing-ignore", lambda r, n, dt: (
        (x_(r, n, dt, C, 3), _idx(r, n, C, (3,))), r.random(C) + 0.5,
        {"axis": 1, "label_smoothing": 0.1}))
    add("cross_entropy", "axis1-zloss-softcap", lambda r, n, dt: (
        (x_(r, n, dt, C, 2, 2), _idx(r, n, C, (2, 2))), r.random(C) + 0.5,
        {"axis": 1, "z_loss": 0.01, "softcap": 2.0}))
    add("cross_entropy", "axis1-probabilities", lambda r, n, dt: (
        (x_(r, n, dt, C, 3), fl.softmax(r.standard_normal((n, C, 3)), axis=1).astype(dt)),
        None, {"axis": 1}))
    add("nll_loss", "weight-ignore", lambda r, n, dt: (
        (fl.log_softmax(x_(r, n, dt)), _idx(r, n, C)), r.random(C) + 0.1, {}))
    add("nll_loss", "axis1", lambda r, n, dt: (
        (fl.log_softmax(x_(r, n, dt, C, 3), axis=1), _idx(r, n, C, (3,))), None, {"axis": 1}))
    add("softmax_focal_loss", "weight-ignore", lambda r, n, dt: (
        (x_(r, n, dt), _idx(r, n, C)), r.random(C) + 0.1, {"gamma": 1.5}))
    add("softmax_focal_loss", "axis1", lambda r, n, dt: (
        (x_(r, n, dt, C, 2), _idx(r, n, C, (2,), ignore=0)), None,
        {"axis": 1, "ignore_index": 0}))
    # softmax family, per-row divergences
    add("kl_div_with_logits", "T2", lambda r, n, dt: (
        (x_(r, n, dt), x_(r, n, dt)), None, {"temperature": 2.0}))
    add("kl_div_with_logits", "axis1", lambda r, n, dt: (
        (x_(r, n, dt, C, 2), x_(r, n, dt, C, 2)), None, {"axis": 1}))
    add("js_div_with_logits", "T", lambda r, n, dt: (
        (x_(r, n, dt), x_(r, n, dt)), None, {"temperature": 1.5}))
    add("softmax_entropy", "plain", lambda r, n, dt: ((x_(r, n, dt),), None, {}))
    add("softmax_entropy", "axis1", lambda r, n, dt: ((x_(r, n, dt, C, 3),), None, {"axis": 1}))
    add("multi_margin_loss", "p1-weight", lambda r, n, dt: (
        (x_(r, n, dt), r.integers(0, C, n)), r.random(C) + 0.5, {}))
    add("multi_margin_loss", "p2-margin", lambda r, n, dt: (
        (x_(r, n, dt), r.integers(0, C, n)), None, {"p": 2, "margin": 0.5}))
    # elementwise
    reg = lambda r, n, dt: (x_(r, n, dt, 5), r.standard_normal((n, 5)).astype(dt))  # noqa: E731
    add("mse_loss", "3d", lambda r, n, dt: (
        (x_(r, n, dt, 2, 3), r.standard_normal((n, 2, 3)).astype(dt)), None, {}))
    add("l1_loss", "plain", lambda r, n, dt: (reg(r, n, dt), None, {}))
    add("smooth_l1_loss", "beta", lambda r, n, dt: (reg(r, n, dt), None, {"beta": 0.5}))
    add("huber_loss", "delta", lambda r, n, dt: (reg(r, n, dt), None, {"delta": 0.7}))
    add("log_cosh_loss", "plain", lambda r, n, dt: (reg(r, n, dt), None, {}))
    add("poisson_nll_loss", "log", lambda r, n, dt: (
        (x_(r, n, dt, 4), r.poisson(2.0, (n, 4)).astype(dt)), None, {}))
    add("poisson_nll_loss", "rate-full", lambda r, n, dt: (
        (r.random((n, 4)).astype(dt) * 3, r.poisson(2.0, (n, 4)).astype(dt)), None,
        {"log_input": False, "full": True}))
    add("kl_div", "plain", lambda r, n, dt: (
        (fl.log_softmax(x_(r, n, dt)), fl.softmax(x_(r, n, dt))), None, {}))
    add("kl_div", "log-target", lambda r, n, dt: (
        (fl.log_softmax(x_(r, n, dt)), fl.log_softmax(x_(r, n, dt))), None, {"log_target": True}))
    add("binary_cross_entropy", "class-weight", lambda r, n, dt: (
        (r.random((n, 5)).astype(dt), r.random((n, 5)).astype(dt)), r.random(5) + 0.5, {}))
    add("binary_cross_entropy", "row-weight", lambda r, n, dt: (
        (r.random((n, 5)).astype(dt), r.random((n, 5)).astype(dt), r.random((n, 1)) + 0.5),
        None, {}))
    add("binary_cross_entropy_with_logits", "weights", lambda r, n, dt: (
        (x_(r, n, dt, 5), (r.random((n, 5)) < 0.5).astype(dt), r.random((n, 5)) + 0.5),
        None, {"pos_weight": r.random(5) + 1.0}))
    add("sigmoid_focal_loss", "alpha-gamma", lambda r, n, dt: (
        (x_(r, n, dt, 5), (r.random((n, 5)) < 0.5).astype(dt)), None,
        {"alpha": 0.3, "gamma": 1.5}))
    add("soft_margin_loss", "plain",
        lambda r, n, dt: ((x_(r, n, dt, 5), _pm1(r, (n, 5))), None, {}))
    for name, opts in [("hinge_loss", {"margin": 0.5}), ("squared_hinge_loss", {"margin": 2.0}),
                       ("perceptron_loss", {}), ("exponential_loss", {}), ("zero_one_loss", {})]:
        add(name, "pm1", lambda r, n, dt, o=opts: ((x_(r, n, dt, 5), _pm1(r, (n, 5))), None, o))
    return cs


CASES = _cases()
CASE_PARAMS = [
    pytest.param(name, build, id=f"{name}-{cid}")
    for name, lst in CASES.items()
    for cid, build in lst
]


# ----------------------------------------------------------------------- machinery
def bounds_of(kind, n, rng):
    """Chunk boundaries: random (with empty and 1-row chunks), all 1-row, one chunk."""
    if kind == "rows":
        return list(range(n + 1))
    if kind == "one":
        return [0, 0, n, n]  # an empty chunk on each side
    cuts = np.sort(rng.integers(0, n + 1, 8))
    cuts = np.concatenate([cuts, [cuts[2], cuts[5] + 1 if cuts[5] < n else n]])  # empty, 1-row
    return [0, *sorted(int(c) for c in cuts), n]


def chunked(name, row_args, weight, options, reduction, bounds, grad=True):
    def chunks():
        for a, b in itertools.pairwise(bounds):
            yield tuple(v[a:b] for v in row_args)

    return ch.chunked_loss(name, chunks, reduction=reduction, grad=grad, weight=weight, **options)


def in_memory(name, row_args, weight, options, reduction, grad=True):
    kw = dict(options)
    if weight is not None:
        kw["weight"] = weight
    return fl.LOSSES[name].fn(*row_args, **kw, reduction=reduction, grad=grad)


def assert_same(actual, expected, rtol=RTOL, what=""):
    """Same shape, NaN where NaN, the same infinities, finite values to ``rtol`` relative
    (relative to the largest finite |expected| for arrays: gradient entries near 0)."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    assert a.shape == e.shape, (what, a.shape, e.shape)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"{what}: NaN pattern")
    inf = np.isinf(e)
    np.testing.assert_array_equal(a[inf], e[inf], err_msg=f"{what}: infinities")
    fin = np.isfinite(e)
    assert np.isfinite(a[fin]).all(), what
    if fin.any():
        scale = float(np.max(np.abs(e[fin])))
        np.testing.assert_allclose(a[fin], e[fin], rtol=rtol, atol=rtol * scale, err_msg=what)


def rel_err(actual, expected):
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    fin = np.isfinite(e)
    if not fin.any():
        return 0.0
    return float(np.max(np.abs(a[fin] - e[fin])) / max(np.max(np.abs(e[fin])), 1e-300))


def _ids_of(name):
    return [f"{name}-{cid}" for cid, _ in CASES[name]]


# ---------------------------------------------------------------------------- tests
def test_every_registered_loss_has_cases():
    missing = [n for n in fl.LOSSES if not CASES.get(n)]
    assert not missing, f"add chunked cases for {missing}"


@pytest.mark.parametrize("chunking", ["random", "rows", "one"])
@pytest.mark.parametrize("name, build", CASE_PARAMS)
def test_chunked_equals_in_memory(name, build, chunking):
    rng = np.random.default_rng(abs(hash((name, chunking))) % 2**32)
    n = 50 if chunking == "rows" else int(rng.integers(80, 200))
    row_args, weight, options = build(rng, n, np.float64)
    bounds = bounds_of(chunking, n, rng)
    for reduction in fl.LOSSES[name].reductions:
        ref = in_memory(name, row_args, weight, options, reduction)
        got = chunked(name, row_args, weight, options, reduction, bounds)
        assert_same(got.loss, ref.loss, what=f"{reduction} loss")
        assert_same(got.grad, ref.grad, what=f"{reduction} grad")
        assert got.grad.dtype == ref.grad.dtype
        if reduction != "none":
            assert type(got.loss) is type(ref.loss)
        lossonly = chunked(name, row_args, weight, options, reduction, bounds, grad=False)
        assert lossonly.grad is None
        assert_same(lossonly.loss, ref.loss, what=f"{reduction} loss, grad=False")


@pytest.mark.parametrize("name, build", CASE_PARAMS)
def test_denominator_matters(name, build):
    """The data make a wrong denominator visible: D + 1 (or D - 1) rows/weight changes the
    mean by far more than the tolerance, so the equality test above checks D."""
    rng = np.random.default_rng(7)
    row_args, weight, options = build(rng, 60, np.float64)
    for reduction in [r for r in fl.LOSSES[name].reductions if r in ("mean", "batchmean")]:
        ref = in_memory(name, row_args, weight, options, reduction)
        bounds = bounds_of("random", 60, rng)
        counts = ch.merge(
            ch.mean_counts(name, row_args[0][a:b].shape, row_args[1][a:b] if len(row_args) > 1
                           else None, **options)
            for a, b in itertools.pairwise(bounds)
        )
        plan = ch.mean_plan(name, counts, reduction, weight=weight, **options)
        total = sum(ch.chunk_loss(plan, *(v[a:b] for v in row_args), grad=False).loss
                    for a, b in itertools.pairwise(bounds))
        good = ch.finish(plan, total, np.float64)
        assert_same(good, ref.loss)
        bad = ch.finish(plan._replace(denominator=plan.denominator * 1.01), total, np.float64)
        assert abs(float(bad) - float(ref.loss)) > 1e-6 * abs(float(ref.loss))


@pytest.mark.parametrize("name", ["cross_entropy", "mse_loss", "kl_div_with_logits",
                                  "multi_margin_loss", "binary_cross_entropy_with_logits"])
def test_float32(name):
    rng = np.random.default_rng(3)
    for cid, build in CASES[name]:
        row_args, weight, options = build(rng, 120, np.float32)
        for reduction in fl.LOSSES[name].reductions:
            ref = in_memory(name, row_args, weight, options, reduction)
            got = chunked(name, row_args, weight, options, reduction, bounds_of("random", 120, rng))
            assert got.grad.dtype == np.float32
            assert np.asarray(got.loss).dtype == np.float32
            assert_same(got.loss, ref.loss, rtol=2e-6, what=f"{cid} {reduction}")
            assert_same(got.grad, ref.grad, rtol=2e-6, what=f"{cid} {reduction} grad")


# ------------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("name, build", CASE_PARAMS)
def test_empty_data_set(name, build):
    rng = np.random.default_rng(5)
    row_args, weight, options = build(rng, 10, np.float64)
    empty = tuple(v[:0] for v in row_args)
    for reduction in fl.LOSSES[name].reductions:
        ref = in_memory(name, empty, weight, options, reduction)
        for bounds in ([0, 0], [0, 0, 0, 0]):
            got = chunked(name, empty, weight, options, reduction, bounds)
            assert_same(got.loss, ref.loss, what=reduction)
            assert got.grad.shape == ref.grad.shape
    assert math.isnan(float(chunked(name, empty, weight, options,
                                    "mean" if "mean" in fl.LOSSES[name].reductions else "sum",
                                    [0, 0]).loss)) or "mean" not in fl.LOSSES[name].reductions


def _edge(name, x, y, weight, options, reductions=("sum", "mean", "none"),
          kinds=("random", "rows")):
    rng = np.random.default_rng(11)
    for reduction in reductions:
        ref = in_memory(name, (x, y), weight, options, reduction)
        for kind in kinds:
            bounds = bounds_of(kind, x.shape[0], rng)
            got = chunked(name, (x, y), weight, options, reduction, bounds)
            assert_same(got.loss, ref.loss, what=f"{name} {reduction} {kind} loss")
            assert_same(got.grad, ref.grad, what=f"{name} {reduction} {kind} grad")
    return ref


@pytest.mark.parametrize("name", sorted(ch.INDEX_LOSSES))
@pytest.mark.parametrize("weighted", [False, True])
def test_all_targets_ignored(name, weighted):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, C))
    x[3] = -np.inf  # an ignored all -inf row: NaN gradient row in PyTorch
    y = np.full(20, -100)
    w = rng.random(C) if weighted else None
    for opts in ({}, {"label_smoothing": 0.1, "z_loss": 0.1}) if name == "cross_entropy" else ({},):
        _edge(name, x, y, w, opts)
    assert math.isnan(float(in_memory(name, (x, y), w, {}, "mean").loss))


@pytest.mark.parametrize("name", sorted(ch.INDEX_LOSSES))
@pytest.mark.parametrize(
    "weight, labels",
    [
        ([1.0, -1.0, 0.5, 0, 0, 0, 0], [0, 1]),  # weights that cancel
        ([0.0, 0.0, 1.0, 1, 1, 1, 1], [0, 1]),  # only zero-weight targets
        ([1.0, 1.0, 1e-320, 1, 1, 1, 1], [2]),  # 1 / W overflows
        ([1.0, np.nan, 1.0, 1, 1, 1, 1], [0, 1, 3]),  # a NaN weight
        ([1.0, np.inf, 1.0, 1, 1, 1, 1], [0, 1, 3]),  # an infinite weight
        ([1.0, np.nan, 1.0, 1, 1, 1, 1], [0, 3]),  # a NaN weight no target has
    ],
    ids=["cancel", "zero-weight-targets", "tiny", "nan", "inf", "nan-unused"],
)
def test_degenerate_total_weight(name, weight, labels):
    rng = np.random.default_rng(4)
    n = 24
    x = rng.standard_normal((n, C))
    y = np.array(labels * (n // len(labels)))[:n]
    y = np.concatenate([y, np.full(n - y.size, -100)])
    y[5] = -100
    optsets = [{}]
    if name == "cross_entropy":
        optsets += [{"label_smoothing": 0.1}, {"z_loss": 0.05, "softcap": 3.0}]
    for opts in optsets:
        _edge(name, x, y, np.array(weight), opts)


@pytest.mark.parametrize("name, build", CASE_PARAMS)
def test_nan_inf_inputs(name, build):
    rng = np.random.default_rng(9)
    row_args, weight, options = build(rng, 40, np.float64)
    x = np.array(row_args[0])
    if name == "binary_cross_entropy":
        return  # NaN probabilities are an error (tested in test_pointwise)
    x[3].flat[0] = np.nan
    x[7].flat[1] = np.inf
    x[8].flat[:] = -np.inf
    args = (x, *row_args[1:])
    for reduction in fl.LOSSES[name].reductions:
        ref = in_memory(name, args, weight, options, reduction)
        got = chunked(name, args, weight, options, reduction, bounds_of("random", 40, rng))
        assert_same(got.loss, ref.loss, what=reduction)
        assert_same(got.grad, ref.grad, what=f"{reduction} grad")


def test_no_classes():
    x = np.zeros((6, 0))
    for t, opts in [(np.zeros((6, 0)), {}), (np.full(6, -100), {}),
                    (np.full(6, -100), {"label_smoothing": 0.1})]:
        for reduction in ("sum", "mean", "none"):
            ref = in_memory("cross_entropy", (x, t), None, opts, reduction)
            got = chunked("cross_entropy", (x, t), None, opts, reduction, [0, 2, 2, 6])
            assert_same(got.loss, ref.loss, what=f"{t.dtype} {opts} {reduction}")


def test_out_of_range_target_names_the_row():
    y = np.array([0, 1, -100, 9, 2])
    with pytest.raises(IndexError, match="Target 9 is out of bounds for 7 classes") as e:
        ch.mean_counts("cross_entropy", (5, C), y)
    assert e.value.row == 3
    with pytest.raises(IndexError) as e:
        fl.cross_entropy(np.zeros((5, C)), y)
    assert str(e.value) == (
        "Target 9 is out of bounds for 7 classes (valid range [0, 7) or ignore_index)")


def test_plan_validates_reduction_and_loss():
    counts = ch.mean_counts("mse_loss", (3, 2))
    with pytest.raises(ValueError, match="'batchmean' is not a valid value for reduction"):
        ch.mean_plan("mse_loss", counts, "batchmean")
    with pytest.raises(ValueError, match="unknown loss"):
        ch.mean_counts("nope", (3, 2))
    with pytest.raises(ValueError, match="z_loss must be"):
        ch.mean_plan("cross_entropy", ch.mean_counts("cross_entropy", (3, C), np.zeros(3, int)),
                     "mean", weight=np.ones(C), z_loss=-1.0)


def test_counts_are_weight_free_and_additive():
    rng = np.random.default_rng(0)
    y = _idx(rng, 100, C)
    parts = [ch.mean_counts("cross_entropy", (k.size, C), k) for k in np.array_split(y, 7)]
    whole = ch.mean_counts("cross_entropy", (100, C), y)
    merged = ch.merge(parts)
    np.testing.assert_array_equal(merged["class_counts"], whole["class_counts"])
    assert merged["rows"] == whole["rows"] == 100
    w = rng.random(C)
    # the exact weight sum: the same plan whatever the chunking
    assert ch.mean_plan("cross_entropy", merged, "mean", weight=w).denominator == \
        ch.mean_plan("cross_entropy", whole, "mean", weight=w).denominator


def test_label_smoothing_with_weights_is_pytorchs_mean():
    """PyTorch divides the smoothing term of a class-weighted mean by the same summed
    weight of the non-ignored targets as the NLL term (not by their number)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((90, C))
    y = _idx(rng, 90, C)
    w = rng.random(C) * 2
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(y), weight=torch.tensor(w),
                                           label_smoothing=0.2)
    lt.backward()
    got = chunked("cross_entropy", (x, y), w, {"label_smoothing": 0.2}, "mean",
                  bounds_of("random", 90, rng))
    assert_same(got.loss, lt.item(), rtol=1e-12)
    assert_same(got.grad, xt.grad.numpy(), rtol=1e-12)
