"""fastloss: fused loss + gradient kernels for NumPy arrays, compiled with Numba.

Every loss returns ``LossResult(loss, grad)`` from one pass over the data; see
``SPEC.md`` in the project docs for the contract and ``README.md`` for examples.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from ._config import get_num_threads, set_num_threads, threading_layer
from ._core import LOSSES, LossResult, release_buffers

# --- softmax family (fastloss/softmax.py)
from .softmax import (
    cross_entropy,
    js_div_with_logits,
    kl_div_with_logits,
    log_softmax,
    logsumexp,
    nll_loss,
    softmax,
    softmax_entropy,
    softmax_focal_loss,
)

# --- elementwise families (fastloss/pointwise.py): added by the pointwise work
from .pointwise import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    exponential_loss,
    hinge_loss,
    huber_loss,
    kl_div,
    l1_loss,
    log_cosh_loss,
    log_sigmoid,
    mse_loss,
    perceptron_loss,
    poisson_nll_loss,
    sigmoid,
    sigmoid_focal_loss,
    smooth_l1_loss,
    soft_margin_loss,
    squared_hinge_loss,
    zero_one_loss,
)
from .multimargin import multi_margin_loss

from ._warmup import warmup  # noqa: E402  (after every loss is registered)

try:
    __version__ = _version("fastloss")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0+unknown"


def _group(name):
    return sorted(k for k, v in LOSSES.items() if v.group == name)


#: Loss names by family, for parametrising tests and benchmarks.
CLASSIFICATION_LOSSES = _group("classification")
BINARY_LOSSES = _group("binary")
REGRESSION_LOSSES = _group("regression")
MARGIN_LOSSES = _group("margin")
COUNT_LOSSES = _group("count")
DIVERGENCE_LOSSES = _group("divergence")

__all__ = sorted(
    [
        "BINARY_LOSSES",
        "CLASSIFICATION_LOSSES",
        "COUNT_LOSSES",
        "DIVERGENCE_LOSSES",
        "LOSSES",
        "LossResult",
        "MARGIN_LOSSES",
        "multi_margin_loss",
        "REGRESSION_LOSSES",
        "__version__",
        "cross_entropy",
        "get_num_threads",
        "js_div_with_logits",
        "kl_div_with_logits",
        "log_softmax",
        "logsumexp",
        "nll_loss",
        "release_buffers",
        "set_num_threads",
        "softmax",
        "softmax_entropy",
        "softmax_focal_loss",
        "threading_layer",
        "binary_cross_entropy",  # pointwise
        "binary_cross_entropy_with_logits",  # pointwise
        "exponential_loss",  # pointwise
        "hinge_loss",  # pointwise
        "huber_loss",  # pointwise
        "kl_div",  # pointwise
        "l1_loss",  # pointwise
        "log_cosh_loss",  # pointwise
        "log_sigmoid",  # pointwise
        "mse_loss",  # pointwise
        "perceptron_loss",  # pointwise
        "poisson_nll_loss",  # pointwise
        "sigmoid",  # pointwise
        "sigmoid_focal_loss",  # pointwise
        "smooth_l1_loss",  # pointwise
        "soft_margin_loss",  # pointwise
        "squared_hinge_loss",  # pointwise
        "zero_one_loss",  # pointwise
        "warmup",
    ]
)
