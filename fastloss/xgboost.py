"""XGBoost adapter: fastloss gradients and hessians as XGBoost custom objectives and metrics.

``objective(name, **options)`` returns one callable that works in both of XGBoost's APIs::

    import xgboost as xgb
    import fastloss.xgboost as flx

    f = flx.objective("logistic")
    booster = xgb.train({"tree_method": "hist", "base_score": 0.0}, dtrain, 30, obj=f)
    clf = xgb.XGBClassifier(objective=f, n_estimators=30).fit(X, y, sample_weight=w)

* native ``xgb.train(params, dtrain, R, obj=f)``: ``f(predt, dtrain)``; the labels come from
  ``dtrain.get_label()`` and the weights from ``dtrain.get_weight()`` (XGBoost never weights a
  custom gradient itself: the adapter multiplies by the weights, as the built-ins do);
* scikit-learn estimators ``XGBClassifier/XGBRegressor(objective=f)``: ``f(y_true, y_pred, *,
  sample_weight=None)``; the ``sample_weight`` keyword is in the signature, so XGBoost's wrapper
  passes the weights given to ``fit``.

The call is told apart by its second argument: a ``DMatrix`` means the native API.  The margins
XGBoost passes are float32, ``(n,)`` for one output and ``(n, K)`` for ``num_class=K`` or K
targets; they go to :func:`fastloss.grad_hess` as they are (no copy) and ``(grad, hess)`` come
back in the margins' shape and dtype, which is what XGBoost >= 2.1 wants (``(n_samples,
n_targets)`` for several outputs).  Labels of shape ``(n, 1)`` against ``(n,)`` margins (or the
reverse) are reshaped to the margins' layout.

Defaults reproduce XGBoost's built-in objectives (notes/boosting.md section 1.3)::

    fastloss name    XGBoost built-in          adapter defaults (user options override them)
    "logistic"       binary:logistic           min_hess=1e-16   (p(1-p) floored at 1e-16)
    "softmax"        multi:softprob            hess_scale=2.0, min_hess=1e-16  (2 p(1-p))
    "squared_error"  reg:squarederror          -
    "pseudo_huber"   reg:pseudohubererror      delta=1.0        (huber_slope)
    "poisson"        count:poisson             max_delta_step=0.7  (h = exp(r + 0.7))

The other fastloss objectives ("huber", "focal") have no XGBoost counterpart and keep
fastloss's own defaults.  What remains different from the built-ins:

* fastloss computes in its own float32 arithmetic, so trained margins agree with the built-in to
  float32 rounding (about 1e-6 in the tests), not bitwise;
* binary:logistic computes ``p * (1 - p)`` in float32, which cancels for large positive margins
  (relative error ~1e-2 for margins 8-12, ~0.3 for 12-16; above ~16.6 ``p`` rounds to 1 and the
  hessian falls to the 1e-16 floor); fastloss computes ``p q`` with ``q = sigmoid(-r)`` (relative
  error ~3e-7), so models whose margins grow that large drift further apart;
* multi:softprob floors ``2 p(1-p) w`` (after the weight) where fastloss floors ``2 p(1-p)`` and
  then multiplies by ``w``: different only for a hessian below 1e-16.

Recipes under which a custom objective reproduces the built-in (XGBoost never estimates the
intercept for a custom objective: it starts from ``base_score`` passed through the *configured*
objective's link, ``reg:squarederror`` (identity) unless you set one):

* binary: built-in ``{"objective": "binary:logistic", "base_score": 0.5}`` = custom
  ``{"base_score": 0.0}``; ``XGBClassifier(base_score=0.5)`` = ``XGBClassifier(objective=f)``;
* multiclass: built-in ``{"objective": "multi:softprob", "num_class": K, "base_score": 0.5}`` =
  custom ``{"num_class": K, "base_score": 0.5}``;
* count:poisson: the learner also clips the *tree* leaves at ``max_delta_step=0.7``; pass
  ``"max_delta_step": 0.7`` in the custom params too, and ``base_score`` is the margin (log) there;
* or start the custom objective where the built-in's intercept estimation starts: with
  :func:`base_margin` below, or with ``params["base_score"] = fastloss.init_score(name, y, w)``
  (a float; ``.tolist()`` of the ``(K,)`` array for "softmax"), which XGBoost stores in the model
  because a custom objective's ``base_score`` is the margin itself (identity link).  The estimators
  configure a built-in objective for a callable one: ``XGBClassifier`` (binary) sets
  binary:logistic, whose ``base_score`` is a probability (the weighted mean label).

``metric(name, **options)`` is a ``custom_metric`` for ``xgb.train`` (``f(predt, dtrain) ->
(name, value)``) and an ``eval_metric`` callable for the estimators (``f(y_true, y_pred, *,
sample_weight=None) -> value``, named by ``__name__`` = ``"fastloss-<name>"``): the weighted mean of
:func:`fastloss.objective_loss` on **raw margins**.  XGBoost passes margins to a custom metric only
when the objective is a custom one too; with a built-in objective it passes transformed predictions
(probabilities), which this metric does not expect.

``base_margin(name, labels, sample_weight=None, **options)`` is the optimal constant margin of
:func:`fastloss.init_score`, repeated per row, to pass as ``DMatrix(base_margin=...)`` (or
``fit(base_margin=...)`` and ``predict(base_margin=...)``): with it a custom objective starts
where the built-in's intercept estimation (``boost_from_average``) starts for binary:logistic
(log-odds of the weighted mean), multi:softprob (centred log-priors), count:poisson (log of the
weighted mean) and reg:squarederror (weighted mean).  For reg:pseudohubererror XGBoost takes one
Newton step from 0 instead of minimising the loss, so its intercept differs from this one.

XGBoost is imported lazily; ``import fastloss`` never imports it.  Install it with
``pip install 'fastloss[xgboost]'``.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

import fastloss as fl
from fastloss.boost import check_n_threads, validate_options

__all__ = ["base_margin", "metric", "objective"]

#: Option defaults that make each fastloss objective reproduce XGBoost's built-in.
XGBOOST_DEFAULTS = MappingProxyType(
    {
        "logistic": MappingProxyType({"min_hess": 1e-16}),
        "softmax": MappingProxyType({"hess_scale": 2.0, "min_hess": 1e-16}),
        "poisson": MappingProxyType({"max_delta_step": 0.7}),
        "pseudo_huber": MappingProxyType({"delta": 1.0}),
        "squared_error": MappingProxyType({}),
    }
)

#: The XGBoost built-in each fastloss objective reproduces with the defaults above.
XGBOOST_BUILTINS = MappingProxyType(
    {
        "logistic": "binary:logistic",
        "softmax": "multi:softprob",
        "poisson": "count:poisson",
        "pseudo_huber": "reg:pseudohubererror",
        "squared_error": "reg:squarederror",
    }
)

_INSTALL_HINT = "fastloss.xgboost needs XGBoost: pip install 'fastloss[xgboost]'"


def _dmatrix_type():
    """XGBoost's ``DMatrix`` class, imported on first use, with an install hint if missing."""
    try:
        from xgboost import DMatrix
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return DMatrix


