"""Edge cases of the calling convention found by differential fuzzing against PyTorch:
0-D targets of another dtype, outputs that overlap the inputs, out=input with values
outside a loss's domain, degenerate class weights, non-integer ignore_index."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastloss as fl


@pytest.mark.parametrize("tdtype", [np.int8, np.int16, np.int32, np.uint8, np.uint16, np.int64])
def test_zero_d_index_target_of_any_integer_dtype(tdtype):
    x = np.array([0.5, -1.0, 2.0])
    want = F.cross_entropy(torch.tensor(x), torch.tensor(1)).item()
    for fn in (fl.cross_entropy, fl.nll_loss, fl.softmax_focal_loss):
        r = fn(x, np.array(1, tdtype), reduction="none")
        assert np.shape(r.loss) == ()
    np.testing.assert_allclose(fl.cross_entropy(x, np.array(1, tdtype)).loss, want, rtol=1e-12)
    assert fl.multi_margin_loss(x, np.array(1, tdtype), reduction="none").loss.shape == ()


def test_zero_d_float_target_of_another_dtype():
    r = fl.mse_loss(np.array(1.0), np.array(3.0, np.float32), reduction="none")
    assert r.loss.shape == () and r.grad.shape == ()
    assert float(r.loss) == 4.0 and float(r.grad) == -4.0


@pytest.mark.parametrize(
    ("fn", "x", "t", "match"),
    [
        (fl.binary_cross_entropy, [0.2, 0.7, 0.4], [0.0, 1.0, 1.5], "target"),
        (fl.binary_cross_entropy, [0.2, 1.7, 0.4], [0.0, 1.0, 0.5], "input"),
        (fl.hinge_loss, [0.5, -2.0, 1.0], [1.0, -1.0, 0.0], "-1 and \\+1"),
        (fl.squared_hinge_loss, [0.5, -2.0, 1.0], [1.0, -1.0, 2.0], "-1 and \\+1"),
        (fl.perceptron_loss, [0.5, -2.0, 1.0], [1.0, 0.5, 1.0], "-1 and \\+1"),
        (fl.exponential_loss, [0.5, -2.0, 1.0], [1.0, -1.0, 0.0], "-1 and \\+1"),
        (fl.zero_one_loss, [0.5, -2.0, 1.0], [3.0, -1.0, 1.0], "-1 and \\+1"),
    ],
)
def test_out_input_with_bad_values_raises_and_leaves_input_intact(fn, x, t, match):
    x = np.array(x)
    t = np.array(t)
    x0, t0 = x.copy(), t.copy()
    with pytest.raises(ValueError, match=match):
        fn(x, t, out=x)
    np.testing.assert_array_equal(x, x0)
    with pytest.raises(ValueError, match=match):
        fn(x, t, out=t)
    np.testing.assert_array_equal(t, t0)


@pytest.mark.parametrize("n", [10, 5000, 100_000])
def test_out_overlapping_the_input_with_bad_values_leaves_it_intact(n):
    """``out`` a shifted view of the input's memory (a partial overlap: the input is read
    from a copy) and a value outside the domain: the caller's memory is unchanged."""
    rng = np.random.default_rng(2)
    base = rng.uniform(0.1, 0.9, n + 3)
    base[n // 2] = 1.7  # an input outside [0, 1]
    x, out = base[:n], base[3:]
    keep = base.copy()
    with pytest.raises(ValueError, match="input"):
        fl.binary_cross_entropy(x, np.full(n, 0.5), out=out)
    np.testing.assert_array_equal(base, keep)
    sc = rng.standard_normal(n + 3)
    t = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    t[n // 3] = 0.0  # a target that is not +-1
    keep = sc.copy()
    with pytest.raises(ValueError, match="-1 and \\+1"):
        fl.hinge_loss(sc[:n], t, out=sc[3:])
    np.testing.assert_array_equal(sc, keep)
    # multi_margin_loss: out a shifted view of the input, or a separate buffer
    C = 4
    xb = rng.standard_normal(n * C + C)
    y = rng.integers(0, C, n)
    y[n // 2] = C
    for out in (xb[C:].reshape(n, C), np.zeros((n, C))):
        keep, keep_out = xb.copy(), out.copy()
        with pytest.raises(IndexError):
            fl.multi_margin_loss(xb[: n * C].reshape(n, C), y, out=out)
        np.testing.assert_array_equal(xb, keep)
        np.testing.assert_array_equal(out, keep_out)


def _shifted_views(dtype, R=6, C=4, shift=4):
    base = np.random.default_rng(1).standard_normal(R * C + shift).astype(dtype)
    return base, base[: R * C].reshape(R, C), base[shift:].reshape(R, C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "call",
    [
        lambda x, **k: fl.cross_entropy(x, np.array([0, 1, 2, 3, 0, 1]), **k),
        lambda x, **k: fl.cross_entropy(x, np.array([0, 1, 2, 3, 0, 1]), label_smoothing=0.1,
                                        reduction="none", **k),
        lambda x, **k: fl.cross_entropy(x.reshape(2, 3, 4), np.array([[0, 1, 2, 0]] * 2),
                                        axis=1, **k),
        lambda x, **k: fl.nll_loss(x, np.array([0, 1, 2, 3, 0, 1]), reduction="none", **k),
        lambda x, **k: fl.softmax_focal_loss(x, np.array([0, 1, 2, 3, 0, 1]), **k),
        lambda x, **k: fl.softmax_entropy(x, **k),
        lambda x, **k: fl.kl_div_with_logits(x, np.ones_like(x), **k),
        lambda x, **k: fl.mse_loss(x, np.zeros_like(x), **k),
        lambda x, **k: fl.binary_cross_entropy_with_logits(x, np.full_like(x, 0.3), **k),
    ],
)
def test_out_partially_overlapping_the_input_gives_the_unaliased_result(call, dtype):
    _, x, out = _shifted_views(dtype)
    want = call(x.copy())
    out_shape = want.grad.shape
    got = call(x, out=out.reshape(out_shape))
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.grad, want.grad)
    assert np.shares_memory(got.grad, out)


def test_out_partially_overlapping_a_probability_target():
    _, t, out = _shifted_views(np.float64)
    t = np.abs(t) / np.abs(t).sum(-1, keepdims=True)
    x = np.random.default_rng(2).standard_normal(t.shape)
    want = fl.cross_entropy(x, t.copy())
    got = fl.cross_entropy(x, t, out=out)
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.grad, want.grad)


def _torch_ce(x, t, w, axis, **kw):
    xt = torch.tensor(x, requires_grad=True)
    lt = F.cross_entropy(xt, torch.tensor(t), torch.tensor(w), **kw)
    lt.backward()
    return lt.item(), xt.grad.numpy()


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize(
    ("x", "t", "w", "axis"),
    [
        ([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], [0, 0], [0.0, 1.0, 2.0], -1),
        ([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], [0, 1], [1.0, -1.0, 2.0], -1),
        ([[0.3, -1.0, 2.0], [0.5, 0.1, -1.0], [2.0, 1.0, 0.0]], [0, 1, -100], [1.0, -1.0, 5.0],
         -1),
        (np.random.default_rng(1).standard_normal((2, 3, 2)), [[0, 1], [1, 0]], [1.0, -1.0, 3.0],
         1),
    ],
)
def test_ce_mean_with_class_weights_summing_to_zero_matches_torch(x, t, w, axis, ls):
    """PyTorch divides by a total weight of 0: its NaN/inf pattern (loss and gradient)."""
    x, t, w = np.asarray(x, float), np.asarray(t), np.asarray(w)
    r = fl.cross_entropy(x, t, w, axis=axis, label_smoothing=ls)
    loss, g = _torch_ce(x, t, w, axis, label_smoothing=ls)
    np.testing.assert_array_equal(np.float64(r.loss), loss)
    np.testing.assert_array_equal(r.grad, g)


@pytest.mark.parametrize("bad", [1.5, -100.0, "0", None])
def test_ignore_index_must_be_an_integer(bad):
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        fl.cross_entropy(x, np.array([0, 1]), ignore_index=bad)
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        fl.nll_loss(x, np.array([0, 1]), ignore_index=bad)
    r = fl.cross_entropy(x, np.array([0, 1]), ignore_index=np.int32(1))
    assert np.isclose(r.loss, np.log(3))


def _torch_ce_any(x, t, w=None, *, reduction="mean", **kw):
    xt = torch.tensor(x, requires_grad=True)
    wt = None if w is None else torch.tensor(w)
    lt = F.cross_entropy(xt, torch.tensor(t), wt, reduction=reduction, **kw)
    (lt.sum() if reduction == "none" else lt).backward()
    return lt.detach().numpy(), xt.grad.numpy()


def _assert_matches_torch(r, want):
    np.testing.assert_allclose(np.asarray(r.loss, float), want[0], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(r.grad, want[1], rtol=1e-12, atol=1e-15, equal_nan=True)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ls", [0.0, 0.3])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("C", [3, 40])
@pytest.mark.parametrize("axis", [-1, 1])
def test_ce_non_finite_class_weight_matches_torch(reduction, ls, bad, C, axis):
    """PyTorch reads a class's weight only for rows targeting it (and in label smoothing):
    a NaN/inf weight on a class no row targets leaves the plain CE gradient finite."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((4, C, 2) if axis == 1 else (4, C))
    t = rng.integers(0, C - 1, (4, 2) if axis == 1 else 4)  # class C-1 never targeted
    t.flat[1] = -100
    w = rng.random(C) + 0.5
    w[C - 1] = bad
    x[0, C - 1] = 5.0  # a row maximum sitting on the non-finite class
    r = fl.cross_entropy(x, t, w, axis=axis, label_smoothing=ls, reduction=reduction)
    want = _torch_ce_any(x, t, w, reduction=reduction, label_smoothing=ls)
    _assert_matches_torch(r, want)
    if ls == 0.0:
        assert np.isfinite(r.grad).all()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ls", [0.0, 0.3])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("axis", [-1, 1])
def test_ce_probability_targets_with_a_non_finite_class_weight_match_torch(
    reduction, ls, bad, axis
):
    """PyTorch computes -(log_softmax * target * weight): an infinite weight gives an
    infinite loss where its class has probability, NaN (0 * inf) in a row that gives it
    none."""
    rng = np.random.default_rng(7)
    C = 5
    x = rng.standard_normal((4, C, 2) if axis == 1 else (4, C))
    t = rng.random(x.shape)
    t /= t.sum(axis=1, keepdims=True)
    w = rng.random(C) + 0.5
    w[2] = bad
    t[:, 2] = 0.0
    t[(0, 2)] = 0.25  # only the first sample (both positions if K-dim) gives class 2 mass
    r = fl.cross_entropy(x, t, w, axis=axis, label_smoothing=ls, reduction=reduction)
    want = _torch_ce_any(x, t, w, reduction=reduction, label_smoothing=ls)
    _assert_matches_torch(r, want)
    if reduction == "none" and bad == np.inf and ls == 0.0:
        assert np.isinf(r.loss[0]).all() and np.isnan(r.loss[1:]).all()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ce_subnormal_total_weight_and_inf_logit_rows_match_torch(reduction):
    x = np.array([[0.5, 1.0, -1.0], [0.0, 2.0, 1.0]])
    w = np.full(3, 1e-310)
    _assert_matches_torch(
        fl.cross_entropy(x, np.array([0, 2]), w, reduction=reduction),
        _torch_ce_any(x, np.array([0, 2]), w, reduction=reduction),
    )
    # zero total weight with an ignored row holding +inf: a whole NaN gradient row
    x = np.array([[np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]])
    y, w = np.array([-100, 0]), np.array([0.0, 1.0, 1.0])
    r = fl.cross_entropy(x, y, w, reduction=reduction)
    want = _torch_ce_any(x, y, w, reduction=reduction)
    _assert_matches_torch(r, want)
    assert np.isnan(r.grad[0]).all()


def test_weight_overlapping_out_gives_the_unaliased_result():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    y = np.array([0, 1, 2, 1])
    for fn, kw in (
        (fl.cross_entropy, {}),
        (fl.cross_entropy, dict(label_smoothing=0.2)),
        (fl.nll_loss, {}),
        (fl.softmax_focal_loss, {}),
        (fl.multi_margin_loss, {}),
    ):
        out = np.empty((4, 3))
        out[0] = [1.0, 2.0, 3.0]
        want = fn(x, y, out[0].copy(), reduction="none", **kw)
        got = fn(x, y, out[0], reduction="none", out=out, **kw)
        np.testing.assert_array_equal(got.loss, want.loss, err_msg=fn.__name__)
        np.testing.assert_array_equal(got.grad, want.grad, err_msg=fn.__name__)
    p = rng.random((4, 3))
    out = np.empty((4, 3))
    out[1] = [0.5, 2.0, 1.0]
    want = fl.binary_cross_entropy(p, p, out[1].copy(), reduction="none")
    got = fl.binary_cross_entropy(p, p, out[1], reduction="none", out=out)
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.grad, want.grad)


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("shape", [(8, 5), (3000, 5), (6, 300), (2, 5, 4)])
def test_class_indices_stored_in_out_are_read_before_the_gradient_overwrites_them(
        shape, reduction):
    """int64 labels living in the gradient buffer's memory (the fast paths once passed them
    to the kernel as they were: the first rows' gradients overwrote later rows' labels,
    a wrong loss or an out-of-bounds read that crashed the process)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    C = shape[1]
    n_labels = int(np.prod(shape)) // C
    fns = [(fl.cross_entropy, {}), (fl.cross_entropy, dict(label_smoothing=0.1)),
           (fl.nll_loss, {}), (fl.softmax_focal_loss, {})]
    if len(shape) == 2:
        fns.append((fl.multi_margin_loss, {}))
    for fn, kw in fns:
        buf = np.zeros(shape)
        y = buf.reshape(-1).view(np.int64)[:n_labels]
        if len(shape) == 3:
            y = y.reshape(shape[0], shape[2])
        y[...] = rng.integers(0, C, y.shape)
        axis = {"axis": 1} if len(shape) == 3 else {}
        want = fn(x, y.copy(), reduction=reduction, **axis, **kw)
        got = fn(x, y, reduction=reduction, out=buf, **axis, **kw)
        np.testing.assert_array_equal(got.loss, want.loss, err_msg=fn.__name__)
        np.testing.assert_array_equal(got.grad, want.grad, err_msg=fn.__name__)


def test_a_weight_or_target_that_is_out_itself_is_read_before_it_is_overwritten():
    """out= the class-weight array of a single 1-D sample (the same shape as the input, so
    the in-place exemption let it through), or out= a probability target / divergence
    target: the results of separate arrays."""
    rng = np.random.default_rng(2)
    for C in (7, 40):
        x = rng.standard_normal(C)
        w = rng.random(C) + 0.1
        y = np.array(2)
        for fn, kw in ((fl.cross_entropy, {}), (fl.cross_entropy, dict(label_smoothing=0.3)),
                       (fl.nll_loss, {}), (fl.softmax_focal_loss, {}),
                       (fl.multi_margin_loss, {})):
            want = fn(x, y, w.copy(), reduction="sum", **kw)
            ww = w.copy()
            got = fn(x, y, ww, reduction="sum", out=ww, **kw)
            assert float(got.loss) == float(want.loss), fn.__name__
            np.testing.assert_array_equal(got.grad, want.grad, err_msg=fn.__name__)
    x = rng.standard_normal((6, 9))
    t = rng.random((6, 9))
    t /= t.sum(1, keepdims=True)
    for fn, kw in ((fl.cross_entropy, {}), (fl.cross_entropy, dict(label_smoothing=0.2)),
                   (fl.kl_div_with_logits, dict(temperature=2.0)),
                   (fl.js_div_with_logits, {}), (fl.kl_div, {})):
        tt = np.log(t) if fn is fl.kl_div_with_logits or fn is fl.js_div_with_logits else t
        want = fn(x, tt.copy(), reduction="sum", **kw)
        tc = tt.copy()
        got = fn(x, tc, reduction="sum", out=tc, **kw)
        np.testing.assert_allclose(float(got.loss), float(want.loss), rtol=1e-15,
                                   err_msg=fn.__name__)
        np.testing.assert_array_equal(got.grad, want.grad, err_msg=fn.__name__)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_ce_with_no_classes_matches_torch(reduction):
    x = np.zeros((2, 0))
    for t, kw in (
        (np.zeros((2, 0)), {}),
        (np.zeros((2, 0)), dict(label_smoothing=0.3)),
        (np.array([-100, -100]), {}),
        (np.array([-100, -100]), dict(label_smoothing=0.3)),
    ):
        r = fl.cross_entropy(x, t, reduction=reduction, **kw)
        want = F.cross_entropy(torch.tensor(x), torch.tensor(t), reduction=reduction, **kw)
        np.testing.assert_array_equal(np.asarray(r.loss), want.numpy())
        finite = ~np.isnan(want.numpy())  # -0.0 where PyTorch negates an empty sum
        assert (np.signbit(np.asarray(r.loss)) == np.signbit(want.numpy()))[finite].all()
        assert r.grad.shape == (2, 0)
    with pytest.raises(IndexError, match="out of bounds"):
        fl.cross_entropy(x, np.array([0, -100]))


def test_memmap_out_is_returned_as_the_grad(tmp_path):
    x = np.random.default_rng(0).standard_normal((5, 4))
    y = np.array([0, 1, 2, 3, 0])
    for fn, args, kw in (
        (fl.cross_entropy, (y,), {}),
        (fl.cross_entropy, (y,), dict(axis=0)),
        (fl.nll_loss, (y,), {}),
        (fl.softmax_focal_loss, (y,), {}),
        (fl.softmax_entropy, (), {}),
        (fl.kl_div_with_logits, (x[::-1].copy(),), {}),
        (fl.mse_loss, (x * 2,), {}),
    ):
        xx = x if kw.get("axis") != 0 else x.T.copy()
        out = np.memmap(tmp_path / f"{fn.__name__}.dat", dtype=x.dtype, mode="w+", shape=xx.shape)
        r = fn(xx, *args, out=out, **kw)
        assert r.grad is out, fn.__name__
        np.testing.assert_array_equal(np.asarray(out), fn(xx, *args, **kw).grad)


def test_ignore_index_outside_int64_is_a_value_error():
    with pytest.raises(ValueError, match="64-bit"):
        fl.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=2**63)


