"""Random SSM programs for fuzzing the compiler: a hypothesis strategy that draws valid layers.

Values carry a range tag so every op gets inputs in its domain: ``any`` (real), ``pos`` (> 0),
``nonneg`` (>= 0), ``unit`` (in (0, 1): a decay). Exponentials see bounded arguments, so a
program's values stay finite in float32 (overflow is a property of the precision, not a bug).
A program has 1-3 sequence inputs and 0-2 parameters over named dims, a random chain of
elementwise ops, optional reductions over a state dim, one or two scans (forward or reverse,
side by side or chained, with or without an initial state, final states as outputs), and 1-3
outputs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from hypothesis import strategies as st

import ssmc
from ssmc.dsl.trace import ArgSpec, Value


@dataclass
class Program:
    layer: ssmc.Layer
    source: str  # Python that rebuilds the layer (printed when a check fails)
    sizes: dict[str, int]


UNARY = {
    # name: (input range, output range, builder)
    "neg": ("any", "any", lambda x: -x),
    "tanh": ("any", "any", ssmc.tanh),
    "silu": ("any", "any", ssmc.silu),
    "gelu": ("any", "any", ssmc.gelu),
    "sigmoid": ("any", "unit", ssmc.sigmoid),
    "softplus": ("any", "pos", ssmc.softplus),
    "exp_tanh": ("any", "pos", lambda x: ssmc.exp(2.0 * ssmc.tanh(x))),
    "abs": ("any", "nonneg", ssmc.abs),
    "relu": ("any", "nonneg", ssmc.relu),
    "square_tanh": ("any", "nonneg", lambda x: ssmc.square(ssmc.tanh(x))),
    "expm1_tanh": ("any", "any", lambda x: ssmc.expm1(ssmc.tanh(x))),
    "log1p": ("nonneg", "nonneg", ssmc.log1p),
    "sqrt": ("nonneg", "nonneg", ssmc.sqrt),
    "log": ("pos", "any", ssmc.log),
    "rsqrt_shift": ("pos", "pos", lambda x: ssmc.rsqrt(x + 0.5)),
    "pow": ("pos", "pos", lambda x: ssmc.power(x + 0.1, 1.5)),
    "cast_bf16": ("any", "any", lambda x: ssmc.cast(x, "bf16")),
}
SOURCE = {
    "neg": "-{0}", "tanh": "ssmc.tanh({0})", "silu": "ssmc.silu({0})", "gelu": "ssmc.gelu({0})",
    "sigmoid": "ssmc.sigmoid({0})", "softplus": "ssmc.softplus({0})",
    "exp_tanh": "ssmc.exp(2.0 * ssmc.tanh({0}))", "abs": "ssmc.abs({0})", "relu": "ssmc.relu({0})",
    "square_tanh": "ssmc.square(ssmc.tanh({0}))", "expm1_tanh": "ssmc.expm1(ssmc.tanh({0}))",
    "log1p": "ssmc.log1p({0})", "sqrt": "ssmc.sqrt({0})", "log": "ssmc.log({0})",
    "rsqrt_shift": "ssmc.rsqrt({0} + 0.5)", "pow": "ssmc.power({0} + 0.1, 1.5)",
    "cast_bf16": "ssmc.cast({0}, 'bf16')",
}
FITS = {"any": ("any", "pos", "nonneg", "unit"), "nonneg": ("pos", "nonneg", "unit"), "pos": ("pos", "unit"), "unit": ("unit",)}


@st.composite
def programs(draw, max_len: int = 12) -> Program:
    state_dims = draw(st.sampled_from([("D",), ("D", "N"), ("H", "P")]))
    sizes = {"B": draw(st.integers(1, 2)), "L": draw(st.integers(1, max_len))}
    for d in state_dims:
        sizes[d] = draw(st.integers(1, 5))
    args: list[tuple[str, ArgSpec]] = []
    n_in = draw(st.integers(1, 3))
    for i in range(n_in):
        extra = draw(st.lists(st.sampled_from(state_dims), unique=True, min_size=1 if i == 0 else 0))
        args.append((f"x{i}", ssmc.In["B L " + " ".join(d for d in state_dims if d in extra)]))
    for i in range(draw(st.integers(0, 2))):
        pd = draw(st.lists(st.sampled_from(state_dims), unique=True, min_size=1))
        args.append((f"p{i}", ssmc.Param[" ".join(d for d in state_dims if d in pd), "small_normal"]))
    with_h0 = draw(st.booleans())
    steps = draw(st.lists(st.tuples(st.sampled_from(["unary", "binary", "where", "reduce"]), st.integers(0, 10**6), st.sampled_from(sorted(UNARY)), st.sampled_from(["add", "sub", "mul", "div", "maximum", "minimum"])), max_size=6))
    n_scans = draw(st.integers(1, 2))
    chained = draw(st.booleans())
    reverse = [draw(st.booleans()) for _ in range(n_scans)]
    decay_kind = [draw(st.sampled_from(["sigmoid", "discretize"])) for _ in range(n_scans)]
    method = [draw(st.sampled_from(["zoh", "zoh_euler", "bilinear", "euler"])) for _ in range(n_scans)]
    readout = draw(st.booleans())
    out_final = draw(st.booleans())
    lines: list[str] = []

    def fn(*vals: Value):
        pool: list[tuple[Value, str, str]] = [(v, "any", name) for v, (name, _) in zip(vals, args)]
        h0 = None
        if with_h0:
            pool = pool[:-1]
            h0 = vals[-1]
        k = 0

        def pick(seed: int, rng: str, seq: bool = False) -> tuple[Value, str, str]:
            ok = [p for p in pool if p[1] in FITS[rng] and (not seq or "L" in p[0].dims)]
            return ok[seed % len(ok)] if ok else None

        for kind, seed, uname, bname in steps:
            k += 1
            if kind == "unary":
                src_rng, out_rng, f = UNARY[uname]
                x = pick(seed, src_rng)
                if x is None:
                    continue
                pool.append((f(x[0]), out_rng, f"v{k}"))
                lines.append(f"v{k} = " + SOURCE[uname].format(x[2]))
            elif kind == "binary":
                a, b = pick(seed, "any"), pick(seed // 7, "any")
                if bname == "div":
                    b = pick(seed // 7, "pos")
                    if b is None:
                        continue
                    pool.append((a[0] / (b[0] + 0.5), "any", f"v{k}"))
                    lines.append(f"v{k} = {a[2]} / ({b[2]} + 0.5)")
                    continue
                op = {"add": lambda u, v: u + v, "sub": lambda u, v: u - v, "mul": lambda u, v: u * v, "maximum": ssmc.maximum, "minimum": ssmc.minimum}[bname]
                rng = "pos" if (bname in ("add", "mul", "maximum") and a[1] in FITS["pos"] and b[1] in FITS["pos"]) else "any"
                pool.append((op(a[0], b[0]), rng, f"v{k}"))
                sym = {"add": "+", "sub": "-", "mul": "*"}.get(bname)
                lines.append(f"v{k} = " + (f"{a[2]} {sym} {b[2]}" if sym else f"ssmc.{bname}({a[2]}, {b[2]})"))
            elif kind == "where":
                a, b = pick(seed, "any"), pick(seed // 3, "any")
                pool.append((ssmc.where(a[0] > b[0], a[0], 2.0 * b[0]), "any", f"v{k}"))
                lines.append(f"v{k} = ssmc.where({a[2]} > {b[2]}, {a[2]}, 2.0 * {b[2]})")
            else:
                a = pick(seed, "any")
                red = [d for d in a[0].dims if d in state_dims]
                if not red:
                    continue
                d = red[seed % len(red)]
                m = "sum" if seed % 2 else "mean"
                pool.append((getattr(a[0], m)(d), "any", f"v{k}"))
                lines.append(f"v{k} = {a[2]}.{m}({d!r})")
        outs = {}
        prev = None
        for s in range(n_scans):
            k += 1
            x = pick(k * 31 + s, "any", seq=True)
            b_in = prev if (chained and prev is not None) else x
            if decay_kind[s] == "sigmoid":
                a_val = ssmc.sigmoid(pick(k * 17, "any")[0])
                a_src = f"ssmc.sigmoid({pick(k * 17, 'any')[2]})"
                b_val, b_src = b_in[0], b_in[2]
            else:
                A = -ssmc.softplus(pick(k * 13, "any")[0]) - 0.1
                delta = ssmc.softplus(pick(k * 11, "any")[0])
                a_val, b_val = ssmc.discretize(A, b_in[0], delta, method[s])
                a_src = f"ssmc.discretize(-ssmc.softplus({pick(k * 13, 'any')[2]}) - 0.1, {b_in[2]}, ssmc.softplus({pick(k * 11, 'any')[2]}), {method[s]!r})"
                b_src = None
            use_h0 = h0 if (s == 0 and h0 is not None and set(h0.dims) <= set(ssmc.dsl.trace._tracer().order)) else None
            try:
                h = ssmc.scan(a_val, b_val, axis="L", reverse=reverse[s], h0=use_h0)
            except ssmc.DefinitionError:
                h = ssmc.scan(a_val, b_val, axis="L", reverse=reverse[s])
                use_h0 = None
            h0s = ", h0=h0" if use_h0 is not None else ""
            if b_src is None:
                lines.append(f"a{s}, b{s} = {a_src}")
                lines.append(f"h{s} = ssmc.scan(a{s}, b{s}, axis='L', reverse={reverse[s]}{h0s})")
            else:
                lines.append(f"h{s} = ssmc.scan({a_src}, {b_src}, axis='L', reverse={reverse[s]}{h0s})")
            y = h
            ysrc = f"h{s}"
            if readout and len([d for d in h.dims if d in state_dims]) > 1:
                d = [d for d in h.dims if d in state_dims][-1]
                y = h.sum(d)
                ysrc = f"h{s}.sum({d!r})"
            outs[f"y{s}"] = y
            lines.append(f"out['y{s}'] = {ysrc}")
            if out_final:
                outs[f"h{s}_final"] = h.final
                lines.append(f"out['h{s}_final'] = h{s}.final")
            prev = (y, "any", ysrc)
        return outs

    if with_h0:
        args.append(("h0", ssmc.In[" ".join(["B", *state_dims])]))
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=spec, default=None if n == "h0" else inspect.Parameter.empty) for n, spec in args]
    fn.__signature__ = inspect.Signature(params)
    layer = ssmc.layer(fn, name="fuzzed")
    sig = ", ".join(f"{n}: {'ssmc.In' if s.kind == 'input' else 'ssmc.Param'}[{' '.join(s.layout)!r}{', ' + repr(s.init) if s.kind == 'param' else ''}]{' = None' if n == 'h0' else ''}" for n, s in args)
    body = "\n".join("    " + ln for ln in ["out = {}", *lines, "return out"])
    source = f"import ssmc\n\n@ssmc.layer\ndef fuzzed({sig}):\n{body}\n"
    return Program(layer, source, {d: sizes[d] for d in layer.dim_order})


@st.composite
def complex_programs(draw, max_len: int = 12) -> Program:
    """Random layers with one complex scan (parts along ``RI``, fixed at 2): a decay
    r e^(i phi) with r in (0, 1) and phi drawn from real chains of the inputs, a complex input
    scaled by a real factor, forward or reverse, with or without h0, read out as the state,
    its power |h|^2 (summed over N where the state has it) or a real part times an input."""
    state_dims = draw(st.sampled_from([("D",), ("D", "N")]))
    sizes = {"B": draw(st.integers(1, 2)), "L": draw(st.integers(1, max_len)), "RI": 2}
    for d in state_dims:
        sizes[d] = draw(st.integers(1, 4))
    sd = " ".join(state_dims)
    k_dims = draw(st.sampled_from([d for d in (("D",), state_dims) if d]))
    args = [("x", ssmc.In[f"B L {sd} RI"]), ("k", ssmc.In["B L " + " ".join(k_dims)])]
    phase_fn = draw(st.sampled_from(["tanh3", "linear", "param"]))
    if phase_fn == "param":
        args.append(("w", ssmc.Param["D", "small_normal"]))
    with_h0 = draw(st.booleans())
    if with_h0:
        args.append(("h0", ssmc.In[f"B {sd} RI"]))
    r_fn = draw(st.sampled_from(["sigmoid", "exp_neg_softplus"]))
    scale = draw(st.sampled_from(["none", "softplus", "silu"]))
    reverse = draw(st.booleans())
    readout = draw(st.sampled_from(["state", "power", "real_mix"]))
    out_final = draw(st.booleans())

    R = {"sigmoid": ("ssmc.sigmoid({0})", lambda v: ssmc.sigmoid(v)),
         "exp_neg_softplus": ("ssmc.exp(-ssmc.softplus({0}))", lambda v: ssmc.exp(-ssmc.softplus(v)))}[r_fn]
    PHI = {"tanh3": ("3.0 * ssmc.tanh({0})", lambda v, w: 3.0 * ssmc.tanh(v)),
           "linear": ("0.7 * {0}", lambda v, w: 0.7 * v),
           "param": ("w * {0}", lambda v, w: w * v)}[phase_fn]
    S = {"none": ("x", lambda x, v: x), "softplus": ("ssmc.softplus({0}) * x", lambda x, v: ssmc.softplus(v) * x),
         "silu": ("ssmc.silu({0}) * x", lambda x, v: ssmc.silu(v) * x)}[scale]
    lines = [
        f"r = {R[0].format('k')}",
        f"phi = {PHI[0].format('k')}",
        "a = ssmc.stack(r * ssmc.cos(phi), r * ssmc.sin(phi), dim='RI')",
        f"b = {S[0].format('k')}",
        f"h = ssmc.scan(a, b, axis='L', reverse={reverse}{', h0=h0' if with_h0 else ''}, complex='RI')",
    ]

    def fn(*vals: Value):
        v = dict(zip([n for n, _ in args], vals))
        r = R[1](v["k"])
        phi = PHI[1](v["k"], v.get("w"))
        a = ssmc.stack(r * ssmc.cos(phi), r * ssmc.sin(phi), dim="RI")
        h = ssmc.scan(a, S[1](v["x"], v["k"]), axis="L", reverse=reverse, h0=v.get("h0"), complex="RI")
        re, im = ssmc.part(h, "RI", 0), ssmc.part(h, "RI", 1)
        if readout == "state":
            out = {"y": h}
        elif readout == "power":
            p = re * re + im * im
            out = {"y": p.sum("N") if "N" in p.dims else p}
        else:
            out = {"y": re * v["k"] - im}
        if out_final:
            out["h_final"] = h.final
        return out

    lines.append("re, im = ssmc.part(h, 'RI', 0), ssmc.part(h, 'RI', 1)")
    if readout == "state":
        lines.append("out = {'y': h}")
    elif readout == "power":
        lines.append("p = re * re + im * im")
        lines.append("out = {'y': p.sum('N')}" if "N" in state_dims else "out = {'y': p}")
    else:
        lines.append("out = {'y': re * k - im}")
    if out_final:
        lines.append("out['h_final'] = h.final")
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=spec, default=None if n == "h0" else inspect.Parameter.empty) for n, spec in args]
    fn.__signature__ = inspect.Signature(params)
    layer = ssmc.layer(fn, name="fuzzed_complex", sizes={"RI": 2})
    sig = ", ".join(f"{n}: {'ssmc.In' if s.kind == 'input' else 'ssmc.Param'}[{' '.join(s.layout)!r}{', ' + repr(s.init) if s.kind == 'param' else ''}]{' = None' if n == 'h0' else ''}" for n, s in args)
    body = "\n".join("    " + ln for ln in [*lines, "return out"])
    source = f"import ssmc\n\n@ssmc.layer(sizes={{'RI': 2}})\ndef fuzzed_complex({sig}):\n{body}\n"
    return Program(layer, source, {d: sizes[d] for d in layer.dim_order})
