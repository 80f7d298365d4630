"""CatBoost adapter: fastloss objectives as CatBoost user-defined losses and metrics.

``objective(name, **options)`` returns an object for CatBoost's ``loss_function=`` and
``metric(name, **options)`` one for ``eval_metric=`` (CatBoost takes a user metric object
there only; ``custom_metric`` accepts strings); both work in the
native API (``catboost.CatBoost(params).fit(Pool)``) and in the scikit-learn-style
estimators (``CatBoostClassifier`` / ``CatBoostRegressor``, ``fit(X, y, sample_weight=w)``)::

    import catboost as cb
    import fastloss.catboost as flcb

    model = cb.CatBoostClassifier(
        loss_function=flcb.objective("logistic"),
        eval_metric=flcb.metric("logistic"),   # CatBoost requires an eval_metric here
        class_names=[0, 1],   # else classes_ stays empty with a user objective: predict fails
        iterations=100, learning_rate=0.1, leaf_estimation_iterations=10,
    )

CatBoost's contract (1.2.10, ``_catboost.pyx``):

* ``calc_ders_range(approxes, targets, weights)`` is called on blocks of a few hundred
  objects with zero-copy views: ``approxes`` float64, ``targets`` float32, ``weights``
  float32 or ``None``.  It must return the **negated** derivatives ``(-grad, -hess)``, times
  the weight.  An ``(n, 2)`` float64 ndarray is CatBoost's fast path (read through a typed
  memoryview).  The call itself is the cost (CatBoost's threads take turns on the GIL,
  ~700 calls per iteration at 200k objects), so this adapter hands what CatBoost passes
  to one serial kernel (``ders`` in ``fastloss/_kernels/boost.py``) that writes the
  weighted, negated pair into a ``(2, n)`` array, and returns its transpose; other inputs
  (a direct call with other dtypes) go through ``fl.grad_hess``, with identical values.
* ``calc_ders_multi(approx, target, weight)`` (multi-class) is called **once per object**:
  ``approx`` a float64 view of the K margins, ``target`` the class index as a Python float,
  ``weight`` a Python float (1.0 without weights).  It returns ``(-grad[K], -Hessian[K, K])``;
  CatBoost reads only the upper triangle.  CatBoost 1.2.10 has no batched multi-class
  call on the CPU.
* CatBoost tries to ``numba.njit`` these methods unless the object has a ``no_jit``
  attribute; every object here sets ``no_jit = True``.

Defaults reproduce CatBoost's built-in objectives:

* ``"logistic"`` = ``Logloss`` (der1 = y - p, der2 = -p(1-p)); ``"squared_error"`` = ``RMSE``
  (der1 = y - r, der2 = -1: CatBoost's RMSE derivatives are those of half the squared error).
* ``"softmax"`` = ``MultiClass`` with the **full** softmax Hessian ``diag(p) - p p^T``
  (negated), as CatBoost's built-in uses (``hessian="full"``, the default).  A diagonal
  Hessian does not reproduce the built-in (``hessian="diagonal"`` gives fastloss's
  ``max(hess_scale * p(1-p), min_hess)``, for comparison with the other boosters).
  ``label_smoothing`` and ``class_weight`` mean what they mean in ``fl.grad_hess`` (the
  Hessian of the cross-entropy does not depend on the target; ``class_weight[y]`` multiplies
  both).  ``hess_scale`` / ``min_hess`` are options of the diagonal Hessian only.
  Because CatBoost calls it once per object, the softmax path is one call of a small
  kernel (``softmax_row_ders``: gradient and Hessian rows in one ``(K + 1, K)`` array,
  returned as lists, which CatBoost iterates fastest): about 1.3 µs per object at K = 5,
  against 3.8 µs for the same formulas in plain Python and 4-6 µs for a ``fl.grad_hess``
  call on one row.  Its formulas are those of ``fl.grad_hess("softmax")``; a bad label (or
  an option the core rejects) is passed to ``fl.grad_hess`` so that the error is the
  core's own.
* Every other objective of ``fl.OBJECTIVES`` goes through the ``calc_ders_range`` kernel
  (or ``fl.grad_hess``), with its options.

What CatBoost does differently with a user objective (so that a custom objective matches
the built-in only under explicit settings): Logloss defaults to 10 Newton steps with
``leaf_estimation_backtracking="AnyImprovement"`` (a user objective gets 1 step and no
backtracking: set ``leaf_estimation_iterations`` on both and
``leaf_estimation_backtracking="No"`` on the built-in); the learning rate is auto-tuned only
for built-ins (set it explicitly); MultiClass defaults to ``bootstrap_type="Bayesian"``
where a user objective gets MVS (set it); ``boost_from_average`` is unavailable to a user
objective: pass ``fl.init_score(name, y, w)`` as the ``Pool``'s ``baseline`` and, after
fitting, ``model.set_scale_and_bias(1.0, init)`` so that predictions include it.

Errors raised inside a callback reach the caller of ``fit`` as ``catboost.CatBoostError``
carrying the original traceback text (CatBoost re-raises them); called directly the
objects raise fastloss's ``ValueError`` / ``IndexError``.
"""

