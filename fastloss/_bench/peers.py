"""The optional peers (PyTorch, JAX, matplotlib), each imported only when the benchmark
runs and each allowed to be missing, and the zero-argument calls the timer runs.

A peer that fails to import is recorded as ``"not installed"`` (with the error) and its
columns show it; nothing else changes.  ``modules`` maps a peer to the module imported
for it, so a test can make an import fail without touching the real library.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MODULES = {"torch": "torch", "jax": "jax", "matplotlib": "matplotlib"}


class Peers:
    """The peers that imported, with a status line for each."""

    def __init__(self, modules: dict | None = None, threads: int = 2, load=("torch", "jax")):
        self.modules = {**MODULES, **(modules or {})}
        self.status: dict[str, dict] = {}
        self.torch = self.jax = self._mpl = None
        if "torch" in load:
            self.torch = self._load("torch")  # its thread count: set by the runner
        if "jax" in load:
            # CPU only (no accelerator probing); XLA sizes its thread pool at start-up
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
            if threads == 1:
                os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                      "intra_op_parallelism_threads=1")
            self.jax = self._load("jax")
            if self.jax is not None:
                importlib.import_module("jax.numpy")  # the submodules the peer uses
                importlib.import_module("jax.scipy.special")

    def _load(self, name):
        try:
            mod = importlib.import_module(self.modules[name])
        except ImportError as e:
            self.status[name] = {"available": False, "version": None,
                                 "reason": f"not installed ({e})"}
            return None
        except Exception as e:  # noqa: BLE001 - a broken install is reported, not fatal
            self.status[name] = {"available": False, "version": None,
                                 "reason": f"failed to import ({type(e).__name__}: {e})"}
            return None
        self.status[name] = {"available": True, "version": getattr(mod, "__version__", "?"),
                             "reason": ""}
        return mod

    def matplotlib(self):
        """matplotlib with the Agg backend, or None (status recorded)."""
        if "matplotlib" not in self.status:
            self._mpl = self._load("matplotlib")
            if self._mpl is not None:
                self._mpl.use("Agg")
        return self._mpl

    def available(self, name) -> bool:
        return self.status.get(name, {}).get("available", False)

    def label(self, name) -> str:
        s = self.status[name]
        return s["version"] if s["available"] else s["reason"]


@dataclass
class Call:
    """One implementation on one case: ``fn()`` computes the loss and gradient.

    ``prepare`` runs untimed before each timed call (in place: restore the input);
    ``fl_threads`` / ``torch_threads`` switch the thread count around a sample.
    """

    fn: Callable
    prepare: Callable | None = None
    fl_threads: int | None = None
    torch_threads: int | None = None


def make_call(case, impl: str, arrays: tuple, peers: Peers) -> Call | None:
    """The :class:`Call` of ``impl`` on ``case``'s ``arrays`` (None: not available)."""
    import fastloss

    sp = case.spec
    opts = dict(case.all_options, reduction=sp.reduction)
    x, rest = arrays[0], arrays[1:]
    if impl.startswith("fastloss"):
        f = fastloss.LOSSES[case.loss].fn
        if impl == "fastloss":
            return Call(lambda: f(*arrays, **opts))
        if impl == "fastloss_1t":
            return Call(lambda: f(*arrays, **opts), fl_threads=1)
        if impl == "fastloss_out":
            # the input freshly copied (untimed) before every call, as in place: both
            # calls then read an input the same copy has just written (otherwise the
            # out= call's input is the one the copies read, cached at medium sizes, and
            # in place's is not), so the two figures compare the calls, not the caches
            buf = np.zeros_like(x)  # zeros: its pages are mapped before timing
            fresh = np.zeros_like(x)
            return Call(lambda: f(fresh, *rest, out=buf, **opts),
                        prepare=lambda: np.copyto(fresh, x))
        if impl == "fastloss_inplace":
            # out=input overwrites the input: a fresh copy of it before every timed call
            scratch = np.zeros_like(x)
            return Call(lambda: f(scratch, *rest, out=scratch, **opts),
                        prepare=lambda: np.copyto(scratch, x))
    opts.pop("reduction")
    if impl == "numpy":
        g = sp.numpy
        return None if g is None else Call(lambda: g(*arrays, **opts))
    if impl in ("torch", "torch_1t"):
        tf = sp.torch
        if tf is None or peers.torch is None:
            return None
        return Call(_torch_call(peers.torch, tf, arrays, opts),
                    torch_threads=1 if impl == "torch_1t" else None)
    if impl == "jax":
        jf = sp.jax
        if jf is None or peers.jax is None:
            return None
        return Call(_jax_call(peers.jax, jf, arrays, opts))
    raise ValueError(f"unknown implementation {impl!r}")


def _torch_call(torch, tf, arrays, opts):
    tensors = [torch.from_numpy(a) for a in arrays]
    x, rest = tensors[0], tensors[1:]

    def run():
        leaf = x.detach().requires_grad_()  # a fresh leaf: no gradient accumulation
        loss = tf(leaf, *rest, **opts)
        loss.backward()
        return loss.detach(), leaf.grad

    return run


def _jax_call(jax, jf, arrays, opts):
    import jax.numpy as jnp

    # JAX runs with 32-bit integers by default: int64 class indices are passed as int32
    jarrays = [jnp.asarray(a.astype(np.int32) if a.dtype == np.int64 else a) for a in arrays]
    jax_jit = jax.jit
    vg = jax_jit(jax.value_and_grad(functools.partial(jf, **opts)))

    def run():
        loss, g = vg(*jarrays)
        g.block_until_ready()
        return loss, g

    return run


def as_numpy(res) -> tuple:
    """``(loss, grad)`` of any implementation as (float, ndarray)."""
    loss, grad = res
    if hasattr(loss, "detach"):
        loss = loss.detach().numpy()
    if hasattr(grad, "detach"):
        grad = grad.detach().numpy()
    return float(np.asarray(loss)), np.asarray(grad)