# ------------------------------------------------- third differential fuzz (2026-11-21)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_ce_infinite_probability_target_on_the_row_max_matches_torch(reduction, weighted, inplace):
    """PyTorch sums -(log_softmax * target) term by term: an infinite target on the row
    maximum gives inf (the rearranged T * lse - sum t x would be inf * 0 = NaN)."""
    x = np.array([[0.0, 1.0, -2.0], [3.0, 0.5, -1.0], [0.2, 0.1, 0.0]])
    t = np.array([[0.5, np.inf, 0.0], [np.inf, np.inf, 0.0], [0.3, 0.3, 0.4]])
    w = np.array([1.0, 2.0, 0.5]) if weighted else None
    want = _torch_ce_any(x, t, w, reduction=reduction)
    xx = x.copy()
    r = fl.cross_entropy(xx, t, w, reduction=reduction, out=xx if inplace else None)
    _assert_matches_torch(r, want)
    if reduction == "none":
        assert np.isinf(r.loss[:2]).all() and np.isfinite(r.loss[2])


def test_ce_infinite_probability_target_with_softcap_takes_the_capped_logits():
    x = np.array([[0.0, 3.0, -2.0]])
    t = np.array([[0.5, np.inf, 0.0]])
    r = fl.cross_entropy(x, t, softcap=2.0, reduction="none")
    z = 2.0 * np.tanh(x / 2.0)
    logsm = z - np.log(np.exp(z).sum())
    assert r.loss[0] == -(logsm * t)[0, :2].sum() == np.inf


