"""fastloss.xgboost against XGBoost itself: training with a fastloss objective reproduces the
built-in objective's raw margins (native and scikit-learn APIs, with and without sample
weights), the metric matches NumPy and XGBoost's own metrics, base_margin reproduces XGBoost's
intercept estimation, bad labels raise fastloss's errors, and a missing XGBoost gives an
ImportError naming the extra.

Small data (scikit-learn's breast cancer, digits and diabetes sets), hist trees, 2 threads and
10-20 rounds keep the file fast.  Margins agree to float32 rounding (measured max abs
differences ~1e-6); the tolerance is 1e-5.
"""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")
datasets = pytest.importorskip("sklearn.datasets")

import fastloss as fl  # noqa: E402
import fastloss.xgboost as flx  # noqa: E402

TOL = 1e-5
ROUNDS = 20
P = {"tree_method": "hist", "nthread": 2, "max_depth": 4}
SK = {"tree_method": "hist", "n_jobs": 2, "max_depth": 4, "n_estimators": ROUNDS}
WEIGHTED = pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])


# ------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def binary():
    X, y = datasets.load_breast_cancer(return_X_y=True)
    w = np.random.default_rng(0).uniform(0.2, 3.0, y.size)
    return X, y, w


@pytest.fixture(scope="module")
def digits():
    X, y = datasets.load_digits(return_X_y=True)
    w = np.random.default_rng(1).uniform(0.2, 3.0, y.size)
    return X, y, w


@pytest.fixture(scope="module")
def regression():
    X, y = datasets.load_diabetes(return_X_y=True)
    rng = np.random.default_rng(2)
    counts = rng.poisson(np.exp(1.0 + 8.0 * X[:, 2])).astype(np.float64)
    return X, y / 100.0, counts, rng.uniform(0.2, 3.0, y.size)


def _margin(booster, d):
    return booster.predict(d, output_margin=True)


def _maxdiff(a, b):
    assert a.shape == b.shape
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ------------------------------------------------------------ training equivalence: native
@WEIGHTED
def test_binary_native_matches_builtin(binary, weighted):
    X, y, w = binary
    d = xgb.DMatrix(X, y, weight=w if weighted else None)
    ref = xgb.train({**P, "objective": "binary:logistic", "base_score": 0.5}, d, ROUNDS)
    got = xgb.train({**P, "base_score": 0.0}, d, ROUNDS, obj=flx.objective("logistic"))
    assert _maxdiff(_margin(got, d), _margin(ref, d)) < TOL


@WEIGHTED
def test_softmax_native_matches_builtin(digits, weighted):
    X, y, w = digits
    d = xgb.DMatrix(X, y, weight=w if weighted else None)
    base = {**P, "num_class": 10, "base_score": 0.5}
    ref = xgb.train({**base, "objective": "multi:softprob"}, d, ROUNDS)
    got = xgb.train(base, d, ROUNDS, obj=flx.objective("softmax"))
    m = _margin(got, d)
    assert m.shape == (y.size, 10)
    assert _maxdiff(m, _margin(ref, d)) < TOL


REGRESSION_CASES = {
    # id: (fastloss name, options, built-in params, custom params, label column)
    "squared_error": ("squared_error", {}, {"objective": "reg:squarederror"}, {}, "y"),
    "pseudo_huber": ("pseudo_huber", {}, {"objective": "reg:pseudohubererror"}, {}, "y"),
    "pseudo_huber_delta0.3": (
        "pseudo_huber",
        {"delta": 0.3},
        {"objective": "reg:pseudohubererror", "huber_slope": 0.3},
        {},
        "y",
    ),
    # count:poisson's learner clips the tree leaves at max_delta_step=0.7 as well: the
    # custom side sets it in the params (the objective's 0.7 is the adapter's default).
    "poisson": ("poisson", {}, {"objective": "count:poisson"}, {"max_delta_step": 0.7}, "c"),
}


