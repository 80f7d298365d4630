"""fastloss.lightgbm against real LightGBM: a custom fastloss objective must train the same
model as LightGBM's built-in objective (raw margins within 1e-5; bitwise on this machine for
most cases), in the native and the scikit-learn API, with and without sample weights.

Recipe (notes/boosting.md section 2.3): ``deterministic``, ``force_col_wise``,
``feature_fraction=1``, explicit thread counts; the built-in side gets
``boost_from_average=False`` because LightGBM never boosts from the average for a custom
objective (the init_score tests cover the default built-in start).  LightGBM runs with one
thread: on a shared 2-core machine its OpenMP spinning made 2-thread trainings 30x slower.
"""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

import fastloss as fl  # noqa: E402
import fastloss.lightgbm as fll  # noqa: E402

TOL = 1e-5  # max abs raw-margin difference allowed against the built-in
ROUNDS = 20
PARAMS = {
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 1,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "verbose": -1,
    "seed": 0,
}
SKL = {
    "n_estimators": ROUNDS,
    "deterministic": True,
    "force_col_wise": True,
    "n_jobs": 1,
    "colsample_bytree": 1.0,
    "subsample": 1.0,
    "verbose": -1,
    "random_state": 0,
}
WEIGHTED = pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])


# ------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def binary():
    X, y = sklearn_datasets.load_breast_cancer(return_X_y=True)
    w = np.random.default_rng(0).uniform(0.1, 3.0, y.shape[0])
    return X, y.astype(np.float64), w


@pytest.fixture(scope="module")
def digits():
    X, y = sklearn_datasets.load_digits(return_X_y=True)
    w = np.random.default_rng(1).uniform(0.1, 3.0, y.shape[0])
    return X, y, w


@pytest.fixture(scope="module")
def regression():
    """Diabetes features; a standardised target (squared error, huber) and counts (poisson)."""
    X, y = sklearn_datasets.load_diabetes(return_X_y=True)
    rng = np.random.default_rng(2)
    z = (y - y.mean()) / y.std()
    counts = rng.poisson(np.exp(0.8 * z)).astype(np.float64)
    w = rng.uniform(0.1, 3.0, y.shape[0])
    return X, z, counts, w


def _train(params, X, y, w=None, init_score=None, rounds=ROUNDS, **kw):
    ds = lgb.Dataset(X, y, weight=w, init_score=init_score)
    return lgb.train({**PARAMS, **params}, ds, num_boost_round=rounds, **kw)


