"""Vectorisable math for kernels: ``exp``, ``log``, ``log1p``, ``tanh`` and row maxima.

pip's Numba has no SVML, so ``np.exp`` inside a loop is a scalar libm call and the loop
does not vectorise.  The functions here are written in the kernel language (range
reduction + polynomial, integer bit tricks through a bitcast intrinsic, selects instead
of branches), so LLVM vectorises the loops that call them.  Accuracy: about 1 ulp
(checked against NumPy in ``tests/test_vmath.py``), with IEEE behaviour for +-inf, NaN,
overflow and (gradual) underflow.

Each public helper dispatches on the argument type: float32 arguments use float32
arithmetic (16 lanes per AVX-512 register), float64 arguments float64 arithmetic.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._config import accumulator, inline, rowfn

__all__ = [
    "key_to_float",
    "lane_totals",
    "max_key",
    "prefetch",
    "row_max",
    "rounded",
    "row_sum",
    "select",
    "vexp",
    "vexp_neg",
    "vexpm1",
    "vlog",
    "vlog1p",
    "vlog1p_unit",
    "vtanh",
]


# ------------------------------------------------------------------ bit reinterpretation
def _resize(builder, v, width):
    """The LLVM integer ``v`` truncated or sign-extended to ``width`` bits."""
    if v.type.width == width:
        return v
    ity = ir.IntType(width)
    return builder.trunc(v, ity) if v.type.width > width else builder.sext(v, ity)


def _bitcast(src, dst, llty):
    """Reinterpret the bits of ``src`` as ``dst``.  Integer sources of another width
    are truncated / sign-extended first (Numba widens int32 arithmetic to int64)."""

    @intrinsic
    def _cast(typingctx, x):
        if isinstance(src, types.Integer):
            if not isinstance(x, types.Integer):
                return None
        elif x != src:
            return None
        sig = dst(x)

        def codegen(context, builder, signature, args):
            v = args[0]
            if isinstance(src, types.Integer):
                v = _resize(builder, v, src.bitwidth)
            return builder.bitcast(v, llty)

        return sig, codegen

    return _cast


f64_bits = _bitcast(types.float64, types.int64, ir.IntType(64))
bits_f64 = _bitcast(types.int64, types.float64, ir.DoubleType())
f32_bits = _bitcast(types.float32, types.int32, ir.IntType(32))
bits_f32 = _bitcast(types.int32, types.float32, ir.FloatType())


@intrinsic
def select(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select`` (branch-free, vectorises).  Inlined
    helpers use it instead of conditional expressions, whose phi nodes trip Numba's SSA
    check when a helper is inlined more than once into the same kernel."""
    if not isinstance(cond, types.Boolean):
        return None
    ty = a if a == b else typingctx.unify_pairs(a, b)
    if ty is None or not isinstance(ty, (types.Number, types.Boolean)):
        return None
    sig = ty(cond, a, b)

    def codegen(context, builder, signature, args):
        c = context.cast(builder, args[0], cond, types.boolean)
        va = context.cast(builder, args[1], a, ty)
        vb = context.cast(builder, args[2], b, ty)
        return builder.select(c, va, vb)

    return sig, codegen


#: pow2_of_rounded's offset: 2**(k + 64) is a normal number for every k of a result
#: down to the smallest subnormal, and with the 2**-64 carried by the polynomial's
#: coefficients (p * 2**-64 is exact), the product rounds once, into the subnormal range
#: where it belongs.
POW2_OFFSET = 64


