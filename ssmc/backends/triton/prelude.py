"""Triton helpers the generated kernels call (referenced by the op registry's templates).

Each is the accurate form of a function fp32 would otherwise lose: log1p and expm1 near 0
(Goldberg's and Kahan's tricks: the rounding of u = 1 + x, or u = exp(x), cancels out),
expm1(x)/x for exact ZOH as A -> 0, and tanh without cancellation near 0."""

PRELUDE = '''
@triton.jit
def _ssmc_exp2_accurate(x):
    # 2^x = 2^n * 2^f, n = round(x), f in [-1/2, 1/2], 2^f by its Taylor series to degree 7
    # (truncation 5e-9 relative, below half an ulp). For values computed once per program
    # (before the time loop), where the GPU's ex2.approx error (about 2^-22) would be the same
    # at every step and compound through the powers of a time-invariant decay.
    n = tl.floor(x + 0.5)
    f = x - n
    p = 1.525273380405984e-05
    p = p * f + 0.00015403530393381606
    p = p * f + 0.0013333558146428443
    p = p * f + 0.009618129107628477
    p = p * f + 0.05550410866482158
    p = p * f + 0.2402265069591007
    p = p * f + 0.6931471805599453
    p = p * f + 1.0
    # p is in [0.70, 1.42]: adding n to its exponent field is exact for -125 <= n <= 127
    ni = tl.minimum(tl.maximum(n, -125.0), 127.0).to(tl.int32)
    scaled = (p.to(tl.int32, bitcast=True) + (ni << 23)).to(tl.float32, bitcast=True)
    r = tl.where(n > 127.0, scaled * 2.0, scaled)  # n = 128: one more doubling (may be inf)
    r = tl.where(n > 128.0, float("inf"), r)
    r = tl.where(n < -125.0, tl.exp2(x), r)  # (sub)normal edge: the hardware's
    return tl.where(x != x, x, r)


@triton.jit
def _ssmc_exp2_fma(x):
    # 2^x on the FMA and integer pipes, for time loops where the transcendental (MUFU) pipe is
    # the limit or ex2.approx's error (about 2 ulps, biased) compounds: n = round(x) by the
    # 1.5 * 2^23 trick (its bits hold n), f = x - n in [-1/2, 1/2], 2^f by a degree-6 fit of
    # relative error 1.9e-9 (float32: 0.95 ulps at most on an H100, 1.15 unfused, unbiased), 2^n as two exponent-field
    # scalings (exact for -252 <= n <= 254; beyond, the clamp's 0 or inf is the right one)
    xc = tl.minimum(tl.maximum(x, -252.0, propagate_nan=tl.PropagateNan.ALL), 254.0,
                    propagate_nan=tl.PropagateNan.ALL)
    t = xc + 12582912.0
    f = xc - (t - 12582912.0)
    ni = t.to(tl.int32, bitcast=True) - 0x4B400000
    p = 0.00015345179482291867
    p = p * f + 0.0013399925774923978
    p = p * f + 0.00961849130560944
    p = p * f + 0.05550328793910701
    p = p * f + 0.2402264686898231
    p = p * f + 0.6931472057267567
    p = p * f + 1.0
    h = ni >> 1
    s1 = ((h + 127) << 23).to(tl.float32, bitcast=True)
    s2 = ((ni - h + 127) << 23).to(tl.float32, bitcast=True)
    return p * s1 * s2


@triton.jit
def _ssmc_log2e_split(x):
    # x * log2 e as t + e: t rounded, e its rounding error (rounding x * log2 e costs |x| * eps
    # relative error in exp otherwise). Triton's interpreter does not fuse tl.fma: e is 0 there.
    t = x * 1.4426950408889634
    e = tl.fma(x, 1.4426950408889634, -t) + x * 1.9259629911e-08
    return t, tl.where(tl.abs(x) < 1.0e30, e, 0.0)  # x = +-inf: fma(inf, c, -inf) is NaN


@triton.jit
def _ssmc_exp_accurate(x):
    t, e = _ssmc_log2e_split(x)
    return _ssmc_exp2_accurate(t) * (1.0 + e * 0.6931471805599453)


@triton.jit
def _ssmc_exp(x):
    # in the time loop: the GPU's ex2.approx of the compensated argument
    t, e = _ssmc_log2e_split(x)
    return tl.exp2(t) * (1.0 + e * 0.6931471805599453)


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
def _ssmc_exprel_grad(x):
    # d/dx (e^x - 1) / x: its series sum_k k x^(k-1) / (k+1)! near 0 (Horner), else the
    # closed form, which cancels there
    near = ((((((((((2.296443268665491e-08) * x + 2.505210838544172e-07) * x + 2.48015873015873e-06) * x + 2.2045855379188714e-05) * x + 0.00017361111111111112) * x + 0.0011904761904761906) * x + 0.006944444444444444) * x + 0.03333333333333333) * x + 0.125) * x + 0.3333333333333333) * x + 0.5
    s = tl.where(tl.abs(x) < 0.5, 1.0, x)
    far = (_ssmc_expm1(s) * (s - 1.0) + s) / (s * s)
    return tl.where(tl.abs(x) < 0.5, near, far)


@triton.jit
def _ssmc_softplus(x):
    # max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1]; log1p(e) = e * q(e), q a degree-9 fit of
    # log1p(e) / e on [0, 1] (4.7e-9 relative; 2.6 float32 ulps with Horner's rounding). About
    # 16 instructions in the time loop, where log(1 + e) with its accurate log and division took
    # about 45. A NaN propagates through e. e from the GPU's ex2.approx of -|x| log2 e without
    # _ssmc_exp's compensation (4 instructions more a step): its rounding, |x| 2^-24 relative,
    # is that of x itself (x = dt + dt_bias is rounded to float32 before it).
    e = tl.exp(-tl.abs(x))
    q = -0.003244025821204294
    q = q * e + 0.01985146527820279
    q = q * e - 0.05695953976348732
    q = q * e + 0.10603655444363816
    q = q * e - 0.15305592903963028
    q = q * e + 0.19675939373602744
    q = q * e - 0.24954133678759674
    q = q * e + 0.3332996241887356
    q = q * e - 0.49999902422861886
    q = q * e + 0.9999999952872244
    return tl.maximum(x, 0.0) + e * q


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
def _ssmc_pair_ptr(p):
    # a pointer to two elements at a time: 16-bit ones as int32, fp32 ones as int64
    if p.dtype.element_ty == tl.float32:
        return p.to(tl.pointer_type(tl.int64))
    else:
        return p.to(tl.pointer_type(tl.int32))


@triton.jit
def _ssmc_pair(w, HI: tl.constexpr, DT: tl.constexpr):
    # one of the two values of dtype DT packed in w (the element with the lower address in the
    # low half), as fp32: an fp32 is a half of the int64 as it is, a bf16 the high half of its
    # fp32
    if DT == tl.float32:
        if HI:
            return (w >> 32).to(tl.int32).to(tl.float32, bitcast=True)
        else:
            return w.to(tl.int32).to(tl.float32, bitcast=True)
    elif DT == tl.bfloat16:
        if HI:
            return (w & -65536).to(tl.float32, bitcast=True)
        else:
            return (w << 16).to(tl.float32, bitcast=True)
    else:
        if HI:
            return (w >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        else:
            return w.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _ssmc_scan_combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _ssmc_sum2(h1, l1, h2, l2):
    # running sums as hi + lo pairs (Knuth's two-sum: lo holds what hi's rounding lost): the
    # difference of two prefix sums is then accurate relative to itself, not to the sums (the
    # matrix form's decays between steps of a tile, 2^(cum[t] - cum[s]))
    s = h1 + h2
    b = s - h1
    e = (h1 - (s - b)) + (h2 - b)
    return s, l1 + l2 + e


@triton.jit
def _ssmc_dot_bf16x3(a, b):
    # a @ b at float32 accuracy where a is exact in bf16 (a 16-bit argument as loaded): b as
    # three bf16 parts (hi, mid, lo: 24 bits), three bf16 products into a float32 accumulator
    b1 = b.to(tl.bfloat16)
    r = b - b1.to(tl.float32)
    b2 = r.to(tl.bfloat16)
    b3 = (r - b2.to(tl.float32)).to(tl.bfloat16)
    acc = tl.dot(a, b1)
    acc = tl.dot(a, b2, acc)
    return tl.dot(a, b3, acc)


@triton.jit
def _ssmc_dot_bf16x2(a, b):
    # a @ b where a is exact in bf16 and b needs 16 of float32's 24 bits: b as two bf16 parts
    # (hi, lo), two bf16 products into a float32 accumulator (each term off by 2^-17 relative)
    b1 = b.to(tl.bfloat16)
    b2 = (b - b1.to(tl.float32)).to(tl.bfloat16)
    acc = tl.dot(a, b1)
    return tl.dot(a, b2, acc)
'''

