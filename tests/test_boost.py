"""``fl.grad_hess``, ``fl.init_score``, ``fl.objective_loss`` (SPEC section 3).

Oracles: scikit-learn's ``sklearn._loss`` (an independent implementation of the same
derivatives, with mpmath-derived extremes in its own tests), float64 central differences
of ``fl.objective_loss`` / ``fl.grad_hess``, fastloss's own ``sigmoid_focal_loss`` (the
focal gradient) and PyTorch's double backward of torchvision's focal formula (the focal
hessian).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastloss as fl

ELEMENTWISE = ["logistic", "squared_error", "huber", "pseudo_huber", "poisson", "focal"]
ALL = ELEMENTWISE + ["softmax"]


def labels_for(name, rng, shape, K=None, soft=True):
    if name == "softmax":
        return rng.integers(0, K, shape[0])
    if name in ("logistic", "focal"):
        return rng.random(shape) if soft else (rng.random(shape) < 0.4).astype(float)
    if name == "poisson":
        return rng.poisson(2.0, shape).astype(float)
    return rng.standard_normal(shape) * 2


def data(name, rng, n=301, K=5, dtype=np.float64, soft=True):
    shape = (n, K) if name == "softmax" else (n,)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    return x, labels_for(name, rng, shape, K, soft)


# ---------------------------------------------------------------- sklearn oracle
sk = pytest.importorskip("sklearn._loss.loss")

#: margins of sklearn's own test_loss_on_specific_values (binomial extremes) plus a spread
EXTREMES = np.array(
    [-1e20, -1e3, -37.5, -37.0, -36.9, -18.0, -2.0, -1e-8, 0.0, 1e-8, 2.0, 18.0, 33.4, 37.0,
     37.5, 232.8, 232.9, 1e3, 1e20]
)


def _pairs(rng):
    """(margin, label) pairs: every extreme with labels 0, 1, 0.3 plus random ones."""
    xs = np.concatenate([np.repeat(EXTREMES, 3), rng.standard_normal(500) * 5])
    ys = np.concatenate([np.tile([0.0, 1.0, 0.3], EXTREMES.size), rng.random(500)])
    return xs, ys


def _assert_rel(a, e, rtol=1e-12, atol=0.0):
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def test_logistic_matches_sklearn_half_binomial(rng):
    x, y = _pairs(rng)
    w = rng.random(x.size) + 0.5
    for sw in (None, w):
        g, h = fl.grad_hess("logistic", x, y, sample_weight=sw)
        eg, eh = sk.HalfBinomialLoss().gradient_hessian(y, x, sample_weight=sw)
        _assert_rel(g, eg)
        _assert_rel(h, eh)
        # sklearn forms log(1 + e^x) - y x for x <= 33.3 and so loses the absolute
        # digits of x itself (2e-16 |x|): fastloss's cancellation-free form is exact there
        el = sk.HalfBinomialLoss().loss(y, x, sample_weight=sw)
        ll = fl.objective_loss("logistic", x, y, sample_weight=sw, reduction="none")
        ww = 1.0 if sw is None else sw
        assert np.all(np.abs(ll - el) <= 1e-12 * np.abs(el) + 1e-15 * ww * (1 + np.abs(x)))


def test_logistic_sklearn_specific_values():
    # sklearn/_loss/tests/test_loss.py::test_loss_on_specific_values (mpmath values)
    g, h = fl.grad_hess("logistic", np.array([-37.0]), np.array([1.0]))
    _assert_rel(g, [1e-16 - 1], 1e-15)
    _assert_rel(h, [8.533047625744065e-17], 1e-15)
    g, h = fl.grad_hess("logistic", np.array([37.0]), np.array([0.0]))
    _assert_rel(h, [8.533047625744065e-17], 1e-15)
    g, _ = fl.grad_hess("logistic", np.array([37.0]), np.array([1.0]))
    _assert_rel(g, [-8.533047625744065e-17], 1e-15)


def test_softmax_matches_sklearn_half_multinomial(rng):
    K = 6
    x = rng.standard_normal((400, K)) * 4
    x[:3] = [[1e4, 0, 7e-7, -3, 5, 1], [1e20, -1e20, 0, 0, 0, 0], [-37.5] * K]
    y = rng.integers(0, K, 400).astype(float)
    w = rng.random(400) + 0.5
    loss = sk.HalfMultinomialLoss(n_classes=K)
    for sw in (None, w):
        g, h = fl.grad_hess("softmax", x, y, sample_weight=sw)
        eg, eh = loss.gradient_hessian(y, x, sample_weight=sw)
        _assert_rel(g, eg, atol=1e-300)
        _assert_rel(h, eh, atol=1e-300)
        el = loss.loss(y, x, sample_weight=sw)
        _assert_rel(fl.objective_loss("softmax", x, y, sample_weight=sw, reduction="none"), el)


def test_poisson_and_squared_error_and_huber_match_sklearn(rng):
    x = np.concatenate([rng.standard_normal(300) * 3, [-1e3, -40, 0, 40, 300]])
    yc = rng.poisson(2.0, x.size).astype(float)
    yr = rng.standard_normal(x.size) * 3
    w = rng.random(x.size) + 0.5
    for sw in (None, w):
        g, h = fl.grad_hess("poisson", x, yc, sample_weight=sw)
        eg, eh = sk.HalfPoissonLoss().gradient_hessian(yc, x, sample_weight=sw)
        _assert_rel(g, eg)
        _assert_rel(h, eh)
        _assert_rel(
            fl.objective_loss("poisson", x, yc, sample_weight=sw, reduction="none"),
            sk.HalfPoissonLoss().loss(yc, x, sample_weight=sw),
        )
        g, h = fl.grad_hess("squared_error", x, yr, sample_weight=sw)
        eg, eh = sk.HalfSquaredError().gradient_hessian(yr, x, sample_weight=sw)
        _assert_rel(g, eg)
        _assert_rel(h, eh)
        hub = sk.HuberLoss(delta=0.7)
        hub.closs.delta = 0.7
        g, h = fl.grad_hess("huber", x, yr, sample_weight=sw, delta=0.7)
        eg, eh = hub.gradient_hessian(yr, x, sample_weight=sw)
        _assert_rel(g, eg)
        _assert_rel(h, eh)
        _assert_rel(
            fl.objective_loss("huber", x, yr, sample_weight=sw, reduction="none", delta=0.7),
            hub.loss(yr, x, sample_weight=sw),
        )


def test_init_score_matches_sklearn_fit_intercept_only(rng):
    w = rng.random(500) + 0.1
    yb = (rng.random(500) < 0.3).astype(float)
    yc = rng.integers(0, 4, 500)
    yp = rng.poisson(1.5, 500).astype(float)
    for sw in (None, w):
        _assert_rel(fl.init_score("logistic", yb, sw),
                    sk.HalfBinomialLoss().fit_intercept_only(yb, sw), 1e-12)
        _assert_rel(fl.init_score("softmax", yc, sw),
                    sk.HalfMultinomialLoss(n_classes=4).fit_intercept_only(yc.astype(float), sw),
                    1e-12, 1e-15)
        _assert_rel(fl.init_score("poisson", yp, sw),
                    sk.HalfPoissonLoss().fit_intercept_only(yp, sw), 1e-12)
        _assert_rel(fl.init_score("squared_error", yp, sw), np.average(yp, weights=sw), 1e-12)


# ------------------------------------------------------------ central differences
def _numeric(f, x, eps):
    """4th-order central difference of f (elementwise in x) at x."""
    return (-f(x + 2 * eps) + 8 * f(x + eps) - 8 * f(x - eps) + f(x - 2 * eps)) / (12 * eps)


OPTIONS = {
    "logistic": [{}],
    "squared_error": [{}],
    "huber": [{"delta": 0.8}],
    "pseudo_huber": [{"delta": 1.0}, {"delta": 0.3}],
    "poisson": [{}],
    "focal": [
        {"gamma": 2.0, "min_hess": -np.inf},
        {"gamma": 0.5, "alpha": 0.25, "min_hess": -np.inf},
        {"gamma": 0.0},
        {"gamma": 3.0, "min_hess": -np.inf},
    ],
}


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("soft", [True, False])
def test_elementwise_derivatives_central_differences(name, soft, rng):
    x, y = data(name, rng, n=400, soft=soft)
    for opts in OPTIONS[name]:
        xx, yy = x, y
        if name == "huber":  # keep away from the kinks at |x - y| = delta
            keep = np.abs(np.abs(x - y) - opts["delta"]) > 1e-3
            xx, yy = x[keep], y[keep]
        g, h = fl.grad_hess(name, xx, yy, **opts)

        def loss(v, yy=yy, opts=opts):
            return fl.objective_loss(name, v, yy, reduction="none", **opts)

        def grad(v, yy=yy, opts=opts):
            return fl.grad_hess(name, v, yy, **opts).grad

        np.testing.assert_allclose(g, _numeric(loss, xx, 1e-4), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(h, _numeric(grad, xx, 1e-4), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    "opts",
    [{}, {"label_smoothing": 0.2}, {"class_weight": [1.0, 2.0, 0.5, 3.0, 1.5]},
     {"label_smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5, 3.0, 1.5]}],
)
def test_softmax_derivatives_central_differences(opts, rng):
    x, y = data("softmax", rng, n=60, K=5)
    g, h = fl.grad_hess("softmax", x, y, **opts)
    eps = 1e-4
    for k in range(5):
        e = np.zeros_like(x)
        e[:, k] = 1.0

        def loss(t, k=k, e=e):
            return fl.objective_loss("softmax", x + t * e, y, reduction="none", **opts)

        def gk(t, k=k, e=e):
            return fl.grad_hess("softmax", x + t * e, y, **opts).grad[:, k]

        dl = (-loss(2 * eps) + 8 * loss(eps) - 8 * loss(-eps) + loss(-2 * eps)) / (12 * eps)
        dg = (-gk(2 * eps) + 8 * gk(eps) - 8 * gk(-eps) + gk(-2 * eps)) / (12 * eps)
        np.testing.assert_allclose(g[:, k], dl, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(h[:, k], dg, rtol=1e-7, atol=1e-9)


def test_softmax_hess_scale_min_hess_and_smoothing_formula(rng):
    x, y = data("softmax", rng, n=50, K=4)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    t = np.full((50, 4), 0.3 / 4)
    t[np.arange(50), y] += 0.7
    cw = np.array([1.0, 2.0, 3.0, 4.0])
    w = rng.random(50)
    g, h = fl.grad_hess("softmax", x, y, hess_scale=4 / 3, label_smoothing=0.3,
                        class_weight=cw, min_hess=0.05, sample_weight=w)
    ww = (w * cw[y])[:, None]
    np.testing.assert_allclose(g, (p - t) * ww, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h, np.maximum(4 / 3 * p * (1 - p), 0.05) * ww, rtol=1e-13)


# ----------------------------------------------------------------------- focal
def test_focal_gradient_is_sigmoid_focal_loss_gradient(rng):
    x, y = data("focal", rng, n=500)
    for gamma, alpha in ((2.0, 0.25), (0.5, 0.75), (1.0, None)):
        g, _ = fl.grad_hess("focal", x, y, gamma=gamma, alpha=alpha)
        loss, eg = fl.sigmoid_focal_loss(x, y, alpha=-1 if alpha is None else alpha,
                                         gamma=gamma, reduction="none")
        np.testing.assert_allclose(g, eg, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            fl.objective_loss("focal", x, y, gamma=gamma, alpha=alpha, reduction="none"),
            loss, rtol=1e-12, atol=1e-15)


def test_focal_hessian_matches_torch_double_backward(rng):
    torch = pytest.importorskip("torch")
    x = np.concatenate([rng.standard_normal(300) * 4, [-30.0, -8.0, 8.0, 30.0]])
    for soft in (True, False):
        y = rng.random(x.size) if soft else (rng.random(x.size) < 0.5).astype(float)
        for gamma, alpha in ((2.0, 0.25), (0.5, None), (3.0, 0.6)):
            xt = torch.tensor(x, requires_grad=True)
            yt = torch.tensor(y)
            p = torch.sigmoid(xt)
            ce = torch.nn.functional.binary_cross_entropy_with_logits(xt, yt, reduction="none")
            m = p * (1 - yt) + (1 - p) * yt
            at = 1.0 if alpha is None else alpha * yt + (1 - alpha) * (1 - yt)
            loss = (at * m**gamma * ce).sum()
            (gt,) = torch.autograd.grad(loss, xt, create_graph=True)
            (ht,) = torch.autograd.grad(gt.sum(), xt)
            g, h = fl.grad_hess("focal", x, y, gamma=gamma, alpha=alpha, min_hess=-np.inf)
            np.testing.assert_allclose(g, gt.detach().numpy(), rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(h, ht.numpy(), rtol=1e-9, atol=1e-14)


def test_focal_gamma0_is_logistic_and_negative_hessian_floor(rng):
    x, y = data("focal", rng, n=200, soft=False)
    g0, h0 = fl.grad_hess("focal", x, y, gamma=0.0)
    g1, h1 = fl.grad_hess("logistic", x, y)
    np.testing.assert_allclose(g0, g1, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(h0, h1, rtol=1e-13, atol=1e-16)
    # badly misclassified: p_t < 0.058 at gamma = 2 gives a negative hessian
    _, h = fl.grad_hess("focal", np.array([-4.0, 4.0]), np.array([1.0, 0.0]), min_hess=-np.inf)
    assert (h < 0).all()
    _, h = fl.grad_hess("focal", np.array([-4.0, 4.0]), np.array([1.0, 0.0]))
    np.testing.assert_array_equal(h, [0.0, 0.0])  # the default floor
    _, h = fl.grad_hess("focal", np.array([-4.0, 4.0]), np.array([1.0, 0.0]), min_hess=1e-6)
    np.testing.assert_array_equal(h, [1e-6, 1e-6])


# ---------------------------------------------------------------- weights, dtypes
@pytest.mark.parametrize("name", ALL)
def test_sample_weight_multiplies_both(name, rng):
    x, y = data(name, rng)
    w = rng.random(x.shape[0]) * 3
    g, h = fl.grad_hess(name, x, y)
    gw, hw = fl.grad_hess(name, x, y, sample_weight=w)
    ww = w[:, None] if x.ndim == 2 else w
    np.testing.assert_allclose(gw, g * ww, rtol=1e-15, atol=0)
    np.testing.assert_allclose(hw, h * ww, rtol=1e-15, atol=0)
    lw = fl.objective_loss(name, x, y, sample_weight=w, reduction="none")
    l0 = fl.objective_loss(name, x, y, reduction="none")
    np.testing.assert_allclose(lw, l0 * w, rtol=1e-15)
    mean = fl.objective_loss(name, x, y, sample_weight=w)
    np.testing.assert_allclose(mean, np.sum(l0 * w) / np.sum(w), rtol=1e-12)


def test_class_weighted_mean_divides_by_the_class_weights(rng):
    """objective_loss("softmax", class_weight=cw) "mean": sum(w cw[y] loss) / sum(w cw[y]),
    as sklearn's log_loss(sample_weight=w * cw[y]) and F.cross_entropy(weight=cw)."""
    from sklearn.metrics import log_loss

    from fastloss.boost import objective_sum_and_weight

    x, y = data("softmax", rng, n=500, K=4)
    cw = np.array([0.5, 1.0, 2.5, 4.0])
    w = rng.random(500) * 2
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for sw in (None, w):
        sww = cw[y] if sw is None else cw[y] * sw
        want = log_loss(y, p, sample_weight=sww, labels=range(4))
        got = fl.objective_loss("softmax", x, y, sample_weight=sw, class_weight=cw)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        total, weight = objective_sum_and_weight("softmax", x, y, sample_weight=sw,
                                                 class_weight=cw)
        assert weight == pytest.approx(sww.sum(), rel=1e-14)
        assert total / weight == got
    want = fl.cross_entropy(x, y, weight=cw).loss
    np.testing.assert_allclose(fl.objective_loss("softmax", x, y, class_weight=cw), want,
                               rtol=1e-12)