@WEIGHTED
@pytest.mark.parametrize("case", list(REGRESSION_CASES))
def test_regression_native_matches_builtin(regression, case, weighted):
    X, y, counts, w = regression
    name, opts, builtin, custom, col = REGRESSION_CASES[case]
    label = counts if col == "c" else y
    d = xgb.DMatrix(X, label, weight=w if weighted else None)
    # The same starting margin for both: base_score goes through the configured
    # objective's link (log for count:poisson, identity for the custom side).
    ref_base, got_base = (1.0, 0.0) if name == "poisson" else (1.5, 1.5)
    ref = xgb.train({**P, **builtin, "base_score": ref_base}, d, ROUNDS)
    got = xgb.train(
        {**P, **custom, "base_score": got_base}, d, ROUNDS, obj=flx.objective(name, **opts)
    )
    assert _maxdiff(_margin(got, d), _margin(ref, d)) < TOL


def test_poisson_needs_the_tree_max_delta_step(regression):
    """Without max_delta_step=0.7 in the params the custom poisson model's leaves are not
    clipped as count:poisson's are, and the margins differ a lot (the recipe matters)."""
    X, _, counts, _ = regression
    d = xgb.DMatrix(X, counts)
    ref = xgb.train({**P, "objective": "count:poisson", "base_score": 1.0}, d, ROUNDS)
    got = xgb.train({**P, "base_score": 0.0}, d, ROUNDS, obj=flx.objective("poisson"))
    assert _maxdiff(_margin(got, d), _margin(ref, d)) > 0.1


def test_multi_target_squared_error_matches_builtin(regression):
    X, y, _, w = regression
    Y = np.stack([y, 10.0 * X[:, 0], -y], axis=1)
    d = xgb.DMatrix(X, Y, weight=w)
    ref = xgb.train({**P, "objective": "reg:squarederror", "base_score": 0.5}, d, 10)
    got = xgb.train({**P, "base_score": 0.5}, d, 10, obj=flx.objective("squared_error"))
    m = _margin(got, d)
    assert m.shape == Y.shape
    assert _maxdiff(m, _margin(ref, d)) < TOL
    reg_ref = xgb.XGBRegressor(**{**SK, "n_estimators": 10}, base_score=0.5).fit(X, Y)
    reg_got = xgb.XGBRegressor(
        **{**SK, "n_estimators": 10}, objective=flx.objective("squared_error")
    ).fit(X, Y)
    assert _maxdiff(
        reg_got.predict(X, output_margin=True), reg_ref.predict(X, output_margin=True)
    ) < TOL


# ------------------------------------------------------ training equivalence: scikit-learn
@WEIGHTED
@pytest.mark.parametrize("data,name", [("binary", "logistic"), ("digits", "softmax")])
def test_classifier_matches_builtin(request, data, name, weighted):
    X, y, w = request.getfixturevalue(data)
    sw = w if weighted else None
    ref = xgb.XGBClassifier(**SK, base_score=0.5).fit(X, y, sample_weight=sw)
    got = xgb.XGBClassifier(**SK, objective=flx.objective(name)).fit(X, y, sample_weight=sw)
    m = got.predict(X, output_margin=True)
    assert m.shape == ((y.size,) if name == "logistic" else (y.size, 10))
    assert _maxdiff(m, ref.predict(X, output_margin=True)) < TOL


@WEIGHTED
@pytest.mark.parametrize(
    "name,builtin",
    [("squared_error", "reg:squarederror"), ("pseudo_huber", "reg:pseudohubererror")],
)
def test_regressor_matches_builtin(regression, name, builtin, weighted):
    X, y, _, w = regression
    sw = w if weighted else None
    ref = xgb.XGBRegressor(**SK, objective=builtin, base_score=0.5).fit(X, y, sample_weight=sw)
    got = xgb.XGBRegressor(**SK, objective=flx.objective(name)).fit(X, y, sample_weight=sw)
    assert _maxdiff(got.predict(X, output_margin=True), ref.predict(X, output_margin=True)) < TOL


