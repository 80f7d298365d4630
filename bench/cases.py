"""The benchmark cases: one table drives ``bench/test_bench.py`` and ``bench/report.py``.

For every loss this module knows how to make float32 data and, for each implementation,
a *setup* callable ``setup(data) -> fn`` where ``fn()`` computes the loss **and** its
gradient once and returns ``(loss, grad)``:

``fastloss``
    the public call with its defaults (allocates the gradient).
``fastloss_out``
    the same call writing the gradient into a preallocated ``out=`` buffer.
``numpy``
    a straightforward, reasonably efficient float32 NumPy implementation.
``torch``
    ``torch.nn.functional.<loss>`` on a fresh leaf tensor ``requires_grad_()`` plus
    ``.backward()`` -- what a PyTorch user writes to get the same two results.

A loss whose fastloss function is not in ``fastloss.LOSSES`` yet keeps its ``numpy`` and
``torch`` entries; its fastloss entries are reported as missing (``available()``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import fastloss

IMPLS = ("fastloss", "fastloss_out", "numpy", "torch")
FASTLOSS_IMPLS = ("fastloss", "fastloss_out")

_F32 = np.float32


# =============================================================================== data
def _ce_data(shape, rng):
    n, c = shape
    x = rng.standard_normal((n, c), dtype=_F32)
    x *= 3.0
    y = rng.integers(0, c, size=n, dtype=np.int64)
    return {"input": x, "target": y}


def _bce_data(shape, rng):
    x = rng.standard_normal(shape, dtype=_F32)
    x *= 3.0
    y = rng.random(shape, dtype=_F32)  # soft targets in [0, 1)
    return {"input": x, "target": y}


def _reg_data(shape, rng):
    x = rng.standard_normal(shape, dtype=_F32)
    x *= 2.0
    y = rng.standard_normal(shape, dtype=_F32)
    return {"input": x, "target": y}


# ============================================================ NumPy implementations
# float32 throughout (as a NumPy user would write it), a float64 accumulator only for the
# final mean, in-place operations where they are obvious.
def _np_cross_entropy(x, y):
    n = x.shape[0]
    rows = np.arange(n)
    g = np.subtract(x, x.max(axis=1, keepdims=True))  # shifted logits, becomes the grad
    picked = g[rows, y]
    np.exp(g, out=g)
    s = g.sum(axis=1)
    loss = (np.log(s) - picked).mean(dtype=np.float64)
    g *= (1.0 / (s * n)).astype(_F32)[:, None]  # softmax / n
    g[rows, y] -= _F32(1.0 / n)
    return _F32(loss), g


def _np_bce_with_logits(x, y):
    n = x.size
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)  # exp(-|x|) in (0, 1]
    loss = np.log1p(e)
    loss += np.maximum(x, 0)
    loss -= x * y
    # sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) for x < 0
    d = e + 1.0
    g = np.where(x >= 0, 1.0, e)
    g /= d
    g -= y
    g *= _F32(1.0 / n)
    return _F32(loss.sum(dtype=np.float64) / n), g


def _np_mse_loss(x, y):
    n = x.size
    d = np.subtract(x, y)
    loss = float(np.vdot(d, d)) / n
    d *= _F32(2.0 / n)
    return _F32(loss), d


def _np_huber_loss(x, y, delta=1.0):
    n = x.size
    d = np.subtract(x, y)
    a = np.abs(d)
    q = np.minimum(a, _F32(delta))
    a -= _F32(0.5) * q  # |d| - q/2
    loss = float(np.vdot(q, a)) / n  # q * (|d| - q/2): 0.5 d^2 inside, delta(|d| - delta/2) out
    np.clip(d, -delta, delta, out=d)
    d *= _F32(1.0 / n)
    return _F32(loss), d


# ============================================================ torch implementations
def _torch_fn(name):
    import torch.nn.functional as F

    return {
        "cross_entropy": F.cross_entropy,
        "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
        "mse_loss": F.mse_loss,
        "huber_loss": F.huber_loss,
    }[name]


def torch_setup():
    """Import torch lazily (the callers pin its threads: ``torch.set_num_threads``)."""
    import torch

    return torch


# ======================================================================= the table
@dataclass(frozen=True)
class LossSpec:
    name: str
    make_data: Callable  # (shape, rng) -> {"input": ..., "target": ...}
    numpy_fn: Callable  # (input, target) -> (loss, grad)
    kwargs: dict = field(default_factory=dict)  # options passed to every implementation


SPECS = {
    "cross_entropy": LossSpec("cross_entropy", _ce_data, _np_cross_entropy),
    "binary_cross_entropy_with_logits": LossSpec(
        "binary_cross_entropy_with_logits", _bce_data, _np_bce_with_logits
    ),
    "mse_loss": LossSpec("mse_loss", _reg_data, _np_mse_loss),
    "huber_loss": LossSpec("huber_loss", _reg_data, _np_huber_loss),
}


@dataclass(frozen=True)
class Case:
    loss: str
    shape: tuple
    size: str  # "small": always runs as a plain test; "full": the benchmark shapes
    targets: tuple = ()  # (metric, threshold) pairs the report checks, e.g. ("vs_torch", 10)
    per_call: bool = False  # tiny input: time many calls per sample, report time per call

    @property
    def label(self) -> str:
        if len(self.shape) == 1:
            n = self.shape[0]
            if n >= 1 << 20 and n % (1 << 20) == 0:
                return f"{n >> 20}M"
            return str(n)
        return "x".join(str(s) for s in self.shape)

    @property
    def id(self) -> str:
        return f"{self.loss}-{self.label}"

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def spec(self) -> LossSpec:
        return SPECS[self.loss]


_CE_BIG_TARGETS = (("vs_torch", 10.0), ("bw_out", 0.60))
_ELEMENTWISE = ("binary_cross_entropy_with_logits", "mse_loss", "huber_loss")
_M16 = 16_777_216

#: The benchmark shapes (the issue's) -- ``report.py`` default, ``test_bench.py`` with
#: ``--benchmark-enable`` or ``FASTLOSS_BENCH_FULL=1``.
FULL_CASES = [
    Case("cross_entropy", (65536, 1000), "full", _CE_BIG_TARGETS),
    Case("cross_entropy", (8192, 32000), "full", _CE_BIG_TARGETS),
    Case("cross_entropy", (256, 128000), "full"),
    Case("cross_entropy", (32, 10), "small", (("vs_torch", 5.0),), per_call=True),
    *[Case(name, (_M16,), "full") for name in _ELEMENTWISE],
]

#: ``report.py --quick``: the same roles at smaller shapes (target verdicts indicative only).
QUICK_CASES = [
    Case("cross_entropy", (8192, 1000), "full", _CE_BIG_TARGETS),
    Case("cross_entropy", (512, 32000), "full", _CE_BIG_TARGETS),
    Case("cross_entropy", (32, 128000), "full"),
    Case("cross_entropy", (32, 10), "small", (("vs_torch", 5.0),), per_call=True),
    *[Case(name, (1 << 21,), "full") for name in _ELEMENTWISE],
]

#: Stand-ins the normal test run executes once each (odd sizes hit the loop tails).
SMALL_CASES = [
    Case("cross_entropy", (32, 10), "small", per_call=True),
    Case("cross_entropy", (129, 1000), "small"),
    Case("cross_entropy", (3, 32000), "small"),
    Case("cross_entropy", (2, 128000), "small"),
    Case("cross_entropy", (1029, 917), "small"),
    *[Case(name, (100_003,), "small") for name in _ELEMENTWISE],
]


def registered(loss: str) -> bool:
    return loss in fastloss.LOSSES


def available(case: Case) -> tuple:
    """The implementations that can run now (fastloss ones only once the loss is registered)."""
    return tuple(i for i in IMPLS if i not in FASTLOSS_IMPLS or registered(case.loss))


# ======================================================================= data cache
_data_cache: dict = {}


def get_data(case: Case, seed: int = 0) -> dict:
    """The case's arrays, generated once.  One slot: asking for another case frees the
    previous one (the big cases are 0.26-1 GB each)."""
    key = (case.loss, case.shape, seed)
    if key not in _data_cache:
        _data_cache.clear()
        rng = np.random.default_rng(seed)
        _data_cache[key] = case.spec.make_data(case.shape, rng)
    return _data_cache[key]


def clear_data() -> None:
    _data_cache.clear()


# ========================================================================== setups
def setup(case: Case, impl: str, data: dict | None = None) -> Callable:
    """``fn`` such that ``fn()`` returns ``(loss, grad)`` for ``impl`` on the case's data.

    torch returns tensors; :func:`as_numpy` converts.  Nothing is timed here: the
    ``out=`` buffer is allocated (and touched) and torch tensors wrapped up front.
    """
    data = get_data(case) if data is None else data
    x, t = data["input"], data["target"]
    kw = case.spec.kwargs
    if impl == "fastloss":
        f = fastloss.LOSSES[case.loss].fn
        return lambda: f(x, t, **kw)
    if impl == "fastloss_out":
        f = fastloss.LOSSES[case.loss].fn
        buf = np.zeros_like(x)  # zeros: pages are faulted in before timing

        return lambda: f(x, t, out=buf, **kw)
    if impl == "numpy":
        g = case.spec.numpy_fn
        return lambda: g(x, t, **kw)
    if impl == "torch":
        torch = torch_setup()
        F = _torch_fn(case.loss)
        xt = torch.from_numpy(x)
        tt = torch.from_numpy(t)

        def run():
            leaf = xt.detach().requires_grad_()  # a fresh leaf: no grad accumulation
            loss = F(leaf, tt, **kw)
            loss.backward()
            return loss.detach(), leaf.grad

        return run
    raise ValueError(f"unknown implementation {impl!r}")


def as_numpy(res) -> tuple:
    """``(loss, grad)`` of any implementation as (float, ndarray)."""
    loss, grad = res
    if hasattr(loss, "detach"):
        loss = loss.detach().numpy()
    if hasattr(grad, "detach"):
        grad = grad.detach().numpy()
    return float(loss), np.asarray(grad)


def bytes_moved(case: Case, data: dict | None = None) -> int:
    """Minimum memory traffic of one fused call: every input array read once and the
    gradient written once (for cross-entropy: logits + labels read, gradient written)."""
    data = get_data(case) if data is None else data
    return data["input"].nbytes * 2 + data["target"].nbytes