def _unpack(dmatrix_type, a, b, sample_weight):
    """(preds, labels, weights or None) from a native ``(predt, dtrain)`` or an sklearn
    ``(y_true, y_pred, sample_weight=)`` call."""
    if isinstance(b, dmatrix_type):
        if sample_weight is not None:
            raise TypeError("sample_weight= is not accepted with a DMatrix; set its weight")
        preds, labels, weight = a, b.get_label(), b.get_weight()
    else:
        preds, labels, weight = b, a, sample_weight
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    if weight is not None:
        weight = np.asarray(weight)
        if weight.size == 0:  # DMatrix.get_weight() when no weights were set
            weight = None
    return preds, labels, weight


def _match_labels(name, preds, labels):
    """Labels reshaped to the margins' layout: ``(n, 1)`` <-> ``(n,)``."""
    if name == "softmax":
        if preds.ndim != 2:
            raise ValueError(
                f"softmax needs (n, K) margins, got shape {preds.shape}: set num_class=K in the "
                "params (XGBClassifier sets it from the labels)"
            )
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.reshape(-1)
    elif preds.ndim == 1 and labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    elif preds.ndim == 2 and preds.shape[1] == 1 and labels.ndim == 1:
        labels = labels.reshape(-1, 1)
    return labels


class _Callback:
    """What an objective and a metric share: the objective's name, its options and the
    translation of both call forms into ``(preds, labels, weights)``."""

    def __init__(self, name, options):
        self._dmatrix = _dmatrix_type()
        self.name = name
        self._options = dict(options)

    @property
    def options(self):
        """The options passed to fastloss (XGBoost's defaults merged with yours)."""
        return MappingProxyType(self._options)

    def _inputs(self, a, b, sample_weight):
        preds, labels, weight = _unpack(self._dmatrix, a, b, sample_weight)
        return preds, _match_labels(self.name, preds, labels), weight


