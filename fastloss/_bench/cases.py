"""The benchmark's cases: every registered loss at a latency, a medium and a large size.

A :class:`Spec` per loss says how to make its float32 data, its options and reduction
(the same for every implementation), and whether it is memory-bound; a :class:`Case` is
one loss at one shape.  :func:`case_list` builds the full or the quick list, with the
batch dimension multiplied by a size scale (``FASTLOSS_BENCH_SCALE``; the tests use a
tiny one).  A loss registered in ``fastloss.LOSSES`` without a spec here still gets
cases, from data made by its family (``group``), with fastloss alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import jax_impl, numpy_impl, torch_impl

F32 = np.float32

# ================================================================================ data
# ``make(shape, rng, variant) -> tuple of arrays`` (the input first, then the target).


def _normal(rng, shape, scale=2.0):
    x = rng.standard_normal(shape, dtype=F32)
    x *= F32(scale)
    return x


def _softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _log_softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def _classes(rng, shape):
    return rng.integers(0, shape[1], size=shape[0], dtype=np.int64)


def _logits_index(shape, rng, variant=""):
    x = _normal(rng, shape)
    if variant == "probs":
        return x, _softmax_rows(_normal(rng, shape))
    return x, _classes(rng, shape)


def _logprob_index(shape, rng, variant=""):
    return _log_softmax_rows(_normal(rng, shape)), _classes(rng, shape)


def _scores_index(shape, rng, variant=""):
    return _normal(rng, shape, 1.0), _classes(rng, shape)


def _two_logits(shape, rng, variant=""):
    return _normal(rng, shape), _normal(rng, shape, 3.0)


def _logits_only(shape, rng, variant=""):
    return (_normal(rng, shape),)


def _probabilities(shape, rng, variant=""):
    x = rng.random(shape, dtype=F32)
    x *= F32(0.96)
    x += F32(0.02)
    return x, rng.random(shape, dtype=F32)


def _logits_soft(shape, rng, variant=""):
    return _normal(rng, shape), rng.random(shape, dtype=F32)


def _logits_binary(shape, rng, variant=""):
    return _normal(rng, shape), (rng.random(shape, dtype=F32) < 0.4).astype(F32)


def _scores_pm1(shape, rng, variant=""):
    return _normal(rng, shape), np.where(rng.random(shape, dtype=F32) < 0.5, F32(-1), F32(1))


def _regression(shape, rng, variant=""):
    return _normal(rng, shape), _normal(rng, shape, 1.0)


def _counts(shape, rng, variant=""):
    return _normal(rng, shape, 1.0), rng.poisson(2.0, shape).astype(F32)


def _log_probs_probs(shape, rng, variant=""):
    return _log_softmax_rows(_normal(rng, shape)), _softmax_rows(_normal(rng, shape))


#: Data by family, for a registered loss without a :class:`Spec`.
_BY_GROUP = {
    "classification": ("rows", _logits_index),
    "binary": ("elementwise", _logits_soft),
    "regression": ("elementwise", _regression),
    "margin": ("elementwise", _scores_pm1),
    "count": ("elementwise", _counts),
    "divergence": ("rows", _two_logits),
}


# =============================================================================== specs
@dataclass(frozen=True)
class Spec:
    """How one loss is benchmarked."""

    name: str
    layout: str  # "rows": (N, C) with classes last; "elementwise": any shape (1-D here)
    make: Callable
    options: dict = field(default_factory=dict)
    reduction: str = "mean"
    #: No exp/log per element: at two threads the kernel should be limited by memory.
    memory_bound: bool = False
    known: bool = True  # False: made up from the loss's family (no peers)

    @property
    def numpy(self):
        return numpy_impl.FUNCTIONS.get(self.name) if self.known else None

    @property
    def torch(self):
        return torch_impl.FUNCTIONS.get(self.name) if self.known else None

    @property
    def torch_kind(self):
        return torch_impl.KIND.get(self.name) if self.known else None

    @property
    def jax(self):
        return jax_impl.FUNCTIONS.get(self.name) if self.known else None


def _s(name, layout, make, *, memory_bound=False, reduction="mean", **options):
    return Spec(name, layout, make, options, reduction, memory_bound)


SPECS = {
    s.name: s
    for s in (
        _s("cross_entropy", "rows", _logits_index),
        _s("nll_loss", "rows", _logprob_index, memory_bound=True),
        _s("softmax_focal_loss", "rows", _logits_index),
        _s("multi_margin_loss", "rows", _scores_index, memory_bound=True),
        _s("kl_div_with_logits", "rows", _two_logits, reduction="batchmean", temperature=2.0),
        _s("js_div_with_logits", "rows", _two_logits, reduction="batchmean"),
        _s("softmax_entropy", "rows", _logits_only),
        _s("binary_cross_entropy", "elementwise", _probabilities),
        _s("binary_cross_entropy_with_logits", "elementwise", _logits_soft),
        _s("sigmoid_focal_loss", "elementwise", _logits_binary),
        _s("soft_margin_loss", "elementwise", _scores_pm1),
        _s("mse_loss", "elementwise", _regression, memory_bound=True),
        _s("l1_loss", "elementwise", _regression, memory_bound=True),
        _s("smooth_l1_loss", "elementwise", _regression, memory_bound=True),
        _s("huber_loss", "elementwise", _regression, memory_bound=True),
        _s("log_cosh_loss", "elementwise", _regression),
        _s("hinge_loss", "elementwise", _scores_pm1, memory_bound=True),
        _s("squared_hinge_loss", "elementwise", _scores_pm1, memory_bound=True),
        _s("perceptron_loss", "elementwise", _scores_pm1, memory_bound=True),
        _s("exponential_loss", "elementwise", _scores_pm1),
        _s("zero_one_loss", "elementwise", _scores_pm1, memory_bound=True),
        _s("poisson_nll_loss", "elementwise", _counts),
        _s("kl_div", "rows", _log_probs_probs, reduction="batchmean"),
    )
}


def spec(name: str) -> Spec:
    """The loss's :class:`Spec` (one made from its family if it has none)."""
    if name in SPECS:
        return SPECS[name]
    import fastloss

    group = fastloss.LOSSES[name].group
    layout, make = _BY_GROUP.get(group, ("elementwise", _regression))
    return Spec(name, layout, make, known=False)