@pytest.mark.parametrize("pw", [None, 0.5, 3.0, -2.0])
def test_bce_with_logits_at_minus_inf_follows_torch_for_any_target(pw):
    """(1 - t) x - lw log_sigmoid(x) at x = -inf: NaN for t <= 1, +-inf beyond."""
    t = np.array([-0.5, 0.0, 0.3, 1.0, 2.0])
    x = np.full(t.shape, -np.inf)
    kw = {} if pw is None else {"pos_weight": np.full(t.shape, pw)}
    r = fl.binary_cross_entropy_with_logits(x, t, reduction="none", **kw)
    xt = torch.tensor(x, requires_grad=True)
    tkw = {} if pw is None else {"pos_weight": torch.tensor(kw["pos_weight"])}
    lt = F.binary_cross_entropy_with_logits(xt, torch.tensor(t), reduction="none", **tkw)
    lt.sum().backward()
    np.testing.assert_array_equal(r.loss, lt.detach().numpy())
    np.testing.assert_array_equal(r.grad, xt.grad.numpy())


def test_sigmoid_focal_gamma_zero_at_infinite_logits_has_torch_gradient():
    """torch's pow backward is exactly 0 for exponent 0, even where the CE is inf."""
    x = np.array([np.inf, -np.inf, np.inf, 5.0])
    t = np.array([0.0, 1.0, 1.0, 1.0])
    r = fl.sigmoid_focal_loss(x, t, gamma=0.0, reduction="none")
    at = 0.25 * t + 0.75 * (1 - t)
    p = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(r.grad, at * (p - t), rtol=1e-13)  # 0.75, -0.25, 0, ...