class Objective(_Callback):
    """A fastloss objective as an XGBoost custom objective; made by :func:`objective`.

    ``f(predt, dtrain)`` (``xgb.train(obj=f)``) or ``f(y_true, y_pred, *, sample_weight=None)``
    (``XGBModel(objective=f)``) -> ``(grad, hess)`` in the margins' shape and dtype.
    """

    def __init__(self, name, n_threads, options):
        super().__init__(name, options)
        self.n_threads = n_threads

    def __call__(self, a, b, /, *, sample_weight=None):
        preds, labels, weight = self._inputs(a, b, sample_weight)
        return tuple(
            fl.grad_hess(
                self.name,
                preds,
                labels,
                sample_weight=weight,
                n_threads=self.n_threads,
                **self._options,
            )
        )

    def __repr__(self):
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"fastloss.xgboost.objective({self.name!r}, n_threads={self.n_threads!r}{opts})"


class Metric(_Callback):
    """The weighted mean fastloss loss on raw margins as an XGBoost metric; made by
    :func:`metric`.

    ``f(predt, dtrain) -> (name, value)`` (``xgb.train(custom_metric=f)``) or
    ``f(y_true, y_pred, *, sample_weight=None) -> value`` (``XGBModel(eval_metric=f)``).
    """

    def __init__(self, name, options):
        super().__init__(name, options)
        self.__name__ = f"fastloss-{name}"  # XGBoost's sklearn wrapper names the metric by it

    def __call__(self, a, b, /, *, sample_weight=None):
        preds, labels, weight = self._inputs(a, b, sample_weight)
        value = float(
            fl.objective_loss(
                self.name, preds, labels, sample_weight=weight, reduction="mean", **self._options
            )
        )
        if isinstance(b, self._dmatrix):
            return self.__name__, value
        return value

    def __repr__(self):
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"fastloss.xgboost.metric({self.name!r}{opts})"


def objective(name, *, n_threads=1, **options):
    """A fastloss objective as an XGBoost custom objective, for both APIs.

    ``grad = w * d loss / d margin`` and ``hess = w * d^2 loss / d margin^2`` (the diagonal for
    "softmax") from :func:`fastloss.grad_hess`, with the options that reproduce XGBoost's
    built-in objective unless you override them.

    Args:
        name: a fastloss objective (``fastloss.OBJECTIVES``): "logistic", "softmax",
            "squared_error", "pseudo_huber", "poisson", "huber", "focal".
        n_threads: threads of the fastloss kernel (``fastloss.grad_hess``'s ``n_threads``),
            default 1 because the booster runs its own OpenMP threads.
        **options: the objective's options; they override ``XGBOOST_DEFAULTS`` (logistic
            ``min_hess=1e-16``; softmax ``hess_scale=2.0, min_hess=1e-16``; poisson
            ``max_delta_step=0.7``; pseudo_huber ``delta=1.0``).

    Returns:
        An :class:`Objective`: ``f(predt, dtrain)`` for ``xgb.train(obj=f)`` and ``f(y_true,
        y_pred, *, sample_weight=None)`` for ``XGBClassifier/XGBRegressor(objective=f)``, each
        returning ``(grad, hess)`` in the margins' shape (``(n,)`` or ``(n, K)``) and dtype.

    Raises:
        ValueError: an unknown objective name.  TypeError: an unknown option.
        ImportError: XGBoost is not installed.  At training time, fastloss's errors for bad
        labels (ValueError; IndexError for a softmax class outside ``[0, K)``).

    Example:
        >>> import numpy as np, pytest
        >>> xgb = pytest.importorskip("xgboost")
        >>> import fastloss.xgboost as flx
        >>> f = flx.objective("softmax")
        >>> f
        fastloss.xgboost.objective('softmax', n_threads=1, hess_scale=2.0, min_hess=1e-16)
        >>> g, h = f(np.array([2]), np.zeros((1, 4), np.float32))   # y_true, y_pred
        >>> g
        array([[ 0.25,  0.25, -0.75,  0.25]], dtype=float32)
        >>> h
        array([[0.375, 0.375, 0.375, 0.375]], dtype=float32)
    """
    merged = {**XGBOOST_DEFAULTS.get(name, {}), **options}
    validate_options(name, **merged)
    check_n_threads(n_threads)
    return Objective(name, n_threads, merged)


