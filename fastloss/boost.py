"""Gradient boosting: gradients and hessians with respect to raw margins (SPEC section 3).

``fl.grad_hess(name, preds, labels, ...)`` returns the first and second derivatives of
the **per-sample** loss (not divided by ``n``) with respect to the raw prediction, times
the sample weight: what every booster's custom-objective hook wants.  One fused pass per
call (``fastloss._kernels.boost``), labels checked inside the kernel, outputs written
straight into C- or F-ordered, float32 or float64 buffers so an adapter never copies.

``fl.init_score`` gives the constant margin that minimises the weighted loss (no booster
estimates a base score for a custom objective), and ``fl.objective_loss`` the loss
whose derivatives ``grad_hess`` returns (for evaluation metrics on raw margins).

The adapters ``fastloss.xgboost``, ``fastloss.lightgbm`` and ``fastloss.catboost`` are
thin translations of these three functions into each library's conventions.

Objectives (r = margin, y = label, w = sample weight, p = sigmoid(r), q = 1 - p)
----------------------------------------------------------------------------------
=================  ======================  ============================================
name               labels                  grad, hess (before the weight)
=================  ======================  ============================================
``logistic``       in [0, 1]               p - y, max(p q, min_hess)
``softmax``        integers in [0, K)      p_k - t_k, max(hess_scale p_k (1 - p_k),
                                           min_hess); t = (1 - eps) onehot + eps / K;
                                           class_weight[y] multiplies both
``squared_error``  real                    r - y, 1
``huber``          real                    clip(r - y, -delta, delta), 1 for
                                           |r - y| <= delta else min_hess
``pseudo_huber``   real                    z / s, 1 / s**3; z = r - y,
                                           s = sqrt(1 + (z / delta)**2)
``poisson``        >= 0                    exp(r) - y, exp(r + max_delta_step)
``focal``          in [0, 1]               exact derivatives of torchvision's sigmoid
                                           focal loss (can be negative: min_hess)
=================  ======================  ============================================

``min_hess`` floors the unweighted hessian (``max(h, min_hess)``); the sample weight (and
class weight) multiplies afterwards.  Its default 0.0 changes nothing but ``focal``,
whose true hessian is negative for badly misclassified samples (p_t < 0.058 at
gamma = 2): by default those get 0, as XGBoost clips negative hessians; pass
``min_hess=-inf`` for the true second derivative, or a small positive floor so that
``min_child_weight`` / ``min_sum_hessian_in_leaf`` keep splitting.  (XGBoost's
``multi:softprob`` floors after its weight: the two differ only where a hessian is below
1e-16.)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._config import pick
from ._core import readonly, real_option
from ._kernels import boost as _k

__all__ = [
    "GradHess",
    "OBJECTIVES",
    "grad_hess",
    "init_score",
    "objective_loss",
    "validate_options",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class GradHess(NamedTuple):
    """What :func:`grad_hess` returns."""

    grad: np.ndarray
    """d loss_i / d margin_i (times the sample weight), the preds' shape."""
    hess: np.ndarray
    """d^2 loss_i / d margin_i^2 (diagonal for ``"softmax"``), the preds' shape."""


class ObjectiveInfo(NamedTuple):
    name: str
    options: dict
    """Option name -> default."""
    labels: str
    """The labels' domain, as error messages name it."""


#: name -> :class:`ObjectiveInfo` for every objective of :func:`grad_hess`.
OBJECTIVES: dict[str, ObjectiveInfo] = {
    info.name: info
    for info in (
        ObjectiveInfo("logistic", {"min_hess": 0.0}, "in [0, 1]"),
        ObjectiveInfo(
            "softmax",
            {"hess_scale": 1.0, "label_smoothing": 0.0, "class_weight": None, "min_hess": 0.0},
            "integer class indices in [0, K)",
        ),
        ObjectiveInfo("squared_error", {}, "real"),
        ObjectiveInfo("huber", {"delta": 1.0, "min_hess": 0.0}, "real"),
        ObjectiveInfo("pseudo_huber", {"delta": 1.0}, "real"),
        ObjectiveInfo("poisson", {"max_delta_step": 0.0}, ">= 0"),
        ObjectiveInfo("focal", {"gamma": 2.0, "alpha": None, "min_hess": 0.0}, "in [0, 1]"),
    )
}


# ------------------------------------------------------------------------- options
def _real(v, name):
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    f = real_option(v, name)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


def _check(cond, msg):
    if not cond:
        raise ValueError(msg)


_OPTION_CACHE: dict = {}


def _options(name: str, options: dict, extra=()) -> dict:
    """Validated options of objective ``name`` with defaults filled in (memoised for
    hashable options: boosters call with the same options hundreds of times per round,
    on blocks of a few hundred rows).  The dict's ``"_p"`` entry caches the kernel's
    option vector per dtype."""
    try:
        # each value's type is in the key: True == 1 and hash(True) == hash(1), and a
        # bool must not reuse the entry validated for an int (bools are rejected)
        key = (name, tuple(sorted((k, type(v), v) for k, v in options.items())), extra)
        hit = _OPTION_CACHE.get(key)
    except TypeError:  # an unhashable option value (a class_weight array)
        return dict(_validate(name, options, extra), _p={})
    if hit is None:
        hit = dict(_validate(name, options, extra), _p={})
        if len(_OPTION_CACHE) < 256:
            _OPTION_CACHE[key] = hit
    return hit


