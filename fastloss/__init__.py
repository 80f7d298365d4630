"""fastloss: fused loss + gradient kernels for NumPy arrays, compiled with Numba.

Every loss returns ``LossResult(loss, grad)`` from one pass over the data; see
``SPEC.md`` in the project docs for the contract and ``README.md`` for examples.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from ._config import get_num_threads, set_num_threads, threading_layer
from ._core import LOSSES, LossResult, release_buffers
from ._warmup import warmup  # noqa: E402  (after every loss is registered)
from .boost import OBJECTIVES, GradHess, grad_hess, init_score, objective_loss
from .multimargin import multi_margin_loss

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

__all__ = [
    "BINARY_LOSSES",
    "CLASSIFICATION_LOSSES",
    "COUNT_LOSSES",
    "DIVERGENCE_LOSSES",
    "GradHess",
    "LOSSES",
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
