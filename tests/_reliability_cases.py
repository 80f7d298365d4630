"""The call catalogue of the reliability tests (threads, layers, determinism, soak).

One :class:`Case` per public entry point and representative option set: every loss in
``fastloss.LOSSES`` (each with a plain call and an option-heavy one), every ``grad_hess``
objective (plus ``objective_loss`` / ``init_score``), the utilities, the boosting adapters'
callables called as their library calls them, and ``linear_cross_entropy`` when the
package has it.  ``case.build(rng, big, dtype)`` returns a thunk ``() -> tuple of arrays``
(every output copied, so adapters' reused buffers cannot alias across calls); ``big`` picks
shapes above the parallel thresholds of ``fastloss._config`` (elementwise work
>= ``PARALLEL_MIN_WORK``, row kernels >= ``PARALLEL_MIN_ROWS`` rows and
``PARALLEL_MIN_ROW_WORK`` elements), ``big=False`` tiny ones (the serial build).

``digest(outputs)`` hashes a thunk's outputs (dtype, shape and bytes) so that results can
be compared bitwise across processes (threading layers).

This module is also run as a script by the threading-layer subprocess test
(``python -m tests._reliability_cases --threads 8``): it computes every case serially,
then from 8 threads at once (plus the main thread), checks the bits and prints a JSON
line ``{"layer": ..., "digests": {...}, "mismatches": [...]}``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import fastloss as fl
from fastloss import _config

__all__ = ["CASES", "Case", "digest", "flatten", "same_bits", "cases_for", "run_threads"]


class Case(NamedTuple):
    name: str
    """Unique id, ``function[variant]``."""
    func: str
    """The public function exercised (``"cross_entropy"``, ``"grad_hess:logistic"``, ...)."""
    build: Callable
    """``build(rng, big, dtype) -> thunk``."""
    threads_arg: bool = False
    """The thunk accepts ``n_threads=`` (grad_hess-style per-call threads)."""


def flatten(res) -> tuple:
    """A result (LossResult, GradHess, tuple, array, scalar) as a tuple of ndarray copies."""
    if isinstance(res, (tuple, list)):
        out = []
        for r in res:
            out.extend(flatten(r))
        return tuple(out)
    if res is None:
        return (np.array([], dtype=np.int8),)
    if isinstance(res, str):
        return (np.frombuffer(res.encode(), dtype=np.uint8).copy(),)
    return (np.array(res, copy=True),)


def same_bits(a: tuple, b: tuple) -> bool:
    """Bitwise equality of two flattened results (dtype, shape and bytes)."""
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True)
    )


def digest(outputs: tuple) -> str:
    h = hashlib.sha256()
    for a in outputs:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- shapes
def _rows(big):
    """(N, C) for row kernels: 640 x 203 (rows and work above the thresholds) or 7 x 5."""
    return (640, 203) if big else (7, 5)


def _n(big):
    """Elementwise element count: 3 * PARALLEL_MIN_WORK + 7 (odd: block tails) or 37."""
    return 3 * _config.PARALLEL_MIN_WORK + 7 if big else 37


def _elem_shape(big):
    n = _n(big)
    return (n // 7, 7) if big else (n,)


# --------------------------------------------------------------------------- losses
def _loss_case(func, variant, make, **kw):
    fn = getattr(fl, func)

    def build(rng, big, dtype):
        args, opts = make(rng, big, np.dtype(dtype))
        opts = {**opts, **kw}
        return lambda: flatten(fn(*args, **opts))

    return Case(f"{func}[{variant}]", func, build)


def _ce_plain(rng, big, dt):
    n, c = _rows(big)
    x = (2 * rng.standard_normal((n, c))).astype(dt)
    return (x, rng.integers(0, c, n)), {}


def _ce_opts(rng, big, dt):
    n, c = _rows(big)
    x = (2 * rng.standard_normal((n, c))).astype(dt)
    x[::5, ::3] = -np.inf  # masked logits
    t = rng.integers(0, c, n)
    x[np.arange(n), t] = np.abs(x[np.arange(n), t])
    t[::7] = -100
    w = rng.uniform(0.1, 2.0, c)
    return (x, t, w), {"label_smoothing": 0.1, "z_loss": 1e-3}


def _ce_softcap(rng, big, dt):
    n, c = _rows(big)
    x = (20 * rng.standard_normal((n, c))).astype(dt)
    return (x, rng.integers(0, c, n)), {"softcap": 15.0, "reduction": "none"}


def _ce_prob(rng, big, dt):
    n, c = _rows(big)
    x = rng.standard_normal((n, c)).astype(dt)
    p = rng.dirichlet(np.ones(c), n).astype(dt)
    return (x, p), {"label_smoothing": 0.05}


def _ce_axis1(rng, big, dt):
    n, c = _rows(big)
    x = rng.standard_normal((n // 4 if big else 2, c, 4)).astype(dt)
    t = rng.integers(0, c, (x.shape[0], 4))
    return (x, t), {"axis": 1, "reduction": "sum"}


def _in_place_case(func, make):
    """``func(buf, ..., out=buf)`` on a fresh copy per call (each thread its own buffer)."""
    fn = getattr(fl, func)

    def build(rng, big, dtype):
        args, opts = make(rng, big, np.dtype(dtype))

        def thunk():
            buf = np.array(args[0])
            res = fn(buf, *args[1:], out=buf, **opts)
            assert res.grad is buf
            return flatten(res)

        return thunk

    return Case(f"{func}[out=input]", func, build)


def _nll(rng, big, dt):
    n, c = _rows(big)
    x = rng.standard_normal((n, c))
    x = (x - np.log(np.exp(x).sum(1, keepdims=True))).astype(dt)
    t = rng.integers(0, c, n)
    t[::9] = 3
    return (x, t, rng.uniform(0.5, 2, c)), {"ignore_index": 3}


def _focal(rng, big, dt):
    n, c = _rows(big)
    t = rng.integers(0, c, n)
    t[::11] = -100
    return ((3 * rng.standard_normal((n, c))).astype(dt), t, rng.uniform(0.5, 2, c)), {
        "gamma": 1.5}


def _two_logits(rng, big, dt):
    n, c = _rows(big)
    return (rng.standard_normal((n, c)).astype(dt), (2 * rng.standard_normal((n, c))).astype(dt)
            ), {"temperature": 2.0}


def _entropy(rng, big, dt):
    n, c = _rows(big)
    return ((3 * rng.standard_normal((n, c))).astype(dt),), {"reduction": "none"}


def _multimargin(rng, big, dt):
    n, c = _rows(big)
    return (rng.standard_normal((n, c)).astype(dt), rng.integers(0, c, n),
            rng.uniform(0.5, 2, c)), {"p": 2, "margin": 0.7}


def _prob(rng, big, dt):
    s = _elem_shape(big)
    return (rng.uniform(0.01, 0.99, s).astype(dt), rng.random(s).astype(dt),
            rng.uniform(0.5, 2, s[-1:]).astype(dt)), {}


def _logits01(rng, big, dt):
    s = _elem_shape(big)
    return ((3 * rng.standard_normal(s)).astype(dt), (rng.random(s) < 0.3).astype(dt)), {}


def _bcel_opts(rng, big, dt):
    (x, t), _ = _logits01(rng, big, dt)
    return (x, t, rng.uniform(0.5, 2, x.shape[-1:]), rng.uniform(0.5, 3, x.shape[-1:])), {}


def _reg(rng, big, dt):
    s = _elem_shape(big)
    x = (2 * rng.standard_normal(s)).astype(dt)
    x.reshape(-1)[63::1001] = np.nan
    return (x, rng.standard_normal(s).astype(dt)), {}


def _pm1(rng, big, dt):
    s = _elem_shape(big)
    return ((2 * rng.standard_normal(s)).astype(dt),
            np.where(rng.random(s) < 0.5, -1.0, 1.0).astype(dt)), {}


def _counts(rng, big, dt):
    s = _elem_shape(big)
    return (rng.uniform(0.1, 4, s).astype(dt), rng.poisson(2.0, s).astype(dt)), {
        "log_input": False, "full": True}


def _kl(rng, big, dt):
    s = _elem_shape(big)
    p = rng.dirichlet(np.ones(s[-1]), s[:-1]) if len(s) > 1 else rng.dirichlet(np.ones(s[0]))
    q = rng.dirichlet(np.ones(s[-1]), s[:-1]) if len(s) > 1 else rng.dirichlet(np.ones(s[0]))
    return (np.log(q).astype(dt), np.log(p).astype(dt)), {"log_target": True,
                                                           "reduction": "batchmean"}


def _util_case(func, variant, make, **kw):
    fn = getattr(fl, func)

    def build(rng, big, dtype):
        x = make(rng, big, np.dtype(dtype))
        return lambda: flatten(fn(x, **kw))

    return Case(f"{func}[{variant}]", func, build)


def _util_rows(rng, big, dt):
    n, c = _rows(big)
    x = (5 * rng.standard_normal((n, c))).astype(dt)
    x[::13, ::2] = -np.inf
    return x


def _util_rows_axis0(rng, big, dt):
    return np.ascontiguousarray(_util_rows(rng, big, dt).T)


def _util_elem(rng, big, dt):
    x = (10 * rng.standard_normal(_elem_shape(big))).astype(dt)
    x.reshape(-1)[::997] = 1e30
    return x


# ------------------------------------------------------------------------ boosting
def _margins(rng, big, dt, name):
    n = _n(big)
    if name == "softmax":
        k = 5
        n = n // k + 1
        y = rng.integers(0, k, n)
        y[:k] = np.arange(k)  # every class present (init_score infers K from the labels)
        return rng.standard_normal((n, k)).astype(dt), y, n
    x = rng.standard_normal(n).astype(dt)
    if name in ("logistic", "focal"):
        y = rng.random(n)
    elif name == "poisson":
        y = rng.poisson(2.0, n).astype(np.float64)
    else:
        y = 3 * rng.standard_normal(n)
    return x, y, n


_GH_OPTIONS = {
    "logistic": {"min_hess": 1e-6},
    "softmax": {"hess_scale": 2.0, "label_smoothing": 0.1, "class_weight": [1, 2, 0.5, 1, 3]},
    "squared_error": {},
    "huber": {"delta": 0.8, "min_hess": 0.01},
    "pseudo_huber": {"delta": 1.5},
    "poisson": {"max_delta_step": 0.7},
    "focal": {"gamma": 2.0, "alpha": 0.25, "min_hess": -np.inf},
}


def _gh_case(name):
    def build(rng, big, dtype):
        x, y, n = _margins(rng, big, np.dtype(dtype), name)
        w = rng.uniform(0.5, 2.0, n)
        opts = _GH_OPTIONS[name]

        def thunk(n_threads=None):
            return flatten(fl.grad_hess(name, x, y, sample_weight=w, n_threads=n_threads,
                                        **opts))

        return thunk

    return Case(f"grad_hess[{name}]", f"grad_hess:{name}", build, threads_arg=True)


def _gh_out_case(name):
    """grad_hess into F-ordered float32 buffers (the LightGBM layout)."""

    def build(rng, big, dtype):
        x, y, _ = _margins(rng, big, np.dtype(dtype), name)

        def thunk(n_threads=None):
            g = np.empty(x.shape, np.float32, order="F")
            h = np.empty(x.shape, np.float32, order="F")
            res = fl.grad_hess(name, x, y, grad_out=g, hess_out=h, n_threads=n_threads,
                               **_GH_OPTIONS[name])
            assert res.grad is g and res.hess is h
            return flatten(res)

        return thunk

    return Case(f"grad_hess[{name},out_F]", f"grad_hess:{name}", build, threads_arg=True)


def _objloss_case(name):
    def build(rng, big, dtype):
        x, y, n = _margins(rng, big, np.dtype(dtype), name)
        w = rng.uniform(0.5, 2.0, n)
        opts = _GH_OPTIONS[name]

        def thunk(n_threads=None):
            return flatten((
                fl.objective_loss(name, x, y, sample_weight=w, n_threads=n_threads, **opts),
                fl.objective_loss(name, x, y, reduction="none", n_threads=n_threads, **opts),
            ))

        return thunk

    return Case(f"objective_loss[{name}]", f"objective_loss:{name}", build, threads_arg=True)


def _init_case(name):
    def build(rng, big, dtype):
        _, y, n = _margins(rng, big, np.dtype(dtype), name)
        w = rng.uniform(0.5, 2.0, n)
        opts = {k: v for k, v in _GH_OPTIONS[name].items()
                if k in ("label_smoothing", "class_weight", "delta", "gamma", "alpha")}
        return lambda: flatten(fl.init_score(name, y, sample_weight=w, **opts))

    return Case(f"init_score[{name}]", f"init_score:{name}", build)


def _have(module):
    return importlib.util.find_spec(module) is not None


def _xgb_cases():
    if not _have("xgboost"):
        return []
    out = []
    for name in ("logistic", "softmax", "pseudo_huber", "poisson"):

        def build(rng, big, dtype, name=name):
            import xgboost as xgb

            import fastloss.xgboost as flx

            x, y, n = _margins(rng, big, np.dtype(np.float32), name)
            y = np.round(y) if name == "logistic" else y
            w = rng.uniform(0.5, 2.0, n)
            dm = xgb.DMatrix(np.zeros((n, 1), np.float32), label=y, weight=w, nthread=1)

            def thunk(n_threads=None):
                f = flx.objective(name, n_threads=n_threads or 1)
                m = flx.metric(name)
                return flatten((f(x, dm), f(y, x, sample_weight=w), m(x, dm)))

            return thunk

        out.append(Case(f"xgboost.objective[{name}]", f"xgboost:{name}", build,
                        threads_arg=True))
    return out


def _lgb_cases():
    if not _have("lightgbm"):
        return []
    out = []
    for name in ("logistic", "softmax", "huber", "focal"):

        def build(rng, big, dtype, name=name):
            import lightgbm as lgb

            import fastloss.lightgbm as fll

            x, y, n = _margins(rng, big, np.dtype(np.float64), name)
            y = np.round(y) if name in ("logistic", "focal") else y
            w = rng.uniform(0.5, 2.0, n)
            ds = lgb.Dataset(np.zeros((n, 1)), label=y, weight=w, free_raw_data=False)
            xf = np.asfortranarray(x)

            def thunk(n_threads=None):
                f = fll.objective(name, n_threads=n_threads or 1)
                m = fll.metric(name)
                return flatten((f(xf, ds), f(y, xf, w), m(xf, ds)))

            return thunk

        out.append(Case(f"lightgbm.objective[{name}]", f"lightgbm:{name}", build,
                        threads_arg=True))
    return out


def _cb_cases():
    if not _have("catboost"):
        return []
    out = []
    for name in ("logistic", "squared_error", "poisson"):

        def build(rng, big, dtype, name=name):
            import fastloss.catboost as flc

            x, y, n = _margins(rng, big, np.dtype(np.float64), name)
            w = rng.uniform(0.5, 2.0, n)

            def thunk(n_threads=None):
                f = flc.objective(name, n_threads=n_threads or 1)
                m = flc.metric(name)
                return flatten((f.calc_ders_range(x, y, None), f.calc_ders_range(x, y, w),
                                m.evaluate([x], y, w)))

            return thunk

        out.append(Case(f"catboost.objective[{name}]", f"catboost:{name}", build,
                        threads_arg=True))

    def build_softmax(rng, big, dtype):
        import fastloss.catboost as flc

        rows = 200 if big else 5
        x = rng.standard_normal((rows, 4))
        y = rng.integers(0, 4, rows).astype(np.float64)
        full = flc.objective("softmax")
        diag = flc.objective("softmax", hessian="diagonal", hess_scale=2.0)
        m = flc.metric("softmax")
        return lambda: flatten(
            [full.calc_ders_multi(x[i], y[i], 1.5) for i in range(rows)]
            + [diag.calc_ders_multi(x[i], y[i], None) for i in range(rows)]
            + [m.evaluate(list(x.T), y, None)]
        )

    out.append(Case("catboost.objective[softmax]", "catboost:softmax", build_softmax))
    return out


def _linear_ce_cases():
    if not hasattr(fl, "linear_cross_entropy"):
        return []

    def build(rng, big, dtype):
        n, v, d = (700, 300, 64) if big else (5, 7, 3)
        dt = np.dtype(dtype)
        h = rng.standard_normal((n, d)).astype(dt)
        w = (rng.standard_normal((v, d)) / 8).astype(dt)
        b = rng.standard_normal(v).astype(dt)
        t = rng.integers(0, v, n)
        t[::5] = -100
        return lambda: flatten(tuple(fl.linear_cross_entropy(h, w, t, linear_bias=b,
                                                             label_smoothing=0.1)))

    return [Case("linear_cross_entropy[bias,ls]", "linear_cross_entropy", build)]


# ----------------------------------------------------------------------- catalogue
def _build_cases() -> list[Case]:
    c = [
        _loss_case("cross_entropy", "plain", _ce_plain),
        _loss_case("cross_entropy", "weight,ignore,ls,z,mask", _ce_opts),
        _loss_case("cross_entropy", "softcap,none", _ce_softcap),
        _loss_case("cross_entropy", "prob,ls", _ce_prob),
        _loss_case("cross_entropy", "axis=1,sum", _ce_axis1),
        _in_place_case("cross_entropy", _ce_plain),
        _loss_case("nll_loss", "weight,ignore", _nll),
        _loss_case("softmax_focal_loss", "gamma,weight,ignore", _focal),
        _loss_case("kl_div_with_logits", "T=2", _two_logits),
        _loss_case("js_div_with_logits", "T=2", _two_logits),
        _loss_case("softmax_entropy", "none", _entropy),
        _loss_case("multi_margin_loss", "p=2,margin,weight", _multimargin),
        _loss_case("binary_cross_entropy", "weight", _prob),
        _loss_case("binary_cross_entropy_with_logits", "weight,pos_weight", _bcel_opts),
        _loss_case("binary_cross_entropy_with_logits", "none", _logits01, reduction="none"),
        _loss_case("sigmoid_focal_loss", "alpha,gamma", _logits01, alpha=0.4, gamma=1.5),
        _loss_case("soft_margin_loss", "sum", _pm1, reduction="sum"),
        _loss_case("mse_loss", "nan", _reg),
        _in_place_case("mse_loss", _reg),
        _loss_case("l1_loss", "none", _reg, reduction="none"),
        _loss_case("smooth_l1_loss", "beta", _reg, beta=0.5),
        _loss_case("huber_loss", "delta", _reg, delta=0.7),
        _loss_case("log_cosh_loss", "sum", _reg, reduction="sum"),
        _loss_case("hinge_loss", "margin", _pm1, margin=0.5),
        _loss_case("squared_hinge_loss", "margin", _pm1, margin=2.0),
        _loss_case("perceptron_loss", "plain", _pm1),
        _loss_case("exponential_loss", "none", _pm1, reduction="none"),
        _loss_case("zero_one_loss", "plain", _pm1),
        _loss_case("poisson_nll_loss", "rate,full", _counts),
        _loss_case("kl_div", "log_target,batchmean", _kl),
        _util_case("softmax", "axis=-1", _util_rows),
        _util_case("softmax", "axis=0", _util_rows_axis0, axis=0),
        _util_case("log_softmax", "axis=-1", _util_rows),
        _util_case("logsumexp", "axis=-1", _util_rows),
        _util_case("logsumexp", "axis=0", _util_rows_axis0, axis=0),
        _util_case("sigmoid", "elem", _util_elem),
        _util_case("log_sigmoid", "elem", _util_elem),
    ]
    for name in fl.OBJECTIVES:
        c.append(_gh_case(name))
        c.append(_objloss_case(name))
        c.append(_init_case(name))
    c.append(_gh_out_case("softmax"))
    c.append(_gh_out_case("logistic"))
    c += _xgb_cases() + _lgb_cases() + _cb_cases() + _linear_ce_cases()
    names = [k.name for k in c]
    assert len(set(names)) == len(names), "duplicate case names"
    return c


CASES: list[Case] = _build_cases()


def cases_for(func: str) -> list[Case]:
    return [c for c in CASES if c.func == func]


def covered_functions() -> set[str]:
    return {c.func.partition(":")[0] for c in CASES}


# ------------------------------------------------------------------- thread runner
def make_calls(seed: int = 0, dtypes=(np.float32, np.float64), sizes=(False, True)):
    """[(label, thunk)] for every case x dtype x size (inputs built once, shared)."""
    calls = []
    for k, case in enumerate(CASES):
        for dt in dtypes:
            for big in sizes:
                rng = np.random.default_rng([seed, k, int(big), np.dtype(dt).itemsize])
                calls.append((f"{case.name}/{np.dtype(dt).name}/{'big' if big else 'small'}",
                              case.build(rng, big, dt)))
    return calls


def run_threads(calls, n_threads: int = 8, rounds: int = 2, main_too: bool = True,
                timeout: float = 300.0):
    """Run every call serially, then from ``n_threads`` threads at once (each thread all
    calls, in its own shuffled order, ``rounds`` times; the main thread joins in when
    ``main_too``) after a barrier.  Returns ``(expected, mismatches, errors)``:
    ``expected`` label -> serial outputs; ``mismatches`` labels whose threaded bits
    differed; ``errors`` ``(label, repr(exception))`` raised in a thread."""
    import concurrent.futures as cf
    import random
    import threading

    expected = {label: thunk() for label, thunk in calls}
    barrier = threading.Barrier(n_threads + int(main_too))
    mismatches: set = set()
    errors: list = []
    lock = threading.Lock()

    def worker(k):
        order = list(range(len(calls)))
        random.Random(k).shuffle(order)
        barrier.wait(timeout=timeout)
        for _ in range(rounds):
            for i in order:
                label, thunk = calls[i]
                try:
                    got = thunk()
                except Exception as e:  # reported to the test
                    with lock:
                        errors.append((label, repr(e)))
                    continue
                if not same_bits(got, expected[label]):
                    with lock:
                        mismatches.add(label)

    with cf.ThreadPoolExecutor(max_workers=n_threads) as ex:
        futs = [ex.submit(worker, k) for k in range(n_threads)]
        if main_too:
            worker(n_threads)
        for f in cf.as_completed(futs, timeout=timeout):
            f.result()
    return expected, sorted(mismatches), errors


def _main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sizes", default="small,big")
    args = ap.parse_args(argv)
    sizes = tuple(s == "big" for s in args.sizes.split(","))
    calls = make_calls(sizes=sizes)
    # the layer is found out first (its probe is a parallel launch): the race of a
    # thread's first call with the main thread's parallel regions is a test of its own
    # (test_reliability.test_first_call_from_a_thread_while_the_main_thread_runs_parallel)
    fl.threading_layer()
    expected, mism, errs = run_threads(calls, args.threads, args.rounds)
    print(json.dumps({
        "layer": fl.threading_layer(),
        "env_layer": os.environ.get("NUMBA_THREADING_LAYER"),
        "digests": {k: digest(v) for k, v in expected.items()},
        "mismatches": mism,
        "errors": errs,
    }))
    sys.stdout.flush()
    return 0 if not (mism or errs) else 1


if __name__ == "__main__":
    sys.exit(_main())