def _validate(name: str, options: dict, extra=()) -> dict:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid names are {sorted(OBJECTIVES)}")
    defaults = OBJECTIVES[name].options
    unknown = sorted(set(options) - set(defaults) - set(extra))
    if unknown:
        valid = sorted(defaults) + list(extra)
        raise TypeError(
            f"unknown option(s) {unknown} for objective {name!r}; valid options are {valid}"
        )
    o = dict(defaults, **options)
    for key in ("hess_scale", "label_smoothing", "delta", "max_delta_step", "gamma"):
        if key in o:
            o[key] = _real(o[key], key)
    if "min_hess" in o:
        mh = o["min_hess"]
        o["min_hess"] = _real(mh, "min_hess") if mh != -math.inf else -math.inf
    if "hess_scale" in o:
        _check(o["hess_scale"] > 0, f"hess_scale must be > 0, got {o['hess_scale']}")
    if "label_smoothing" in o:
        eps = o["label_smoothing"]
        _check(0.0 <= eps <= 1.0, f"label_smoothing must be in [0, 1], got {eps}")
    if "delta" in o:
        _check(o["delta"] > 0, f"delta must be > 0, got {o['delta']}")
    if "gamma" in o:
        _check(o["gamma"] >= 0, f"gamma must be >= 0, got {o['gamma']}")
    if o.get("alpha") is not None:
        o["alpha"] = a = _real(o["alpha"], "alpha")
        _check(0.0 <= a <= 1.0, f"alpha must be None or in [0, 1], got {a}")
    return o


def validate_options(name: str, **options: Any) -> dict:
    """Check an objective's name and options as :func:`grad_hess` does, without data, and
    return them with the defaults filled in: for the booster adapters, which check when an
    objective or metric is made rather than at the first training round.

    Raises:
        ValueError: an unknown objective, an option value out of range.
        TypeError: an unknown option, a non-numeric option value or class weight.
    """
    o = {k: v for k, v in _options(name, options).items() if k != "_p"}
    cw = o.get("class_weight")
    if cw is not None:
        cw = _as_real(np.asarray(cw), "class_weight", np.shape(cw), np.dtype(np.float64))
        # a booster needs them finite and >= 0 (NaN trains NaN margins, a negative weight
        # a negative hessian); fl.grad_hess itself computes whatever it is given
        if not np.all(np.isfinite(cw) & (cw >= 0)):
            raise ValueError(f"class_weight must be finite and >= 0, got {cw.tolist()}")
    return o


def check_n_threads(n_threads) -> None:
    """``n_threads``: None (fastloss's thread count) or an integer >= 1."""
    if n_threads is None:
        return
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)):
        raise TypeError(f"n_threads must be an integer >= 1 or None, got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be an integer >= 1 or None, got {n_threads!r}")


def _params(name: str, o: dict, dtype) -> np.ndarray:
    """The kernel's option vector ``[a, b, c]`` (read-only; cached in ``o["_p"]``)."""
    p = o["_p"].get(dtype)
    if p is None:
        p = o["_p"][dtype] = readonly(_param_vector(name, o, dtype))
    return p


def _param_vector(name: str, o: dict, dtype) -> np.ndarray:
    a = b = c = 0.0
    if name == "logistic":
        a = o["min_hess"]
    elif name == "huber":
        a, b = o["delta"], o["min_hess"]
    elif name == "pseudo_huber":
        a = o["delta"]
    elif name == "poisson":
        a = o["max_delta_step"]
    elif name == "focal":
        a = o["gamma"]
        b = -1.0 if o["alpha"] is None else o["alpha"]
        c = o["min_hess"]
    elif name == "softmax":
        a, b, c = o["hess_scale"], o["label_smoothing"], o["min_hess"]
    return np.array([a, b, c], dtype=dtype)


# -------------------------------------------------------------------------- arrays
_F32, _F64 = _FLOATS


def _as_preds(preds) -> np.ndarray:
    """float32/float64 margins, C- or F-contiguous (kept as given), read-only view."""
    a = preds
    if type(a) is np.ndarray and (a.dtype is _F64 or a.dtype is _F32) and (
        a.flags.c_contiguous or a.flags.f_contiguous
    ):
        return readonly(a)  # the common case, quickly
    a = preds if type(preds) is np.ndarray else np.asarray(preds)
    if a.dtype not in _FLOATS:
        if a.dtype.kind == "f" and a.dtype.newbyteorder("=") in _FLOATS:
            a = a.astype(a.dtype.newbyteorder("="))
        else:
            raise TypeError(f"preds must have dtype float32 or float64, got {a.dtype}")
    if not (a.flags.c_contiguous or a.flags.f_contiguous):
        a = np.ascontiguousarray(a)
    elif type(a) is not np.ndarray:
        a = a.view(np.ndarray)
    return readonly(a)


def _as_real(v, name, shape, dtype) -> np.ndarray:
    """A real array of ``shape`` as a C-contiguous read-only array of ``dtype``."""
    a = v if type(v) is np.ndarray else np.asarray(v)
    if a.dtype is dtype and a.flags.c_contiguous and a.shape == shape and type(a) is np.ndarray:
        return readonly(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} shape {a.shape} does not match the expected shape {tuple(shape)}")
    if a.dtype != dtype or not a.flags.c_contiguous or type(a) is not np.ndarray:
        a = np.asarray(a, dtype=dtype, order="C")
    return readonly(a)