HELPERS = (
    "_ssmc_exp",
    "_ssmc_log2e_split",
    "_ssmc_exp_accurate",
    "_ssmc_exp2_accurate",
    "_ssmc_exp2_fma",
    "_ssmc_log1p",
    "_ssmc_expm1",
    "_ssmc_exprel",
    "_ssmc_exprel_grad",
    "_ssmc_softplus",
    "_ssmc_tanh",
    "_ssmc_relu",
    "_ssmc_round_bf16",
    "_ssmc_pair_ptr",
    "_ssmc_pair",
    "_ssmc_scan_combine",
    "_ssmc_sum2",
    "_ssmc_dot_bf16x3",
    "_ssmc_dot_bf16x2",
)


def _blocks() -> dict[str, str]:
    """Each helper's source (its decorator line through the blank line after it), by name."""
    out: dict[str, str] = {}
    for chunk in PRELUDE.split("@triton.jit\n")[1:]:
        name = chunk.split("(", 1)[0].removeprefix("def ").strip()
        out[name] = "@triton.jit\n" + chunk.strip("\n") + "\n"
    return out


def prelude_for(source: str) -> str:
    """The helpers ``source`` calls, and the helpers they call, in the prelude's order: a
    generated file carries only what it uses."""
    blocks = _blocks()
    need: set[str] = set()
    todo = [n for n in blocks if n in source]
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo += [m for m in blocks if m != n and m in blocks[n]]
    return "\n\n".join(blocks[n] for n in blocks if n in need)
