"""Triton helpers the generated kernels call (referenced by the op registry's templates).

Each is the accurate form of a function fp32 would otherwise lose: log1p and expm1 near 0
(Goldberg's and Kahan's tricks: the rounding of u = 1 + x, or u = exp(x), cancels out),
expm1(x)/x for exact ZOH as A -> 0, and tanh without cancellation near 0."""

PRELUDE = '''
@triton.jit
def _ssmc_exp2(x, FAST: tl.constexpr):
    # on a GPU: one MUFU.EX2, flushing denormal results to zero (plain ex2.approx.f32 adds a
    # compare and two predicated multiplies to every exponential to keep them)
    if FAST:
        return tl.inline_asm_elementwise(
            "ex2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.exp2(x)


@triton.jit
def _ssmc_log1p(x):
    u = 1.0 + x
    d = u - 1.0
    r = tl.where(d == 0.0, x, tl.log(u) * (x / tl.where(d == 0.0, 1.0, d)))
    return tl.where(x > 1.0e30, tl.log(u), r)


@triton.jit
def _ssmc_expm1(x):
    u = tl.exp(x)
    um1 = u - 1.0
    lu = tl.log(u)
    r = tl.where(um1 == 0.0, x, um1 * (x / tl.where(lu == 0.0, 1.0, lu)))
    r = tl.where(um1 == -1.0, -1.0, r)
    return tl.where(x > 80.0, u, r)


@triton.jit
def _ssmc_exprel(x):
    u = tl.exp(x)
    um1 = u - 1.0
    lu = tl.log(u)
    r = um1 / tl.where(lu == 0.0, 1.0, lu)
    r = tl.where(um1 == 0.0, 1.0, r)
    r = tl.where(um1 == -1.0, -1.0 / x, r)
    return tl.where(x > 80.0, u / x, r)


@triton.jit
def _ssmc_softplus(x):
    return tl.where(x > 20.0, x, _ssmc_log1p(tl.exp(x)))


@triton.jit
def _ssmc_tanh(x):
    e = _ssmc_expm1(-2.0 * tl.abs(x))
    t = -e / (2.0 + e)
    return tl.where(x < 0.0, -t, t)


@triton.jit
def _ssmc_relu(x):
    return tl.maximum(x, 0.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _ssmc_round_bf16(x):
    # round to nearest even on the bits: the same on a GPU and in Triton's interpreter (which
    # truncates in .to(tl.bfloat16))
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + (((bits >> 16) & 1) + 0x7FFF)) & 0xFFFF0000
    return tl.where(x != x, x, bits.to(tl.float32, bitcast=True))


@triton.jit
def _ssmc_scan_combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2
'''

HELPERS = (
    "_ssmc_exp2",
    "_ssmc_log1p",
    "_ssmc_expm1",
    "_ssmc_exprel",
    "_ssmc_softplus",
    "_ssmc_tanh",
    "_ssmc_relu",
    "_ssmc_round_bf16",
    "_ssmc_scan_combine",
)
