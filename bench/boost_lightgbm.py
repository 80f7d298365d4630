"""LightGBM training with the built-in objective, the fastloss objective and a NumPy one.

``cases(...)`` returns ``[(case_name, {"builtin": fn, "fastloss": fn, "numpy": fn}), ...]``;
each ``fn()`` trains one booster from scratch on data made once (deterministic rng) and
returns it.  The three train the same model: the built-in runs with
``boost_from_average=False`` (a custom objective always starts at 0), and the custom
objectives follow LightGBM's conventions (logistic; softmax with hessian K/(K-1) p(1-p)).
Nothing runs at import; nothing is timed here.
"""

from __future__ import annotations

import numpy as np

K_SOFTMAX = 5


def _data(n, n_features, seed, n_classes=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    if n_classes is None:
        logit = X @ rng.standard_normal(n_features) / np.sqrt(n_features)
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * logit))).astype(np.float64)
    else:
        B = rng.standard_normal((n_features, n_classes)) / np.sqrt(n_features)
        y = np.argmax(2.0 * X @ B + rng.gumbel(size=(n, n_classes)), axis=1).astype(np.float64)
    return X, y


def numpy_binary(preds, train_data):
    """A careful NumPy logistic objective, as a user writes it (LightGBM's convention)."""
    y = train_data.get_label()
    e = np.exp(-np.abs(preds))  # no overflow for large |margin|
    p = np.where(preds >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return p - y, p * (1.0 - p)


def numpy_softmax(preds, train_data):
    """A careful NumPy softmax objective: (n, K) margins, LightGBM's K/(K-1) hessian."""
    y = train_data.get_label().astype(np.intp)
    n, k = preds.shape
    e = np.exp(preds - preds.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    grad = p.copy()
    grad[np.arange(n), y] -= 1.0
    hess = (k / (k - 1.0)) * p * (1.0 - p)
    return grad, hess


def cases(n=200_000, n_features=20, rounds=30, threads=2, kernel_threads=1):
    """The "lightgbm binary" and "lightgbm softmax K=5" cases (see the module docstring)."""
    import lightgbm as lgb

    import fastloss.lightgbm as fll

    base = {
        "num_leaves": 63,
        "learning_rate": 0.1,
        "num_threads": threads,
        "force_col_wise": True,
        "feature_fraction": 1.0,
        "verbose": -1,
        "seed": 0,
    }

    def make(X, y, builtin, fastloss_obj, numpy_obj, extra):
        # one binned Dataset per case, shared by the three trainings (binning is not
        # what is compared); the raw data is kept so LightGBM can rebin if it must
        ds = lgb.Dataset(X, y, params={"verbose": -1}, free_raw_data=False).construct()

        def train(objective, more=None):
            params = {**base, **extra, **(more or {}), "objective": objective}
            return lambda: lgb.train(params, ds, num_boost_round=rounds)

        return {
            "builtin": train(builtin, {"boost_from_average": False}),
            "fastloss": train(fastloss_obj),
            "numpy": train(numpy_obj),
        }

    Xb, yb = _data(n, n_features, seed=0)
    Xm, ym = _data(n, n_features, seed=1, n_classes=K_SOFTMAX)
    return [
        (
            "lightgbm binary",
            make(Xb, yb, "binary", fll.objective("logistic", n_threads=kernel_threads),
                 numpy_binary, {}),
        ),
        (
            f"lightgbm softmax K={K_SOFTMAX}",
            make(Xm, ym, "multiclass", fll.objective("softmax", n_threads=kernel_threads),
                 numpy_softmax, {"num_class": K_SOFTMAX}),
        ),
    ]