# ----------------------------------------------------------------- sample weights honoured
@pytest.mark.parametrize("data,name", [("binary", "logistic"), ("digits", "softmax")])
def test_sample_weights_change_the_fit(request, data, name):
    """A weighted fit differs from an unweighted one, in both APIs (the weighted fit equals
    the built-in weighted fit: the tests above)."""
    X, y, w = request.getfixturevalue(data)
    f = flx.objective(name)
    extra = {"num_class": 10, "base_score": 0.5} if name == "softmax" else {"base_score": 0.0}
    d, dw = xgb.DMatrix(X, y), xgb.DMatrix(X, y, weight=w)
    plain = xgb.train({**P, **extra}, d, 10, obj=f)
    weighted = xgb.train({**P, **extra}, dw, 10, obj=f)
    assert _maxdiff(_margin(plain, d), _margin(weighted, d)) > 1e-2
    sk = {**SK, "n_estimators": 10}
    plain = xgb.XGBClassifier(**sk, objective=f).fit(X, y)
    weighted = xgb.XGBClassifier(**sk, objective=f).fit(X, y, sample_weight=w)
    diff = _maxdiff(plain.predict(X, output_margin=True), weighted.predict(X, output_margin=True))
    assert diff > 1e-2


def test_objective_signature_takes_sample_weight():
    """XGBoost's scikit-learn wrapper passes the weights only to a callable whose signature
    has a ``sample_weight`` parameter (and raises otherwise)."""
    assert "sample_weight" in inspect.signature(flx.objective("logistic")).parameters


def test_direct_calls_both_conventions(binary):
    X, y, w = binary
    f = flx.objective("logistic")
    preds = np.linspace(-3, 3, y.size, dtype=np.float32)
    g, h = f(preds, xgb.DMatrix(X, y, weight=w))
    g2, h2 = f(y, preds, sample_weight=w)
    assert g.dtype == h.dtype == np.float32 and g.shape == h.shape == preds.shape
    np.testing.assert_array_equal(g, g2)
    np.testing.assert_array_equal(h, h2)
    ref = fl.grad_hess("logistic", preds, y, sample_weight=w, min_hess=1e-16)
    np.testing.assert_array_equal(g, ref.grad)
    np.testing.assert_array_equal(h, ref.hess)
    # labels (n, 1) against margins (n,), and margins (n, 1) against labels (n,)
    g3, _ = f(y.reshape(-1, 1), preds)
    np.testing.assert_array_equal(g3, f(y, preds)[0])
    g4, _ = f(y, preds.reshape(-1, 1))
    assert g4.shape == (y.size, 1)
    np.testing.assert_array_equal(g4.ravel(), g3)
    with pytest.raises(TypeError, match="sample_weight"):
        f(preds, xgb.DMatrix(X, y), sample_weight=w)


# ---------------------------------------------------------------------------- defaults
def test_defaults_reproduce_builtins_and_options_override():
    assert dict(flx.objective("logistic").options) == {"min_hess": 1e-16}
    assert dict(flx.objective("softmax").options) == {"hess_scale": 2.0, "min_hess": 1e-16}
    assert dict(flx.objective("poisson").options) == {"max_delta_step": 0.7}
    assert dict(flx.objective("pseudo_huber").options) == {"delta": 1.0}
    assert dict(flx.objective("squared_error").options) == {}
    f = flx.objective("softmax", hess_scale=1.0, label_smoothing=0.1)
    assert dict(f.options) == {"hess_scale": 1.0, "min_hess": 1e-16, "label_smoothing": 0.1}
    assert "hess_scale=1.0" in repr(f)
    x = np.zeros((2, 3), np.float32)
    _, h = f(np.array([0, 2]), x)
    np.testing.assert_allclose(h, 2 / 9, rtol=1e-6)  # hess_scale * p (1 - p), p = 1/3
    assert f.n_threads == 1
    assert flx.objective("logistic", n_threads=2).n_threads == 2


