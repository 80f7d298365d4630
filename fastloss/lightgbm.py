"""LightGBM adapter: fastloss objectives and metrics as LightGBM custom callables.

``objective(name, **options)`` returns one callable that works in both LightGBM APIs,
with sample weights honoured in both::

    import lightgbm as lgb
    import fastloss.lightgbm as fll

    params = {"objective": fll.objective("logistic"), "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(X, y, weight=w), num_boost_round=30)
    margins = booster.predict(X_test, raw_score=True)

    clf = lgb.LGBMClassifier(objective=fll.objective("softmax"), n_estimators=30)
    clf.fit(X, y, sample_weight=w)
    margins = clf.predict(X_test, raw_score=True)          # (n, K)

How one callable serves both APIs: ``lgb.train`` calls ``f(preds, train_data)``; the
scikit-learn wrapper counts the parameters of ``f`` (``len(inspect.signature(f).parameters)``)
and calls ``f(y_true, y_pred)`` when it finds 2 -- silently dropping the sample weights --
or ``f(y_true, y_pred, weight)`` when it finds 3.  The callables here have the signature
``(arg0, arg1, weight=<native>)``: 3 parameters, so the wrapper always passes the weights,
and when the third argument is absent the call is the native ``(preds, train_data)`` one,
whose weights are ``train_data.get_weight()``.

Defaults reproduce LightGBM's built-in objectives (same hessian convention), so that a
model trained with ``objective(name)`` equals the built-in one (see below for the start
score).  User options override them:

=================  ====================  ==================================================
fastloss name      LightGBM built-in     adapter defaults (and why)
=================  ====================  ==================================================
``logistic``       ``binary``            none: g = p - y, h = p(1 - p), no hessian floor
``softmax``        ``multiclass``        ``hess_scale=K/(K-1)`` (LightGBM's ``factor_``, the
                                         Friedman rescaling of the redundant K-class form)
``squared_error``  ``regression``        none: g = r - y, h = 1
``huber``          ``huber``             ``delta=0.9`` (LightGBM's ``alpha``), ``min_hess=1.0``
                                         (LightGBM's hessian is 1 everywhere, not 0 outside)
``poisson``        ``poisson``           ``max_delta_step=0.7`` (``poisson_max_delta_step``):
                                         h = exp(r + 0.7)
``pseudo_huber``,  (none)                fastloss's defaults.  LightGBM does not clip
``focal``                                negative hessians; ``focal`` may need ``min_hess``
=================  ====================  ==================================================

Layouts and copies: LightGBM hands over float64 margins, ``(n,)`` or, for multiclass, an
``(n, K)`` F-ordered view of its class-major buffer, and it converts what it gets back with
``grad.ravel(order="F")`` and a float32 cast.  The objective writes into float32 buffers
of that exact layout (1-D, or F-ordered ``(n, K)``) that it allocates once and reuses
every iteration, so LightGBM copies nothing.  Consequence: the arrays an objective returns
are overwritten by its next call (copy them if you keep them).  Buffers are per thread, and
are dropped when the callable is pickled or copied.  ``n_threads`` (default 1) is passed to
``fl.grad_hess``: LightGBM runs its own OpenMP threads around the call.

Start score: LightGBM's ``boost_from_average`` (on by default) only runs for a built-in
objective; a custom objective starts every row at 0 and ignores the parameter.  So a
custom model equals the built-in with ``boost_from_average=False``.  To start from the
optimal constant instead, pass ``init_score(name, y, w)`` as ``Dataset(init_score=...)``
(or ``fit(..., init_score=...)``).  LightGBM does **not** store an init_score in the model:
add the same constant back to ``predict(X, raw_score=True)``.

``metric(name, **options)`` is an ``feval`` for ``lgb.train`` (and an ``eval_metric`` for
the scikit-learn estimators, weights honoured the same way): the weighted mean of
``fl.objective_loss`` on the margins LightGBM passes.  Those are raw margins only when the
objective is custom; with a built-in objective LightGBM passes transformed predictions
(probabilities, ``exp(r)``), for which this metric is wrong.

This module imports LightGBM only when an objective, metric or init score is made
(``pip install 'fastloss[lightgbm]'``); ``import fastloss`` never imports it.
"""

from __future__ import annotations

import threading

import numpy as np

import fastloss as fl
from fastloss.boost import check_n_threads, validate_options

__all__ = ["Metric", "Objective", "init_score", "metric", "objective"]

_EXTRA = "fastloss[lightgbm]"


class _Native:
    """Default of the third parameter: marks the native ``(preds, train_data)`` call."""

    def __repr__(self):
        return "<native>"


_NATIVE = _Native()


def _require_lightgbm():
    try:
        import lightgbm
    except ImportError as exc:
        raise ImportError(
            f"fastloss.lightgbm needs LightGBM, which is not installed: pip install '{_EXTRA}'"
        ) from exc
    return lightgbm


# LightGBM's built-in conventions (see the module docstring).  "softmax" gets
# hess_scale=K/(K-1) at call time, once K is known from the margins' shape.
_OBJECTIVE_DEFAULTS = {
    "huber": {"delta": 0.9, "min_hess": 1.0},
    "poisson": {"max_delta_step": 0.7},
}
# The options that change the loss value itself (metric and init score): huber's delta.
_LOSS_DEFAULTS = {"huber": {"delta": 0.9}}


def _split_call(arg0, arg1, weight, what):
    """(labels, margins, weight) from either call form of a LightGBM custom callable."""
    if weight is _NATIVE:  # lgb.train: f(preds, train_data)
        if not hasattr(arg1, "get_label"):
            raise TypeError(
                f"a fastloss {what} called with two arguments is the lgb.train form "
                f"f(preds, train_data: lightgbm.Dataset), got {type(arg1).__name__} as the "
                f"second; the scikit-learn form is f(y_true, y_pred, weight)"
            )
        return arg1.get_label(), arg0, arg1.get_weight()
    return arg0, arg1, weight  # scikit-learn wrapper: f(y_true, y_pred, weight)


