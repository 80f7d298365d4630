"""fastloss: fused loss + gradient kernels for NumPy arrays, compiled with Numba.

Every loss returns ``LossResult(loss, grad)`` from one pass over the data; see
``SPEC.md`` in the project docs for the contract and ``README.md`` for examples.
"""

# Start-up: ``import fastloss`` imports NumPy and nothing else.  Numba and the kernel
# modules load on the first use of a name (PEP 562 module ``__getattr__``), and only the
# module that name lives in: ``fl.cross_entropy`` loads the softmax family, not the
# boosting or elementwise ones.  ``python -X importtime -c "import fastloss"`` shows it.
import importlib as _importlib
import sys as _sys
import types as _types

import numpy as _np  # noqa: F401  (every entry point needs it; keeps the order stable)


class _Package(_types.ModuleType):
    """The package object.  Importing the submodule ``fastloss.softmax`` sets the
    attribute ``softmax`` on its parent; the function of that name must win."""

    def __setattr__(self, name, value):
        if name == "softmax" and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

_MODULES = {
    "_config": ("get_num_threads", "set_num_threads", "threading_layer"),
    "_core": ("LossResult", "release_buffers"),
    "_warmup": ("warmup",),
    "boost": ("OBJECTIVES", "GradHess", "grad_hess", "init_score", "objective_loss"),
    "linear_ce": ("LinearCEResult", "linear_cross_entropy"),
    "multimargin": ("multi_margin_loss",),
    "pointwise": (
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "exponential_loss",
        "hinge_loss",
        "huber_loss",
        "kl_div",
        "l1_loss",
        "log_cosh_loss",
        "log_sigmoid",
        "mse_loss",
        "perceptron_loss",
        "poisson_nll_loss",
        "sigmoid",
        "sigmoid_focal_loss",
        "smooth_l1_loss",
        "soft_margin_loss",
        "squared_hinge_loss",
        "zero_one_loss",
    ),
    "softmax": (
        "cross_entropy",
        "js_div_with_logits",
        "kl_div_with_logits",
        "log_softmax",
        "logsumexp",
        "nll_loss",
        "softmax",
        "softmax_entropy",
        "softmax_focal_loss",
    ),
}
_WHERE = {name: mod for mod, names in _MODULES.items() for name in names}

#: The loss families whose import fills the registry ``LOSSES``.
_FAMILIES = ("pointwise", "softmax", "multimargin")

#: Loss-name lists by family, for parametrising tests and benchmarks.
_GROUPS = {
    "CLASSIFICATION_LOSSES": "classification",
    "BINARY_LOSSES": "binary",
    "REGRESSION_LOSSES": "regression",
    "MARGIN_LOSSES": "margin",
    "COUNT_LOSSES": "count",
    "DIVERGENCE_LOSSES": "divergence",
}


def _load_losses():
    """Import every loss family (fills ``LOSSES``) and return ``LOSSES``."""
    for mod in _FAMILIES:
        _importlib.import_module(f"{__name__}.{mod}")
    return _importlib.import_module(f"{__name__}._core").LOSSES


def __getattr__(name):
    if name in _WHERE:
        value = getattr(_importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    elif name == "LOSSES":
        value = _load_losses()
    elif name in _GROUPS:
        value = sorted(k for k, v in _load_losses().items() if v.group == _GROUPS[name])
    elif name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("fastloss")
        except PackageNotFoundError:  # pragma: no cover - source tree without install
            value = "0.0.0+unknown"
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BINARY_LOSSES",
    "CLASSIFICATION_LOSSES",
    "COUNT_LOSSES",
    "DIVERGENCE_LOSSES",
    "GradHess",
    "LOSSES",
    "LinearCEResult",
    "LossResult",
    "MARGIN_LOSSES",
    "OBJECTIVES",
    "REGRESSION_LOSSES",
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "exponential_loss",
    "get_num_threads",
    "grad_hess",
    "hinge_loss",
    "huber_loss",
    "init_score",
    "js_div_with_logits",
    "kl_div",
    "kl_div_with_logits",
    "l1_loss",
    "linear_cross_entropy",
    "log_cosh_loss",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "mse_loss",
    "multi_margin_loss",
    "nll_loss",
    "objective_loss",
    "perceptron_loss",
    "poisson_nll_loss",
    "release_buffers",
    "set_num_threads",
    "sigmoid",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "softmax",
    "softmax_entropy",
    "softmax_focal_loss",
    "squared_hinge_loss",
    "threading_layer",
    "warmup",
    "zero_one_loss",
]