def test_unknown_name_or_option_fails_at_construction():
    with pytest.raises(ValueError, match="unknown objective"):
        flx.objective("logloss")
    with pytest.raises(TypeError, match="huber_slope"):
        flx.objective("pseudo_huber", huber_slope=1.0)
    with pytest.raises(TypeError, match="bogus"):
        flx.metric("logistic", bogus=1)


# ---------------------------------------------------------------------------- metric
def _np_logloss(m, y, w):
    m = m.astype(np.float64)
    return np.average(np.logaddexp(0.0, m) - y * m, weights=w)


def _np_mlogloss(m, y, w):
    m = m.astype(np.float64)
    mx = m.max(axis=1, keepdims=True)
    lse = np.log(np.exp(m - mx).sum(axis=1)) + mx[:, 0]
    return np.average(lse - m[np.arange(y.size), y.astype(int)], weights=w)


@WEIGHTED
@pytest.mark.parametrize(
    "data,name,builtin_obj,builtin_metric,ref",
    [
        ("binary", "logistic", "binary:logistic", "logloss", _np_logloss),
        ("digits", "softmax", "multi:softprob", "mlogloss", _np_mlogloss),
    ],
)
def test_metric_native(request, data, name, builtin_obj, builtin_metric, ref, weighted):
    """With the custom objective and the built-in objective configured (which gives the
    built-in its link for its own metric), the fastloss metric reports XGBoost's built-in
    log loss each round, and equals NumPy on the final margins."""
    X, y, w = request.getfixturevalue(data)
    sw = w if weighted else None
    d = xgb.DMatrix(X, y, weight=sw)
    params = {**P, "objective": builtin_obj, "base_score": 0.5, "eval_metric": builtin_metric}
    if name == "softmax":
        params["num_class"] = 10
    m = flx.metric(name)
    hist = {}
    booster = xgb.train(
        params, d, 10, obj=flx.objective(name), custom_metric=m, evals=[(d, "train")],
        evals_result=hist, verbose_eval=False,
    )
    ours, theirs = hist["train"]["fastloss-" + name], hist["train"][builtin_metric]
    assert len(ours) == len(theirs) == 10
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-6)  # both printed to 6 digits
    margins = _margin(booster, d)
    label, value = m(margins, d)
    assert label == "fastloss-" + name
    np.testing.assert_allclose(value, ref(margins, y, sw), rtol=2e-6)
    assert m(y, margins, sample_weight=sw) == value


@pytest.mark.parametrize("data,name", [("binary", "logistic"), ("digits", "softmax")])
def test_metric_sklearn(request, data, name):
    X, y, w = request.getfixturevalue(data)
    builtin_metric = "logloss" if name == "logistic" else "mlogloss"
    clf = xgb.XGBClassifier(
        **{**SK, "n_estimators": 10},
        objective=flx.objective(name),
        eval_metric=[builtin_metric, flx.metric(name)],
    )
    clf.fit(X, y, sample_weight=w, eval_set=[(X, y)], sample_weight_eval_set=[w], verbose=False)
    res = clf.evals_result()["validation_0"]
    np.testing.assert_allclose(res["fastloss-" + name], res[builtin_metric], rtol=0, atol=2e-6)
    assert res["fastloss-" + name][-1] < res["fastloss-" + name][0]


def test_metric_on_regression_matches_numpy(regression):
    X, y, counts, w = regression
    d = xgb.DMatrix(X, counts, weight=w)
    m = flx.metric("poisson")
    margins = np.random.default_rng(3).normal(1.0, 0.5, y.size).astype(np.float32)
    mf = margins.astype(np.float64)
    _, value = m(margins, d)
    np.testing.assert_allclose(value, np.average(np.exp(mf) - counts * mf, weights=w), rtol=2e-6)
    _, value = flx.metric("pseudo_huber", delta=0.5)(margins, xgb.DMatrix(X, y))
    z = mf - y
    np.testing.assert_allclose(value, np.mean(0.25 * (np.sqrt(1 + (z / 0.5) ** 2) - 1)), rtol=2e-6)


