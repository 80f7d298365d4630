"""The one registry that drives correctness tests and benchmarks.

``REGISTRY = {loss_name: {"fastloss": f, "numpy": f, "torch": f_or_None, "inputs": f, ...}}``

It is assembled from the ``REFERENCES`` dict of every ``tests/reference_*.py`` module, so
each family owns its own file (``reference_softmax.py``, ``reference_pointwise.py``, ...)
and nobody edits this one.  Entry keys:

``fastloss``  callable ``(*args, **kw) -> LossResult``: the fastloss function (resolved at
              call time, so the registry imports even before a loss exists).
``numpy``     float64 NumPy reference with the same signature, returning ``(loss, grad)``.
``torch``     callable taking the same arguments as ``torch`` tensors and returning the
              loss tensor (autograd gives the gradient), or ``None`` when PyTorch has no
              such loss.  Use ``tests.conftest.torch_loss_and_grad`` to run it.
``inputs``    ``inputs(rng, shape, dtype) -> (args, kwargs)``: NumPy arguments for all three
              (``shape`` is the input's shape; for class losses ``(N, C)``).
``group``     free-form family name (``"softmax"``, ``"pointwise"``, ...).

A module may add more keys (e.g. ``"reductions"``, ``"kwargs"`` variants for benchmarks);
consumers must ignore keys they do not know.

Usage::

    from tests.registry import REGISTRY, names
    for name in names("softmax"): ...
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

__all__ = ["REGISTRY", "load", "names"]

_REQUIRED = ("fastloss", "numpy", "torch", "inputs")


def load() -> dict:
    """Import every ``tests/reference_*.py`` and merge their ``REFERENCES`` dicts.

    Raises ``ValueError`` when two modules register the same loss or an entry lacks a
    required key.
    """
    here = Path(__file__).resolve().parent
    pkg = __name__.rpartition(".")[0]
    merged: dict = {}
    owners: dict = {}
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not info.name.startswith("reference_"):
            continue
        modname = f"{pkg}.{info.name}" if pkg else info.name
        mod = importlib.import_module(modname)
        for name, entry in getattr(mod, "REFERENCES", {}).items():
            if name in merged:
                raise ValueError(
                    f"loss {name!r} registered by both {owners[name]} and {info.name}"
                )
            missing = [k for k in _REQUIRED if k not in entry]
            if missing:
                raise ValueError(f"registry entry {name!r} in {info.name} lacks {missing}")
            merged[name] = dict(entry, module=info.name)
            owners[name] = info.name
    return merged


REGISTRY: dict = load()


def names(group: str | None = None) -> list[str]:
    """Sorted loss names, optionally only those of ``group``."""
    return sorted(k for k, v in REGISTRY.items() if group is None or v.get("group") == group)