def _maxabs(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _weights(data, weighted):
    return data[-1] if weighted else None


# ------------------------------------------------------------------ the call contract
def test_sklearn_wrapper_counts_three_parameters():
    # lightgbm.sklearn dispatches on len(inspect.signature(f).parameters): 2 would drop
    # the sample weights, 3 passes them.
    for f in (fll.objective("logistic"), fll.metric("logistic")):
        assert len(inspect.signature(f).parameters) == 3


def test_binary_returns_1d_float32(binary):
    X, y, w = binary
    ds = lgb.Dataset(X, y, weight=w).construct()
    preds = np.random.default_rng(3).standard_normal(y.shape[0])
    f = fll.objective("logistic")
    g, h = f(preds, ds)
    assert g.shape == h.shape == y.shape and g.dtype == h.dtype == np.float32
    p = 1.0 / (1.0 + np.exp(-preds))
    np.testing.assert_allclose(g, (p - y) * w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h, p * (1 - p) * w, rtol=1e-6, atol=1e-7)
    # the scikit-learn form gives the same, and weight=None means unweighted
    g, h = g.copy(), h.copy()  # the next call reuses the buffers
    g2, h2 = f(ds.get_label(), preds, ds.get_weight())  # LightGBM's float32 copies
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_array_equal(h2, h)
    g3, _ = f(y, preds, None)
    np.testing.assert_allclose(g3, p - y, rtol=1e-6, atol=1e-7)


def test_multiclass_writes_lightgbm_layout_without_copies(digits):
    X, y, w = digits
    n, K = y.shape[0], 10
    ds = lgb.Dataset(X, y, weight=w).construct()
    # what LightGBM passes: an (n, K) F-ordered float64 view of its class-major buffer
    flat = np.random.default_rng(4).standard_normal(n * K)
    preds = flat.reshape(n, K, order="F")
    f = fll.objective("softmax")
    g, h = f(preds, ds)
    assert g.shape == h.shape == (n, K)
    assert g.dtype == h.dtype == np.float32
    assert g.flags.f_contiguous and h.flags.f_contiguous
    # LightGBM's conversion: ravel(order="F") then a float32 cast -- both no-ops here
    for a in (g, h):
        assert np.shares_memory(a.ravel(order="F"), a)
    e = np.exp(preds - preds.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    onehot = np.eye(K)[y]
    np.testing.assert_allclose(g, (p - onehot) * w[:, None], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(h, K / (K - 1) * p * (1 - p) * w[:, None], rtol=1e-5, atol=1e-7)
    # the buffers are allocated once and reused by the next call
    g2, h2 = f(preds, ds)
    assert g2 is g and h2 is h


def test_defaults_are_lightgbm_conventions_and_options_override():
    r = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    y = np.zeros(5)
    ds = lgb.Dataset(np.zeros((5, 1)), y).construct()
    g, h = fll.objective("huber")(r, ds)  # LightGBM: alpha 0.9, hessian 1 everywhere
    np.testing.assert_allclose(g, np.clip(r, -0.9, 0.9), rtol=1e-7)
    np.testing.assert_array_equal(h, np.ones(5))
    g, h = fll.objective("huber", delta=2.0, min_hess=0.0)(r, ds)
    np.testing.assert_allclose(g, np.clip(r, -2.0, 2.0), rtol=1e-7)
    np.testing.assert_array_equal(h, [1, 1, 1, 1, 1])
    g, h = fll.objective("huber", min_hess=0.0)(r, ds)
    np.testing.assert_array_equal(h, [0, 1, 1, 1, 0])
    _, h = fll.objective("poisson")(r, ds)  # poisson_max_delta_step 0.7
    np.testing.assert_allclose(h, np.exp(r + 0.7), rtol=1e-6)
    _, h = fll.objective("poisson", max_delta_step=0.0)(r, ds)
    np.testing.assert_allclose(h, np.exp(r), rtol=1e-6)
    p2 = np.stack([r, -r], axis=1)
    _, h = fll.objective("softmax")(y, p2, None)  # K/(K-1) = 2 at K=2
    p = 1.0 / (1.0 + np.exp(-2 * r))
    np.testing.assert_allclose(h[:, 0], 2 * p * (1 - p), rtol=1e-6)
    _, h = fll.objective("softmax", hess_scale=1.0)(y, p2, None)
    np.testing.assert_allclose(h[:, 0], p * (1 - p), rtol=1e-6)


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown objective"):
        fll.objective("binary")
    with pytest.raises(TypeError, match="unknown option"):
        fll.objective("logistic", delta=1.0)
    with pytest.raises(TypeError, match="unknown option"):
        fll.metric("huber", hess_scale=2.0)
    with pytest.raises(TypeError, match="num_class"):
        fll.init_score("logistic", np.array([0.0, 1.0]), num_class=2)


def test_two_argument_call_needs_a_dataset():
    f = fll.objective("logistic")
    with pytest.raises(TypeError, match="train_data"):
        f(np.zeros(3), np.zeros(3))  # (y_true, y_pred) is not a form LightGBM uses


# ------------------------------------------------------------- training equivalence
@WEIGHTED
def test_native_binary_matches_builtin(binary, weighted):
    X, y, _ = binary
    w = _weights(binary, weighted)
    ref = _train({"objective": "binary", "boost_from_average": False}, X, y, w)
    got = _train({"objective": fll.objective("logistic")}, X, y, w)
    assert _maxabs(got.predict(X, raw_score=True), ref.predict(X, raw_score=True)) <= TOL


@WEIGHTED
def test_native_multiclass_matches_builtin(digits, weighted):
    X, y, _ = digits
    w = _weights(digits, weighted)
    ref = _train({"objective": "multiclass", "num_class": 10, "boost_from_average": False}, X, y, w)
    got = _train({"objective": fll.objective("softmax"), "num_class": 10}, X, y, w)
    a, b = got.predict(X, raw_score=True), ref.predict(X, raw_score=True)
    assert a.shape == (y.shape[0], 10)
    assert _maxabs(a, b) <= TOL


@WEIGHTED
@pytest.mark.parametrize("data", ["binary", "digits"])
def test_sklearn_classifier_matches_builtin(request, data, weighted):
    X, y, w = request.getfixturevalue(data)
    w = w if weighted else None
    builtin = "binary" if data == "binary" else "multiclass"
    ref = lgb.LGBMClassifier(objective=builtin, boost_from_average=False, **SKL)
    name = "logistic" if data == "binary" else "softmax"
    got = lgb.LGBMClassifier(objective=fll.objective(name), **SKL)
    ref.fit(X, y, sample_weight=w)
    got.fit(X, y, sample_weight=w)
    assert _maxabs(got.predict(X, raw_score=True), ref.predict(X, raw_score=True)) <= TOL


REGRESSION_CASES = [
    ("squared_error", {"objective": "regression"}, "z"),
    ("huber", {"objective": "huber", "alpha": 0.9}, "z"),
    ("poisson", {"objective": "poisson", "poisson_max_delta_step": 0.7}, "counts"),
]
REGRESSION_IDS = [case[0] for case in REGRESSION_CASES]


@WEIGHTED
@pytest.mark.parametrize(("name", "builtin", "target"), REGRESSION_CASES, ids=REGRESSION_IDS)
def test_native_regression_matches_builtin(regression, name, builtin, target, weighted):
    X, z, counts, w = regression
    y = z if target == "z" else counts
    w = w if weighted else None
    ref = _train({**builtin, "boost_from_average": False}, X, y, w)
    got = _train({"objective": fll.objective(name)}, X, y, w)
    assert _maxabs(got.predict(X, raw_score=True), ref.predict(X, raw_score=True)) <= TOL


@WEIGHTED
@pytest.mark.parametrize(("name", "builtin", "target"), REGRESSION_CASES, ids=REGRESSION_IDS)
def test_sklearn_regressor_matches_builtin(regression, name, builtin, target, weighted):
    X, z, counts, w = regression
    y = z if target == "z" else counts
    w = w if weighted else None
    ref = lgb.LGBMRegressor(**builtin, boost_from_average=False, **SKL).fit(X, y, sample_weight=w)
    got = lgb.LGBMRegressor(objective=fll.objective(name), **SKL).fit(X, y, sample_weight=w)
    assert _maxabs(got.predict(X, raw_score=True), ref.predict(X, raw_score=True)) <= TOL


@pytest.mark.parametrize("api", ["native", "sklearn"])
def test_sample_weights_are_honoured(digits, api):
    X, y, w = digits
    f = fll.objective("softmax")
    if api == "native":
        fits = [_train({"objective": f, "num_class": 10}, X, y, ww) for ww in (None, w)]
        builtin = {"objective": "multiclass", "num_class": 10, "boost_from_average": False}
        ref = _train(builtin, X, y, w)
    else:
        fits = [
            lgb.LGBMClassifier(objective=f, **SKL).fit(X, y, sample_weight=ww) for ww in (None, w)
        ]
        ref = lgb.LGBMClassifier(objective="multiclass", boost_from_average=False, **SKL)
        ref.fit(X, y, sample_weight=w)
    unweighted, weighted = (m.predict(X, raw_score=True) for m in fits)
    assert _maxabs(unweighted, weighted) > 0.1  # the weights change the model ...
    assert _maxabs(weighted, ref.predict(X, raw_score=True)) <= TOL  # ... as the built-in's do


def test_cv_reuses_the_objective_across_folds(binary):
    # lgb.cv calls one objective for every fold's booster (different n per fold).
    X, y, w = binary
    kw = {"num_boost_round": 10, "nfold": 3, "stratified": False, "seed": 0}
    ref = lgb.cv(
        {**PARAMS, "objective": "binary", "boost_from_average": False, "metric": "binary_logloss"},
        lgb.Dataset(X, y, weight=w), **kw,
    )
    got = lgb.cv(
        {**PARAMS, "objective": fll.objective("logistic"), "metric": "None"},
        lgb.Dataset(X, y, weight=w), feval=fll.metric("logistic"), **kw,
    )
    np.testing.assert_allclose(
        got["valid fastloss_logistic-mean"], ref["valid binary_logloss-mean"], rtol=1e-9, atol=1e-12
    )


# -------------------------------------------------------------------------- init_score
@WEIGHTED
def test_init_score_reproduces_boost_from_average_binary(binary, weighted):
    X, y, _ = binary
    w = _weights(binary, weighted)
    ref = _train({"objective": "binary"}, X, y, w)  # boost_from_average=True (default)
    init = fll.init_score("logistic", y, w)
    assert init.shape == y.shape
    got = _train({"objective": fll.objective("logistic")}, X, y, w, init_score=init)
    # LightGBM does not store the init_score: add it back at predict time
    margins = got.predict(X, raw_score=True) + init
    assert _maxabs(margins, ref.predict(X, raw_score=True)) <= TOL
    # without the init_score the custom model is a different one
    plain = _train({"objective": fll.objective("logistic")}, X, y, w)
    assert _maxabs(plain.predict(X, raw_score=True), ref.predict(X, raw_score=True)) > 0.1


@WEIGHTED
def test_init_score_reproduces_boost_from_average_multiclass(digits, weighted):
    X, y, _ = digits
    w = _weights(digits, weighted)
    ref = _train({"objective": "multiclass", "num_class": 10}, X, y, w)
    init = fll.init_score("softmax", y, w, num_class=10)
    assert init.shape == (y.shape[0], 10)
    got = _train({"objective": fll.objective("softmax"), "num_class": 10}, X, y, w, init_score=init)
    diff = ref.predict(X, raw_score=True) - (got.predict(X, raw_score=True) + init)
    # LightGBM starts at log(prior_k), fastloss at centred log-priors: one constant apart,
    # which the softmax ignores.
    ww = np.ones(y.shape[0]) if w is None else w.astype(np.float32).astype(np.float64)
    prior = np.bincount(y, weights=ww, minlength=10) / ww.sum()
    assert _maxabs(diff, np.mean(np.log(prior))) <= TOL


@WEIGHTED
@pytest.mark.parametrize(
    ("name", "builtin", "target"),
    [REGRESSION_CASES[0], REGRESSION_CASES[2]],  # huber: see test_init_score_huber_differs
    ids=["squared_error", "poisson"],
)
def test_init_score_reproduces_boost_from_average_regression(
    regression, name, builtin, target, weighted
):
    X, z, counts, w = regression
    y = z if target == "z" else counts
    w = w if weighted else None
    ref = _train(builtin, X, y, w)
    init = fll.init_score(name, y, w)
    got = _train({"objective": fll.objective(name)}, X, y, w, init_score=init)
    assert _maxabs(got.predict(X, raw_score=True) + init, ref.predict(X, raw_score=True)) <= TOL


def test_init_score_huber_is_the_huber_optimum_not_the_mean(regression):
    # LightGBM's huber boosts from the weighted *mean* (inherited from L2); fastloss's
    # init_score is the constant minimising the huber loss (delta 0.9 here).
    X, z, _, w = regression
    init = fll.init_score("huber", z, w)
    c = init[0]
    assert abs(c - np.average(z, weights=w)) > 1e-3
    r = c - z.astype(np.float32)
    assert abs(np.sum(w.astype(np.float32) * np.clip(r, -0.9, 0.9))) < 1e-6 * np.sum(w)


def test_init_score_sklearn_fit(binary):
    X, y, w = binary
    ref = lgb.LGBMClassifier(objective="binary", **SKL).fit(X, y, sample_weight=w)
    init = fll.init_score("logistic", y, w)
    got = lgb.LGBMClassifier(objective=fll.objective("logistic"), **SKL)
    got.fit(X, y, sample_weight=w, init_score=init)
    margins = got.predict(X, raw_score=True) + init
    assert _maxabs(margins, ref.predict(X, raw_score=True)) <= TOL


# ------------------------------------------------------------------------------ metric
def _numpy_logloss(r, y, w):
    return np.average(np.logaddexp(0.0, r) - y * r, weights=w)


def _numpy_mlogloss(r, y, w):
    lse = np.logaddexp.reduce(r, axis=1)
    return np.average(lse - r[np.arange(y.shape[0]), y], weights=w)


def _split(X, y, w):
    return (X[::2], y[::2], w[::2]), (X[1::2], y[1::2], w[1::2])


def _f32(w):
    """The weights as LightGBM stores them (float32), for NumPy references."""
    return np.asarray(w, dtype=np.float32).astype(np.float64)


@pytest.mark.parametrize(
    ("data", "name", "builtin", "ref_metric", "numpy_loss"),
    [
        ("binary", "logistic", {"objective": "binary"}, "binary_logloss", _numpy_logloss),
        ("digits", "softmax", {"objective": "multiclass", "num_class": 10}, "multi_logloss",
         _numpy_mlogloss),
    ],
    ids=["logistic", "softmax"],
)
def test_metric_native_matches_numpy_and_builtin(
    request, data, name, builtin, ref_metric, numpy_loss
):
    X, y, w = request.getfixturevalue(data)
    (Xt, yt, wt), (Xv, yv, wv) = _split(X, y, w)
    extra = {k: v for k, v in builtin.items() if k == "num_class"}
    train = lgb.Dataset(Xt, yt, weight=wt)
    valid = lgb.Dataset(Xv, yv, weight=wv, reference=train)
    ev_got, ev_ref = {}, {}
    got = lgb.train(
        {**PARAMS, **extra, "objective": fll.objective(name), "metric": "None"}, train, ROUNDS,
        valid_sets=[valid], valid_names=["v"], feval=fll.metric(name),
        callbacks=[lgb.record_evaluation(ev_got)],
    )
    ref_train = lgb.Dataset(Xt, yt, weight=wt)
    lgb.train(
        {**PARAMS, **builtin, "boost_from_average": False, "metric": ref_metric}, ref_train, ROUNDS,
        valid_sets=[lgb.Dataset(Xv, yv, weight=wv, reference=ref_train)], valid_names=["v"],
        callbacks=[lgb.record_evaluation(ev_ref)],
    )
    values = ev_got["v"][f"fastloss_{name}"]
    assert len(values) == ROUNDS
    expected = numpy_loss(got.predict(Xv, raw_score=True), yv, _f32(wv))
    np.testing.assert_allclose(values[-1], expected, rtol=1e-10)
    # LightGBM's own metric (on the built-in's identical model; float32 weights)
    np.testing.assert_allclose(values, ev_ref["v"][ref_metric], rtol=1e-7)


@pytest.mark.parametrize(
    ("name", "builtin", "ref_metric", "target", "scale"),
    [
        ("squared_error", {"objective": "regression"}, "l2", "z", 0.5),  # l2 is the full square
        ("huber", {"objective": "huber"}, "huber", "z", 1.0),
        ("poisson", {"objective": "poisson"}, "poisson", "counts", 1.0),
    ],
    ids=["squared_error", "huber", "poisson"],
)
def test_metric_regression_matches_builtin_metric(
    regression, name, builtin, ref_metric, target, scale
):
    X, z, counts, w = regression
    y = z if target == "z" else counts
    (Xt, yt, wt), (Xv, yv, wv) = _split(X, y, w)
    ev_got, ev_ref = {}, {}
    train = lgb.Dataset(Xt, yt, weight=wt)
    lgb.train(
        {**PARAMS, "objective": fll.objective(name), "metric": "None"}, train, ROUNDS,
        valid_sets=[lgb.Dataset(Xv, yv, weight=wv, reference=train)], valid_names=["v"],
        feval=fll.metric(name), callbacks=[lgb.record_evaluation(ev_got)],
    )
    ref_train = lgb.Dataset(Xt, yt, weight=wt)
    lgb.train(
        {**PARAMS, **builtin, "boost_from_average": False, "metric": ref_metric}, ref_train, ROUNDS,
        valid_sets=[lgb.Dataset(Xv, yv, weight=wv, reference=ref_train)], valid_names=["v"],
        callbacks=[lgb.record_evaluation(ev_ref)],
    )
    np.testing.assert_allclose(
        ev_got["v"][f"fastloss_{name}"], scale * np.asarray(ev_ref["v"][ref_metric]), rtol=1e-6
    )


def test_metric_sklearn_eval_metric_honours_weights(binary):
    X, y, w = binary
    (Xt, yt, wt), (Xv, yv, wv) = _split(X, y, w)
    clf = lgb.LGBMClassifier(objective=fll.objective("logistic"), **SKL)
    clf.fit(
        Xt, yt, sample_weight=wt, eval_X=(Xv,), eval_y=(yv,), eval_sample_weight=[wv],
        eval_names=["v"], eval_metric=fll.metric("logistic"),
    )
    values = clf.evals_result_["v"]["fastloss_logistic"]
    r = clf.predict(Xv, raw_score=True)
    np.testing.assert_allclose(values[-1], _numpy_logloss(r, yv, _f32(wv)), rtol=1e-10)
    assert abs(values[-1] - _numpy_logloss(r, yv, None)) > 1e-4  # weighted, not plain


def test_metric_name_and_direction(binary):
    X, y, w = binary
    ds = lgb.Dataset(X, y, weight=w).construct()
    r = np.linspace(-3, 3, y.shape[0])
    name, value, higher_better = fll.metric("logistic")(r, ds)
    assert name == "fastloss_logistic" and higher_better is False
    np.testing.assert_allclose(value, _numpy_logloss(r, y, _f32(w)), rtol=1e-10)
    np.testing.assert_allclose(
        value, fl.objective_loss("logistic", r, y, sample_weight=_f32(w)), rtol=1e-12
    )
    # the scikit-learn form (y_true, y_pred, weight)
    expected = fl.objective_loss("logistic", r, y, sample_weight=w)
    assert fll.metric("logistic")(y, r, w) == (name, expected, False)


# ------------------------------------------------------------------------- bad input
def test_bad_labels_raise_fastloss_errors(binary, digits, regression):
    X, y, _ = binary
    with pytest.raises(ValueError):
        _train({"objective": fll.objective("logistic")}, X, np.where(y > 0, 2.0, 0.0), rounds=2)
    Xd, yd, _ = digits
    with pytest.raises(IndexError, match="10"):
        # num_class=10 but a label 10: LightGBM does not check labels for a custom objective
        _train({"objective": fll.objective("softmax"), "num_class": 10}, Xd,
               np.where(yd == 9, 10, yd), rounds=2)
    Xr, z, _, _ = regression
    with pytest.raises(ValueError):
        _train({"objective": fll.objective("poisson")}, Xr, z, rounds=2)  # negative counts
    with pytest.raises(ValueError):
        lgb.LGBMClassifier(objective=fll.objective("softmax"), **SKL).fit(X, y)  # K=2: (n,) margins


# --------------------------------------------------------------------------- plumbing
def test_pickle_copy_and_clone(binary):
    from sklearn.base import clone

    X, y, w = binary
    f = fll.objective("huber", delta=0.5)
    ds = lgb.Dataset(X, y, weight=w).construct()
    preds = np.zeros(y.shape[0])
    f(preds, ds)  # allocate the buffers: they are not state
    g = pickle.loads(pickle.dumps(f))
    assert g.options == f.options == {"delta": 0.5, "min_hess": 1.0}
    np.testing.assert_array_equal(g(preds, ds)[0], f(preds, ds)[0])
    m = pickle.loads(pickle.dumps(fll.metric("logistic")))
    assert m(preds, ds)[0] == "fastloss_logistic"
    est = clone(lgb.LGBMClassifier(objective=f, **SKL))
    assert est.get_params()["objective"].options == f.options
    assert "huber" in repr(f)


def test_import_is_lazy_and_missing_lightgbm_is_a_clear_error():
    code = textwrap.dedent(
        """
        import sys
        import fastloss, fastloss.lightgbm
        assert "lightgbm" not in sys.modules, "import fastloss imported lightgbm"
        sys.modules["lightgbm"] = None  # what an absent package looks like to import
        for make in (lambda: fastloss.lightgbm.objective("logistic"),
                     lambda: fastloss.lightgbm.metric("logistic"),
                     lambda: fastloss.lightgbm.init_score("logistic", [0.0, 1.0])):
            try:
                make()
            except ImportError as e:
                assert "pip install 'fastloss[lightgbm]'" in str(e), str(e)
            else:
                raise AssertionError("no ImportError")
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_buffers_are_per_thread(binary):
    import threading

    X, y, w = binary
    ds = lgb.Dataset(X, y, weight=w).construct()
    f = fll.objective("logistic")
    preds = np.zeros(y.shape[0])
    mine = f(preds, ds)
    other = []
    t = threading.Thread(target=lambda: other.append(f(preds, ds)))
    t.start()
    t.join()
    assert other[0].grad is not mine.grad and not np.shares_memory(other[0].grad, mine.grad)
    np.testing.assert_array_equal(other[0].grad, mine.grad)