# ----------------------------------------------------------------- base margin (intercept)
BASE_MARGIN_CASES = {
    "logistic": ("binary", {"objective": "binary:logistic"}, {}),
    "softmax": ("digits", {"objective": "multi:softprob", "num_class": 10}, {"num_class": 10}),
    "poisson": ("regression", {"objective": "count:poisson"}, {"max_delta_step": 0.7}),
    "squared_error": ("regression", {"objective": "reg:squarederror"}, {}),
}


@WEIGHTED
@pytest.mark.parametrize("name", list(BASE_MARGIN_CASES))
def test_base_margin_reproduces_builtin_intercept(request, name, weighted):
    """The built-in with no base_score (XGBoost estimates the intercept) equals the custom
    objective started from ``base_margin(...)``."""
    data, builtin, custom = BASE_MARGIN_CASES[name]
    if data == "regression":
        X, y, counts, w = request.getfixturevalue(data)
        y = counts if name == "poisson" else y
    else:
        X, y, w = request.getfixturevalue(data)
    sw = w if weighted else None
    bm = flx.base_margin(name, y, sw)
    assert bm.dtype == np.float32
    assert bm.shape == ((y.size, 10) if name == "softmax" else (y.size,))
    d = xgb.DMatrix(X, y, weight=sw)
    dm = xgb.DMatrix(X, y, weight=sw, base_margin=bm)
    ref = xgb.train({**P, **builtin}, d, ROUNDS)
    got = xgb.train({**P, **custom}, dm, ROUNDS, obj=flx.objective(name))
    assert _maxdiff(_margin(got, dm), _margin(ref, d)) < TOL
    # and it is needed: without it the custom model starts from 0.5 (or logit 0.5 = 0)
    plain = xgb.train({**P, **custom}, d, ROUNDS, obj=flx.objective(name))
    assert _maxdiff(_margin(plain, d), _margin(ref, d)) > 1e-3


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_init_score_as_base_score_reproduces_builtin_intercept(request, name):
    """The documented alternative that keeps the intercept in the model: with a custom
    objective (and no ``objective`` key: identity link) ``base_score`` is the margin, a float
    or, for K classes, a list of K floats."""
    data, builtin, custom = BASE_MARGIN_CASES[name]
    X, y, w = request.getfixturevalue(data)
    start = fl.init_score(name, y, w)
    start = start.tolist() if name == "softmax" else start
    d = xgb.DMatrix(X, y, weight=w)
    ref = xgb.train({**P, **builtin}, d, ROUNDS)
    got = xgb.train({**P, **custom, "base_score": start}, d, ROUNDS, obj=flx.objective(name))
    assert _maxdiff(_margin(got, xgb.DMatrix(X)), _margin(ref, xgb.DMatrix(X))) < TOL


def test_base_margin_in_the_classifier(binary):
    X, y, w = binary
    bm = flx.base_margin("logistic", y, w)
    ref = xgb.XGBClassifier(**SK).fit(X, y, sample_weight=w)
    got = xgb.XGBClassifier(**SK, objective=flx.objective("logistic"))
    got.fit(X, y, sample_weight=w, base_margin=bm)
    assert _maxdiff(
        got.predict(X, base_margin=bm, output_margin=True), ref.predict(X, output_margin=True)
    ) < TOL
    # or as base_score: XGBClassifier configures binary:logistic for a callable objective, so
    # its base_score is a probability (the weighted mean label), stored in the model
    got = xgb.XGBClassifier(
        **SK, objective=flx.objective("logistic"), base_score=float(np.average(y, weights=w))
    ).fit(X, y, sample_weight=w)
    assert _maxdiff(got.predict(X, output_margin=True), ref.predict(X, output_margin=True)) < TOL