# =============================================================================== cases
ROLES = ("latency", "medium", "large")
FAMILY_ORDER = ("classification", "divergence", "binary", "regression", "margin", "count")


@dataclass(frozen=True)
class Case:
    loss: str
    shape: tuple
    role: str  # "latency" | "medium" | "large" | "extra" (a large one beyond the three) | "sweep"
    options: tuple = ()  # (key, value) pairs beyond the spec's
    variant: str = ""  # data variant ("probs": probability targets)
    tag: str = ""  # label suffix for options / variants

    @property
    def spec(self) -> Spec:
        return spec(self.loss)

    @property
    def label(self) -> str:
        if len(self.shape) == 1:
            s = _count_label(self.shape[0])
        else:
            s = "x".join(str(v) for v in self.shape)
        return f"{s} {self.tag}" if self.tag else s

    @property
    def id(self) -> str:
        return f"{self.loss}-{self.label.replace(' ', '-')}"

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def all_options(self) -> dict:
        return {**self.spec.options, **dict(self.options)}

    @property
    def per_call(self) -> bool:
        return self.role == "latency"

    @property
    def big(self) -> bool:
        """Large enough for the copy bandwidth comparison and the 1 vs N thread run."""
        return self.role in ("large", "extra")

    def make(self, seed: int = 0) -> tuple:
        rng = np.random.default_rng(seed)
        return self.spec.make(self.shape, rng, self.variant)