class Objective:
    """A fastloss objective as a LightGBM custom objective; made by :func:`objective`.

    Call forms: ``f(preds, train_data)`` (``lgb.train``) and ``f(y_true, y_pred, weight)``
    (the scikit-learn estimators, which count 3 parameters).  Returns ``(grad, hess)``,
    float32, in preds' shape (F-ordered for ``(n, K)``), in buffers reused call to call.
    """

    def __init__(self, name, n_threads=1, **options):
        validate_options(name, **options)
        self.name = name
        self.n_threads = n_threads
        self.options = {**_OBJECTIVE_DEFAULTS.get(name, {}), **options}
        self._local = threading.local()

    def __repr__(self):
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"fastloss.lightgbm.objective({self.name!r}{opts}, n_threads={self.n_threads!r})"

    # buffers are per thread and not part of the state (pickle, copy, sklearn.clone)
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def _buffers(self, shape):
        bufs = getattr(self._local, "bufs", None)
        if bufs is None or bufs[0].shape != shape:
            bufs = tuple(np.empty(shape, dtype=np.float32, order="F") for _ in range(2))
            self._local.bufs = bufs
        return bufs

    def __call__(self, arg0, arg1, weight=_NATIVE):
        labels, preds, weight = _split_call(arg0, arg1, weight, "objective")
        preds = np.asarray(preds)
        options = self.options
        if self.name == "softmax" and "hess_scale" not in options:
            if preds.ndim != 2 or preds.shape[1] < 2:
                raise ValueError(
                    f"objective 'softmax' needs (n, K) margins with K >= 2 (LightGBM's "
                    f"multiclass, num_class=K), got shape {preds.shape}"
                )
            k = preds.shape[1]
            options = {**options, "hess_scale": k / (k - 1.0)}
        grad, hess = self._buffers(preds.shape)
        return fl.grad_hess(
            self.name,
            preds,
            labels,
            sample_weight=weight,
            grad_out=grad,
            hess_out=hess,
            n_threads=self.n_threads,
            **options,
        )


class Metric:
    """A fastloss loss as a LightGBM ``feval`` / ``eval_metric``; made by :func:`metric`.

    Call forms: ``f(preds, eval_data)`` and ``f(y_true, y_pred, weight)``; returns
    ``(f"fastloss_{name}", weighted mean loss, False)``.
    """

    def __init__(self, name, **options):
        validate_options(name, **options)
        self.name = name
        self.options = {**_LOSS_DEFAULTS.get(name, {}), **options}
        self.metric_name = f"fastloss_{name}"

    def __repr__(self):
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"fastloss.lightgbm.metric({self.name!r}{opts})"

    def __call__(self, arg0, arg1, weight=_NATIVE):
        labels, preds, weight = _split_call(arg0, arg1, weight, "metric")
        value = fl.objective_loss(
            self.name, np.asarray(preds), labels, sample_weight=weight, **self.options
        )
        return self.metric_name, float(value), False


def objective(name, *, n_threads=1, **options):
    """A LightGBM custom objective computing fastloss's ``name`` gradient and hessian.

    Use it as ``lgb.train({"objective": f, ...}, ds)`` or ``LGBMClassifier(objective=f)`` /
    ``LGBMRegressor(objective=f)``.  ``options`` go to ``fl.grad_hess`` over the defaults
    that reproduce LightGBM's built-in (module docstring); ``n_threads`` is the kernel's
    thread count (LightGBM's own threads run around it).
    """
    _require_lightgbm()
    check_n_threads(n_threads)
    return Objective(name, n_threads=n_threads, **options)


def metric(name, **options):
    """A LightGBM ``feval`` (or scikit-learn ``eval_metric``): fastloss's ``name`` loss.

    Returns ``(f"fastloss_{name}", value, False)`` with value the weighted mean of
    ``fl.objective_loss`` on the raw margins (use it with a custom objective, whose
    predictions LightGBM does not transform).  ``huber`` defaults to ``delta=0.9``, the
    value of LightGBM's own ``huber`` metric.
    """
    _require_lightgbm()
    return Metric(name, **options)


def init_score(name, labels, sample_weight=None, num_class=None, **options):
    """The optimal constant start margin, shaped for ``lightgbm.Dataset(init_score=...)``.

    ``fl.init_score`` of the labels and weights as LightGBM stores them (float32),
    repeated for every row: shape ``(n,)``, or ``(n, K)`` for ``"softmax"`` (K from
    ``num_class``, default ``max(label) + 1``; centred log-priors, which differ from
    LightGBM's own ``log(prior)`` start by one constant per row that the softmax ignores).

    LightGBM does not store an init_score in the model: add it back at predict time,
    e.g. ``booster.predict(X, raw_score=True) + init_score(name, y, w)[0]``.
    """
    _require_lightgbm()
    validate_options(name, **options)
    options = {**_LOSS_DEFAULTS.get(name, {}), **options}
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (n,), got shape {labels.shape}")
    if labels.dtype.kind == "f":
        labels = labels.astype(np.float32, copy=False)  # LightGBM's label_t
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float32)
    if num_class is not None:
        if name != "softmax":
            raise TypeError(f"num_class applies to 'softmax' only, not {name!r}")
        options["num_class"] = num_class
    base = fl.init_score(name, labels, sample_weight, **options)
    n = labels.shape[0]
    if name == "softmax":
        base = np.asarray(base, dtype=np.float64)
        return np.tile(base, (n, 1))
    return np.full(n, float(base))