def test_base_margin_values_and_multi_target(regression):
    X, y, counts, w = regression
    np.testing.assert_allclose(
        flx.base_margin("poisson", counts, w), np.log(np.average(counts, weights=w)), rtol=1e-6
    )
    Y = np.stack([y, 10.0 * X[:, 0]], axis=1)
    bm = flx.base_margin("squared_error", Y, w)
    assert bm.shape == Y.shape
    np.testing.assert_allclose(bm[0], np.average(Y, axis=0, weights=w), rtol=1e-6)
    d = xgb.DMatrix(X, Y, weight=w)
    ref = xgb.train({**P, "objective": "reg:squarederror"}, d, 10)  # per-target intercepts
    got = xgb.train(P, xgb.DMatrix(X, Y, weight=w, base_margin=bm), 10,
                    obj=flx.objective("squared_error"))
    assert _maxdiff(got.predict(xgb.DMatrix(X, base_margin=bm), output_margin=True),
                    _margin(ref, d)) < TOL


# -------------------------------------------------------------------------- bad input
def test_bad_labels_raise_fastloss_errors(binary, digits, regression):
    X, y, _ = binary
    bad = y.copy()
    bad[7] = 2.0
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        xgb.train({**P, "base_score": 0.0}, xgb.DMatrix(X, bad), 2, obj=flx.objective("logistic"))
    with pytest.raises(ValueError):
        flx.metric("logistic")(np.zeros(y.size, np.float32), xgb.DMatrix(X, bad))
    Xd, yd, _ = digits
    with pytest.raises(IndexError, match="10"):
        # labels 0..10 with num_class=10: XGBoost does not check labels for a custom objective
        xgb.train({**P, "num_class": 10}, xgb.DMatrix(Xd, np.minimum(yd + 1, 10)), 2,
                  obj=flx.objective("softmax"))
    Xr, _, counts, _ = regression
    neg = counts.copy()
    neg[3] = -1.0
    with pytest.raises(ValueError, match=">= 0"):
        xgb.train(P, xgb.DMatrix(Xr, neg), 2, obj=flx.objective("poisson"))


def test_softmax_without_num_class_says_so(digits):
    X, y, _ = digits
    with pytest.raises(ValueError, match="num_class"):
        xgb.train(P, xgb.DMatrix(X, y), 2, obj=flx.objective("softmax"))


# ------------------------------------------------------------------- import, pickling
def _run(code):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_missing_xgboost_gives_an_import_error_naming_the_extra():
    r = _run(
        """
        import sys
        sys.modules["xgboost"] = None          # makes `import xgboost` raise ImportError
        import fastloss, fastloss.xgboost as flx
        try:
            flx.objective("logistic")
        except ImportError as e:
            print("MSG:", e)
        """
    )
    assert r.returncode == 0, r.stderr
    assert "pip install 'fastloss[xgboost]'" in r.stdout


def test_import_fastloss_does_not_import_xgboost():
    r = _run(
        """
        import sys, fastloss, fastloss.xgboost
        print("xgboost" in sys.modules)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_pickle_and_clone(binary):
    from sklearn.base import clone

    X, y, _ = binary
    f = flx.objective("softmax", hess_scale=1.5)
    g = pickle.loads(pickle.dumps(f))
    assert g.name == "softmax" and dict(g.options) == dict(f.options)
    m = pickle.loads(pickle.dumps(flx.metric("logistic")))
    assert m.__name__ == "fastloss-logistic"
    clf = clone(xgb.XGBClassifier(**{**SK, "n_estimators": 3}, objective=flx.objective("logistic")))
    clf.fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X, output_margin=True),
                                  clf.predict(X, output_margin=True))