def _labels(labels, x, softmax: bool) -> np.ndarray:
    n = x.shape[0] if x.ndim else 1
    a = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if softmax:
        if a.shape == (n, 1):
            a = a.reshape(n)
        if a.shape != (n,):
            raise ValueError(
                f"labels shape {a.shape} does not match preds shape {x.shape}: softmax "
                f"labels are one class index per row, shape ({n},)"
            )
    elif a.shape != x.shape:
        raise ValueError(f"labels shape {a.shape} does not match preds shape {x.shape}")
    return _as_real(a, "labels", a.shape, x.dtype)


def _weights(sample_weight, x) -> np.ndarray | None:
    if sample_weight is None:
        return None
    n = x.shape[0] if x.ndim else 1
    w = sample_weight if isinstance(sample_weight, np.ndarray) else np.asarray(sample_weight)
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight shape {w.shape} does not match preds shape {x.shape}: one "
            f"weight per row, shape ({n},)"
        )
    return _as_real(w, "sample_weight", (n,), x.dtype)


def _output(out, x, name) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"{name} has shape {out.shape}, expected the preds' shape {x.shape}")
    if out.dtype not in _FLOATS:
        raise ValueError(f"{name} has dtype {out.dtype}, expected float32 or float64")
    if not (out.flags.c_contiguous or out.flags.f_contiguous):
        raise ValueError(f"{name} must be C- or F-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only; it must be writeable")
    return out


def _is_f(a) -> bool:
    return a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous


def _outputs(grad_out, hess_out, x):
    """The two output buffers (given ones checked, missing ones allocated like the
    other one, or like ``x``: its dtype and memory order)."""
    g = None if grad_out is None else _output(grad_out, x, "grad_out")
    h = None if hess_out is None else _output(hess_out, x, "hess_out")
    if g is not None and h is not None and np.may_share_memory(g, h):
        raise ValueError("grad_out and hess_out share memory; they must be separate arrays")
    like = g if g is not None else h if h is not None else x
    order = "F" if _is_f(like) else "C"
    if g is None:
        g = np.empty(x.shape, like.dtype, order=order)
    if h is None:
        h = np.empty(x.shape, like.dtype, order=order)
    return g, h


# --------------------------------------------------------------------- label errors
def _bad_label(name, labels, flat_index, shape, K=None, order="C"):
    """The exception for the first label outside the objective's domain; ``flat_index``
    counts the elements in ``order`` (the kernel's flattening of (n, T) margins)."""
    raw = np.asarray(labels)
    if name == "softmax":
        row = flat_index
        v = raw.reshape(-1)[row] if raw.size == shape[0] else raw.reshape(shape[0], -1)[row, 0]
        v = v.item()
        if isinstance(v, float) and not (math.isfinite(v) and v == int(v)):
            return ValueError(
                f"softmax labels must be integer class indices, got {v!r} at row {row}"
            )
        return IndexError(
            f"label {int(v)} at row {row} is out of bounds for {K} classes "
            f"(valid range [0, {K}))"
        )
    idx = np.unravel_index(flat_index, shape, order=order) if len(shape) > 1 else flat_index
    v = raw.reshape(shape)[idx].item() if len(shape) > 1 else raw.reshape(-1)[idx].item()
    where = f"index {tuple(int(i) for i in idx)}" if len(shape) > 1 else f"index {idx}"
    return ValueError(
        f"labels of the {name!r} objective must be {OBJECTIVES[name].labels}; "
        f"got {v!r} at {where}"
    )


def _raise_status(status, name, labels, shape, K=None, order="C"):
    bad = np.flatnonzero(status)
    if bad.size:
        raise _bad_label(name, labels, int(status[bad[0]]) - 1, shape, K, order)


# ---------------------------------------------------------------------------- paths
class _Call(NamedTuple):
    """A validated call: margins, labels, weights (or size-0) and the options."""

    name: str
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    o: dict
    cw: np.ndarray | None  # softmax class weights (or size 0)
    p: np.ndarray  # the kernel's option vector
    raw: Any  # the caller's labels, for error messages (y is in the preds' dtype)


_EMPTY = {dt: readonly(np.empty(0, dt)) for dt in _FLOATS}
_EMPTY64 = np.empty(0)


def _prepare(name, preds, labels, sample_weight, options) -> _Call:
    o = _options(name, options)
    x = _as_preds(preds)
    softmax = name == "softmax"
    if softmax and x.ndim != 2:
        raise ValueError(f"softmax preds must have shape (n, K), got {x.shape}")
    if not softmax and x.ndim not in (1, 2):
        raise ValueError(f"preds must have shape (n,) or (n, T), got {x.shape}")
    if softmax and x.dtype == np.float32 and x.shape[1] > 1 << 24:
        # the kernels read the labels in the margins' dtype: float32 holds every integer
        # up to 2**24 only, so a larger class index would silently become its neighbour
        raise ValueError(
            f"softmax with {x.shape[1]} classes needs float64 preds: float32 cannot hold "
            f"every class index above 2**24"
        )
    y = _labels(labels, x, softmax)
    w = _weights(sample_weight, x)
    cw = None
    if softmax:
        K = x.shape[1]
        cw = _EMPTY[x.dtype]
        if o["class_weight"] is not None:
            cw = _as_real(np.asarray(o["class_weight"]).reshape(-1) if np.ndim(
                o["class_weight"]) == 0 else o["class_weight"], "class_weight", (K,), x.dtype)
    return _Call(name, x, y, _EMPTY[x.dtype] if w is None else w, o, cw, _params(name, o, x.dtype),
                 labels)