from __future__ import annotations

import math

import numpy as np

import fastloss as fl
from fastloss._kernels.boost import ELEMENTWISE as _ELEMENTWISE
from fastloss._kernels.boost import softmax_row_ders as _softmax_row_ders
from fastloss.boost import (
    _options,
    _params,
    check_n_threads,
    objective_sum_and_weight,
    validate_options,
)

__all__ = ["metric", "objective"]

_F64 = np.dtype(np.float64)
_F32 = np.dtype(np.float32)
_NO_WEIGHTS = np.empty(0, np.float32)  # writeable, as CatBoost's weights: one kernel type

_EXTRA_HINT = "fastloss.catboost needs CatBoost: pip install 'fastloss[catboost]'"

_ONE_MARGIN = (
    "fastloss.catboost.{what}('softmax') got a one-dimensional approx: CatBoost is training "
    "a single margin. With a user objective CatBoost takes the number of margins from "
    "eval_metric='MultiClass' or from classes_count / class_names: pass classes_count=K "
    "(needed with eval_metric=metric('softmax')), or use 'logistic' for two classes."
)


def _require_catboost():
    """Import CatBoost (lazily, so that ``import fastloss`` never does) or explain how."""
    try:
        import catboost
    except ImportError as err:
        raise ImportError(_EXTRA_HINT) from err
    return catboost


# ------------------------------------------------------------------------- objectives
class ElementwiseObjective:
    """CatBoost user loss for a one-margin objective; made by :func:`objective`."""

    no_jit = True  # CatBoost must not try to numba-compile these methods

    def __init__(self, name, n_threads, options):
        self.name = name
        self.n_threads = n_threads
        self.options = options
        o = _options(name, options)
        # the kernel's option vector, writeable: CatBoost deep-copies the objective (and a
        # copy of a read-only array is writeable), so one kernel signature serves both
        self._p = np.array(_params(name, o, _F64))

    def __repr__(self):
        return f"fastloss.catboost.objective({self.name!r}, n_threads={self.n_threads})"

    def calc_ders_range(self, approxes, targets, weights):
        # CatBoost calls this ~700 times per iteration on blocks of 60-1000 objects,
        # from each of its threads in turn (the GIL serialises them), so the call itself
        # is the cost: what CatBoost hands over (float64 margins, float32 labels and
        # weights, 1-D contiguous) goes to one serial kernel that writes (-grad, -hess)
        # * w into the two rows of a (2, n) array; its transpose is the (n, 2) array
        # CatBoost reads.  Anything else takes fl.grad_hess's general path.
        if (
            type(approxes) is np.ndarray
            and approxes.ndim == 1
            and approxes.dtype is _F64
            and approxes.flags.c_contiguous
            and type(targets) is np.ndarray
            and targets.dtype is _F32
            and targets.shape == approxes.shape
            and targets.flags.c_contiguous
            and (
                weights is None
                or (
                    type(weights) is np.ndarray
                    and weights.dtype is _F32
                    and weights.shape == approxes.shape
                    and weights.flags.c_contiguous
                )
            )
        ):
            d = np.empty((2, approxes.shape[0]))
            w = _NO_WEIGHTS if weights is None else weights
            if _ELEMENTWISE[self.name].ders(approxes, targets, w, self._p, d) == 0:
                return d.T
            # a label outside the domain: the general path raises the core's error
        return self._general(approxes, targets, weights)

    def _general(self, approxes, targets, weights):
        # The kernel multiplies by the weight, so it gets -w (or -1): that negates
        # exactly (x * -1 == -x in IEEE arithmetic), with no second pass.
        n = len(approxes)
        ders = np.empty((n, 2), dtype=np.float64, order="F")  # contiguous columns
        negw = np.full(n, -1.0) if weights is None else np.negative(weights, dtype=np.float64)
        try:
            fl.grad_hess(
                self.name,
                approxes,
                targets,
                sample_weight=negw,
                grad_out=ders[:, 0],
                hess_out=ders[:, 1],
                n_threads=self.n_threads,
                **self.options,
            )
        except ValueError as e:
            if "at index" not in str(e):
                raise
            raise ValueError(
                f"{e} (an index within the block of {n} objects CatBoost passed to "
                "calc_ders_range, which does not say where the block starts)"
            ) from None
        return ders