def _count_label(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1 << 10 and n % (1 << 10) == 0 and n > 1 << 10:
        return f"{n >> 10}K"
    return str(n)


#: Sizes: latency, medium, large for each layout (rows: (N, C); elementwise: elements).
SIZES = {
    "full": {"rows": ((32, 10), (4096, 1000), (65536, 1000)),
             "elementwise": (1 << 10, 1 << 20, 1 << 24)},
    "quick": {"rows": ((32, 10), (1024, 1000), (8192, 1000)),
              "elementwise": (1 << 10, 1 << 18, 1 << 21)},
}

#: Time against batch size (the plot): cross_entropy at 1000 classes, mse_loss.
SWEEP = {
    "full": {"cross_entropy": (64, 1024, 16384), "mse_loss": (1 << 16, 1 << 22)},
    "quick": {"cross_entropy": (64, 4096), "mse_loss": (1 << 14, 1 << 20)},
}


def scale_from_env() -> float:
    v = os.environ.get("FASTLOSS_BENCH_SCALE", "")
    return float(v) if v else 1.0


def _scaled(shape, scale):
    if scale == 1.0:
        return tuple(shape)
    return (max(2, int(round(shape[0] * scale))), *shape[1:])


def _elementwise_shape(spec_, n):
    """1-D, or (rows, classes) for a row-wise loss in the elementwise sizes (``kl_div``)."""
    if spec_.layout == "rows":
        c = 1024 if n >= 1 << 16 else 32
        return (max(1, n // c), c)
    return (n,)


def is_class_rows(spec_):
    """Row losses with a class axis (softmax family, multi-margin); ``kl_div`` is
    elementwise math on (N, C) and gets the elementwise sizes."""
    return spec_.layout == "rows" and spec_.name != "kl_div"


def case_list(quick: bool = False, scale: float = 1.0, losses=None) -> list[Case]:
    """Every loss (``fastloss.LOSSES`` order, or ``losses``) at its three sizes, then
    cross_entropy's extra shapes and options, then the batch-size sweep."""
    import fastloss

    mode = "quick" if quick else "full"
    if losses is None:  # family by family (the report's order), registry order within
        order = {g: i for i, g in enumerate(FAMILY_ORDER)}
        losses = sorted(fastloss.LOSSES,
                        key=lambda n: order.get(fastloss.LOSSES[n].group, len(order)))
    names = list(losses)
    out = []
    for name in names:
        sp = spec(name)
        if is_class_rows(sp):
            shapes = SIZES[mode]["rows"]
        else:
            shapes = [_elementwise_shape(sp, n) for n in SIZES[mode]["elementwise"]]
        for role, shape in zip(ROLES, shapes, strict=True):
            shape = shape if role == "latency" else _scaled(shape, scale)
            out.append(Case(name, tuple(shape), role))
        if name == "cross_entropy" and not quick:
            big = _scaled(SIZES[mode]["rows"][2], scale)
            out += [
                Case(name, _scaled((8192, 32000), scale), "extra"),
                Case(name, _scaled((256, 128000), scale), "extra"),
                Case(name, big, "extra", (("label_smoothing", 0.1),), tag="label_smoothing=0.1"),
                Case(name, big, "extra", variant="probs", tag="probability targets"),
            ]
    for name, sizes in SWEEP[mode].items():
        if name not in names:
            continue
        for n in sizes:
            shape = (n, 1000) if name == "cross_entropy" else (n,)
            out.append(Case(name, _scaled(shape, scale), "sweep"))
    seen, unique = set(), []
    for c in out:  # a tiny scale can make two sizes equal
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    return unique


def bytes_moved(arrays, loss=None) -> int:
    """Minimum memory traffic of one fused call: every array read once, the gradient
    (the input's size) written once.  ``nll_loss`` reads one log-probability per row, not
    the whole input (counting it all read 122 % of the copy bandwidth at 65536x1000)."""
    if loss == "nll_loss":
        x = arrays[0]
        return x.nbytes + x.shape[0] * x.itemsize + sum(a.nbytes for a in arrays[1:])
    return sum(a.nbytes for a in arrays) + arrays[0].nbytes
