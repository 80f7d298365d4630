"""The JAX peer: each loss in ``jax.numpy`` (as optax writes them), timed as
``jax.value_and_grad(loss)`` compiled by ``jax.jit``, with ``block_until_ready``.

Each function takes the case's arrays (the input first) and options and returns the
scalar loss; the gradient is JAX's, with respect to the input only.  Same math and
reduction as the fastloss call of the case.
"""

from __future__ import annotations

import math


def _j():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def _picked(x, y):
    _, jnp = _j()
    return jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0]


def cross_entropy(x, y, *, label_smoothing=0.0):
    jax, jnp = _j()
    if jnp.issubdtype(y.dtype, jnp.floating):  # probability targets
        return -(y * jax.nn.log_softmax(x, axis=-1)).sum(-1).mean()
    eps = label_smoothing
    per = jax.nn.logsumexp(x, axis=-1) - (1 - eps) * _picked(x, y)
    if eps:
        per = per - eps * x.mean(-1)
    return per.mean()


def nll_loss(x, y):
    return -_picked(x, y).mean()


def softmax_focal_loss(x, y, *, gamma=2.0):
    jax, jnp = _j()
    lpy = _picked(jax.nn.log_softmax(x, axis=-1), y)
    return (-((-jnp.expm1(lpy)) ** gamma) * lpy).mean()


def kl_div_with_logits(s, t, *, temperature=1.0):
    jax, _ = _j()
    T = temperature
    lt = jax.nn.log_softmax(t / T, axis=-1)
    ls = jax.nn.log_softmax(s / T, axis=-1)
    return (T * T) * (jax.numpy.exp(lt) * (lt - ls)).sum() / s.shape[0]


def js_div_with_logits(a, b, *, temperature=1.0):
    jax, jnp = _j()
    T = temperature
    lp = jax.nn.log_softmax(a / T, axis=-1)
    lq = jax.nn.log_softmax(b / T, axis=-1)
    lm = jnp.logaddexp(lp, lq) - math.log(2.0)
    return 0.5 * (jnp.exp(lp) * (lp - lm) + jnp.exp(lq) * (lq - lm)).sum() / a.shape[0]


def softmax_entropy(x):
    jax, _ = _j()
    lp = jax.nn.log_softmax(x, axis=-1)
    return -(jax.numpy.exp(lp) * lp).sum(-1).mean()


def multi_margin_loss(x, y, *, p=1, margin=1.0):
    _, jnp = _j()
    z = jnp.maximum(margin - _picked(x, y)[:, None] + x, 0.0)
    z = jnp.where(jnp.arange(x.shape[1]) == y[:, None], 0.0, z)
    return (z if p == 1 else z * z).sum(-1).mean() / x.shape[1]


def binary_cross_entropy(x, t):
    _, jnp = _j()
    lx = jnp.maximum(jnp.log(x), -100.0)
    l1 = jnp.maximum(jnp.log1p(-x), -100.0)
    return -(t * lx + (1 - t) * l1).mean()


def binary_cross_entropy_with_logits(x, t):
    jax, _ = _j()
    return -(t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x)).mean()


def sigmoid_focal_loss(x, t, *, alpha=0.25, gamma=2.0):
    jax, _ = _j()
    p = jax.nn.sigmoid(x)
    ce = -(t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean()


def soft_margin_loss(x, t):
    jax, _ = _j()
    return jax.nn.softplus(-t * x).mean()


def mse_loss(x, t):
    return ((x - t) ** 2).mean()


def l1_loss(x, t):
    _, jnp = _j()
    return jnp.abs(x - t).mean()


def huber_loss(x, t, *, delta=1.0):
    _, jnp = _j()
    a = jnp.abs(x - t)
    return jnp.where(a < delta, 0.5 * a * a, delta * (a - 0.5 * delta)).mean()


def smooth_l1_loss(x, t, *, beta=1.0):
    _, jnp = _j()
    a = jnp.abs(x - t)
    return jnp.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta).mean()


def log_cosh_loss(x, t):
    _, jnp = _j()
    d = x - t
    return (jnp.logaddexp(d, -d) - math.log(2.0)).mean()  # optax.log_cosh


def hinge_loss(x, t, *, margin=1.0):
    _, jnp = _j()
    return jnp.maximum(0.0, margin - t * x).mean()


def perceptron_loss(x, t):
    _, jnp = _j()
    return jnp.maximum(0.0, -t * x).mean()


def squared_hinge_loss(x, t, *, margin=1.0):
    _, jnp = _j()
    return (jnp.maximum(0.0, margin - t * x) ** 2).mean()


def exponential_loss(x, t):
    _, jnp = _j()
    return jnp.exp(-t * x).mean()


def zero_one_loss(x, t):
    _, jnp = _j()
    return (t * x <= 0).astype(x.dtype).mean()


def poisson_nll_loss(x, t, *, log_input=True, full=False, eps=1e-8):
    _, jnp = _j()
    if not log_input or full:
        raise NotImplementedError("poisson_nll_loss: only log_input=True, full=False")
    return (jnp.exp(x) - t * x).mean()


def kl_div(x, t, *, log_target=False):
    jax, _ = _j()
    if log_target:
        raise NotImplementedError("kl_div: only log_target=False")
    return (jax.scipy.special.xlogy(t, t) - t * x).sum() / x.shape[0]


FUNCTIONS = {
    f.__name__: f
    for f in (
        cross_entropy, nll_loss, softmax_focal_loss, kl_div_with_logits, js_div_with_logits,
        softmax_entropy, multi_margin_loss, binary_cross_entropy,
        binary_cross_entropy_with_logits, sigmoid_focal_loss, soft_margin_loss, mse_loss,
        l1_loss, huber_loss, smooth_l1_loss, log_cosh_loss, hinge_loss, perceptron_loss,
        squared_hinge_loss, exponential_loss, zero_one_loss, poisson_nll_loss, kl_div,
    )
}