class SoftmaxObjective:
    """CatBoost multi-class user loss (softmax cross-entropy); made by :func:`objective`."""

    no_jit = True

    def __init__(self, options, hessian):
        self.name = "softmax"
        self.options = options
        self.hessian = hessian
        o = _options("softmax", options)
        cw = o["class_weight"]
        self._class_weight = None if cw is None else np.asarray(cw, dtype=np.float64).tolist()
        self._p = np.array(_params("softmax", o, _F64))  # [hess_scale, eps, min_hess]
        self._full = hessian == "full"
        self._checked_k = None  # number of classes the options were validated for

    def __repr__(self):
        return f"fastloss.catboost.objective('softmax', hessian={self.hessian!r})"

    def _core_check(self, approx, target):
        """Let the core validate this row (bad label, class_weight length): its errors."""
        fl.grad_hess(
            "softmax",
            np.asarray(approx, dtype=np.float64).reshape(1, -1),
            np.array([target]),
            n_threads=1,
            **self.options,
        )

    def calc_ders_multi(self, approx, target, weight):
        if weight is None:
            weight = 1.0
        K = len(approx)
        try:
            k = int(target)
            good = k == target and 0 <= k < K
        except (ValueError, OverflowError):  # NaN, inf
            good = False
        if not good or K != self._checked_k:
            self._core_check(approx, target)  # raises the core's error for a bad row
            if not good:  # pragma: no cover - the core accepted what we reject
                raise ValueError(f"softmax: class index {target!r} is not in [0, {K})")
            self._checked_k = K
        c = weight if self._class_weight is None else weight * self._class_weight[k]
        if not (type(approx) is np.ndarray and approx.dtype is _F64):
            approx = np.asarray(approx, dtype=np.float64)
        # one small kernel call (fastloss/_kernels/boost.py): row 0 -grad, rows 1.. -Hessian;
        # lists are what CatBoost iterates fastest
        m = _softmax_row_ders(approx, k, c, self._p, self._full).tolist()
        return m[0], m[1:]

    def calc_ders_range(self, approxes, targets, weights):
        raise ValueError(_ONE_MARGIN.format(what="objective"))


def objective(name, *, n_threads=1, hessian="full", **options):
    """A CatBoost ``loss_function`` object computing fastloss objective ``name``.

    ``options`` go to ``fl.grad_hess`` (checked now, by ``validate_options``).
    ``n_threads`` is the kernel's thread count inside ``calc_ders_range`` (CatBoost runs
    its own threads around it).
    ``hessian`` applies to ``"softmax"`` only: ``"full"`` (CatBoost's built-in MultiClass) or
    ``"diagonal"`` (fastloss's diagonal, with ``hess_scale`` / ``min_hess``).
    """
    _require_catboost()
    check_n_threads(n_threads)
    if name == "softmax":
        if hessian not in ("full", "diagonal"):
            raise ValueError(f"hessian must be 'full' or 'diagonal', got {hessian!r}")
        if hessian == "full":
            bad = sorted(k for k in ("hess_scale", "min_hess") if k in options)
            if bad:
                raise ValueError(
                    f"{', '.join(bad)}: options of the diagonal Hessian; "
                    "pass hessian='diagonal' to use them"
                )
        validate_options("softmax", **options)
        return SoftmaxObjective(options, hessian)
    if hessian != "full":
        raise ValueError("hessian= applies to 'softmax' only")
    validate_options(name, **options)
    return ElementwiseObjective(name, n_threads, options)


# ---------------------------------------------------------------------------- metrics
class Metric:
    """CatBoost user metric: the weighted mean of ``fl.objective_loss`` on raw margins."""

    no_jit = True

    def __init__(self, name, options):
        self.name = name
        self.options = options

    def __repr__(self):
        return f"fastloss.catboost.metric({self.name!r})"

    def __reduce__(self):  # the class is made per name: rebuild through the factory
        return (_metric_from_state, (self.name, self.options))

    def is_max_optimal(self):
        return False

    def evaluate(self, approxes, target, weight):
        if self.name == "softmax":
            if len(approxes) < 2:
                raise ValueError(_ONE_MARGIN.format(what="metric"))
            preds = np.stack(approxes, axis=1)  # K views of length n -> (n, K)
        elif len(approxes) == 1:
            preds = approxes[0]
        else:
            raise ValueError(
                f"fastloss.catboost.metric({self.name!r}) expects one approx dimension, "
                f"got {len(approxes)}"
            )
        return objective_sum_and_weight(self.name, preds, target, sample_weight=weight,
                                        **self.options)

    def get_final_error(self, error, weight):
        return error / weight if weight != 0 else math.nan


_METRIC_CLASSES = {}


def _metric_class(name):
    # CatBoost names a user metric after its class (evals_result_ keys, logs):
    # "fastloss_logistic" rather than one shared class name for every objective.
    cls = _METRIC_CLASSES.get(name)
    if cls is None:
        cls = type(f"fastloss_{name}", (Metric,), {"__module__": __name__})
        _METRIC_CLASSES[name] = cls
    return cls


def _metric_from_state(name, options):
    return _metric_class(name)(name, options)


def metric(name, **options):
    """A CatBoost metric object: weighted mean ``fl.objective_loss(name)`` on raw approxes.

    Use it as ``eval_metric=`` (a user objective requires one; CatBoost takes user metric
    objects only there, ``custom_metric`` accepts strings only).  With ``"softmax"`` also pass
    ``classes_count=K``: CatBoost otherwise trains a single margin for a user objective.
    It is reported under the name ``fastloss_<name>``; lower is better.
    """
    _require_catboost()
    validate_options(name, **options)
    return _metric_from_state(name, options)
