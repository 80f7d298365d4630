"""Exact reductions over a data set split into row chunks (``fastloss score``, ``fastloss.dask``).

A loss over a data set too large for one call is computed chunk by chunk along axis 0
(the batch axis).  ``"sum"`` is the sum of the chunk sums.  ``"mean"`` (and
``"batchmean"``) divide by a denominator that depends only on the input's shape, the
targets and the class weights, never on the predictions, so it is found first, in a cheap
pass over the targets; then each chunk runs **one** fused kernel call with
``reduction="sum"`` (and the gradient of that sum), and the result is ``sum / D``, each
chunk's gradient ``grad_sum * (1 / D)``.  The answer is the in-memory call's
(``fl.<loss>(whole_input, whole_target, ...)``, hence PyTorch's) up to rounding::

    from fastloss import _chunked as ch
    counts = ch.merge(ch.mean_counts(name, x.shape, t, **opts) for x, t in chunks())  # pass 1
    plan = ch.mean_plan(name, counts, "mean", weight=w, **opts)
    total = 0.0
    for x, t in chunks():                                                            # pass 2
        part, g = ch.chunk_loss(plan, x, t, grad=True)     # g: this chunk's rows of the gradient
        total = total + part                               # partial sums: small float64 arrays
    loss = ch.finish(plan, total, x.dtype)                 # == fl.<name>(X, T, w, **opts).loss

(:func:`chunked_loss` is exactly that loop.)  With ``reduction="none"`` no first pass is
needed: ``chunk_loss`` returns the chunk's per-sample losses.

Denominators (``mean_counts`` records what they need, additively):

* class-index ``cross_entropy``, ``nll_loss``, ``softmax_focal_loss``: the summed weight
  of the non-ignored targets (their number without ``weight``).  The counts are the
  number of non-ignored targets of each class (exact integers), and the plan computes
  ``W = sum_c count_c * weight_c`` exactly (error-free products and ``math.fsum``), so
  the result does not depend on the chunking.  The in-memory kernels sum the weights
  row by row in float64, which differs from the exact sum by rounding only (weights
  that cancel to about 0 are the one case where the order of summation shows).
  Label smoothing with class weights uses the same denominator (PyTorch's).
* ``cross_entropy`` with ``z_loss`` under ``"mean"``: the z-loss part is divided by the
  number of non-ignored samples ``N`` and the cross-entropy part by ``W``.  The chunk call
  uses ``z_loss * W / N`` and everything is divided by ``W`` (when ``W < 0``: class
  weights scaled by ``N / W``, everything divided by ``N``), still one fused call.
* probability-target ``cross_entropy``, ``kl_div_with_logits``, ``js_div_with_logits``,
  ``softmax_entropy``, ``multi_margin_loss``: the number of rows (samples);
  ``"batchmean"``: ``input.shape[0]`` summed over the chunks.
* elementwise losses: the number of elements; ``kl_div``'s ``"batchmean"``: rows.

Edge cases follow the in-memory call: an empty data set or all targets ignored give NaN
for ``"mean"`` (0 for ``"sum"``); a zero or non-finite denominator gives the in-memory
inf/NaN pattern (for ``nll_loss`` / ``softmax_focal_loss`` only the entries the kernel
scales are scaled; class-index ``cross_entropy`` with non-finite weight arithmetic replays
PyTorch's order of operations with the global denominator, as the in-memory call does).
Chunk totals stay float64 (``_core.float64_totals``): a float32 data set's total is
rounded to float32 once, in :func:`finish`, as the in-memory call rounds it.

The chunks are cut along axis 0, so for the softmax family the class axis must not be
axis 0 (a 1-D input is a single sample: one chunk).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from . import _load_losses
from ._core import (
    LOSSES,
    LossResult,
    as_input,
    check_reduction,
    float64_totals,
    normalize_axis,
    to_dtype,
)
from ._core import target_out_of_bounds as _oob

_load_losses()  # every loss family registers itself in LOSSES

__all__ = [
    "Plan",
    "mean_counts",
    "merge",
    "mean_plan",
    "chunk_loss",
    "finish",
    "chunked_loss",
    "INDEX_LOSSES",
    "SOFTMAX_LOSSES",
]

#: losses whose targets may be class indices (the "mean" denominator needs them).
INDEX_LOSSES = frozenset({"cross_entropy", "nll_loss", "softmax_focal_loss"})
#: losses with a class ``axis`` (rows are the input without that axis).
SOFTMAX_LOSSES = frozenset(
    {"cross_entropy", "nll_loss", "softmax_focal_loss", "kl_div_with_logits",
     "js_div_with_logits", "softmax_entropy"}
)


def _info(name):
    try:
        return LOSSES[name]
    except KeyError:
        valid = ", ".join(sorted(LOSSES))
        raise ValueError(f"unknown loss {name!r}; valid losses are {valid}") from None


def _class_axis(name, ndim, options):
    if name in SOFTMAX_LOSSES:
        if ndim == 0:
            raise ValueError("input must have at least one dimension (the class axis)")
        return normalize_axis(options.get("axis", -1), ndim)
    if name == "multi_margin_loss":
        return ndim - 1 if ndim else None
    return None


def _is_index_target(name, target) -> bool:
    if name not in INDEX_LOSSES:
        return False
    if name != "cross_entropy":
        return True  # nll / focal: integer targets (the kernel call rejects others)
    if target is None:
        raise ValueError("cross_entropy needs the target to tell class indices from probabilities")
    dt = getattr(target, "dtype", None)
    if dt is None:
        dt = np.asarray(target).dtype
    return np.dtype(dt).kind != "f"


# ----------------------------------------------------------------------------- pass 1
def mean_counts(name: str, input_shape, target=None, *, weight=None, **options) -> dict:
    """What the ``"mean"`` / ``"batchmean"`` denominator of one chunk needs, additively.

    ``input_shape`` is the chunk's input shape; ``target`` its target (read only by the
    class-index losses: the non-ignored targets of each class are counted, and checked:
    a class index outside ``[0, C)`` raises the in-memory call's ``IndexError``, with the
    attribute ``row``, the offending row within this chunk).  ``weight`` is not needed
    (the counts hold for any class weights; pass it to :func:`mean_plan`); the other
    ``options`` are the loss's own (``ignore_index``, ``axis``, ...; the rest is ignored).
    Combine chunks with :func:`merge`.
    """
    del weight
    counts = _shape_counts(name, input_shape, options)
    shape = counts.pop("shape")
    ax = _class_axis(name, len(shape), options)
    if _is_index_target(name, target):
        counts["kind"] = "index"
        counts["class_counts"] = _class_counts(target, shape, ax, options.get("ignore_index", -100))
    elif name == "cross_entropy" and shape[ax] == 0:
        counts["kind"] = "rows-no-classes"  # PyTorch: "mean" = numel / C = 0 / 0
    return counts


def _shape_counts(name, input_shape, options) -> dict:
    """The counts that follow from the shape alone (no class counts), plus "shape"."""
    _info(name)
    shape = tuple(int(s) for s in input_shape)
    ndim = len(shape)
    ax = _class_axis(name, ndim, options)
    numel = math.prod(shape)
    rows = math.prod(s for k, s in enumerate(shape) if k != ax) if ax is not None else numel
    if name in SOFTMAX_LOSSES or name == "multi_margin_loss":
        batch = shape[0] if ndim > 1 else 1
    else:
        batch = shape[0] if ndim else 1
    return {
        "kind": "rows" if (name in SOFTMAX_LOSSES or name == "multi_margin_loss") else "numel",
        "numel": numel,
        "rows": rows,
        "batch": batch,
        "class_counts": None,
        "shape": shape,
    }


def _class_counts(target, shape, ax, ignore_index):
    from .softmax import _index_option, _index_target_of

    ii = _index_option(ignore_index)
    C = shape[ax]
    y = _index_target_of(target, shape, ax)
    flat = y.reshape(-1)
    valid = flat != ii
    yv = flat[valid] if not valid.all() else flat
    if yv.size and (int(yv.min()) < 0 or int(yv.max()) >= C):
        pos = np.flatnonzero(valid & ((flat < 0) | (flat >= C)))[0]
        err = _oob(int(flat[pos]), C, ignorable=True)
        per_row = math.prod(y.shape[1:]) if y.ndim > 1 else 1
        err.row = int(pos // per_row) if y.ndim else 0
        raise err
    return np.bincount(yv, minlength=C).astype(np.int64)


def merge(counts_list: Iterable[dict]) -> dict:
    """The counts of several chunks as one (their sum).  An empty list is an empty data set
    only if you pass the counts of an empty chunk too; prefer always including one chunk
    (``mean_counts(name, (0,) + row_shape, target[:0], ...)``)."""
    total = None
    for c in counts_list:
        if total is None:
            total = dict(c)
            if total["class_counts"] is not None:
                total["class_counts"] = np.array(total["class_counts"], np.int64)
            continue
        if c["kind"] != total["kind"]:
            raise ValueError(f"cannot merge counts of kinds {total['kind']!r} and {c['kind']!r}")
        for k in ("numel", "rows", "batch"):
            total[k] += c[k]
        if c["class_counts"] is not None:
            a, b = total["class_counts"], c["class_counts"]
            if a.shape != b.shape:
                raise ValueError(f"class counts of {a.shape[0]} and {b.shape[0]} classes")
            total["class_counts"] = a + b
    if total is None:
        raise ValueError("merge() needs the counts of at least one chunk")
    return total


# ------------------------------------------------------------------------------- plan
class Plan(NamedTuple):
    """How to run and reduce the chunks (from :func:`mean_plan`).

    ``options`` are the keyword arguments of each chunk's ``fl.<name>(...)`` call (its
    ``reduction`` is ``call_reduction``: ``"sum"``, or ``"none"``); ``denominator`` is D;
    ``scale`` the factor applied to each chunk's gradient (``1 / D``, 1.0 for ``"sum"``).
    """

    name: str
    reduction: str
    call_reduction: str
    options: dict
    denominator: float
    scale: float
    mode: str = "fused"  # "fused" | "masked" (scale only what the kernel scales) | "replay"
    zden: float = 1.0  # replay: the z-loss denominator
    n_partials: int = 1


def _exact_weight_sum(counts: np.ndarray, w: np.ndarray) -> float:
    """sum_c counts_c * w_c over the classes that occur, rounded once (NaN/inf as NumPy)."""
    used = counts > 0
    c = counts[used].astype(np.float64)
    wc = w[used]
    if not c.size:
        return 0.0
    if not np.isfinite(wc).all() or float(np.max(np.abs(wc))) * float(c.max()) > 1e290:
        with np.errstate(all="ignore"):
            return float(np.sum(c * wc))
    # Dekker's error-free product: c * w == p + e exactly
    p = c * wc
    sp = 134217729.0  # 2**27 + 1
    t = sp * c
    ch = t - (t - c)
    cl = c - ch
    t = sp * wc
    wh = t - (t - wc)
    wl = wc - wh
    e = ((ch * wh - p) + ch * wl + cl * wh) + cl * wl
    try:
        return math.fsum(np.concatenate([p, e]).tolist())
    except OverflowError:
        return float(np.sum(p))


def _recip(d: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(1.0) / np.float64(d))


def mean_plan(name: str, counts: dict, reduction: str, *, weight=None, **options) -> Plan:
    """The plan of the second pass from the merged :func:`mean_counts` of every chunk.

    ``weight`` and ``options`` are those of the in-memory call (``fl.<name>(input,
    target, weight, **options)``; for the binary losses ``weight`` / ``pos_weight``
    travel in ``options`` too, chunked like the input by the caller).  Validates
    ``reduction`` (the in-memory call's error); every other option is checked by the
    first chunk's kernel call.
    """
    info = _info(name)
    check_reduction(reduction, info.reductions)
    if weight is not None:
        options["weight"] = weight
    if reduction == "none":
        return Plan(name, reduction, "none", options, 1.0, 1.0)
    if reduction == "sum":
        return Plan(name, reduction, "sum", options, 1.0, 1.0)
    kind = counts["kind"]
    if reduction == "batchmean":
        D = float(counts["batch"])
        return Plan(name, reduction, "sum", options, D, _recip(D) if D else 1.0)
    if kind == "numel":
        D = float(counts["numel"])
        return Plan(name, reduction, "sum", options, D, _recip(D) if D else 1.0)
    if kind == "rows":
        D = float(counts["rows"])
        return Plan(name, reduction, "sum", options, D, _recip(D) if D else 1.0)
    if kind == "rows-no-classes":
        return Plan(name, reduction, "sum", options, math.nan, 1.0)
    return _index_plan(name, counts, reduction, options)


def _index_plan(name, counts, reduction, options):
    from .softmax import _float_option, _weight

    cc = counts["class_counts"]
    C = cc.shape[0]
    N = int(cc.sum())
    weight = options.get("weight")
    w = None if weight is None else _weight(weight, C)
    W = float(N) if w is None else _exact_weight_sum(cc, w)
    zl = 0.0
    if name == "cross_entropy":
        zl = _float_option("z_loss", options.get("z_loss", 0.0), 0.0, desc="a finite number >= 0")
    if name == "cross_entropy" and w is not None:
        degenerate = not np.isfinite(w).all() or (N > 0 and not math.isfinite(_recip(W)))
        if not degenerate and zl > 0.0 and N > 0:
            if W > 0.0:
                zs = zl * W / N
                if math.isfinite(zs):
                    opts = dict(options, z_loss=zs)
                    return Plan(name, reduction, "sum", opts, W, _recip(W))
            else:
                with np.errstate(all="ignore"):
                    ws = w * (N / W)
                if np.isfinite(ws).all():
                    opts = dict(options, weight=ws)
                    return Plan(name, reduction, "sum", opts, float(N), _recip(float(N)))
            degenerate = True
        if degenerate:
            return Plan(name, reduction, "sum", options, W, 1.0, "replay", float(max(N, 1)), 3)
    r = _recip(W)
    mode = "fused" if (math.isfinite(r) and r != 0.0) else "masked"
    return Plan(name, reduction, "sum", options, W, r, mode)


# ----------------------------------------------------------------------------- pass 2
def chunk_loss(plan: Plan, input, *args, grad: bool = True, out=None) -> LossResult:
    """One chunk's share: one fused call of ``fl.<plan.name>(input, *args, ...)``.

    ``args`` are the chunk's target (and, for the binary losses, any row-aligned
    ``weight`` / ``pos_weight`` rows; class weights are in the plan).  Returns
    ``LossResult(partial, grad)``: for ``"sum"`` / ``"mean"`` / ``"batchmean"`` a small
    float64 array of partial sums, additive over chunks (give their sum to
    :func:`finish`); for ``"none"`` the chunk's per-sample losses.  ``grad`` is the
    chunk's rows of the whole data set's gradient (``None`` with ``grad=False``);
    ``out`` as in the loss itself.
    """
    fn = LOSSES[plan.name].fn
    if plan.mode == "replay":
        with float64_totals():
            return _ce_replay_chunk(plan, input, args[0], grad, out)
    with float64_totals():  # the chunk's float64 total, not rounded to a float32 input's dtype
        res = fn(input, *args, **plan.options, reduction=plan.call_reduction, grad=grad,
                 out=out)
    if plan.call_reduction == "none":
        return res
    g = res.grad
    if g is not None and plan.scale != 1.0 and g.size:
        with np.errstate(all="ignore"):
            if plan.mode == "masked":
                _masked_scale(plan, g, args[0])
            else:
                np.multiply(g, plan.scale, out=g)
    return LossResult(np.array([float(res.loss)]), g)


def _masked_scale(plan, g, target):
    """Scale by a non-finite (or zero) 1/D only the gradient entries the in-memory kernel
    multiplies by it (the others it writes as constants): the target entries of the valid
    rows for nll_loss, every entry of a valid row for softmax_focal_loss and
    cross_entropy.  softmax_focal_loss adds ``w r K`` to ``e_t (-w r K / s)`` at the
    target, which is NaN whenever ``r`` is infinite."""
    ii = plan.options.get("ignore_index", -100)
    ax = normalize_axis(plan.options.get("axis", -1), g.ndim)
    y = np.asarray(target)
    valid = np.expand_dims(y != ii, ax)
    C = g.shape[ax]
    cls = np.arange(C).reshape((C,) + (1,) * (g.ndim - 1 - ax))
    at_target = (np.expand_dims(y, ax) == cls) & valid
    if plan.name == "nll_loss":
        np.multiply(g, plan.scale, out=g, where=at_target)
        return
    np.multiply(g, plan.scale, out=g, where=np.broadcast_to(valid, g.shape))
    if plan.name == "softmax_focal_loss" and math.isinf(plan.scale):
        g[at_target] = np.nan


def finish(plan: Plan, partial, dtype) -> Any:
    """The loss of the whole data set (a NumPy scalar of ``dtype``) from the sum of every
    chunk's partial sums (:func:`chunk_loss`)."""
    dt = np.dtype(dtype)
    p = np.asarray(partial, np.float64).reshape(-1)
    if plan.mode == "replay":
        return to_dtype(_replay_total(plan, p), dt)
    total = float(p[0])
    if plan.reduction == "sum":
        return to_dtype(total, dt)
    from .softmax import _mean_div

    return to_dtype(_mean_div(total, plan.denominator), dt)