def test_adapter_options_and_n_threads_are_checked():
    from fastloss.boost import check_n_threads, validate_options

    for bad in ([1.0, np.nan, 1.0], [1.0, np.inf], [1.0, -0.5]):
        with pytest.raises(ValueError, match="class_weight must be finite and >= 0"):
            validate_options("softmax", class_weight=bad)
    validate_options("softmax", class_weight=[0.0, 1.0, 2.0])
    for bad, exc in ((0, ValueError), (-1, ValueError), (2.5, TypeError), ("two", TypeError),
                     (True, TypeError)):
        with pytest.raises(exc, match="n_threads must be an integer >= 1 or None"):
            check_n_threads(bad)
        with pytest.raises(exc, match="n_threads"):
            fl.grad_hess("logistic", np.zeros(3), np.zeros(3), n_threads=bad)
        with pytest.raises(exc, match="n_threads"):
            fl.objective_loss("logistic", np.zeros(3), np.zeros(3), n_threads=bad)
    check_n_threads(None)
    check_n_threads(np.int64(2))


@pytest.mark.parametrize("name", ALL)
def test_float32_matches_float64(name, rng):
    x, y = data(name, rng, n=5000)
    x32 = x.astype(np.float32)
    g, h = fl.grad_hess(name, x32.astype(np.float64), y)
    g32, h32 = fl.grad_hess(name, x32, y)
    assert g32.dtype == h32.dtype == np.float32
    scale = np.abs(g).max()
    np.testing.assert_allclose(g32, g, rtol=2e-5, atol=2e-6 * scale)
    np.testing.assert_allclose(h32, h, rtol=2e-5, atol=2e-6 * np.abs(h).max())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_margins_are_finite_and_correct_in_the_limit(name, dtype):
    big = np.array([-1e20, -1e3, -100.0, 100.0, 1e3, 1e20], dtype=dtype)
    if name == "softmax":
        x = np.stack([big, -big, np.zeros_like(big)], axis=1)
        y = np.array([0, 1, 2, 0, 1, 2])
        g, h = fl.grad_hess(name, x, y)
        assert np.isfinite(g).all() and np.isfinite(h).all()
        assert (h >= 0).all()
        np.testing.assert_allclose(g.sum(1), 0.0, atol=1e-6)
        return
    y = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0], dtype=dtype)
    g, h = fl.grad_hess(name, big, y)
    if name == "poisson":  # e^r overflows for r > ~88 / ~709: the true value is inf
        assert np.isfinite(g[:3]).all() and np.isinf(g[4:]).all()
        return
    assert np.isfinite(g).all() and np.isfinite(h).all()
    if name == "logistic":
        np.testing.assert_allclose(g, [-1, -1, 3.7e-44 if dtype == np.float32 else 3.72e-44,
                                       -3.72e-44, 1, 1], rtol=0.02, atol=1e-44)
        assert (h >= 0).all() and h[0] == 0 and h[-1] == 0
    if name == "pseudo_huber":
        np.testing.assert_allclose(np.abs(g[[0, -1]]), 1.0)
        assert (h > 0).all() or (h >= 0).all()