def test_sigmoid_focal_gradient_of_a_confident_correct_logit_keeps_its_digits():
    """t = 1, large x: p - t = -sigmoid(-x), not a cancellation; the gradient is about
    -alpha (1 + gamma) q**3 with q = exp(-x) (ce ~ q, (1 - p_t)**2 ~ q**2)."""
    x = np.array([30.0, 38.5, 60.0])
    r = fl.sigmoid_focal_loss(x, np.ones(3), reduction="none")
    q = np.exp(-x)
    np.testing.assert_allclose(r.grad, -0.25 * 3.0 * q**3, rtol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: fl.softmax_focal_loss(np.zeros((1, 3)), np.array([0]), gamma=np.inf),
        lambda: fl.kl_div_with_logits(np.zeros((1, 3)), np.zeros((1, 3)), temperature=np.inf),
        lambda: fl.js_div_with_logits(np.zeros((1, 3)), np.zeros((1, 3)), temperature=np.inf),
        lambda: fl.cross_entropy(np.zeros((1, 3)), np.array([0]), z_loss=np.inf),
        lambda: fl.cross_entropy(np.zeros((1, 3)), np.array([0]), softcap=np.inf),
    ],
)
def test_infinite_options_are_value_errors(call):
    with pytest.raises(ValueError, match="finite"):
        call()