@intrinsic
def pow2_of_rounded(typingctx, t):
    """2**(k + POW2_OFFSET) from t = y + 1.5*2**(mantissa bits), whose low mantissa bits
    hold k = rint(y) (the magic-number rounding), for -150 <= k <= 0 (-1075 in float64).
    Pure integer bit operations on t's bits: no float to int conversion, so a NaN t gives
    a finite scale instead of poison (the caller's polynomial is NaN anyway)."""
    if t not in (types.float32, types.float64):
        return None
    width, shift, bias = (32, 23, 127) if t == types.float32 else (64, 52, 1023)
    sig = t(t)

    def codegen(context, builder, signature, args):
        ity = ir.IntType(width)
        bits = builder.bitcast(args[0], ity)
        k_sh = builder.shl(bits, ir.Constant(ity, shift))
        out = builder.add(k_sh, ir.Constant(ity, (bias + POW2_OFFSET) << shift))
        return builder.bitcast(out, context.get_value_type(t))

    return sig, codegen


@intrinsic
def prefetch(typingctx, a, i):
    """Hint the CPU to fetch the cache line holding ``a[i]`` (1-D C-contiguous array) into
    the data caches (``llvm.prefetch``: read, high locality).  A hint only: it never
    faults and changes no value."""
    if not isinstance(a, types.Array) or a.ndim != 1 or not isinstance(i, types.Integer):
        return None
    sig = types.void(a, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(builder.gep(arr.data, [idx]), i8p)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        # rw = 0 (read), locality = 3 (keep in all levels), cache type = 1 (data)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def rounded(typingctx, v):
    """``v`` itself, as a value that ``contract`` cannot fuse into a neighbouring add
    (``llvm.arithmetic.fence``): ``a - rounded(b * c)`` subtracts the rounded product, so
    it is exactly 0 when ``a`` is that same rounded product (an FMA would leave the
    product's rounding error instead)."""
    if v not in (types.float32, types.float64):
        return None
    sig = v(v)

    def codegen(context, builder, signature, args):
        llty = args[0].type
        fnty = ir.FunctionType(llty, [llty])
        fn = builder.module.declare_intrinsic("llvm.arithmetic.fence", [llty], fnty)
        return builder.call(fn, [args[0]])

    return sig, codegen


@intrinsic
def lane_totals(typingctx, a, k, lanes):
    """``sum over l < lanes of (a[l] + a[l + lanes] + a[l + 2 lanes] + ...)`` over
    ``a[:k]`` (``k`` a multiple of the literal ``lanes``) in float64: lane ``l`` adds its
    elements in index order, then the lane totals are added in lane order, the bits of
    the plain two-loop version.  The lanes are one LLVM vector held in registers across
    the loop (a Numba array of lane sums is stored and reloaded at every step, since
    nothing tells LLVM it cannot alias ``a``)."""
    if (not isinstance(a, types.Array) or a.ndim != 1 or a.layout != "C"
            or a.dtype not in (types.float32, types.float64)
            or not isinstance(k, types.Integer) or not isinstance(lanes, types.IntegerLiteral)):
        return None
    L = lanes.literal_value
    sig = types.float64(a, k, lanes)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        n = context.cast(builder, args[1], signature.args[1], types.intp)
        f64 = ir.DoubleType()
        i64 = ir.IntType(64)
        et = context.get_value_type(signature.args[0].dtype)
        vin = ir.VectorType(et, L)
        vt = ir.VectorType(f64, L)
        entry = builder.block
        head = builder.append_basic_block("lanes.head")
        body = builder.append_basic_block("lanes.body")
        done = builder.append_basic_block("lanes.done")
        builder.branch(head)
        builder.position_at_end(head)
        i = builder.phi(i64)
        acc = builder.phi(vt)
        i.add_incoming(ir.Constant(i64, 0), entry)
        acc.add_incoming(ir.Constant(vt, [0.0] * L), entry)
        builder.cbranch(builder.icmp_signed("<", i, n), body, done)
        builder.position_at_end(body)
        ptr = builder.bitcast(builder.gep(arr.data, [i]), vin.as_pointer())
        v = builder.load(ptr, align=4 if signature.args[0].dtype == types.float32 else 8)
        if signature.args[0].dtype == types.float32:
            v = builder.fpext(v, vt)
        acc2 = builder.fadd(acc, v)
        i.add_incoming(builder.add(i, ir.Constant(i64, L)), body)
        acc.add_incoming(acc2, body)
        builder.branch(head)
        builder.position_at_end(done)
        total = ir.Constant(f64, 0.0)
        i32 = ir.IntType(32)
        for lane in range(L):
            total = builder.fadd(total, builder.extract_element(acc, ir.Constant(i32, lane)))
        return total

    return sig, codegen


# --------------------------------------------------------------------------------- exp
@intrinsic
def pow2_pair(typingctx, kf):
    """(2**k1, 2**k2) with k1 + k2 == k == int(kf), computed in the float's own integer
    width (Numba would widen int32 arithmetic to int64 and halve the vector width).
    Two factors so that p * 2**k1 * 2**k2 reaches subnormal results and 2**128/2**1024.
    ``kf`` must be an integral, non-NaN float within the exponent range."""
    if kf not in (types.float32, types.float64):
        return None
    width, shift, bias = (32, 23, 127) if kf == types.float32 else (64, 52, 1023)
    sig = types.UniTuple(kf, 2)(kf)

    def codegen(context, builder, signature, args):
        ity = ir.IntType(width)
        fty = context.get_value_type(kf)
        ki = builder.fptosi(args[0], ity)
        k1 = builder.ashr(ki, ir.Constant(ity, 1))
        k2 = builder.sub(ki, k1)
        c_bias = ir.Constant(ity, bias)
        c_shift = ir.Constant(ity, shift)
        s1 = builder.bitcast(builder.shl(builder.add(k1, c_bias), c_shift), fty)
        s2 = builder.bitcast(builder.shl(builder.add(k2, c_bias), c_shift), fty)
        return context.make_tuple(builder, signature.return_type, (s1, s2))

    return sig, codegen


_LOG2E = 1.4426950408889634
_LN2_HI64 = 6.93147180369123816490e-01
_LN2_LO64 = 1.90821492927058770002e-10
_ROUND64 = 6755399441055744.0  # 1.5 * 2**52: adding and subtracting rounds to integer


@inline
def _exp_poly64(r, scale):
    """scale * exp(r) on |r| <= ln2/2: Taylor polynomial of degree 13 (truncation
    < 2**-60) with its coefficients times ``scale`` (a constant power of two: LLVM folds
    the products, and the rounding is that of the unscaled polynomial)."""
    p = scale / 6227020800.0
    p = p * r + scale / 479001600.0
    p = p * r + scale / 39916800.0
    p = p * r + scale / 3628800.0
    p = p * r + scale / 362880.0
    p = p * r + scale / 40320.0
    p = p * r + scale / 5040.0
    p = p * r + scale / 720.0
    p = p * r + scale / 120.0
    p = p * r + scale / 24.0
    p = p * r + scale / 6.0
    p = p * r + scale * 0.5
    p = p * r + scale
    return p * r + scale


@inline
def _exp64(x):
    # clamp (comparisons are false for NaN, so NaN passes through)
    xc = select(x > 709.8, 709.8, select(x < -745.2, -745.2, x))
    kf = (xc * _LOG2E + _ROUND64) - _ROUND64
    r = (xc - kf * _LN2_HI64) - kf * _LN2_LO64
    p = _exp_poly64(r, 1.0)
    s1, s2 = pow2_pair(select(kf == kf, kf, 0.0))
    return p * s1 * s2


_LOG2E32 = np.float32(1.4426950408889634)
_ZERO32 = np.float32(0.0)
_LN2_HI32 = np.float32(6.9314575195e-01)
_LN2_LO32 = np.float32(1.4286067653e-06)
_ROUND32 = np.float32(12582912.0)  # 1.5 * 2**23
_X32_HI = np.float32(88.8)
_X32_LO = np.float32(-104.0)
_C32 = tuple(np.float32(1.0 / f) for f in (5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0))


@inline
def _exp_poly32(r):
    """exp(r) on |r| <= ln2/2 in float32: Taylor polynomial of degree 7."""
    p = _C32[0]
    p = p * r + _C32[1]
    p = p * r + _C32[2]
    p = p * r + _C32[3]
    p = p * r + _C32[4]
    p = p * r + _C32[5]
    p = p * r + _C32[6]
    return p * r + _C32[7]


@inline
def _exp32(x):
    xc = select(x > _X32_HI, _X32_HI, select(x < _X32_LO, _X32_LO, x))
    kf = (xc * _LOG2E32 + _ROUND32) - _ROUND32
    r = (xc - kf * _LN2_HI32) - kf * _LN2_LO32
    p = _exp_poly32(r)
    s1, s2 = pow2_pair(select(kf == kf, kf, _ZERO32))
    return p * s1 * s2


# exp for arguments <= 0 (softmax: x - max).  One scale factor, 2**(k + POW2_OFFSET),
# times a polynomial whose coefficients carry the 2**-POW2_OFFSET: one rounding, into
# the subnormal range where the result belongs (as PyTorch's exp).  Below these,
# exp(x) < 2**-1075 (2**-150): it rounds to 0.
_XN64 = -745.2
_XN32 = np.float32(-104.0)
_UNOFFSET64 = 2.0**-POW2_OFFSET


@inline
def _expneg64(x):
    # No clamp: arguments are x - max <= 0 (up to 64 * ln 2 would still work), and below
    # _XN64 (-inf included) the garbage of the reduction is replaced by 0 at the end.
    t = x * _LOG2E + _ROUND64
    kf = t - _ROUND64
    r = (x - kf * _LN2_HI64) - kf * _LN2_LO64
    return select(x < _XN64, 0.0, _exp_poly64(r, _UNOFFSET64) * pow2_of_rounded(t))


# Degree-6 polynomial for exp on |r| <= ln2/2, fitted for minimal relative error
# (Lawson iteration on Chebyshev nodes): max relative error 1.9e-9, far below float32's
# rounding, one multiply-add fewer than the Taylor polynomial of degree 7.
_M32 = tuple(
    np.float32(c)
    for c in (
        0.0013836845623957704,
        0.008374815802446417,
        0.04166822557611254,
        0.16666420169877974,
        0.4999999207978714,
        1.0000000363231893,
        1.0000000005541687,
    )
)


_M32_UNOFFSET = tuple(c * np.float32(2.0**-POW2_OFFSET) for c in _M32)  # exact


@inline
def _expneg32(x):
    # (as _expneg64: no clamp)
    t = x * _LOG2E32 + _ROUND32
    kf = t - _ROUND32
    r = (x - kf * _LN2_HI32) - kf * _LN2_LO32
    c = _M32_UNOFFSET
    p = c[0]
    p = p * r + c[1]
    p = p * r + c[2]
    p = p * r + c[3]
    p = p * r + c[4]
    p = p * r + c[5]
    p = p * r + c[6]
    return select(x < _XN32, _ZERO32, p * pow2_of_rounded(t))


# --------------------------------------------------------------------------------- log
# fdlibm / musl log: x = 2**k * (1+f), sqrt(2)/2 <= 1+f < sqrt(2); s = f/(2+f).
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_LN2_HI_L64 = 6.93147180369123816490e-01
_LN2_LO_L64 = 1.90821492927058770002e-10
_TINY64 = 2.2250738585072014e-308
_TWO54 = 18014398509481984.0
_OFF64 = np.int64(0x3FF00000 - 0x3FE6A09E) << 32
_MID64 = np.int64(0x3FE6A09E) << 32
_MANT64 = np.int64(0x000FFFFFFFFFFFFF)


@inline
def _log64(x):
    sub = x < _TINY64
    xs = select(sub, x * _TWO54, x)
    res = _log64_normal(xs, select(sub, np.int64(1023 + 54), np.int64(1023)))
    res = select(x == 0.0, -np.inf, res)
    res = select(x < 0.0, np.nan, res)
    res = select(x < np.inf, res, x)  # +inf -> inf, NaN -> NaN
    return res


@inline
def _log64_normal(xs, bias):
    """log of a positive, finite, normal xs whose exponent bias is ``bias`` (larger for a
    subnormal scaled up by 2**54)."""
    ix = f64_bits(xs) + _OFF64
    k = (ix >> 52) - bias
    m = bits_f64((ix & _MANT64) + _MID64)
    f = m - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    dk = np.float64(k)
    return s * (hfsq + t1 + t2) + dk * _LN2_LO_L64 - hfsq + f + dk * _LN2_HI_L64


_LG1_32 = np.float32(0.66666662693)
_LG2_32 = np.float32(0.40000972152)
_LG3_32 = np.float32(0.28498786688)
_LG4_32 = np.float32(0.24279078841)
_LN2_HI_L32 = np.float32(6.9313812256e-01)
_LN2_LO_L32 = np.float32(9.0580006145e-06)
_TINY32 = np.float32(1.17549435e-38)
_TWO25 = np.float32(33554432.0)
_OFF32 = np.int32(0x3F800000 - 0x3F3504F3)
_MID32 = np.int32(0x3F3504F3)
_MANT32 = np.int32(0x007FFFFF)
_HALF32 = np.float32(0.5)
_ONE32 = np.float32(1.0)
_TWO32 = np.float32(2.0)
_ZERO32 = np.float32(0.0)
_NAN32 = np.float32(np.nan)
_NINF32 = np.float32(-np.inf)
_INF32 = np.float32(np.inf)


@inline
def _log32(x):
    sub = x < _TINY32
    xs = select(sub, x * _TWO25, x)
    res = _log32_normal(xs, select(sub, np.int32(127 + 25), np.int32(127)))
    res = select(x == _ZERO32, _NINF32, res)
    res = select(x < _ZERO32, _NAN32, res)
    res = select(x < _INF32, res, x)
    return res


@intrinsic
def _split32(typingctx, xs, bias):
    """``(float32(k), m)`` of :func:`_log32_normal`'s reduction ``xs = 2**k * m`` with
    ``m`` in [sqrt(2)/2, sqrt(2)), in 32-bit integer arithmetic (Numba would widen the
    int32 bit operations to int64, halving the vector width and converting k from int64).
    The same integers as the 64-bit version: no intermediate exceeds 2**31 for a
    positive finite ``xs``."""
    if xs != types.float32 or not isinstance(bias, types.Integer):
        return None
    sig = types.UniTuple(types.float32, 2)(xs, bias)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        b = _resize(builder, args[1], 32)
        ix = builder.add(builder.bitcast(args[0], i32), ir.Constant(i32, int(_OFF32)))
        k = builder.sub(builder.ashr(ix, ir.Constant(i32, 23)), b)
        mbits = builder.add(builder.and_(ix, ir.Constant(i32, int(_MANT32))),
                            ir.Constant(i32, int(_MID32)))
        m = builder.bitcast(mbits, ir.FloatType())
        dk = builder.sitofp(k, ir.FloatType())
        return context.make_tuple(builder, signature.return_type, (dk, m))

    return sig, codegen


@inline
def _log32_normal(xs, bias):
    """float32 :func:`_log64_normal`."""
    dk, m = _split32(xs, bias)
    f = m - _ONE32
    s = f / (_TWO32 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2_32 + w * _LG4_32)
    t2 = z * (_LG1_32 + w * _LG3_32)
    hfsq = _HALF32 * f * f
    return s * (hfsq + t1 + t2) + dk * _LN2_LO_L32 - hfsq + f + dk * _LN2_HI_L32


# ---------------------------------------------------------------------- type dispatch
def vexp(x):
    """exp(x), vectorisable (pure-Python fallback for NUMBA_DISABLE_JIT)."""
    return np.exp(x)


def vexp_neg(x):
    """exp(x) for x <= 0 (softmax arguments x - max; NaN propagates), vectorisable, with
    subnormal results (about 1 ulp; within one subnormal step below the normal range).
    Positive arguments up to 64 ln 2 are still exact; beyond that the result is
    undefined."""
    return np.exp(x)


@overload(vexp_neg, inline="always")
def _ov_vexp_neg(x):
    if x == types.float32:
        return lambda x: _expneg32(x)
    if x == types.float64:
        return lambda x: _expneg64(x)


def vlog(x):
    """log(x), vectorisable."""
    return np.log(x)


def vlog1p(x):
    """log(1 + x), vectorisable; accurate for small |x|."""
    return np.log1p(x)


def vtanh(x):
    """tanh(x), vectorisable."""
    return np.tanh(x)


@overload(vexp, inline="always")
def _ov_vexp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if x == types.float64:
        return lambda x: _exp64(x)


@overload(vlog, inline="always")
def _ov_vlog(x):
    if x == types.float32:
        return lambda x: _log32(x)
    if x == types.float64:
        return lambda x: _log64(x)


@overload(vlog1p, inline="always")
def _ov_vlog1p(x):
    if isinstance(x, types.Float):
        one = x(1.0)

        def impl(x):
            # log1p(x) = log(u) - ((u - 1) - x) / u with u = 1 + x (Goldberg's correction)
            u = one + x
            lu = vlog(u)
            d = u - one
            corr = (d - x) / u
            res = lu - corr
            res = select(corr != corr, lu, res)  # u == 0 (x == -1) or x == inf: log(u) exact
            return select(u == one, x, res)  # tiny x: log1p(x) == x

        return impl


def vlog1p_unit(e):
    """log(1 + e) for e in [0, 1] (e = exp(-|x|) of the softplus family) or NaN,
    vectorisable: :func:`vlog1p` without the range special cases, and its correction
    term multiplied by 1/(1 + e) (the sigmoid's own division, shared after CSE)."""
    return np.log1p(e)


@overload(vlog1p_unit, inline="always")
def _ov_vlog1p_unit(e):
    if e in (types.float32, types.float64):
        one = e(1.0)
        bias = np.int32(127) if e == types.float32 else np.int64(1023)
        log_normal = _log32_normal if e == types.float32 else _log64_normal

        def impl(e):
            u = one + e  # in [1, 2]: a normal number
            res = log_normal(u, bias) - ((u - one) - e) * (one / u)
            return select(e == e, res, e)

        return impl


def vexpm1(x):
    """exp(x) - 1, vectorisable; accurate for small |x|."""
    return np.expm1(x)


@overload(vexpm1, inline="always")
def _ov_vexpm1(x):
    # exp(x) = 2**k * (1 + q(r)) with q(r) = r + r**2/2 + ...; expm1 = 2**k*q + (2**k - 1),
    # which keeps full relative accuracy for |x| < ln2/2 (k == 0).
    if x == types.float64:

        def impl(x):
            y = select(x > 709.8, 709.8, select(x < -40.0, -40.0, x))
            kf = (y * _LOG2E + _ROUND64) - _ROUND64
            r = (y - kf * _LN2_HI64) - kf * _LN2_LO64
            q = 1.0 / 6227020800.0
            q = q * r + 1.0 / 479001600.0
            q = q * r + 1.0 / 39916800.0
            q = q * r + 1.0 / 3628800.0
            q = q * r + 1.0 / 362880.0
            q = q * r + 1.0 / 40320.0
            q = q * r + 1.0 / 5040.0
            q = q * r + 1.0 / 720.0
            q = q * r + 1.0 / 120.0
            q = q * r + 1.0 / 24.0
            q = q * r + 1.0 / 6.0
            q = q * r + 0.5
            q = (q * r) * r + r
            s1, s2 = pow2_pair(select(kf == kf, kf, 0.0))
            res = (q * s1) * s2 + (s1 * s2 - 1.0)
            res = select(x > 40.0, _exp64(x), res)  # 2**k alone would overflow near the top
            return select(x != x, x, res)

        return impl
    if x == types.float32:
        lo = np.float32(-20.0)
        _T32 = np.float32(20.0)

        def impl(x):
            y = select(x > _X32_HI, _X32_HI, select(x < lo, lo, x))
            kf = (y * _LOG2E32 + _ROUND32) - _ROUND32
            r = (y - kf * _LN2_HI32) - kf * _LN2_LO32
            q = _C32[0]
            q = q * r + _C32[1]
            q = q * r + _C32[2]
            q = q * r + _C32[3]
            q = q * r + _C32[4]
            q = q * r + _C32[5]
            q = (q * r) * r + r
            s1, s2 = pow2_pair(select(kf == kf, kf, _ZERO32))
            res = (q * s1) * s2 + (s1 * s2 - _ONE32)
            res = select(x > _T32, _exp32(x), res)
            return select(x != x, x, res)

        return impl


@overload(vtanh, inline="always")
def _ov_vtanh(x):
    if isinstance(x, types.Float):
        one = x(1.0)
        two = x(2.0)
        big = x(9.1) if x == types.float32 else x(19.1)  # tanh rounds to 1 beyond

        def impl(x):
            a = abs(x)
            e = vexpm1(two * select(a > big, big, a))
            r = e / (e + two)
            r = select(a > big, one, r)
            r = select(a == a, r, a)
            return select(x < 0, -r, r)

        return impl


# --------------------------------------------------------------------- vectorised max
# Floats compare like the signed integers k = b ^ ((b >> w-1) & 0x7FF..F) (b = raw bits,
# w = width); integer max reductions vectorise without fastmath, float max reductions do
# not.  The key is computed in the float's own width: Numba would widen int32 arithmetic
# to int64 and halve the vector width of the float32 max (measured 2x slower).
def _flip(builder, b):
    """b ^ ((b >> w-1) & 0x7FF..F): float bits <-> ordered integer key (an involution)."""
    w = b.type.width
    sign = builder.ashr(b, ir.Constant(b.type, w - 1))
    return builder.xor(b, builder.and_(sign, ir.Constant(b.type, (1 << (w - 1)) - 1)))


_KEY = {types.float32: types.int32, types.float64: types.int64}


@intrinsic
def max_key(typingctx, x):
    """The signed integer of x's width that orders like x (float32 or float64)."""
    if x not in _KEY:
        return None
    sig = _KEY[x](x)

    def codegen(context, builder, signature, args):
        return _flip(builder, builder.bitcast(args[0], ir.IntType(_KEY[x].bitwidth)))

    return sig, codegen


@intrinsic
def key_to_float(typingctx, k, like):
    """The float (of ``like``'s type) whose :func:`max_key` is k."""
    if like not in _KEY or not isinstance(k, types.Integer):
        return None
    sig = like(k, like)

    def codegen(context, builder, signature, args):
        v = _resize(builder, args[0], _KEY[like].bitwidth)
        return builder.bitcast(_flip(builder, v), context.get_value_type(like))

    return sig, codegen


@rowfn
def row_max(x):
    """Max of a 1-D array by integer keys (vectorised).  A positive NaN wins; a negative
    NaN may not -- callers rely on the following exp pass to propagate NaN either way.
    An empty row gives NaN."""
    m = _key_start(x[:1])
    for j in range(x.shape[0]):
        m = max(m, max_key(x[j]))
    return key_to_float(m, x.dtype.type(0))


def _key_start(x):
    return np.int64(0)


@overload(_key_start, inline="always")
def _ov_key_start(x):
    if x.dtype == types.float64:
        return lambda x: np.int64(-0x7FFFFFFFFFFFFFFF - 1)
    return lambda x: np.int32(-0x7FFFFFFF - 1)


@accumulator
def row_sum(a):
    """Float64 sum of a 1-D array (vectorised; fixed order for a given length)."""
    s = 0.0
    for j in range(a.shape[0]):
        s += a[j]
    return s