def chunked_loss(
    name: str,
    chunks: Callable[[], Iterable[tuple]],
    *,
    reduction: str = "mean",
    grad: bool = False,
    weight=None,
    **options,
) -> LossResult:
    """The whole loop: ``chunks()`` returns a fresh iterable of ``(input, target, ...)``
    tuples (called twice for ``"mean"``: the first pass reads only the targets' chunks).
    Returns ``LossResult(loss, grad)`` with the chunks' gradients (or per-sample losses for
    ``"none"``) concatenated along axis 0."""
    if reduction in ("mean", "batchmean"):
        counts = merge(
            mean_counts(name, np.shape(c[0]), c[1] if len(c) > 1 else None, **options)
            for c in chunks()
        )
    else:
        counts = None
    plan = mean_plan(name, counts, reduction, weight=weight, **options)
    total = np.zeros(plan.n_partials)
    losses, grads, dtype = [], [], None
    for c in chunks():
        dtype = as_input(c[0]).dtype if dtype is None else dtype
        part, g = chunk_loss(plan, *c, grad=grad)
        if reduction == "none":
            losses.append(part)
        else:
            with np.errstate(all="ignore"):  # inf + -inf is NaN, as in one sum
                total = total + part
        if grad:
            grads.append(g)
    if dtype is None:
        raise ValueError("chunked_loss needs at least one chunk")
    g = np.concatenate(grads, axis=0) if grad else None
    if reduction == "none":
        return LossResult(np.concatenate(losses, axis=0), g)
    return LossResult(finish(plan, total, dtype), g)