def metric(name, **options):
    """The weighted mean of :func:`fastloss.objective_loss` on raw margins, as an XGBoost metric.

    ``sum(w * loss(margin, y)) / sum(w)`` (the plain mean without weights).  XGBoost passes raw
    margins to a custom metric only when the objective is a custom one too, so use it with
    :func:`objective` (with a built-in objective it would get transformed predictions).

    Args:
        name: a fastloss objective (``fastloss.OBJECTIVES``).
        **options: the objective's options that change the loss (``delta``,
            ``label_smoothing``, ``class_weight``, ``gamma``, ``alpha``); the others are
            accepted and do not change it.

    Returns:
        A :class:`Metric` named ``"fastloss-<name>"`` (its ``__name__``, which XGBoost's
        scikit-learn wrapper uses): ``m(predt, dtrain) -> (name, value)`` for
        ``xgb.train(custom_metric=m)`` and ``m(y_true, y_pred, *, sample_weight=None) -> value``
        for ``XGBModel(eval_metric=m)``.

    Example:
        >>> import numpy as np, pytest
        >>> xgb = pytest.importorskip("xgboost")
        >>> import fastloss.xgboost as flx
        >>> m = flx.metric("logistic")
        >>> m.__name__, round(m(np.array([1.0, 0.0]), np.zeros(2, np.float32)), 6)
        ('fastloss-logistic', 0.693147)
    """
    validate_options(name, **options)
    return Metric(name, options)


def base_margin(name, labels, sample_weight=None, **options):
    """The optimal constant margin of :func:`fastloss.init_score`, repeated per row.

    Pass it as ``DMatrix(base_margin=...)`` (or ``fit(base_margin=...)`` and
    ``predict(base_margin=...)`` in the estimators): a custom objective then starts where
    XGBoost's intercept estimation starts for binary:logistic (log-odds of the weighted mean),
    multi:softprob (centred log-priors), count:poisson (log of the weighted mean) and
    reg:squarederror (the weighted mean).  XGBoost never estimates it for a custom objective.

    Args:
        name: a fastloss objective (``fastloss.OBJECTIVES``).
        labels: ``(n,)`` labels, or ``(n, T)`` for T targets of an elementwise objective.
        sample_weight: ``(n,)`` weights, or None (an empty array counts as None, as
            ``DMatrix.get_weight()`` returns one).
        **options: options of :func:`fastloss.init_score` (``num_class=K`` for "softmax",
            default ``max(label) + 1``).

    Returns:
        float32, shape ``(n,)``; ``(n, K)`` for "softmax"; ``(n, T)`` for ``(n, T)`` labels
        (one intercept per target, as XGBoost's multi-target intercept).

    Example:
        >>> import numpy as np, fastloss.xgboost as flx
        >>> flx.base_margin("logistic", np.array([1.0, 0.0, 0.0, 0.0]))
        array([-1.0986123, -1.0986123, -1.0986123, -1.0986123], dtype=float32)
    """
    validate_options(name)
    labels = np.asarray(labels)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight)
        if sample_weight.size == 0:
            sample_weight = None
    n = labels.shape[0]
    if name == "softmax":
        labels = labels.reshape(n) if labels.ndim == 2 and labels.shape[1] == 1 else labels
        score = np.asarray(fl.init_score(name, labels, sample_weight, **options))
        return np.broadcast_to(score.astype(np.float32), (n, score.shape[0])).copy()
    if labels.ndim == 2:
        score = np.array(
            [
                fl.init_score(name, labels[:, t], sample_weight, **options)
                for t in range(labels.shape[1])
            ],
            dtype=np.float32,
        )
        return np.broadcast_to(score, labels.shape).copy()
    return np.full(n, fl.init_score(name, labels, sample_weight, **options), dtype=np.float32)
