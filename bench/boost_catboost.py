"""CatBoost training with the built-in objective, the fastloss objective and a NumPy one.

``cases(...)`` returns ``[(case_name, {"builtin": fn, "fastloss": fn, "numpy": fn}), ...]``;
each ``fn()`` trains one model from scratch on data made once (deterministic rng, one
quantized ``Pool`` per case shared by the three trainings) and returns it.  The three train
the same model (notes/boosting.md section 3): depth 6, learning_rate 0.1, l2_leaf_reg 3, one
Newton step; the built-in Logloss runs with ``leaf_estimation_backtracking="No"`` (a user
objective gets none) and MultiClass with ``bootstrap_type="Bayesian"`` everywhere (its
built-in default; a user objective would get MVS).  Every model uses the built-in string
eval metric, so that a Python metric is not part of what is compared.

The NumPy objectives are what a user writes from CatBoost's documentation: a vectorised
``calc_ders_range`` for Logloss and a per-object ``calc_ders_multi`` with the full softmax
Hessian for MultiClass, both with ``no_jit = True`` (without it CatBoost would try to
numba-compile them, and they would no longer be NumPy).

CatBoost calls ``calc_ders_multi`` once per object, so the MultiClass case defaults to
20k objects and 10 rounds (the case name says so); ``kernel_threads`` does not apply to it
(the fastloss softmax path is per object, in Python).  Nothing runs at import; nothing is
timed here.
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


class NumpyLogloss:
    """A careful NumPy Logloss objective in CatBoost's convention (-grad, -hess) * w."""

    no_jit = True

    def calc_ders_range(self, approxes, targets, weights):
        e = np.exp(-np.abs(approxes))  # no overflow for large |margin|
        p = np.where(approxes >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        ders = np.empty((len(p), 2))
        ders[:, 0] = targets - p
        ders[:, 1] = p * (p - 1.0)
        if weights is not None:
            ders *= weights[:, None]
        return ders


class NumpyMultiClass:
    """A NumPy per-object MultiClass objective: -grad and the full -Hessian, times w."""

    no_jit = True

    def calc_ders_multi(self, approx, target, weight):
        e = np.exp(approx - approx.max())
        p = e / e.sum()
        der1 = -p
        der1[int(target)] += 1.0
        der2 = np.outer(p, p)
        der2[np.diag_indices_from(der2)] -= p  # p p^T - diag(p) = -(diag(p) - p p^T)
        return der1 * weight, der2 * weight


def cases(
    n=200_000,
    n_features=20,
    rounds=30,
    threads=2,
    kernel_threads=1,
    multiclass_n=20_000,
    multiclass_rounds=10,
):
    """The "catboost Logloss" and "catboost MultiClass K=5" cases (module docstring), with
    ``threads`` CatBoost threads and again with one.

    The MultiClass case uses ``min(n, multiclass_n)`` objects and ``min(rounds,
    multiclass_rounds)`` rounds, both in its name.
    """
    import catboost as cb

    import fastloss.catboost as flcb

    def base(tc):
        return {
            "depth": 6,
            "learning_rate": 0.1,
            "l2_leaf_reg": 3,
            "leaf_estimation_iterations": 1,
            "thread_count": tc,
            "random_seed": 0,
            "allow_writing_files": False,
            "verbose": False,
        }

    def make(tc, pool, iterations, builtin, fastloss_obj, numpy_obj, extra, builtin_extra):
        def train(loss, more=None):
            params = {**base(tc), **extra, **(more or {}), "iterations": iterations,
                      "loss_function": loss}
            return lambda: cb.CatBoost(params).fit(pool)

        return {
            "builtin": train(builtin, builtin_extra),
            "fastloss": train(fastloss_obj),
            "numpy": train(numpy_obj),
        }

    def quantized(X, y):
        pool = cb.Pool(X, y)
        pool.quantize()  # once per case: quantization is not what is compared
        return pool

    Xb, yb = _data(n, n_features, seed=0)
    nm, rm = min(n, multiclass_n), min(rounds, multiclass_rounds)
    Xm, ym = _data(nm, n_features, seed=1, n_classes=K_SOFTMAX)
    pb, pm = quantized(Xb, yb), quantized(Xm, ym)
    out = []
    # CatBoost's threads take turns on the GIL around a Python objective, so one CatBoost
    # thread can train as fast as two: both are reported
    for tc in dict.fromkeys((threads, 1)):
        tag = "" if tc == threads else f", {tc} CatBoost thread{'s' if tc > 1 else ''}"
        out += [
            (
                f"catboost Logloss{tag}",
                make(tc, pb, rounds, "Logloss",
                     flcb.objective("logistic", n_threads=kernel_threads), NumpyLogloss(),
                     {"eval_metric": "Logloss"}, {"leaf_estimation_backtracking": "No"}),
            ),
            (
                f"catboost MultiClass K={K_SOFTMAX} (n={nm:,}, {rm} rounds){tag}",
                make(tc, pm, rm, "MultiClass", flcb.objective("softmax"), NumpyMultiClass(),
                     {"eval_metric": "MultiClass", "bootstrap_type": "Bayesian",
                      "classes_count": K_SOFTMAX}, None),
            ),
        ]
    return out