# ---------------------------------------------------------- cross_entropy replay path
def _ce_replay_chunk(plan, input, target, grad, out):
    """``softmax._ce_replay`` (PyTorch's order of operations, float64 NumPy) on one chunk,
    with the whole data set's denominators; partial sums (cross-entropy, smoothing,
    z-loss) instead of a reduced loss."""
    from .softmax import _float_option, _index_option, _index_target_of, _replay_terms, _weight

    o = plan.options
    x = as_input(input)
    ax = normalize_axis(o.get("axis", -1), x.ndim)
    C = x.shape[ax]
    w = _weight(o["weight"], C)
    ii = _index_option(o.get("ignore_index", -100))
    eps = _float_option("label_smoothing", o.get("label_smoothing", 0.0), 0.0, 1.0,
                        desc="between 0.0 and 1.0")
    zl = _float_option("z_loss", o.get("z_loss", 0.0), 0.0, desc="a finite number >= 0")
    softcap = o.get("softcap")
    cap = 0.0 if softcap is None else _float_option(
        "softcap", softcap, 0.0, lo_open=True, desc="finite and > 0, or None")
    y = _index_target_of(target, x.shape, ax).reshape(-1)
    valid = y != ii
    yv = y[valid]
    if yv.size and (yv.min() < 0 or yv.max() >= C):
        bad = yv[(yv < 0) | (yv >= C)][0]
        raise _oob(int(bad), C, ignorable=True)
    D = np.float64(plan.denominator) if plan.reduction == "mean" else np.float64(1.0)
    nz = plan.zden if plan.reduction == "mean" else 1.0
    with np.errstate(all="ignore"):
        per, smooth, lz, g = _replay_terms(x, ax, y, valid, w, eps, zl, cap, D, nz, grad, out)
        smooth_total = np.sum(smooth) if eps > 0.0 else 0.0
        z_total = np.sum(lz * lz) if zl > 0.0 else 0.0
        partial = np.array([np.sum(per), smooth_total, z_total], np.float64)
    return LossResult(partial, g if grad else None)


def _replay_total(plan, p):
    """The in-memory replay's reduction, from the summed partials."""
    from .softmax import _float_option

    o = plan.options
    eps = _float_option("label_smoothing", o.get("label_smoothing", 0.0), 0.0, 1.0,
                        desc="between 0.0 and 1.0")
    zl = _float_option("z_loss", o.get("z_loss", 0.0), 0.0, desc="a finite number >= 0")
    mean = plan.reduction == "mean"
    D = np.float64(plan.denominator) if mean else np.float64(1.0)
    nz = plan.zden if mean else 1.0
    with np.errstate(all="ignore"):
        nll = np.float64(p[0]) / D
        if eps > 0.0:
            C = np.shape(o["weight"])[0]  # the replay runs with class weights only
            loss = (1.0 - eps) * nll + np.float64(p[1]) / D * (eps / C)
        else:
            loss = nll
        if zl > 0.0:
            loss = loss + zl * np.float64(p[2]) / nz
    return float(loss)