@pytest.mark.parametrize("name", ["logistic", "softmax", "huber"])
def test_output_layouts_and_dtypes(name, rng):
    """C/F-ordered, float32/float64 outputs; F-ordered preds; the same numbers."""
    x, y = data(name, rng, n=700, K=7)
    if name != "softmax":
        x = np.stack([x, x[::-1]], 1)  # (n, 2) multi-target
        y = np.stack([y, y[::-1]], 1)
    w = rng.random(x.shape[0])
    g0, h0 = fl.grad_hess(name, x, y, sample_weight=w)
    for order in "CF":
        for dt in (np.float32, np.float64):
            go = np.full(x.shape, np.nan, dt, order=order)
            ho = np.full(x.shape, np.nan, dt, order=order)
            for xin in (x, np.asfortranarray(x)):
                r = fl.grad_hess(name, xin, y, sample_weight=w, grad_out=go, hess_out=ho)
                assert r.grad is go and r.hess is ho
                np.testing.assert_allclose(go, g0.astype(dt), rtol=1e-6 if dt == np.float32 else 0)
                np.testing.assert_allclose(ho, h0.astype(dt), rtol=1e-6 if dt == np.float32 else 0)
    gf, hf = fl.grad_hess(name, np.asfortranarray(x), y, sample_weight=w)
    assert gf.flags.f_contiguous and hf.flags.f_contiguous  # the preds' memory order
    np.testing.assert_array_equal(gf, g0)
    # strided preds, a read-only memmap-like view
    xs = np.repeat(x, 2, axis=0)[::2]
    xs.flags.writeable = False
    np.testing.assert_array_equal(fl.grad_hess(name, xs, y, sample_weight=w).grad, g0)


