"""XGBoost training with the built-in objective, the fastloss objective and a NumPy one.

``cases(...)`` returns ``[(case_name, {"builtin": fn, "fastloss": fn, "numpy": fn}), ...]``;
each ``fn()`` trains one booster from scratch on data made once (deterministic rng) and
returns it.  The three train the same model (notes/boosting.md section 1.4): the built-in
runs with ``base_score=0.5`` (no intercept estimation, which a custom objective never gets);
the custom objectives start from the same margin (``base_score=0`` with the identity link
for binary, ``0.5`` per class for softmax, where it cancels) and follow XGBoost's
conventions (logistic hessian floored at 1e-16; softmax hessian 2 p(1-p) floored at 1e-16).
Each case's ``DMatrix`` is built once and shared by its three trainings (XGBoost caches the
histogram index on it, so time warm runs).  Nothing runs at import; nothing is timed here.
"""

from __future__ import annotations

import numpy as np

K_SOFTMAX = 5


def _data(n, n_features, seed, n_classes=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features), dtype=np.float32)
    if n_classes is None:
        logit = X @ rng.standard_normal(n_features) / np.sqrt(n_features)
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * logit))).astype(np.float32)
    else:
        B = rng.standard_normal((n_features, n_classes)) / np.sqrt(n_features)
        y = np.argmax(2.0 * X @ B + rng.gumbel(size=(n, n_classes)), axis=1).astype(np.float32)
    return X, y


def numpy_binary(preds, dtrain):
    """A careful NumPy logistic objective, as a user writes it (binary:logistic's convention)."""
    y = dtrain.get_label()
    e = np.exp(-np.abs(preds))  # no overflow for large |margin|
    p = np.where(preds >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    grad = p - y
    hess = np.maximum(p * (1.0 - p), 1e-16)
    w = dtrain.get_weight()
    if w.size:
        grad *= w
        hess *= w
    return grad, hess


def numpy_softmax(preds, dtrain):
    """A careful NumPy softmax objective: (n, K) margins, multi:softprob's 2 p(1-p) hessian."""
    y = dtrain.get_label().astype(np.intp)
    n = preds.shape[0]
    e = np.exp(preds - preds.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    grad = p.copy()
    grad[np.arange(n), y] -= 1.0
    hess = np.maximum(2.0 * p * (1.0 - p), 1e-16)
    w = dtrain.get_weight()
    if w.size:
        grad *= w[:, None]
        hess *= w[:, None]
    return grad, hess


def cases(n=200_000, n_features=20, rounds=30, threads=2, kernel_threads=1):
    """The "xgboost binary" and "xgboost softmax K=5" cases (see the module docstring)."""
    import xgboost as xgb

    import fastloss.xgboost as flx

    base = {"tree_method": "hist", "max_depth": 6, "eta": 0.3, "nthread": threads, "seed": 0}

    def make(X, y, builtin, custom, fastloss_obj, numpy_obj):
        d = xgb.DMatrix(X, y, nthread=threads)

        def train(params, obj=None):
            return lambda: xgb.train({**base, **params}, d, num_boost_round=rounds, obj=obj)

        return {
            "builtin": train(builtin),
            "fastloss": train(custom, fastloss_obj),
            "numpy": train(custom, numpy_obj),
        }

    Xb, yb = _data(n, n_features, seed=0)
    Xm, ym = _data(n, n_features, seed=1, n_classes=K_SOFTMAX)
    K = K_SOFTMAX
    return [
        (
            "xgboost binary",
            make(Xb, yb, {"objective": "binary:logistic", "base_score": 0.5},
                 {"base_score": 0.0},
                 flx.objective("logistic", n_threads=kernel_threads), numpy_binary),
        ),
        (
            f"xgboost softmax K={K}",
            make(Xm, ym, {"objective": "multi:softprob", "num_class": K, "base_score": 0.5},
                 {"num_class": K, "base_score": 0.5},
                 flx.objective("softmax", n_threads=kernel_threads), numpy_softmax),
        ),
    ]