@pytest.mark.parametrize("fn", [fl.nll_loss, fl.cross_entropy, fl.multi_margin_loss])
def test_uint64_target_beyond_int64_names_the_value_and_c(fn):
    y = np.array([2**63 + 5], dtype=np.uint64)
    with pytest.raises(IndexError, match=r"Target 9223372036854775813 is out of bounds for 4 "):
        fn(np.zeros((1, 4)), y)


@pytest.mark.parametrize(
    "dtype, gaps", [(np.float32, [90.0, 95.0, 100.0, 103.0]), (np.float64, [710.0, 729.0, 744.0])]
)
def test_subnormal_probabilities_match_torch(dtype, gaps):
    """Logit gaps whose exp lies below the smallest normal number: PyTorch's softmax and
    cross-entropy gradient hold the subnormal values (no flush to zero), and so do ours."""
    x = np.array([[0.0] + [-g for g in gaps]], dtype)
    tt = torch.tensor(x, requires_grad=True)
    want = torch.softmax(tt, 1)
    np.testing.assert_allclose(fl.softmax(x), want.detach().numpy(), rtol=2e-6, atol=0)
    assert (fl.softmax(x)[0, 1:] > 0).all()
    F.cross_entropy(tt, torch.tensor([0])).backward()
    g = fl.cross_entropy(x, np.array([0])).grad
    np.testing.assert_allclose(g, tt.grad.numpy(), rtol=2e-6, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_small_reduced_call_with_out_overlapping_a_weight(reduction):
    """The one-block ``out=`` path (a reduced loss): a weight that overlaps ``out`` is
    read as it was before the call, and the caller's ``out`` object is returned."""
    rng = np.random.default_rng(3)
    p = rng.random((4, 3))
    out = np.empty((4, 3))
    out[2] = [0.5, 2.0, 1.0]
    want = fl.binary_cross_entropy(p, p, out[2].copy(), reduction=reduction)
    got = fl.binary_cross_entropy(p, p, out[2], reduction=reduction, out=out)
    assert got.grad is out
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.grad, want.grad)
    x = rng.standard_normal((4, 3))
    want = fl.binary_cross_entropy_with_logits(x, p, pos_weight=x[1].copy(), reduction=reduction)
    got = fl.binary_cross_entropy_with_logits(x, p, pos_weight=x[1], reduction=reduction, out=x)
    assert got.grad is x
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.grad, want.grad)


def test_a_float_or_bool_axis_is_a_type_error_on_every_path():
    """The 2-D int64 fast paths compared ``axis == 1`` (1.0 and True passed); the general
    path took True as 1 (NumPy and PyTorch refuse a bool axis)."""
    x = np.zeros((3, 4))
    y = np.zeros(3, np.int64)
    for fn in (fl.cross_entropy, fl.nll_loss, fl.softmax_focal_loss):
        for ax in (1.0, True, np.True_):
            with pytest.raises(TypeError, match="axis must be an integer"):
                fn(x, y, axis=ax)
        assert fn(x, y, axis=np.int64(1)).loss == fn(x, y, axis=1).loss
    with pytest.raises(TypeError, match="axis must be an integer"):
        fl.kl_div_with_logits(x, x, axis=True)
