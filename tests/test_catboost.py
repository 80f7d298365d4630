"""fastloss.catboost against the real CatBoost: a model trained with the fastloss objective
reproduces the built-in objective's raw margins (native ``CatBoost``/``Pool`` API and the
scikit-learn-style estimators, with and without sample weights), under the recipes of
notes/boosting.md section 3 (explicit learning rate, Newton steps set on both sides, no
backtracking on the built-in, Bayesian bootstrap for MultiClass).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastloss as fl

cb = pytest.importorskip("catboost")
flcb = pytest.importorskip("fastloss.catboost")
datasets = pytest.importorskip("sklearn.datasets")

TOL = 1e-5  # max abs raw-margin difference the contract allows (measured: <= 2e-15)

BASE = dict(
    depth=6,
    learning_rate=0.1,
    l2_leaf_reg=3,
    thread_count=2,
    random_seed=0,
    allow_writing_files=False,
    verbose=False,
)


def raw(model, X):
    return model.predict(X, prediction_type="RawFormulaVal")


def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.fixture(scope="module")
def binary():
    X, y = datasets.load_breast_cancer(return_X_y=True)
    w = np.random.default_rng(0).uniform(0.2, 3.0, len(y))
    return X, y.astype(np.float64), w


@pytest.fixture(scope="module")
def digits():
    X, y = datasets.load_digits(return_X_y=True)
    X, y = X[:600], y[:600]  # the per-object multi-class API is slow: keep it small
    w = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    return X, y, w


@pytest.fixture(scope="module")
def regression():
    X, y = datasets.load_diabetes(return_X_y=True)
    w = np.random.default_rng(2).uniform(0.2, 3.0, len(y))
    return X, y, w


def fit_native(params, X, y, w=None, baseline=None, **fit_kw):
    return cb.CatBoost(params).fit(cb.Pool(X, y, weight=w, baseline=baseline), **fit_kw)


# ------------------------------------------------------------- training equivalence
LOGLOSS_ITERS = 20


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k", [1, 10], ids=["newton1", "newton10"])
def test_logistic_reproduces_builtin_logloss_native(binary, k, weighted):
    X, y, w = binary
    w = w if weighted else None
    p = dict(BASE, iterations=LOGLOSS_ITERS, leaf_estimation_iterations=k)
    builtin = fit_native(
        dict(p, loss_function="Logloss", leaf_estimation_backtracking="No"), X, y, w
    )
    custom = fit_native(
        dict(p, loss_function=flcb.objective("logistic"), eval_metric=flcb.metric("logistic")),
        X, y, w,
    )
    assert maxdiff(raw(custom, X), raw(builtin, X)) <= TOL
    assert np.ptp(raw(custom, X)) > 1.0  # it learned something


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k", [1, 10], ids=["newton1", "newton10"])
def test_logistic_reproduces_builtin_logloss_sklearn(binary, k, weighted):
    X, y, w = binary
    w = w if weighted else None
    p = dict(BASE, iterations=LOGLOSS_ITERS, leaf_estimation_iterations=k)
    builtin = cb.CatBoostClassifier(
        loss_function="Logloss", leaf_estimation_backtracking="No", **p
    ).fit(X, y, sample_weight=w)
    custom = cb.CatBoostClassifier(
        loss_function=flcb.objective("logistic"), eval_metric="Logloss", **p
    ).fit(X, y, sample_weight=w)
    assert maxdiff(raw(custom, X), raw(builtin, X)) <= TOL
    np.testing.assert_array_equal(custom.predict(X), builtin.predict(X))


MULTI = dict(BASE, iterations=10, bootstrap_type="Bayesian")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_softmax_reproduces_builtin_multiclass_native(digits, weighted):
    X, y, w = digits
    w = w if weighted else None
    builtin = fit_native(dict(MULTI, loss_function="MultiClass"), X, y, w)
    custom = fit_native(
        dict(
            MULTI,
            loss_function=flcb.objective("softmax"),
            eval_metric=flcb.metric("softmax"),
            classes_count=10,  # CatBoost needs it to train K margins for a user objective
        ),
        X, y, w,
    )
    assert raw(custom, X).shape == (len(y), 10)
    assert maxdiff(raw(custom, X), raw(builtin, X)) <= TOL


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_softmax_reproduces_builtin_multiclass_sklearn(digits, weighted):
    X, y, w = digits
    w = w if weighted else None
    builtin = cb.CatBoostClassifier(loss_function="MultiClass", **MULTI).fit(X, y, sample_weight=w)
    custom = cb.CatBoostClassifier(
        loss_function=flcb.objective("softmax"), eval_metric="MultiClass", **MULTI
    ).fit(X, y, sample_weight=w)
    assert maxdiff(raw(custom, X), raw(builtin, X)) <= TOL
    np.testing.assert_array_equal(custom.predict(X), builtin.predict(X))


def test_diagonal_softmax_hessian_does_not_reproduce_multiclass(digits):
    # the full Hessian is what makes the match: the diagonal one trains another model
    X, y, _ = digits
    builtin = fit_native(dict(MULTI, loss_function="MultiClass"), X, y)
    diag = fit_native(
        dict(MULTI, loss_function=flcb.objective("softmax", hessian="diagonal"),
             eval_metric="MultiClass"),
        X, y,
    )
    assert maxdiff(raw(diag, X), raw(builtin, X)) > 1e-2


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_squared_error_reproduces_builtin_rmse(regression, weighted):
    X, y, w = regression
    w = w if weighted else None
    p = dict(BASE, iterations=20, boost_from_average=False)
    builtin = fit_native(dict(p, loss_function="RMSE"), X, y, w)
    q = dict(BASE, iterations=20)
    custom = fit_native(dict(q, loss_function=flcb.objective("squared_error"), eval_metric="RMSE"),
                        X, y, w)
    assert maxdiff(raw(custom, X), raw(builtin, X)) <= TOL
    sk_builtin = cb.CatBoostRegressor(loss_function="RMSE", **p).fit(X, y, sample_weight=w)
    sk_custom = cb.CatBoostRegressor(
        loss_function=flcb.objective("squared_error"), eval_metric="RMSE", **q
    ).fit(X, y, sample_weight=w)
    assert maxdiff(sk_custom.predict(X), sk_builtin.predict(X)) <= TOL


def test_sample_weights_are_honoured(binary, digits):
    X, y, w = binary
    p = dict(BASE, iterations=LOGLOSS_ITERS, loss_function=flcb.objective("logistic"),
             eval_metric="Logloss")
    plain = fit_native(p, X, y)
    weighted = fit_native(p, X, y, w)
    assert maxdiff(raw(weighted, X), raw(plain, X)) > 1e-2
    builtin = fit_native(
        dict(BASE, iterations=LOGLOSS_ITERS, loss_function="Logloss", leaf_estimation_iterations=1,
             leaf_estimation_backtracking="No"), X, y, w,
    )
    assert maxdiff(raw(weighted, X), raw(builtin, X)) <= TOL

    X, y, w = digits
    p = dict(MULTI, loss_function=flcb.objective("softmax"), eval_metric="MultiClass")
    assert maxdiff(raw(fit_native(p, X, y, w), X), raw(fit_native(p, X, y), X)) > 1e-2


# --------------------------------------------------------------------- init_score
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_init_score_baseline_reproduces_boost_from_average(binary, regression, weighted):
    # a user objective cannot boost_from_average: start it from fl.init_score instead
    cases = [
        (regression, "squared_error", dict(loss_function="RMSE"), "RMSE"),  # default True
        (binary, "logistic",
         dict(loss_function="Logloss", boost_from_average=True, leaf_estimation_iterations=1,
              leaf_estimation_backtracking="No"), "Logloss"),
    ]
    for (X, y, w), name, builtin_params, eval_metric in cases:
        w = w if weighted else None
        builtin = fit_native(dict(BASE, iterations=20, **builtin_params), X, y, w)
        b0 = fl.init_score(name, y, w)
        custom = fit_native(
            dict(BASE, iterations=20, loss_function=flcb.objective(name), eval_metric=eval_metric),
            X, y, w, baseline=np.full(len(y), b0),
        )
        custom.set_scale_and_bias(1.0, b0)  # so that predictions include the start
        # CatBoost keeps its RMSE start in float32 (152.13348388671875 against
        # fl.init_score's 152.13348416...) and averages Logloss labels in float32, hence
        # not bitwise: measured 3.6e-6 (RMSE, weighted; half a float32 ulp at 152 is
        # 7.6e-6) and 8e-8 (Logloss) on these fixed data
        assert maxdiff(raw(custom, X), raw(builtin, X)) <= TOL, name
        no_start = fit_native(
            dict(BASE, iterations=20, loss_function=flcb.objective(name), eval_metric=eval_metric),
            X, y, w,
        )
        assert maxdiff(raw(no_start, X), raw(builtin, X)) > 1e-2, name


# ------------------------------------------------------------------------ metrics
def _np_logistic(r, y):
    return np.logaddexp(0.0, r) - y * r


def _np_softmax(r, y):
    return np.logaddexp.reduce(r, axis=1) - r[np.arange(len(y)), y.astype(int)]


def _np_squared(r, y):
    return 0.5 * (r - y) ** 2


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_metric_evaluate_matches_numpy(weighted):
    rng = np.random.default_rng(3)
    n = 257
    w = rng.uniform(0.1, 2.0, n).astype(np.float32) if weighted else None
    ww = np.ones(n) if w is None else w.astype(np.float64)
    cases = [
        ("logistic", (rng.normal(0, 3, n),), (rng.random(n) < 0.4).astype(np.float32),
         lambda a, t: _np_logistic(a[0], t)),
        ("squared_error", (rng.normal(0, 3, n),), rng.normal(0, 3, n).astype(np.float32),
         lambda a, t: _np_squared(a[0], t)),
        ("softmax", tuple(rng.normal(0, 3, (4, n))), rng.integers(0, 4, n).astype(np.float32),
         lambda a, t: _np_softmax(np.stack(a, axis=1), t)),
    ]
    for name, approxes, target, ref in cases:
        m = flcb.metric(name)
        err, wsum = m.evaluate(approxes, target, w)
        expected = ref(approxes, target.astype(np.float64))
        np.testing.assert_allclose(err, np.sum(ww * expected), rtol=1e-12)
        np.testing.assert_allclose(wsum, ww.sum(), rtol=1e-12)
        np.testing.assert_allclose(
            m.get_final_error(err, wsum), np.average(expected, weights=ww), rtol=1e-12
        )
        assert m.is_max_optimal() is False


def test_class_weighted_metric_is_a_weighted_mean():
    """metric("softmax", class_weight=cw): sum(w cw[y] loss) / sum(w cw[y]), as
    log_loss(sample_weight=w * cw[y]) (CatBoost adds evaluate()'s sums over blocks)."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(4)
    n, K = 300, 4
    approxes = tuple(rng.normal(0, 2, (K, n)))
    target = rng.integers(0, K, n).astype(np.float32)
    w = rng.uniform(0.1, 2.0, n).astype(np.float32)
    cw = np.array([0.5, 1.0, 2.0, 4.0])
    m = flcb.metric("softmax", class_weight=cw)
    err, wsum = m.evaluate(approxes, target, w)
    a = np.stack(approxes, axis=1)
    p = np.exp(a - a.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    sww = w.astype(np.float64) * cw[target.astype(int)]
    want = log_loss(target.astype(int), p, sample_weight=sww, labels=range(K))
    np.testing.assert_allclose(m.get_final_error(err, wsum), want, rtol=1e-12)
    np.testing.assert_allclose(wsum, sww.sum(), rtol=1e-12)


def test_a_bad_label_is_named_within_catboosts_block():
    obj = flcb.objective("logistic")
    y = np.zeros(50, np.float32)
    y[21] = 2.0
    with pytest.raises(ValueError, match=r"got 2.0 at index 21 .*within the block of 50 objects"):
        obj.calc_ders_range(np.zeros(50), y, None)


def test_metric_matches_builtin_metrics_during_training(binary, digits, regression, tmp_path):
    cases = [
        (binary, "logistic", dict(iterations=10), "Logloss", lambda v: v),
        (digits, "softmax", dict(MULTI, iterations=5, classes_count=10), "MultiClass",
         lambda v: v),
        (regression, "squared_error", dict(iterations=10), "RMSE", lambda v: v**2 / 2),
    ]
    for (X, y, w), name, extra, builtin_name, to_ours in cases:
        params = dict(BASE, loss_function=flcb.objective(name), eval_metric=flcb.metric(name),
                      train_dir=str(tmp_path / name))  # eval_metrics writes files there
        params.update(extra)
        valid = cb.Pool(X, y, weight=w)
        model = fit_native(params, X, y, w, eval_set=valid)
        ours = np.array(model.get_evals_result()["validation"][f"fastloss_{name}"])
        theirs = np.array(model.eval_metrics(valid, [builtin_name])[builtin_name])
        assert len(ours) == len(theirs) == params["iterations"]
        np.testing.assert_allclose(ours, to_ours(theirs), rtol=1e-9, err_msg=name)


# ------------------------------------------------------- the callbacks themselves
def _elementwise_data(name, n, rng):
    a = rng.normal(0, 3, n)
    if name in ("logistic", "focal"):
        t = rng.random(n)
    elif name == "poisson":
        t = rng.poisson(2.0, n)
    else:
        t = rng.normal(0, 3, n)
    return a, t.astype(np.float32)


@pytest.mark.parametrize("name", [n for n in fl.OBJECTIVES if n != "softmax"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_calc_ders_range_is_the_negated_core(name, weighted):
    rng = np.random.default_rng(4)
    a, t = _elementwise_data(name, 283, rng)
    w = rng.uniform(0.1, 2.0, a.size).astype(np.float32) if weighted else None
    ders = flcb.objective(name).calc_ders_range(a, t, w)
    assert type(ders) is np.ndarray and ders.dtype == np.float64 and ders.shape == (a.size, 2)
    g, h = fl.grad_hess(name, a, t, sample_weight=w)
    np.testing.assert_array_equal(ders[:, 0], -g)
    np.testing.assert_array_equal(ders[:, 1], -h)


def test_calc_ders_range_passes_options_and_handles_empty_blocks():
    rng = np.random.default_rng(5)
    a, t = _elementwise_data("huber", 100, rng)
    ders = flcb.objective("huber", delta=0.5, min_hess=0.1).calc_ders_range(a, t, None)
    g, h = fl.grad_hess("huber", a, t, delta=0.5, min_hess=0.1)
    np.testing.assert_array_equal(ders, -np.column_stack([g, h]))
    empty = flcb.objective("logistic").calc_ders_range(np.empty(0), np.empty(0, np.float32), None)
    assert empty.shape == (0, 2)


_EXTREME_MARGINS = [1e20, -1e20, 1e3, -1e3, 37.5, -37.5, 232.9, 0.0, -0.0, np.nan, np.inf,
                    -np.inf, 5e-324]


@pytest.mark.parametrize("name", [n for n in fl.OBJECTIVES if n != "softmax"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_calc_ders_range_kernel_path_equals_the_general_path(name, weighted):
    # What CatBoost passes (float64 margins, float32 labels and weights) takes the one-call
    # kernel; other dtypes and layouts fl.grad_hess's general path: bitwise the same.
    rng = np.random.default_rng(11)
    options = {"huber": {"delta": 0.7, "min_hess": 0.05}, "focal": {"gamma": 1.5, "alpha": 0.3},
               "poisson": {"max_delta_step": 0.7}, "pseudo_huber": {"delta": 2.0}}.get(name, {})
    obj = flcb.objective(name, **options)
    for n in (1, 63, 500, 1000):
        a, t = _elementwise_data(name, n, rng)
        a[: len(_EXTREME_MARGINS)] = _EXTREME_MARGINS[:n]
        w = rng.uniform(0.0, 3.0, n).astype(np.float32) if weighted else None
        if weighted:
            w[:2] = [0.0, -0.0][:n]
        fast = obj.calc_ders_range(a, t, w)
        assert fast.shape == (n, 2) and fast.dtype == np.float64
        assert fast.base is not None and fast.base.shape == (2, n)  # the kernel's (2, n) rows
        general = obj._general(a, t, w)
        np.testing.assert_array_equal(fast, general)
        # other dtypes / layouts: the general path, same values
        np.testing.assert_array_equal(obj.calc_ders_range(a, t.astype(np.float64), w), general)
        a2 = np.repeat(a, 2)[::2]  # a strided view of the same margins
        np.testing.assert_array_equal(obj.calc_ders_range(a2, t, w), general)
        g, h = fl.grad_hess(name, a, t, sample_weight=w, **options)
        np.testing.assert_array_equal(fast, -np.column_stack([g, h]))


def test_calc_ders_range_kernel_path_reports_the_first_bad_label():
    a = np.zeros(700)
    t = np.zeros(700, np.float32)
    t[[411, 650]] = [1.5, np.nan]
    with pytest.raises(ValueError, match="got 1.5 at index 411"):
        flcb.objective("logistic").calc_ders_range(a, t, None)
    t[411] = 0.5
    with pytest.raises(ValueError, match="at index 650"):
        flcb.objective("focal").calc_ders_range(a, t, np.ones(700, np.float32))


def test_warmup_compiles_what_catboost_training_calls(binary, digits):
    # CatBoost deep-copies the objective and passes writeable float64 / float32 views:
    # fl.warmup's calls must hit the same kernel signatures, or training compiles again.
    from fastloss._kernels.boost import ELEMENTWISE, softmax_row_ders

    fl.warmup(["grad_hess:logistic", "grad_hess:softmax"], dtypes=["float64"], parallel=False)
    ders = ELEMENTWISE["logistic"].ders
    before = (len(ders.signatures), len(softmax_row_ders.signatures))
    X, y, w = binary
    for weights in (None, w):
        fit_native(dict(BASE, iterations=2, loss_function=flcb.objective("logistic"),
                        eval_metric="Logloss"), X, y, weights)
    X, y, w = digits
    fit_native(dict(BASE, iterations=1, loss_function=flcb.objective("softmax"),
                    eval_metric="MultiClass", classes_count=10), X[:100], y[:100], w[:100])
    assert (len(ders.signatures), len(softmax_row_ders.signatures)) == before


def _softmax_rows(rng, K):
    rows = [rng.normal(0, 3, K) for _ in range(20)]
    rows.append(np.array([1e3] + [0.0] * (K - 1)))  # overflow-prone without the max shift
    rows.append(np.full(K, -700.0))
    return rows


@pytest.mark.parametrize("K", [3, 5, 10])
@pytest.mark.parametrize(
    "options",
    [{}, {"label_smoothing": 0.1}, {"class_weight": "ramp"}],
    ids=["plain", "smoothing", "class_weight"],
)
def test_calc_ders_multi_gradient_and_diagonal_are_the_core(K, options):
    rng = np.random.default_rng(6)
    if options.get("class_weight") == "ramp":
        options = {"class_weight": np.linspace(0.5, 2.0, K)}
    obj = flcb.objective("softmax", **options)
    for a in _softmax_rows(rng, K):
        k = int(rng.integers(0, K))
        weight = float(np.float32(rng.uniform(0.1, 2.0)))
        der1, der2 = obj.calc_ders_multi(a, float(k), weight)
        der1, der2 = np.array(der1), np.array(der2)
        g, h = fl.grad_hess("softmax", a[None, :], np.array([k]), sample_weight=[weight],
                            **options)
        np.testing.assert_allclose(der1, -g[0], rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(np.diag(der2), -h[0], rtol=1e-13, atol=1e-16)
        # the full Hessian: -(diag(p) - p p^T), times class_weight[y] * weight
        p = fl.softmax(a)
        c = weight * (options["class_weight"][k] if "class_weight" in options else 1.0)
        np.testing.assert_allclose(der2, c * (np.outer(p, p) - np.diag(p)), rtol=1e-13,
                                   atol=1e-300)
        np.testing.assert_array_equal(der2, der2.T)


@pytest.mark.parametrize("hessian", ["full", "diagonal"])
def test_calc_ders_multi_returns_lists_for_any_array_like(hessian):
    # CatBoost iterates the result; lists are its fastest input.  A list, a float32 or a
    # strided margin vector gives the float64 view's values; weight None means 1.
    obj = flcb.objective("softmax", hessian=hessian, label_smoothing=0.2)
    a = np.array([0.5, -1.0, 2.0, 0.0])
    der1, der2 = obj.calc_ders_multi(a, 2.0, None)
    assert type(der1) is list and type(der2) is list and all(type(r) is list for r in der2)
    assert len(der1) == 4 and [len(r) for r in der2] == [4] * 4
    assert obj.calc_ders_multi(a, 2.0, 1.0) == (der1, der2)
    assert obj.calc_ders_multi(a.tolist(), 2.0, 1.0) == (der1, der2)
    assert obj.calc_ders_multi(np.repeat(a, 2)[::2], 2.0, 1.0) == (der1, der2)
    a32 = a.astype(np.float32)
    assert obj.calc_ders_multi(a32, 2.0, 1.0) == obj.calc_ders_multi(a32.astype(float), 2.0, 1.0)
    w1, w2 = obj.calc_ders_multi(a, 2.0, -0.5)  # a negative weight scales both
    np.testing.assert_allclose(w1, -0.5 * np.array(der1), rtol=1e-15)
    np.testing.assert_allclose(w2, -0.5 * np.array(der2), rtol=1e-15, atol=1e-300)
    np.testing.assert_array_equal(np.array(w2), np.array(w2).T)


def test_calc_ders_multi_diagonal_hessian_is_the_core():
    rng = np.random.default_rng(7)
    opts = {"hess_scale": 2.0, "min_hess": 1e-3}
    obj = flcb.objective("softmax", hessian="diagonal", **opts)
    for a in _softmax_rows(rng, 5):
        der1, der2 = obj.calc_ders_multi(a, 3.0, 1.5)
        g, h = fl.grad_hess("softmax", a[None, :], np.array([3]), sample_weight=[1.5], **opts)
        np.testing.assert_allclose(der1, -g[0], rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(np.array(der2), -np.diag(h[0]), rtol=1e-13, atol=1e-16)


# ------------------------------------------------------------------------- errors
def test_bad_labels_raise_fastloss_errors():
    a = np.zeros(4)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        flcb.objective("logistic").calc_ders_range(a, np.array([0, 1, 2, 0], np.float32), None)
    with pytest.raises(ValueError, match=">= 0"):
        flcb.objective("poisson").calc_ders_range(a, np.array([0, -1, 2, 0], np.float32), None)
    obj = flcb.objective("softmax")
    with pytest.raises(IndexError, match="out of bounds for 4 classes"):
        obj.calc_ders_multi(a, 4.0, 1.0)
    with pytest.raises(IndexError, match="out of bounds"):
        obj.calc_ders_multi(a, -1.0, 1.0)
    for bad in (2.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="integer class indices"):
            obj.calc_ders_multi(a, bad, 1.0)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        flcb.metric("logistic").evaluate((a,), np.array([0, 3, 0, 0], np.float32), None)
    with pytest.raises(IndexError):
        flcb.metric("softmax").evaluate((a, a), np.array([0, 3, 0, 0], np.float32), None)
    cw = flcb.objective("softmax", class_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="class_weight"):
        cw.calc_ders_multi(a, 1.0, 1.0)  # 3 class weights, 4 margins


def test_bad_labels_through_training_carry_the_fastloss_error(binary):
    X, y, _ = binary
    y = y.copy()
    y[7] = 2.0
    params = dict(BASE, iterations=2, loss_function=flcb.objective("logistic"),
                  eval_metric=flcb.metric("logistic"))
    with pytest.raises(cb.CatBoostError, match="ValueError: labels of the 'logistic'"):
        fit_native(params, X, y)


def test_bad_names_and_options_fail_at_construction():
    with pytest.raises(ValueError, match="unknown objective"):
        flcb.objective("hinge")
    with pytest.raises(ValueError, match="unknown objective"):
        flcb.metric("hinge")
    with pytest.raises(TypeError, match="unknown option"):
        flcb.objective("logistic", delta=1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        flcb.objective("softmax", label_smoothing=2.0)
    with pytest.raises(ValueError, match="hessian='diagonal'"):
        flcb.objective("softmax", hess_scale=2.0)
    with pytest.raises(ValueError, match="hessian"):
        flcb.objective("softmax", hessian="block")
    with pytest.raises(ValueError, match="softmax"):
        flcb.objective("logistic", hessian="diagonal")


def test_softmax_without_classes_count_explains(digits):
    # with a user eval_metric CatBoost trains one margin unless told classes_count
    X, y, _ = digits
    params = dict(MULTI, iterations=2, loss_function=flcb.objective("softmax"),
                  eval_metric=flcb.metric("softmax"))
    with pytest.raises(cb.CatBoostError, match="classes_count"):
        fit_native(params, X, y)


# ---------------------------------------------------------------- plumbing details
def test_objects_opt_out_of_catboost_jit_and_pickle():
    for obj in (flcb.objective("logistic"), flcb.objective("softmax", label_smoothing=0.1),
                flcb.metric("logistic"), flcb.metric("softmax", class_weight=[1.0, 2.0])):
        assert obj.no_jit is True
        clone = pickle.loads(pickle.dumps(obj))
        assert type(clone).__name__ == type(obj).__name__
        assert clone.options.keys() == obj.options.keys()
    assert type(flcb.metric("logistic")).__name__ == "fastloss_logistic"
    assert type(flcb.metric("logistic")) is type(flcb.metric("logistic", min_hess=0.0))


def test_import_is_lazy_and_missing_catboost_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        import fastloss, fastloss.catboost as flcb
        assert "catboost" not in sys.modules, "import fastloss(.catboost) imported catboost"
        sys.modules["catboost"] = None  # as if CatBoost were not installed
        for make in (flcb.objective, flcb.metric):
            try:
                make("logistic")
            except ImportError as err:
                print(err)
            else:
                raise SystemExit("no ImportError")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("pip install 'fastloss[catboost]'") == 2, out.stdout