def test_grad_out_may_be_the_preds(rng):
    for name in ("logistic", "softmax"):
        x, y = data(name, rng, n=9000, K=4)
        g0, h0 = fl.grad_hess(name, x, y)
        xc = x.copy()
        g, h = fl.grad_hess(name, xc, y, grad_out=xc)
        assert g is xc
        np.testing.assert_array_equal(g, g0)
        np.testing.assert_array_equal(h, h0)


@pytest.mark.parametrize("n", [100, 5000, 200_000])
def test_a_bad_label_leaves_an_output_aliased_operand_intact(n):
    """grad_out / hess_out = preds or labels, and a label outside the domain: the error
    is raised with the arrays as they were, and names the label's own value."""
    rng = np.random.default_rng(1)
    for name in ("logistic", "poisson", "softmax"):
        if name == "softmax":
            preds = rng.standard_normal((n, 3))
            labels = rng.integers(0, 3, n).astype(np.float64)
            labels[n // 2] = 7.0
            exc, msg = IndexError, "7"
        else:
            preds = rng.standard_normal(n)
            labels = rng.integers(0, 2, n).astype(np.float64)
            labels[n // 2] = -3.0
            exc, msg = ValueError, "-3"
        for which in ("grad_out", "hess_out"):
            for target in ("preds", "labels"):
                p, t = preds.copy(), labels.copy()
                out = p if target == "preds" else t
                if out.shape != p.shape:
                    continue  # softmax labels are (n,), the outputs (n, K)
                with pytest.raises(exc, match=msg):
                    fl.grad_hess(name, p, t, **{which: out})
                np.testing.assert_array_equal(p, preds, err_msg=f"{name} {which}={target}")
                np.testing.assert_array_equal(t, labels, err_msg=f"{name} {which}={target}")


@pytest.mark.parametrize("name", ["logistic", "huber", "softmax"])
def test_grad_out_and_hess_out_must_not_share_memory(name, rng):
    x, y = data(name, rng, n=50, K=4)
    x0 = x.copy()
    for n_dims in (x.ndim, 2):  # the 1-D fast path, and (n, 1) margins on the general one
        xx = x if n_dims == x.ndim else x.reshape(len(x), -1)
        yy = y if n_dims == x.ndim or name == "softmax" else y.reshape(xx.shape)
        buf = np.zeros(xx.shape)
        with pytest.raises(ValueError, match="grad_out and hess_out share memory"):
            fl.grad_hess(name, xx, yy, grad_out=buf, hess_out=buf)
        both = np.zeros((2,) + xx.shape)
        part = both.reshape(-1)[1:1 + xx.size].reshape(xx.shape)  # overlaps both[0]
        with pytest.raises(ValueError, match="share memory"):
            fl.grad_hess(name, xx, yy, grad_out=both[0], hess_out=part)
        g0, h0 = fl.grad_hess(name, xx, yy)
        g, h = fl.grad_hess(name, xx, yy, grad_out=both[0], hess_out=both[1])  # disjoint
        assert np.shares_memory(g, both) and np.shares_memory(h, both)
        np.testing.assert_array_equal(both[0], g0)
        np.testing.assert_array_equal(both[1], h0)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("name", ALL)
def test_threads_and_chunks_give_the_same_bits(name, rng, threads):
    x, y = data(name, rng, n=200_003 if name != "softmax" else 40_001, K=6)
    w = rng.random(x.shape[0])
    r1 = fl.grad_hess(name, x, y, sample_weight=w, n_threads=1)
    r2 = fl.grad_hess(name, x, y, sample_weight=w, n_threads=2)
    fl.set_num_threads(2)
    r3 = fl.grad_hess(name, x, y, sample_weight=w)
    for a, b, c in zip(r1, r2, r3, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    half = x.shape[0] // 2
    part = fl.grad_hess(name, x[half:], y[half:], sample_weight=w[half:])
    np.testing.assert_array_equal(part.grad, r1.grad[half:])
    l1 = fl.objective_loss(name, x, y, sample_weight=w, n_threads=1)
    l2 = fl.objective_loss(name, x, y, sample_weight=w, n_threads=2)
    assert l1 == l2


def test_input_not_modified_and_empty(rng):
    for name in ALL:
        x, y = data(name, rng, n=50)
        xc, yc = x.copy(), y.copy()
        fl.grad_hess(name, x, y)
        fl.objective_loss(name, x, y)
        np.testing.assert_array_equal(x, xc)
        np.testing.assert_array_equal(y, yc)
        x0, y0 = x[:0], y[:0]
        g, h = fl.grad_hess(name, x0, y0)
        assert g.shape == x0.shape and h.shape == x0.shape
        assert np.isnan(fl.objective_loss(name, x0, y0))
        assert fl.objective_loss(name, x0, y0, reduction="sum") == 0.0


# ---------------------------------------------------------------------- errors
def test_bad_labels_raise_from_the_kernel():
    x = np.zeros(10_000)
    y = np.zeros(10_000)
    y[7777] = 1.5
    with pytest.raises(ValueError, match=r"in \[0, 1\].*1\.5 at index 7777"):
        fl.grad_hess("logistic", x, y)
    with pytest.raises(ValueError, match="1.5 at index 7777"):
        fl.objective_loss("focal", x, y)
    y[7777] = np.nan
    with pytest.raises(ValueError, match="nan at index 7777"):
        fl.grad_hess("focal", x, y)
    y[7777] = -1
    with pytest.raises(ValueError, match=">= 0"):
        fl.grad_hess("poisson", x, y)
    xs = np.zeros((300, 4), np.float32)
    ys = np.zeros(300, np.int64)
    ys[123] = 4
    with pytest.raises(IndexError, match=r"label 4 at row 123 .* 4 classes"):
        fl.grad_hess("softmax", xs, ys)
    ys[123] = -1
    with pytest.raises(IndexError, match="label -1 at row 123"):
        fl.grad_hess("softmax", xs, ys)
    yf = np.zeros(300, np.float32)
    yf[5] = 2.5
    with pytest.raises(ValueError, match=r"integer class indices, got 2\.5 at row 5"):
        fl.grad_hess("softmax", xs, yf)
    with pytest.raises(IndexError):
        fl.objective_loss("softmax", xs, ys)
    with pytest.raises(IndexError):
        fl.init_score("softmax", [0, 1, 5], num_class=3)
    with pytest.raises(ValueError):
        fl.init_score("logistic", [0, 2])
    with pytest.raises(ValueError, match="positive"):
        fl.init_score("poisson", [0, 0])


def test_shape_dtype_and_option_errors():
    x = np.zeros(5)
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        fl.grad_hess("logistic", x, np.zeros(4))
    with pytest.raises(ValueError, match=r"sample_weight shape \(3,\)"):
        fl.grad_hess("logistic", x, np.zeros(5), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"\(n, K\)"):
        fl.grad_hess("softmax", x, np.zeros(5))
    with pytest.raises(ValueError, match=r"labels shape \(5, 2\)"):
        fl.grad_hess("softmax", np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        fl.grad_hess("logistic", np.zeros(5, np.int64), np.zeros(5))
    with pytest.raises(TypeError, match="unknown option"):
        fl.grad_hess("logistic", x, x, delta=1.0)
    with pytest.raises(ValueError, match="unknown objective"):
        fl.grad_hess("nope", x, x)
    for name, opts in [("huber", {"delta": 0}), ("softmax", {"label_smoothing": 1.5}),
                       ("softmax", {"hess_scale": -1}), ("focal", {"gamma": -1}),
                       ("focal", {"alpha": 2}), ("logistic", {"min_hess": np.inf}),
                       ("logistic", {"min_hess": np.nan})]:
        xx = np.zeros((5, 3)) if name == "softmax" else x
        with pytest.raises(ValueError):
            fl.grad_hess(name, xx, np.zeros(5), **opts)
    with pytest.raises(ValueError, match="class_weight"):
        fl.grad_hess("softmax", np.zeros((5, 3)), np.zeros(5), class_weight=[1, 2])
    with pytest.raises(ValueError, match="grad_out has shape"):
        fl.grad_hess("logistic", x, x, grad_out=np.zeros(4))
    ro = np.zeros(5)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fl.grad_hess("logistic", x, x, hess_out=ro)
    with pytest.raises(ValueError, match="contiguous"):
        fl.grad_hess("squared_error", np.zeros((4, 4)), np.zeros((4, 4)),
                     grad_out=np.zeros((4, 8))[:, ::2])
    with pytest.raises(ValueError, match="reduction"):
        fl.objective_loss("logistic", x, x, reduction="batchmean")


# ------------------------------------------------------------------- init_score
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_init_score_zeroes_the_weighted_gradient_sum(name, rng):
    y = labels_for(name, rng, (1000,), soft=False)
    if name in ("huber", "pseudo_huber"):
        y = np.concatenate([y, [40.0, 55.0, -30.0]])  # outliers: not the mean
    w = rng.random(y.size) + 0.2
    opts = {"delta": 0.7} if name in ("huber", "pseudo_huber") else {}
    for sw in (None, w):
        b = fl.init_score(name, y, sw, **opts)
        assert isinstance(b, float)
        g, h = fl.grad_hess(name, np.full(y.size, b), y, sample_weight=sw, **opts)
        assert abs(g.sum()) <= 1e-9 * np.abs(g).sum()
        # and it is a minimum of the weighted loss
        lb = fl.objective_loss(name, np.full(y.size, b), y, sample_weight=sw, **opts)
        for d in (-1e-3, 1e-3):
            assert lb <= fl.objective_loss(name, np.full(y.size, b + d), y,
                                           sample_weight=sw, **opts)


def test_init_score_softmax_options(rng):
    y = rng.integers(0, 3, 400)
    cw = np.array([1.0, 3.0, 0.5, 2.0])  # class 3 never occurs: only smoothing gives it mass
    b = fl.init_score("softmax", y, label_smoothing=0.2, class_weight=cw, num_class=4)
    assert b.shape == (4,)
    # the optimum: the weighted gradient sum over rows is 0 for every class
    g, _ = fl.grad_hess("softmax", np.tile(b, (400, 1)), y, label_smoothing=0.2,
                        class_weight=cw)
    np.testing.assert_allclose(g.sum(0), 0.0, atol=1e-9)
    assert abs(b.sum()) < 1e-12


# init_score edge cases (an audit): softmax label errors, non-finite labels and weights,
# and (n, T) labels (one constant per target)
def _softmax_gh_error(labels, K):
    """The exception grad_hess raises for these softmax labels and K classes."""
    with pytest.raises((IndexError, ValueError)) as e:
        fl.grad_hess("softmax", np.zeros((len(labels), K)), np.asarray(labels, float))
    return e


def test_init_score_softmax_label_errors_name_the_value_row_and_classes():
    nan, inf = np.nan, np.inf
    # num_class given: the same exception (type and text) as grad_hess with K columns
    for labels in ([0, 1, 3], [0, 1, -1], [0, 1.5, 1], [0, nan, 1], [0, inf, 1], [0, -inf]):
        want = _softmax_gh_error(labels, 3)
        with pytest.raises(want.type) as got:
            fl.init_score("softmax", np.asarray(labels, float), num_class=3)
        assert str(got.value) == str(want.value), labels
    # without num_class, K = max(label) + 1: out of range is a negative class index
    with pytest.raises(IndexError) as e:
        fl.init_score("softmax", np.array([0, 2, -1, 1]))
    msg = str(e.value)
    assert "None" not in msg
    assert "label -1 at row 2" in msg and "3 classes" in msg and "[0, 3)" in msg, msg
    assert "max(label) + 1" in msg, msg
    with pytest.raises(IndexError, match="label -2 at row 0") as e:  # no label >= 0
        fl.init_score("softmax", [-2, -1], sample_weight=[1.0, 1.0])
    assert "None" not in str(e.value)
    # an integer dtype, and an (n, 1) column, name the same row
    with pytest.raises(IndexError, match="label -7 at row 1 .*for 2 classes"):
        fl.init_score("softmax", np.array([[1], [-7], [0]], dtype=np.int64))
    # non-integers are a ValueError naming the value and the row, with or without num_class
    for bad, text in ((1.5, "1.5"), (np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
        with pytest.raises(ValueError, match=rf"integer class indices, got {text} at row 1"):
            fl.init_score("softmax", np.array([0.0, bad, 1.0]))
    # the first bad label is the one reported (a negative before a non-integer)
    with pytest.raises(IndexError, match="row 1"):
        fl.init_score("softmax", np.array([0.0, -1.0, 0.5]))
    with pytest.raises(ValueError, match="got 0.5 at row 1"):
        fl.init_score("softmax", np.array([0.0, 0.5, -1.0]))
    # no labels and no num_class: K cannot be inferred
    with pytest.raises(ValueError, match="pass num_class"):
        fl.init_score("softmax", np.array([], dtype=np.int64))
    # a huge label without num_class: an error naming it, not a (K,) allocation of 8 TB
    with pytest.raises(ValueError, match=r"label 1000000000000.0 at row 2 would make "
                       r"1000000000001 classes"):
        fl.init_score("softmax", np.array([0.0, 1.0, 1e12]))
    assert np.isnan(fl.init_score("softmax", np.array([], dtype=np.int64), num_class=3)).all()
    for K, exc in ((0, ValueError), (2.5, ValueError), (np.inf, ValueError), (True, TypeError),
                   ("3", TypeError)):
        with pytest.raises(exc, match="num_class must be an integer >= 1"):
            fl.init_score("softmax", np.array([0, 1]), num_class=K)
    np.testing.assert_array_equal(fl.init_score("softmax", [0, 1, 1, 0], num_class=np.int64(2)),
                                  fl.init_score("softmax", [0, 1, 1, 0], num_class=2.0))


def test_init_score_nonfinite_labels_follow_grad_hess():
    """A label grad_hess rejects is init_score's ValueError too; one it admits but that is
    NaN or infinite gives NaN (the loss is NaN or infinite at every constant: there is no
    minimiser), never a finite number (huber / pseudo_huber gave 2.8e-16 or the finite
    labels' value: the root finder's bracket ignored them)."""
    base = np.array([0.0, 1.0, 0.25, 0.5])
    for name in ELEMENTWISE:
        for bad in (np.nan, np.inf, -np.inf):
            y = base.copy()
            y[2] = bad
            try:
                fl.grad_hess(name, np.zeros(y.size), y)
                rejects = False
            except ValueError as e:
                rejects = str(e)
            for sw in (None, np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.0, 1.0, 0.0, 1.0])):
                if rejects:
                    with pytest.raises(ValueError) as e:
                        fl.init_score(name, y, sw)
                    assert str(e.value) == rejects
                else:
                    b = fl.init_score(name, y, sw)
                    assert isinstance(b, float) and np.isnan(b), (name, bad, sw, b)
        assert np.isnan(fl.init_score(name, np.array([]))), name
        assert np.isnan(fl.init_score(name, np.array([]), np.array([]))), name
    # the domains: NaN for the real-valued objectives, an error for the others
    assert np.isnan(fl.init_score("huber", [np.nan, 0.0, 1.0]))
    assert np.isnan(fl.init_score("pseudo_huber", [np.nan, 0.0, 1.0], delta=0.3))
    assert np.isnan(fl.init_score("huber", [0.5, np.inf]))  # it gave 0.5
    assert np.isnan(fl.init_score("squared_error", [0.5, np.inf]))
    assert np.isnan(fl.init_score("poisson", [0.5, np.inf]))
    for name in ("logistic", "focal", "poisson"):
        with pytest.raises(ValueError, match="got nan at index 1"):
            fl.init_score(name, [0.5, np.nan])


def test_init_score_weights_with_no_minimiser_give_nan():
    """All-zero weights (and NaN or infinite ones, or a non-positive total): NaN for every
    objective.  focal gave -40.0 and huber the first label, poisson a ValueError about a
    'positive mean' of nan."""
    for name in ALL:
        y = np.array([0, 1, 2, 1]) if name == "softmax" else np.array([0.0, 1.0, 0.25, 0.5])
        for sw in ([0.0] * 4, [1.0, np.nan, 1.0, 1.0], [1.0, np.inf, 1.0, 1.0],
                   [1.0, -1.0, 0.0, 0.0], [-1.0, -1.0, 0.5, 0.5]):
            b = fl.init_score(name, y, np.array(sw))
            if name == "softmax":
                assert b.shape == (3,) and np.isnan(b).all(), (name, sw, b)
            else:
                assert isinstance(b, float) and np.isnan(b), (name, sw, b)
            if name != "softmax":  # per target, too
                b2 = fl.init_score(name, np.c_[y, y[::-1]], np.array(sw))
                assert b2.shape == (2,) and np.isnan(b2).all(), (name, sw, b2)
    # softmax class weights that zero every present class
    b = fl.init_score("softmax", [0, 1, 1], class_weight=[0.0, 0.0, 1.0], num_class=3)
    assert np.isnan(b).all()
    # a bad label is still an error when the weights are all zero
    with pytest.raises(ValueError, match="must be in"):
        fl.init_score("logistic", [0.5, 2.0], [0.0, 0.0])
    with pytest.raises(IndexError, match="label 5"):
        fl.init_score("softmax", [0, 5], [0.0, 0.0], num_class=2)


def test_init_score_root_finder_terminates_on_extreme_labels():
    """The Newton/bisection solve stops (at most 200 steps) and lands on the root for
    labels spread over the whole float64 range, and for tiny deltas."""
    y = np.array([-1e300, -1.0, 0.0, 2.0, 1e300])
    for name, opts in (("huber", {"delta": 1.0}), ("pseudo_huber", {"delta": 1.0}),
                       ("huber", {"delta": 1e-300}), ("pseudo_huber", {"delta": 1e-12})):
        b = fl.init_score(name, y, **opts)
        assert np.isfinite(b), (name, opts)
        g, _ = fl.grad_hess(name, np.full(y.size, b), y, **opts)
        # the weighted gradient sum changes sign at b (a root of a monotone function)
        lo, _ = fl.grad_hess(name, np.full(y.size, np.nextafter(b, -np.inf) - 1e-9 * abs(b)),
                             y, **opts)
        hi, _ = fl.grad_hess(name, np.full(y.size, np.nextafter(b, np.inf) + 1e-9 * abs(b)),
                             y, **opts)
        assert lo.sum() <= 0 <= hi.sum() or abs(g.sum()) <= 1e-12 * np.abs(g).sum(), (name, b)
    # finite weights whose sum overflows: the same answer as for the same weights scaled
    # down (it was a NaN gradient sum, read as "positive", and a bracket end)
    y = np.array([0.0, 1.0, 3.0, -2.0, 0.7])
    w = np.array([1.0, 2.0, 0.5, 3.0, 1.0])
    for name in ELEMENTWISE:
        yy = np.clip(y, 0, 1) if name in ("logistic", "focal") else np.abs(y) if (
            name == "poisson") else y
        want = fl.init_score(name, yy, w)
        got = fl.init_score(name, yy, w * 2.0**1022)  # the sum overflows, no weight does
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (name, got, want)


def _reference_loss(name, b, y, opts):
    """The per-sample loss at the constant margin b (broadcast against y), in float64,
    written out from the objectives' definitions (not fastloss's kernels)."""
    z = b - y
    if name == "logistic":
        return np.logaddexp(0.0, b) - y * b
    if name == "squared_error":
        return 0.5 * z * z
    if name == "huber":
        d = opts.get("delta", 1.0)
        return np.where(np.abs(z) <= d, 0.5 * z * z, d * (np.abs(z) - 0.5 * d))
    if name == "pseudo_huber":
        d = opts.get("delta", 1.0)
        return d * d * (np.sqrt(1.0 + (z / d) ** 2) - 1.0)
    if name == "poisson":
        return np.exp(b) - y * b
    if name == "focal":  # torchvision's sigmoid_focal_loss
        gamma, alpha = opts.get("gamma", 2.0), opts.get("alpha")
        p = 1.0 / (1.0 + np.exp(-b))
        ce = np.logaddexp(0.0, b) - y * b
        pt = p * y + (1.0 - p) * (1.0 - y)
        loss = ce * (1.0 - pt) ** gamma
        if alpha is not None:
            loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
        return loss
    raise AssertionError(name)


def _reference_minimiser(name, y, w, opts):
    """argmin_b sum_i w_i loss(b, y_i): a fine grid, then a bounded scipy search."""
    from scipy.optimize import minimize_scalar

    w = np.ones(y.size) if w is None else w

    def f(b):
        return float(np.sum(w * _reference_loss(name, b, y, opts)))

    grid = np.linspace(y.min() - 3, y.max() + 3, 4001) if name not in (
        "logistic", "focal", "poisson") else np.linspace(-12, 12, 4001)
    vals = np.sum(w * _reference_loss(name, grid[:, None], y[None, :], opts), axis=1)
    k = int(np.argmin(vals))
    step = grid[1] - grid[0]
    res = minimize_scalar(f, bounds=(grid[k] - step, grid[k] + step), method="bounded",
                          options={"xatol": 1e-12, "maxiter": 500})
    return res.x, f


@pytest.mark.parametrize("weighted", [False, True])
def test_init_score_multi_target_is_one_optimum_per_column(weighted, rng):
    """(n, T) labels: a (T,) array, each entry the minimiser of that column's weighted
    loss (it pooled every element into one number); 1-D labels still give a float."""
    n, T = 400, 3
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    for name in ELEMENTWISE:
        opts = {"delta": 0.7} if name in ("huber", "pseudo_huber") else (
            {"gamma": 2.0, "alpha": 0.25} if name == "focal" else {})
        y = labels_for(name, rng, (n, T))
        # a second column with another optimum (shrunk towards 0, or shifted up)
        other = labels_for(name, rng, (n,))
        y[:, 1] = other**2 * 0.5 if name in ("logistic", "focal") else other + 3.0
        if name in ("huber", "pseudo_huber"):
            y[:7, 2] += 60.0  # outliers in one column only
        b = fl.init_score(name, y, w, **opts)
        assert isinstance(b, np.ndarray) and b.shape == (T,) and b.dtype == np.float64, name
        for t in range(T):
            col = y[:, t]
            bt = fl.init_score(name, col, w, **opts)
            assert isinstance(bt, float)
            assert b[t] == bt, (name, t)  # the same bits as the column on its own
            ref, f = _reference_minimiser(name, col, w, opts)
            assert abs(b[t] - ref) <= 1e-6 * max(1.0, abs(ref)), (name, t, b[t], ref)
            assert f(b[t]) <= f(ref) + 1e-12 * (abs(f(ref)) + 1.0), (name, t)
        # the columns differ, so the pooled constant is not any column's optimum
        assert np.ptp(b) > 0.05, (name, b)
        # the per-column answer zeroes each column's weighted gradient sum
        g, _ = fl.grad_hess(name, np.tile(b, (n, 1)), y, sample_weight=w, **opts)
        np.testing.assert_allclose(g.sum(0), 0.0, atol=1e-8 * np.abs(g).sum())


def test_init_score_multi_target_shapes_and_errors():
    y = np.array([[0.0, 10.0], [2.0, 20.0], [4.0, 60.0]])
    np.testing.assert_array_equal(fl.init_score("squared_error", y), [2.0, 30.0])
    np.testing.assert_array_equal(fl.init_score("squared_error", y, [1.0, 0.0, 1.0]),
                                  [2.0, 35.0])
    assert fl.init_score("squared_error", y[:, :1]).shape == (1,)
    assert fl.init_score("squared_error", np.empty((3, 0))).shape == (0,)
    b = fl.init_score("huber", np.empty((0, 2)))
    assert b.shape == (2,) and np.isnan(b).all()
    # a NaN label makes its own target NaN only
    yn = y.copy()
    yn[1, 1] = np.nan
    b = fl.init_score("pseudo_huber", yn)
    assert np.isfinite(b[0]) and np.isnan(b[1])
    assert b[0] == fl.init_score("pseudo_huber", y[:, 0])
    # a label outside the domain is named by its (row, column) index
    with pytest.raises(ValueError, match=r"got -1.0 at index \(2, 1\)"):
        fl.init_score("poisson", np.array([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]]))
    # a poisson target whose weighted mean is 0 names its column
    with pytest.raises(ValueError, match="positive mean; got 0.0 of target column 1"):
        fl.init_score("poisson", np.array([[1.0, 0.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, T\)"):
        fl.init_score("squared_error", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="sample_weight shape"):
        fl.init_score("squared_error", y, np.ones(2))


@given(st.integers(1, 3000), st.integers(0, 2**31))
def test_property_grad_of_a_slice_is_the_slice_of_grad(n, seed):
    rng = np.random.default_rng(seed)
    for name in ("logistic", "focal", "softmax"):
        x, y = data(name, rng, n=n, K=3, dtype=np.float32)
        g, h = fl.grad_hess(name, x, y)
        k = int(rng.integers(0, n))
        gs, hs = fl.grad_hess(name, x[k:], y[k:])
        np.testing.assert_array_equal(gs, g[k:])
        np.testing.assert_array_equal(hs, h[k:])


def test_init_score_bits_do_not_depend_on_blas_threads():
    """A weighted init score was a BLAS dot product, split across OpenBLAS's threads."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np, fastloss as fl\n"
            "r = np.random.default_rng(0); y = r.random(1 << 20); w = r.random(1 << 20)\n"
            "print(repr(fl.init_score('squared_error', y, w)), "
            "repr(fl.init_score('logistic', y, w)))")
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS=str(n))).stdout
        for n in (1, 2)
    }
    assert len(outs) == 1, outs


@pytest.mark.parametrize("key", ["min_hess", "hess_scale", "gamma", "alpha"])
def test_bool_option_rejected_after_the_equal_int_was_used(key):
    """Validated options are memoised; True == 1 must not reuse the int's entry."""
    name = "logistic" if key == "min_hess" else ("softmax" if key == "hess_scale" else "focal")
    preds = np.zeros((3, 2)) if name == "softmax" else np.zeros(3)
    labels = np.array([0.0, 1.0, 1.0])
    fl.grad_hess(name, preds, labels, **{key: 1})
    with pytest.raises(TypeError, match=key):
        fl.grad_hess(name, preds, labels, **{key: True})


@pytest.mark.parametrize("name,opts,labels", [
    ("focal", {"gamma": 2.0}, np.r_[np.ones(10), np.zeros(990)]),
    ("focal", {"gamma": 0.5, "alpha": 0.25}, np.r_[np.ones(300), np.zeros(700)]),
    ("huber", {"delta": 0.3}, np.random.default_rng(3).standard_normal(10) * 3),
    ("huber", {"delta": 0.1}, np.random.default_rng(4).standard_normal(1000) ** 3),
], ids=["focal-1%", "focal-alpha", "huber-10", "huber-1000"])
def test_init_score_does_not_depend_on_min_hess(name, opts, labels):
    """min_hess floors the hessian the booster sees, not the loss: the minimiser is the
    same for any floor.  It was not: the Newton steps divided by the floored hessian sum
    and the iteration ran out of steps far from the root (focal with 1% positives and
    min_hess=0.1: -11.85 instead of -1.71)."""
    from scipy.optimize import minimize_scalar

    base = fl.init_score(name, labels, **opts)
    y = labels.astype(np.float64)
    f = lambda b: float(fl.objective_loss(name, np.full(y.size, b), y, reduction="sum", **opts))  # noqa: E731
    best = minimize_scalar(f, bounds=(base - 5, base + 5), method="bounded",
                           options={"xatol": 1e-10}).x
    assert base == pytest.approx(best, abs=1e-6)
    for mh in (0.1, 0.5, 1.0):
        b = fl.init_score(name, labels, min_hess=mh, **opts)
        assert b == pytest.approx(base, rel=1e-12, abs=1e-12), mh
        g = fl.grad_hess(name, np.full(y.size, b), y, **opts).grad
        assert abs(g.sum()) <= 1e-9 * max(1.0, np.abs(g).sum()), mh


def test_softmax_float32_preds_with_more_than_2_24_classes_are_an_error():
    """float32 holds every integer only up to 2**24, and the kernels read the labels in
    the margins' dtype: a class index above that became its neighbour (the gradient of
    class 2**24 + 1 went to 2**24).  float64 margins are exact."""
    K = (1 << 24) + 2
    y = np.array([(1 << 24) + 1])
    with pytest.raises(ValueError, match="float64 preds"):
        fl.grad_hess("softmax", np.zeros((1, K), np.float32), y)
    g = fl.grad_hess("softmax", np.zeros((1, K)), y).grad
    assert int(np.argmin(g[0])) == (1 << 24) + 1


def test_bad_label_message_names_the_callers_value_and_element():
    """The message quoted the label after its conversion to the preds' dtype (1.1 as
    1.100000023841858 for float32 preds), and with F-ordered outputs (the kernel runs in
    F order) it unravelled the kernel's index in C order: it named a valid label."""
    for labels in (np.array([0.5, 1.1, 0.2]), [0.5, 1.1, 0.2]):
        with pytest.raises(ValueError, match=r"got 1\.1 at index 1$"):
            fl.grad_hess("logistic", np.zeros(3, np.float32), labels)
        with pytest.raises(ValueError, match=r"got 1\.1 at index 1$"):
            fl.objective_loss("logistic", np.zeros(3, np.float32), labels)
    y = np.array([[0.5, 0.2], [0.1, 0.3], [0.4, 0.9]])
    y[0, 1] = 1.7
    for kw in ({"grad_out": np.empty((3, 2), order="F"), "hess_out": np.empty((3, 2), order="F")},
               {}):
        for x in (np.zeros((3, 2)), np.asfortranarray(np.zeros((3, 2)))):
            with pytest.raises(ValueError, match=r"got 1\.7 at index \(0, 1\)"):
                fl.grad_hess("logistic", x, y, **kw)