def _flat(c: _Call, order: str):
    """Flat margins, labels and per-element weights in ``order`` (an elementwise call on
    (n, T) margins sees them as n * T elements)."""
    x, y, w = c.x, c.y, c.w
    xf = readonly(x.reshape(-1, order=order)) if x.ndim > 1 else x
    yf = readonly(y.reshape(-1, order=order)) if y.ndim > 1 else y
    if w.size and x.ndim > 1 and x.shape[1] != 1:
        T = x.shape[1]
        w = readonly(np.repeat(w, T) if order == "C" else np.tile(w, T))
    return xf, yf, w


def _overlap(outs, arrays) -> bool:
    """Some output may share memory with some operand (NumPy's bounds check)."""
    for o in outs:
        for a in arrays:
            if a.size and np.may_share_memory(o, a):
                return True
    return False


def _elementwise_gh(c: _Call, g, h, given: bool, n_threads):
    """``given``: the caller passed an output (which may overlap an operand)."""
    order = "F" if _is_f(g) else "C"
    xf, yf, wf = _flat(c, order)
    gf = g.reshape(-1, order=order)
    same = _is_f(h) == (order == "F")
    hf = h.reshape(-1, order=order) if same else np.empty_like(gf)
    # an output overlapping an operand (grad_out=preds, ...): the kernel writes fresh
    # arrays, copied over after it, so a bad label leaves the caller's arrays intact
    staged = given and _overlap((gf, hf), (xf, yf, wf))
    gk, hk = (np.empty_like(gf), np.empty_like(hf)) if staged else (gf, hf)
    n = xf.size
    if n:
        nb = -(-n // _k.BLOCK_ELEMS)
        status = np.zeros(nb, np.int64)
        kern = _k.ELEMENTWISE[c.name].gh
        pick(kern, n, threads=n_threads)(xf, yf, wf, c.p, 0, nb, gk, hk, status)
        if (status[0] != 0) if nb == 1 else status.any():
            _raise_status(status, c.name, c.raw, c.x.shape, order=order)
        if staged:
            gf[...] = gk
            hf[...] = hk
        if not same:
            h[...] = hf.reshape(h.shape, order=order)


def _flat_strides(a, n, K):
    """A flat memory-order view of the (n, K) array ``a`` and its element strides
    ``[row, column]``."""
    if a.size == 0:
        return a.reshape(-1), np.array([K, 1], np.int64)
    if _is_f(a):
        return a.reshape(-1, order="F"), np.array([1, n], np.int64)
    return a.reshape(-1), np.array([K, 1], np.int64)


def _softmax_run(c: _Call, g, h, lout, given, n_threads):
    x = c.x
    n, K = x.shape
    if n == 0:
        return
    R = _k.softmax_rows_per_block(K)
    nb = -(-n // R)
    status = np.zeros(nb, np.int64)
    y, w, cw = c.y, c.w, c.cw
    # outputs overlapping an operand: fresh arrays, copied over after the kernel (as in
    # _elementwise_gh: a bad label leaves the caller's arrays intact)
    staged = given and _overlap((g, h), (x, y, w, cw))
    gk, hk = (np.empty_like(g), np.empty_like(h)) if staged else (g, h)
    xf, xs = _flat_strides(x, n, K)
    gf, gs = _flat_strides(gk, n, K)
    hf, hs = _flat_strides(hk, n, K)
    pick(_k.softmax_gh, n * max(K, 1), rows=n, threads=n_threads)(
        readonly(xf), xs, y, w, cw, c.p, K, R, 0, nb, gf, gs, hf, hs, lout, status
    )
    if (status[0] != 0) if nb == 1 else status.any():
        _raise_status(status, "softmax", c.raw, c.x.shape, K)
    if staged:
        g[...] = gk
        h[...] = hk


def _plain_1d(a, n) -> bool:
    return type(a) is np.ndarray and a.ndim == 1 and a.shape[0] == n and a.flags.c_contiguous


def _fast_out(out, n, dtype):
    """A caller's 1-D output that passes every check of :func:`_output`, else None."""
    if (_plain_1d(out, n) and out.flags.writeable and (out.dtype is _F64 or out.dtype is _F32)):
        return out
    return None


def _fast_elementwise(name, preds, labels, sample_weight, grad_out, hess_out, n_threads,
                      options):
    """:func:`grad_hess` for 1-D contiguous ndarrays (what every booster hands over, a few
    hundred rows at a time in CatBoost), with the general path's checks in fewer steps;
    ``None`` when the call is not of that form."""
    x = preds
    if not (type(x) is np.ndarray and x.ndim == 1 and x.flags.c_contiguous
            and (x.dtype is _F64 or x.dtype is _F32) and name in _k.ELEMENTWISE):
        return None
    n = x.shape[0]
    dt = x.dtype
    if not (_plain_1d(labels, n) and labels.dtype.kind in "fiub"):
        return None
    fresh_y = labels.dtype is not dt
    y = readonly(labels.astype(dt) if fresh_y else labels)
    w = _EMPTY[dt]
    fresh_w = True
    if sample_weight is not None:
        if not (_plain_1d(sample_weight, n) and sample_weight.dtype.kind in "fiub"):
            return None
        fresh_w = sample_weight.dtype is not dt
        w = readonly(sample_weight.astype(dt) if fresh_w else sample_weight)
    g = np.empty(n, dt) if grad_out is None else _fast_out(grad_out, n, dt)
    h = np.empty(n, g.dtype if g is not None else dt) if hess_out is None else _fast_out(
        hess_out, n, dt)
    if g is None or h is None or (
        grad_out is not None and hess_out is not None and np.may_share_memory(g, h)
    ):
        return None  # the general path names what is wrong
    o = _options(name, options)
    x = readonly(x)
    if (grad_out is not None or hess_out is not None) and _overlap(
        (g, h), (x,) + (() if fresh_y else (y,)) + (() if fresh_w else (w,))
    ):
        return None  # the general path copies the overlapping operands
    if n:
        nb = -(-n // _k.BLOCK_ELEMS)
        status = np.zeros(nb, np.int64)
        pick(_k.ELEMENTWISE[name].gh, n, threads=n_threads)(
            x, y, w, _params(name, o, dt), 0, nb, g, h, status
        )
        if (status[0] != 0) if nb == 1 else status.any():
            _raise_status(status, name, labels, x.shape)
    return GradHess(g, h)


# --------------------------------------------------------------------------- public
def grad_hess(
    name: str,
    preds,
    labels,
    *,
    sample_weight=None,
    grad_out=None,
    hess_out=None,
    n_threads: int | None = None,
    **options: Any,
) -> GradHess:
    """First and second derivatives of a boosting objective w.r.t. the raw margins.

    ``grad[i] = w_i * d loss_i / d preds[i]`` and ``hess[i] = w_i * d^2 loss_i /
    d preds[i]^2`` of the per-sample loss (not divided by ``n``); for ``"softmax"`` the
    diagonal of each row's Hessian.  The objectives and their options are listed in
    the module docstring and in :data:`OBJECTIVES`.

    Args:
        name: ``"logistic"``, ``"softmax"``, ``"squared_error"``, ``"huber"``,
            ``"pseudo_huber"``, ``"poisson"`` or ``"focal"``.
        preds: raw margins, float32 or float64, shape ``(n,)`` (or ``(n, T)`` with
            labels of the same shape), ``(n, K)`` for ``"softmax"``; C or F order.
            The computation runs in this dtype (sums in float64).
        labels: ``(n,)`` class indices (any integer or integral float dtype) for
            ``"softmax"``, else the preds' shape.  Checked inside the kernel.
        sample_weight: ``(n,)`` weights multiplying both outputs (one per row).
        grad_out, hess_out: writeable float32 or float64 arrays of the preds' shape, C-
            or F-ordered, written in place and returned (the dtype may differ from the
            preds'); default: new arrays of the preds' dtype and memory order.  The
            two must not share memory (``ValueError``); either may be ``preds`` or
            ``labels`` themselves (the kernel then writes fresh arrays, copied over
            after it: a bad label raises with every array as it was).
        n_threads: threads for this call (default :func:`fastloss.get_num_threads`);
            the results do not depend on it.
        **options: the objective's options (``min_hess``, ``hess_scale``,
            ``label_smoothing``, ``class_weight``, ``delta``, ``max_delta_step``,
            ``gamma``, ``alpha``).

    Returns:
        ``GradHess(grad, hess)``.

    Raises:
        ValueError: labels outside the objective's domain (naming the first one and its
            position), shapes that do not match, an option out of range,
            ``grad_out`` and ``hess_out`` sharing memory.
        IndexError: a ``"softmax"`` class index outside ``[0, K)``.
        TypeError: non-float preds, an unknown option.

    Example:
        >>> import numpy as np, fastloss as fl
        >>> g, h = fl.grad_hess("logistic", np.array([0.0, 2.0]), np.array([1.0, 0.0]))
        >>> g.round(4).tolist(), h.round(4).tolist()
        ([-0.5, 0.8808], [0.25, 0.105])
        >>> g, h = fl.grad_hess("softmax", np.zeros((1, 4)), np.array([2]), hess_scale=2.0)
        >>> g, h
        (array([[ 0.25,  0.25, -0.75,  0.25]]), array([[0.375, 0.375, 0.375, 0.375]]))
    """
    if n_threads is not None:
        check_n_threads(n_threads)
    if name != "softmax":
        fast = _fast_elementwise(name, preds, labels, sample_weight, grad_out, hess_out,
                                 n_threads, options)
        if fast is not None:
            return fast
    c = _prepare(name, preds, labels, sample_weight, options)
    g, h = _outputs(grad_out, hess_out, c.x)
    given = grad_out is not None or hess_out is not None
    if name == "softmax":
        _softmax_run(c, g, h, _EMPTY64, given, n_threads)
    else:
        _elementwise_gh(c, g, h, given, n_threads)
    return GradHess(g, h)


def objective_loss(
    name: str,
    preds,
    labels,
    *,
    sample_weight=None,
    reduction: str = "mean",
    n_threads: int | None = None,
    **options: Any,
):
    """The loss whose derivatives :func:`grad_hess` returns, on raw margins.

    Per sample: ``logistic`` the log loss of ``sigmoid(r)``; ``softmax`` the
    cross-entropy of ``softmax(r)`` against the smoothed target, times
    ``class_weight[y]``; ``squared_error`` ``(r - y)**2 / 2``; ``huber``
    ``z**2 / 2`` inside ``delta``, ``delta * (|z| - delta / 2)`` beyond;
    ``pseudo_huber`` ``delta**2 * (sqrt(1 + (z / delta)**2) - 1)``; ``poisson``
    ``exp(r) - y r`` (the deviance up to terms free of ``r``); ``focal`` torchvision's
    sigmoid focal loss.  Each is multiplied by its sample weight.

    Args:
        reduction: ``"mean"`` (default): ``sum(w * loss) / sum(w)``, the weighted mean a
            booster's evaluation metric reports (``"softmax"`` with ``class_weight``:
            ``sum(w * cw[y] * loss) / sum(w * cw[y])``, as ``F.cross_entropy(weight=)``
            and ``log_loss(sample_weight=w * cw[y])``); ``"sum"``: ``sum(w * loss)``;
            ``"none"``: the weighted per-sample losses (float64, ``(n,)`` for
            ``"softmax"``, else the preds' shape).
        The other arguments are those of :func:`grad_hess`.

    Returns:
        A float (``"mean"``, ``"sum"``; NaN for a mean over no weight) or a float64
        array (``"none"``).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> round(fl.objective_loss("logistic", np.array([0.0, 0.0]), np.array([1, 0])), 6)
        0.693147
    """
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(
            f"{reduction!r} is not a valid value for reduction; valid values are "
            "'none', 'sum', 'mean'"
        )
    lout, c, rows = _losses(name, preds, labels, sample_weight, n_threads, options)
    if reduction == "none":
        return lout
    total = _sum(lout)
    if reduction == "sum":
        return total
    den = _total_weight(c, lout.size, rows)
    return total / den if den else math.nan


def objective_sum_and_weight(name: str, preds, labels, *, sample_weight=None,
                             n_threads=None, **options) -> tuple[float, float]:
    """:func:`objective_loss`'s ``"sum"`` and its ``"mean"`` denominator (the summed
    sample weights, times ``class_weight[y]`` for ``"softmax"``) from one call, for
    metrics that add both over blocks (CatBoost's ``evaluate``)."""
    lout, c, rows = _losses(name, preds, labels, sample_weight, n_threads, options)
    return _sum(lout), _total_weight(c, lout.size, rows)


def _losses(name, preds, labels, sample_weight, n_threads, options):
    """The weighted per-sample losses, the validated call and its row count."""
    check_n_threads(n_threads)
    c = _prepare(name, preds, labels, sample_weight, options)
    x = c.x
    if name == "softmax":
        lout = np.empty(x.shape[0])
        e2 = np.empty(0, x.dtype)
        _softmax_run(c, e2, e2, lout, False, n_threads)
        return lout, c, x.shape[0]
    xf, yf, wf = _flat(c, "C")
    lout = np.empty(xf.size)
    n = xf.size
    if n:
        nb = -(-n // _k.BLOCK_ELEMS)
        status = np.zeros(nb, np.int64)
        pick(_k.ELEMENTWISE[name].loss, n, threads=n_threads)(
            xf, yf, wf, c.p, 0, nb, lout, status
        )
        if status.any():
            _raise_status(status, name, c.raw, x.shape)
    return lout.reshape(x.shape), c, x.shape[0] if x.ndim else 1


def _sum(lout) -> float:
    with np.errstate(invalid="ignore"):  # +inf and -inf losses: NaN, without a warning
        return float(np.sum(lout))


def _total_weight(c: _Call, size: int, rows: int) -> float:
    """The ``"mean"`` denominator: the summed weights of what was summed, sample weights
    times (softmax) the target's class weight, as PyTorch's and scikit-learn's weighted
    means divide (``F.cross_entropy(weight=)``, ``log_loss(sample_weight=w * cw[y])``)."""
    if c.cw is not None and c.cw.size:
        wy = c.cw.astype(np.float64)[np.asarray(c.y).astype(np.int64)]  # (checked labels)
        if c.w.size:
            wy = wy * c.w
        return float(np.sum(wy, dtype=np.float64))
    per_row = size // rows if rows else 1
    return float(np.sum(c.w, dtype=np.float64)) * per_row if c.w.size else float(size)


# ----------------------------------------------------------------------- init score
def _weighted_mean(v, w):
    if w is None:
        return float(np.mean(v, dtype=np.float64)) if v.size else math.nan
    sw = float(np.sum(w, dtype=np.float64))
    # np.sum's pairwise order depends on the length only; np.dot (BLAS) splits the sum
    # across its threads, so its bits vary with the thread count and the process
    vw = np.multiply(v, w, dtype=np.float64)
    return float(np.sum(vw) / sw) if sw else math.nan


def _check_domain(name, y):
    """grad_hess's label check: the first label outside the domain (in C order, its
    index named in ``y``'s own shape) is a ValueError."""
    if name in ("logistic", "focal"):
        bad = ~((y >= 0) & (y <= 1))
    elif name == "poisson":
        bad = ~(y >= 0)
    else:
        return
    if bad.any():
        raise _bad_label(name, y, int(np.flatnonzero(bad.reshape(-1))[0]), y.shape)


def _root(name, y, w, o, lo, hi):
    """b in [lo, hi] with sum_i w_i grad(b, y_i) = 0: Newton steps kept inside a
    shrinking bisection bracket (the sum is nondecreasing in b for every objective that
    comes here, except focal far from its root, where bisection still converges).  At
    most 200 evaluations; NaN if the sum is NaN (an overflow of huge weights)."""
    x = np.empty(y.shape)
    g = np.empty(y.shape)
    h = np.empty(y.shape)
    opts = {k: v for k, v in o.items() if k in OBJECTIVES[name].options}
    if "min_hess" in opts:
        # min_hess floors the hessian the booster sees; it does not change the loss, so
        # it must not change its minimiser: the Newton steps use the true slope of the
        # gradient sum (huber: 0 outside delta; focal: its own, negative where it is)
        opts["min_hess"] = 0.0 if name == "huber" else -math.inf

    def G(b):
        x[...] = b
        grad_hess(name, x, y, sample_weight=w, grad_out=g, hess_out=h, **opts)
        return float(np.sum(g)), float(np.sum(h))

    glo, _ = G(lo)
    ghi, _ = G(hi)
    if math.isnan(glo) or math.isnan(ghi):
        return math.nan
    if glo >= 0:
        return lo
    if ghi <= 0:
        return hi
    # Safeguarded Newton (Numerical Recipes' rtsafe): a Newton step only when it lands
    # inside the bracket and is at most half the step before last, else bisection, so
    # the bracket at least halves every two evaluations.
    b = 0.5 * (lo + hi)
    dx = dxold = hi - lo
    for _ in range(200):
        gb, hb = G(b)
        if math.isnan(gb):
            return math.nan
        if gb == 0:
            return b
        if gb < 0:
            lo = b
        else:
            hi = b
        if hi - lo <= 4e-16 * max(1.0, abs(lo), abs(hi)):
            break
        step = b - gb / hb if hb > 0 else math.nan
        newton = lo < step < hi and abs(2.0 * gb) <= abs(dxold * hb)
        dxold = dx
        if newton:
            dx = b - step
            b = step
        else:
            dx = 0.5 * (hi - lo)
            b = lo + dx
    return b


def _init_1d(name, y, w, o, column=None):
    """The optimal constant for one target: ``y`` 1-D, C-contiguous float64, in the
    objective's domain; ``w`` None or finite weights with a positive sum."""
    if y.size == 0 or not np.isfinite(y).all():
        # no labels, or a NaN / infinite one: the weighted loss is NaN or infinite at
        # every constant, so there is no minimiser (the kernels propagate them too)
        return math.nan
    if name == "logistic":
        pbar = min(max(_weighted_mean(y, w), 1e-15), 1 - 1e-15)
        return math.log(pbar / (1.0 - pbar))
    if name == "squared_error":
        return _weighted_mean(y, w)
    if name == "poisson":
        m = _weighted_mean(y, w)
        if not m > 0:
            where = "" if column is None else f" of target column {column}"
            raise ValueError(
                f"the poisson init_score is log(weighted mean label), which needs a "
                f"positive mean; got {m}{where}"
            )
        return math.log(m)
    if name == "focal":
        lo, hi = -40.0, 40.0
    else:  # huber, pseudo_huber: the root lies between the smallest and largest label
        lo, hi = float(y.min()), float(y.max())
        if lo == hi:
            return lo
    return _root(name, y, w, o, lo, hi)


def init_score(name: str, labels, sample_weight=None, **options: Any):
    """The constant margin that minimises the weighted loss of objective ``name``.

    No booster estimates a base score for a custom objective (XGBoost keeps 0.5,
    LightGBM and CatBoost start from 0), so pass this as the base margin / init score.

    * ``logistic``: the log-odds of the weighted mean label (clamped to
      ``[1e-15, 1 - 1e-15]`` as LightGBM does, so a single-class label set gives a
      finite margin);
    * ``softmax``: the centred log-priors ``log(pi_k) - mean(log(pi))`` of the weighted
      (class-weighted, smoothed) targets, shape ``(K,)``; ``K`` is ``num_class`` (an
      integer >= 1) or ``max(labels) + 1``; priors below 1e-15 are clamped there;
    * ``squared_error``: the weighted mean; ``poisson``: the log of the weighted mean
      (``ValueError`` if it is not positive);
    * ``huber``, ``pseudo_huber``, ``focal``: the root of ``sum(w * grad(b))`` (a 1-D
      Newton/bisection solve in float64, at most 200 steps; focal's is kept in
      ``[-40, 40]``, where a single-class label set ends).

    ``(n, T)`` labels (T targets, as ``grad_hess`` takes them) give one constant per
    target column, a ``(T,)`` float64 array: the loss is a sum over the columns, so each
    column's constant minimises it on its own (XGBoost >= 3.1 also fits its multi-target
    intercept per target).

    Labels are checked as ``grad_hess`` checks them: one outside the objective's domain
    is a ``ValueError`` naming it and its index; a softmax class index outside
    ``[0, K)`` an ``IndexError`` naming the value, its row and ``K``, and a non-integer
    one a ``ValueError``.  NaN where there is no minimiser (for that target): no labels,
    a NaN or infinite label that the domain admits (``squared_error``, ``huber``,
    ``pseudo_huber``; ``+inf`` for ``poisson``), a NaN or infinite sample weight, or
    weights that do not sum to a positive number (all zero).

    Returns a float (a ``(T,)`` float64 array for ``(n, T)`` labels, a ``(K,)`` one for
    ``"softmax"``).

    Example:
        >>> import numpy as np, fastloss as fl
        >>> round(fl.init_score("logistic", np.array([1, 0, 0, 0])), 6)
        -1.098612
        >>> fl.init_score("softmax", np.array([0, 0, 1, 1]), num_class=2)
        array([0., 0.])
        >>> fl.init_score("squared_error", np.array([[1.0, 10.0], [3.0, 20.0]]))
        array([ 2., 15.])
    """
    o = _options(name, options, extra=("num_class",) if name == "softmax" else ())
    raw = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if raw.dtype.kind not in "fiub":
        raise TypeError(f"labels must be a real numeric array, got dtype {raw.dtype}")
    y = np.asarray(raw, dtype=np.float64)
    n = y.shape[0] if y.ndim else 1
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight)
        if w.shape != (n,):
            raise ValueError(
                f"sample_weight shape {w.shape} does not match labels shape {y.shape}"
            )
        if w.dtype.kind not in "fiub":
            raise TypeError(f"sample_weight must be a real numeric array, got dtype {w.dtype}")
        w = np.ascontiguousarray(w, dtype=np.float64)
    # no minimiser for any target: a NaN or infinite weight, or no positive total weight
    w_bad = False
    if w is not None:
        w_bad = not np.isfinite(w).all()
        if not w_bad:
            with np.errstate(over="ignore"):
                sw = float(np.sum(w))
            if math.isinf(sw):  # finite weights whose sum overflows: scale by a power of 2
                w = w * 2.0 ** -math.frexp(float(np.max(np.abs(w))))[1]
                sw = float(np.sum(w))
            w_bad = not sw > 0
    if name == "softmax":
        return _init_softmax(raw, y, w, w_bad, o)
    if y.ndim > 2:
        raise ValueError(
            f"labels must have shape (n,) or (n, T) for T targets, got {raw.shape}"
        )
    _check_domain(name, y)
    if y.ndim < 2:
        return math.nan if w_bad else _init_1d(name, np.ascontiguousarray(y.reshape(-1)), w, o)
    cols = np.ascontiguousarray(y.T)  # one contiguous row per target
    if w_bad:
        return np.full(cols.shape[0], math.nan)
    return np.array([_init_1d(name, c, w, o, t) for t, c in enumerate(cols)], np.float64)


def _num_class(v):
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(
        v, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"num_class must be an integer >= 1, got {v!r}")
    if not (float(v).is_integer() and v >= 1):
        raise ValueError(f"num_class must be an integer >= 1, got {v!r}")
    return int(v)


def _init_softmax(raw, y, w, w_bad, o):
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise ValueError(f"softmax labels must have shape (n,), got {raw.shape}")
    K = _num_class(o.get("num_class"))
    integer = np.isfinite(y) & (y == np.floor(y))
    ok = integer & (y >= 0)
    if K is not None:
        ok &= y < K
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        if K is None and integer[row]:
            raise _negative_class(raw, y, row, integer)
        raise _bad_label("softmax", raw, row, (y.shape[0], 1), K)
    if K is None:
        if y.size == 0:
            raise ValueError(
                "softmax labels are empty, so the number of classes cannot be inferred "
                "(it is max(label) + 1 without num_class); pass num_class=K"
            )
        K = int(y.max()) + 1
        if K > 2**31:  # a (K,) result of 16+ GiB: a corrupt label, not a class count
            row = int(np.argmax(y))
            raise ValueError(
                f"label {raw.reshape(-1)[row].item()!r} at row {row} would make "
                f"{K} classes (without num_class, K is max(label) + 1); pass num_class=K "
                "if that many are meant"
            )
    if o["class_weight"] is not None:
        cw = np.asarray(o["class_weight"], dtype=np.float64)
        if cw.shape != (K,):
            raise ValueError(f"class_weight shape {cw.shape} does not match ({K},)")
    if y.size == 0 or w_bad:
        return np.full(K, math.nan)
    yi = y.astype(np.int64)
    wr = np.ones(y.shape) if w is None else w
    if o["class_weight"] is not None:
        wr = wr * cw[yi]
    sw = float(np.sum(wr))
    if not (math.isfinite(sw) and sw > 0):  # all-zero (class) weights, or infinite ones
        return np.full(K, math.nan)
    eps = o["label_smoothing"]
    pi = (1.0 - eps) * np.bincount(yi, weights=wr, minlength=K) / sw + eps / K
    lp = np.log(np.maximum(pi, 1e-15))
    return lp - lp.mean()


def _negative_class(raw, y, row, integer):
    """The IndexError for a negative class index when K is inferred (no num_class)."""
    v = int(raw.reshape(-1)[row].item())
    valid = y[integer & (y >= 0)]
    if valid.size:
        K = int(valid.max()) + 1
        return IndexError(
            f"label {v} at row {row} is out of bounds for {K} classes (valid range "
            f"[0, {K}); without num_class, K is max(label) + 1)"
        )
    return IndexError(
        f"label {v} at row {row} is out of bounds: class indices must be integers in "
        f"[0, K), K = num_class or max(label) + 1, and no label is >= 0"
    )
