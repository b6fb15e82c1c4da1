"""The workloads of ``ssmc bench``: for each, inputs on the device, ssmc's implementation, the
peers', and the floor (bytes that must move, exponentials, matrix flops).

Every candidate is checked before it is timed: ssmc against the NumPy interpreter (the layer's
definition) at a small size, and each peer's output (and gradients) against ssmc's on the same
inputs at the timed size (where a case has float32 outputs, Mamba-2's: each candidate against
them, a peer's error bounded by ssmc's; ``check_against_truth``). A candidate that disagrees is
reported as a mismatch and not timed.
Each library gets its inputs in its own layout (mamba-ssm's CUDA scan takes [B, D, L]), made
outside the timed region, so that no one pays for a transpose the other does not. Each computes
the outputs compared and no more: ssmc is asked for them alone (``outputs=``), as the peers
return no final state by default (mamba-ssm's ``return_final_states``, fla's
``output_final_state``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import ssmc
from ssmc.benchmark import peers
from ssmc.benchmark.measure import Floor, rel_max_err, time_ms
from ssmc.export.blocks import example_layer as example
from ssmc.testing.tolerances import TOLERANCES

BF16 = torch.bfloat16
# Two implementations each within the table's bf16 slack of the truth differ by at most twice it.
CROSS_BOUND = 2 * TOLERANCES["bf16"].atol


@dataclass
class Candidate:
    impl: str  # "ssmc" or the peer's name
    run: Callable[[], object] | None = None  # what is timed
    outputs: Callable[[], list[torch.Tensor]] | None = None  # for the check (ssmc's order)
    skip: str = ""  # why it is not run
    grads: list[torch.Tensor] = field(default_factory=list)  # leaves whose .grad do_bench clears


@dataclass
class Case:
    workload: str
    shape: str
    floor: Floor
    candidates: list[Candidate]
    length: int = 0  # the sequence length, for the plot
    # float32 outputs on the same inputs (ssmc's float32 path): where given, each candidate is
    # judged against them (check_against_truth), not against ssmc's 16-bit outputs
    truth: Callable[[], list[torch.Tensor]] | None = None


def _randn(*shape, dtype=BF16, scale=1.0):
    return (torch.randn(*shape, device="cuda") * scale).to(dtype)


def _grad_candidate(impl: str, forward, leaves: dict, dy, order=None) -> Candidate:
    """Timed: ``forward(**leaves)`` and its backward from ``dy``; checked: the leaves'
    gradients (``order`` maps them to ssmc's arguments where the layouts differ)."""

    def step():
        forward(**leaves).backward(dy)

    def grads():
        for v in leaves.values():
            v.grad = None
        step()
        g = {k: v.grad for k, v in leaves.items()}
        return order(g) if order else list(g.values())

    return Candidate(impl, run=step, outputs=grads, grads=list(leaves.values()))


# -- Mamba-1 ------------------------------------------------------------------------------------


def mamba1_floor(B, L, D, N, backward: bool) -> Floor:
    e = 2
    fwd = (3 * B * L * D + 2 * B * L * N) * e + B * L * D * e  # x, dt, z, B, C in; y out
    if not backward:
        return Floor(bytes=fwd, exps=B * L * D * N)
    # the backward reads the five inputs and dy, writes their five gradients (parameters: small)
    bwd = (3 * B * L * D + 2 * B * L * N) * e * 2 + B * L * D * e
    return Floor(bytes=fwd + bwd, exps=2 * B * L * D * N,
                 note="decays recomputed in the backward (storing them moves 8 bytes each, slower than exp2)")


def _mamba1_inputs(B, L, D, N):
    ins = {"x": _randn(B, L, D), "dt": _randn(B, L, D), "B": _randn(B, L, N), "C": _randn(B, L, N), "z": _randn(B, L, D),
           "A_log": torch.log(torch.arange(1, N + 1, device="cuda", dtype=torch.float32)).repeat(D, 1),
           "D": torch.randn(D, device="cuda"), "dt_bias": torch.rand(D, device="cuda") * 4 - 6}
    return ins


def _mamba_ssm_layout(ins):
    """mamba-ssm's selective_scan_fn arguments: [B, D, L] and [B, N, L], A = -exp(A_log)."""
    t = lambda v: v.transpose(1, 2).contiguous()  # noqa: E731
    return dict(u=t(ins["x"]), delta=t(ins["dt"]), A=-torch.exp(ins["A_log"]), B=t(ins["B"]), C=t(ins["C"]),
                D=ins["D"].clone(), z=t(ins["z"]), delta_bias=ins["dt_bias"].clone())


def _assoc_scan_mamba1():
    from torch._higher_order_ops.associative_scan import associative_scan

    def combine(left, right):
        (a1, b1), (a2, b2) = left, right
        return a1 * a2, a2 * b1 + b2

    def f(x, dt, B, C, z, A_log, D, dt_bias):
        x, dt, B, C, z = (v.float() for v in (x, dt, B, C, z))
        delta = F.softplus(dt + dt_bias)
        dA = torch.exp(delta[..., None] * -torch.exp(A_log))
        dBx = (delta * x)[..., None] * B[:, :, None, :]
        _, h = associative_scan(combine, (dA, dBx), dim=1, combine_mode="pointwise")
        y = (h * C[:, :, None, :]).sum(-1) + D * x
        return (y * F.silu(z)).to(BF16)

    # static shapes: with dynamic sizes Inductor refuses the scan ("lifted arguments", torch 2.11)
    return torch.compile(f, fullgraph=True, dynamic=False)


def _loop_mamba1(x, dt, B, C, z, A_log, D, dt_bias):
    """The straightforward PyTorch loop over time (fp32), as reference code is written."""
    x, dt, B, C, z = (v.float() for v in (x, dt, B, C, z))
    delta = F.softplus(dt + dt_bias)
    A = -torch.exp(A_log)
    h = torch.zeros(x.shape[0], x.shape[2], A.shape[1], device=x.device)
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) + D * x
    return (y * F.silu(z)).to(BF16)


TORCH_COMPILE_MAX_STATE = 4 << 30  # bytes of one [B, L, D, N] fp32 tensor it materializes


def mamba1_case(B, L, D, N, backward: bool, scan_fn, loop: bool) -> Case:
    layer = _compiled("mamba1")
    ins = _mamba1_inputs(B, L, D, N)
    shape = f"B{B} L{L} D{D} N{N}"
    cands = []
    state_bytes = B * L * D * N * 4
    if not backward:
        ssmc_y = lambda: layer.raw_call(**ins, outputs=["y"])["y"]  # noqa: E731
        cands.append(Candidate("ssmc", run=lambda: layer.raw_call(**ins, outputs=["y"]), outputs=lambda: [ssmc_y()]))
        if isinstance(scan_fn, str):
            cands.append(Candidate("mamba-ssm CUDA selective_scan_fn", skip=scan_fn))
        else:
            ms = _mamba_ssm_layout(ins)
            run = lambda: scan_fn(**ms, delta_softplus=True)  # noqa: E731
            cands.append(Candidate("mamba-ssm CUDA selective_scan_fn", run=run, outputs=lambda: [run().transpose(1, 2)]))
        if state_bytes > TORCH_COMPILE_MAX_STATE:
            cands.append(Candidate("torch.compile associative_scan",
                                   skip=f"its [B, L, D, N] fp32 tensors ({state_bytes / 2**30:.1f} GiB each) do not fit comfortably"))
        else:
            f = _assoc_scan_mamba1()
            cands.append(Candidate("torch.compile associative_scan", run=lambda: f(**ins), outputs=lambda: [f(**ins)]))
        if loop:
            cands.append(Candidate("PyTorch loop (fp32)", run=lambda: _loop_mamba1(**ins), outputs=lambda: [_loop_mamba1(**ins)]))
        return Case("mamba1 fwd", shape, mamba1_floor(B, L, D, N, False), cands, L)
    dy = _randn(B, L, D)
    fresh = lambda: {k: v.detach().clone().requires_grad_() for k, v in ins.items()}  # noqa: E731
    cands.append(_grad_candidate("ssmc", lambda **kw: layer(**kw, outputs=["y"])["y"], fresh(), dy))
    if isinstance(scan_fn, str):
        cands.append(Candidate("mamba-ssm CUDA selective_scan_fn", skip=scan_fn))
    else:
        ms = {k: v.detach().requires_grad_() for k, v in _mamba_ssm_layout(ins).items()}

        def in_ssmc_order(g):  # [B, D, L] -> [B, L, D]; dA_log = dA * A (A = -exp(A_log))
            t = lambda v: v.transpose(1, 2)  # noqa: E731
            return [t(g["u"]), t(g["delta"]), t(g["B"]), t(g["C"]), t(g["z"]), g["A"] * ms["A"].detach(), g["D"], g["delta_bias"]]

        cands.append(_grad_candidate("mamba-ssm CUDA selective_scan_fn", lambda **kw: scan_fn(**kw, delta_softplus=True),
                                     ms, dy.transpose(1, 2).contiguous(), in_ssmc_order))
    if 3 * state_bytes > TORCH_COMPILE_MAX_STATE:
        cands.append(Candidate("torch.compile associative_scan",
                               skip=f"its backward keeps several [B, L, D, N] fp32 tensors ({state_bytes / 2**30:.1f} GiB each)"))
    else:
        cands.append(_grad_candidate("torch.compile associative_scan", _assoc_scan_mamba1(), fresh(), dy))
    return Case("mamba1 fwd+bwd", shape, mamba1_floor(B, L, D, N, True), cands, L)


# -- decode ------------------------------------------------------------------------------------


def _graphed(fn):
    """fn captured in a CUDA graph (after warm-up on a side stream); returns the replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def decode_case(B, D, N, update_fn) -> Case:
    m = ssmc.to_module(example("mamba1"), {"D": D, "N": N}, seed=0).cuda()
    step_in = {k: _randn(B, D) for k in ("x", "dt", "z")} | {k: _randn(B, N) for k in ("B", "C")}
    state = torch.randn(B, D, N, device="cuda")
    # the state is read and written once (fp32); the step's inputs and output are bf16
    floor = Floor(bytes=2 * B * D * N * 4 + (4 * B * D + 2 * B * N) * 2, exps=B * D * N)

    def ssmc_step(keep):
        with torch.no_grad():
            y, s = m.step({"h_final": state}, **step_in)
        keep[:] = [y["y"], s["h_final"]]

    eager, graphed = [], []
    replay = _graphed(lambda: ssmc_step(graphed))
    cands = [Candidate("ssmc", run=lambda: ssmc_step(eager), outputs=lambda: (ssmc_step(eager), eager)[1]),
             Candidate("ssmc (CUDA graph)", run=replay, outputs=lambda: (replay(), graphed)[1])]
    if isinstance(update_fn, str):
        cands.append(Candidate("mamba-ssm selective_state_update", skip=update_fn))
    else:
        A = -torch.exp(m.A_log.detach())
        Dp, bias = m.D.detach(), m.dt_bias.detach()
        st = state.clone()

        def peer_step(keep):  # updates st in place; the check starts it from the same state
            keep[:] = [update_fn(st, step_in["x"], step_in["dt"], A, step_in["B"], step_in["C"], D=Dp, z=step_in["z"],
                                 dt_bias=bias, dt_softplus=True)]

        def peer_out(fn, keep):
            st.copy_(state)
            fn()
            return [keep[0], st.clone()]

        p_eager, p_graphed = [], []
        p_replay = _graphed(lambda: peer_step(p_graphed))
        cands.append(Candidate("mamba-ssm selective_state_update", run=lambda: peer_step(p_eager),
                               outputs=lambda: peer_out(lambda: peer_step(p_eager), p_eager)))
        cands.append(Candidate("mamba-ssm selective_state_update (CUDA graph)", run=p_replay,
                               outputs=lambda: peer_out(p_replay, p_graphed)))
    return Case("decode step (fp32 state)", f"B{B} D{D} N{N}", floor, cands)


# -- HGRN --------------------------------------------------------------------------------------


def hgrn_case(B, L, D, backward: bool, fla: dict) -> Case:
    layer = _compiled("hgrn")
    x = _randn(B, L, D)
    g = F.logsigmoid(torch.randn(B, L, D, device="cuda")).to(BF16)
    shape = f"B{B} L{L} D{D}"
    cands = []
    if not backward:
        cands.append(Candidate("ssmc", run=lambda: layer.raw_call(x=x, g=g, outputs=["y"]), outputs=lambda: [layer.raw_call(x=x, g=g, outputs=["y"])["y"]]))
        for name, fn in fla.items():
            if isinstance(fn, str):
                cands.append(Candidate(f"fla {name}", skip=fn))
            else:
                cands.append(Candidate(f"fla {name}", run=lambda fn=fn: fn(x, g), outputs=lambda fn=fn: [fn(x, g)[0]]))
        return Case("hgrn fwd", shape, Floor(bytes=3 * B * L * D * 2, exps=B * L * D), cands, L)
    dy = _randn(B, L, D)
    fresh = lambda: {"x": x.detach().clone().requires_grad_(), "g": g.detach().clone().requires_grad_()}  # noqa: E731
    cands.append(_grad_candidate("ssmc", lambda **kw: layer(**kw, outputs=["y"])["y"], fresh(), dy))
    for name, fn in fla.items():
        if isinstance(fn, str):
            cands.append(Candidate(f"fla {name}", skip=fn))
        else:
            cands.append(_grad_candidate(f"fla {name}", lambda fn=fn, **kw: fn(kw["x"], kw["g"])[0], fresh(), dy))
    # read x, g, dy and the forward's; write y, dx, dg
    return Case("hgrn fwd+bwd", shape, Floor(bytes=7 * B * L * D * 2, exps=2 * B * L * D), cands, L)


# -- Mamba-2 (SSD) ------------------------------------------------------------------------------


def mamba2_floor(B, L, H, P, N, G, backward: bool, Q: int = 64) -> Floor:
    e = 2
    byt = (2 * B * L * H * P + 2 * B * L * G * N + B * L * H) * e  # x, y; B, C; dt
    # the chunked matrix form with chunks of Q steps, causal halves of the Q x Q blocks
    flops = 2 * B * L * ((Q / 2) * N * G + (Q / 2) * P * H + 2 * N * P * H)
    if backward:
        byt *= 3
        flops *= 3
    return Floor(bytes=byt, exps=B * L * H, flops=flops, note=f"matrix flops of the chunked form, chunks of {Q}")


def mamba2_case(B, L, H, P, N, backward: bool, ssd, G: int = 1) -> Case:
    """ssmc's examples/mamba2.py (its [B, L, G, H/G, P] layout is a view of [B, L, H, P]) and
    mamba-ssm's mamba_chunk_scan_combined, both with the gate z."""
    layer = _compiled("mamba2")
    shape = f"B{B} L{L} H{H} P{P} N{N}"
    R = H // G
    x, z, Bm, C = _randn(B, L, H, P), _randn(B, L, H, P), _randn(B, L, G, N), _randn(B, L, G, N)
    dt = _randn(B, L, H)
    A = -torch.rand(H, device="cuda") * 4 - 1
    Dp, bias = torch.randn(H, device="cuda"), torch.rand(H, device="cuda") * 4 - 6

    def ssmc_args(x, dt, Bm, C, z, A_log, Dp, bias):
        return dict(x=x.view(B, L, G, R, P), dt=dt.view(B, L, G, R), B=Bm, C=C, z=z.view(B, L, G, R, P),
                    A_log=A_log.view(G, R), D=Dp.view(G, R), dt_bias=bias.view(G, R))

    ins = dict(x=x, dt=dt, Bm=Bm, C=C, z=z, A_log=torch.log(-A), Dp=Dp, bias=bias)
    cands = []
    if not backward:
        y = lambda: layer.raw_call(**ssmc_args(**ins), outputs=["y"])["y"].view(B, L, H, P)  # noqa: E731
        cands.append(Candidate("ssmc", run=lambda: layer.raw_call(**ssmc_args(**ins), outputs=["y"]), outputs=lambda: [y()]))
    else:
        dy = _randn(B, L, H, P)
        leaves = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}
        cands.append(_grad_candidate("ssmc", lambda **kw: layer(**ssmc_args(**kw), outputs=["y"])["y"].view(B, L, H, P), leaves, dy))

    def truth():  # float32 inputs of the same values: ssmc's float32 forward and backward
        f32 = {k: v.detach().float() for k, v in ins.items()}
        if not backward:
            return [layer.raw_call(**ssmc_args(**f32), outputs=["y"])["y"].view(B, L, H, P)]
        leaves = {k: v.requires_grad_() for k, v in f32.items()}
        layer(**ssmc_args(**leaves), outputs=["y"])["y"].view(B, L, H, P).backward(dy.float())
        return [v.grad for v in leaves.values()]
    if isinstance(ssd, str):
        cands.append(Candidate("mamba-ssm mamba_chunk_scan_combined", skip=ssd))
    elif not backward:
        run = lambda: ssd(x, dt, A, Bm, C, chunk_size=256, D=Dp, z=z, dt_bias=bias, dt_softplus=True)  # noqa: E731
        cands.append(Candidate("mamba-ssm mamba_chunk_scan_combined", run=run, outputs=lambda: [run()]))
    else:
        peer = {k: v.detach().clone().requires_grad_() for k, v in dict(x=x, dt=dt, A=A, B=Bm, C=C, D=Dp, z=z, dt_bias=bias).items()}

        def forward(x, dt, A, B, C, D, z, dt_bias):
            return ssd(x, dt, A, B, C, chunk_size=256, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)

        def in_ssmc_order(g):  # dA_log = dA * A
            return [g["x"], g["dt"], g["B"], g["C"], g["z"], g["A"] * A, g["D"], g["dt_bias"]]

        cands.append(_grad_candidate("mamba-ssm mamba_chunk_scan_combined", forward, peer, dy, in_ssmc_order))
    return Case("mamba2 fwd+bwd" if backward else "mamba2 fwd", shape, mamba2_floor(B, L, H, P, N, G, backward), cands, L, truth)


# -- simple GLA (a matrix-valued state, scalar decay per head): the peer alone (issue 6) ------


def gla_case(B, L, H, K, V, gla) -> Case:
    """ssmc's examples/gla.py:simple_gla and fla's chunk_simple_gla (its default scale K^-1/2:
    ssmc gets q pre-scaled)."""
    shape = f"B{B} L{L} H{H} K{K} V{V}"
    layer = _compiled("simple_gla", "gla")
    q, k, v = _randn(B, L, H, K), _randn(B, L, H, K), _randn(B, L, H, V)
    g = F.logsigmoid(torch.randn(B, L, H, device="cuda") + 4)  # decays near 1, as trained models have
    qs = (q.float() * K ** -0.5).to(q.dtype)
    o = lambda: layer.raw_call(q=qs, k=k, v=v, g=g, outputs=["o"])["o"]  # noqa: E731
    cands = [Candidate("ssmc", run=lambda: layer.raw_call(q=qs, k=k, v=v, g=g, outputs=["o"]), outputs=lambda: [o()])]
    if isinstance(gla, str):
        cands.append(Candidate("fla chunk_simple_gla", skip=gla))
    else:
        run = lambda: gla(q, k, v, g=g)  # noqa: E731
        cands.append(Candidate("fla chunk_simple_gla", run=run, outputs=lambda: [run()[0]]))
    Q = 64  # the chunked form: q k^T within chunks (causal half), the [K, V] state in and out
    flops = 2 * B * L * H * ((Q / 2) * K + (Q / 2) * V + 2 * K * V)
    byt = (2 * B * L * H * K + 2 * B * L * H * V) * 2 + B * L * H * 4
    return Case("simple gla fwd", shape, Floor(bytes=byt, exps=B * L * H, flops=flops,
                                                note=f"matrix flops of the chunked form, chunks of {Q}"), cands, L)


# -- packed variable-length batches (issue 9) ---------------------------------------------------


def packed_lengths(n: int = 64, lo: int = 64, hi: int = 4096, seed: int = 0) -> list[int]:
    """``n`` sequence lengths drawn uniformly from [lo, hi] (a fixed draw: about 134k tokens)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, (n,), generator=g).tolist()


def packed_case(name: str, backward: bool, ssd=None, lengths: list[int] | None = None) -> Case:
    """A packed batch (batch 1, ``cu_seqlens``) against the same sequences padded to the
    longest (batch 64), ssmc both ways; for Mamba-2 also mamba-ssm's mamba_chunk_scan_combined
    with ``seq_idx`` (its packed form). Checked on the real steps: the padded outputs (and
    input gradients) gathered to the packed order; the padding's cotangents are zero. Mamba-2's
    candidates are held to ssmc's float32 run (``check_against_truth``): two bf16 computations
    (mamba-ssm's and ssmc's) differed by 9.1e-3 in session 20, past CROSS_BOUND, neither wrong."""
    lens = lengths or packed_lengths()
    S, T, Lmax = len(lens), sum(lens), max(lens)
    cu = torch.tensor([0] + list(itertools.accumulate(lens)), device="cuda", dtype=torch.int32)
    # packed position -> flat padded position (row i, step t)
    gather = torch.cat([torch.arange(n, device="cuda") + i * Lmax for i, n in enumerate(lens)])
    seq_idx = torch.repeat_interleave(torch.arange(S, device="cuda", dtype=torch.int32), torch.tensor(lens, device="cuda"))[None]
    layer = _compiled(name)
    # the padded batch's steps per real one: what padding can cost at most, per step alike (the
    # issue's "2x faster than padding" needs padding to hold over 2x the steps)
    pads = f"padded {S * Lmax / T:.2f}x"
    if name == "mamba1":
        D, N = 2048, 16
        packed = _mamba1_inputs(1, T, D, N)
        seq_args, out_shape = ("x", "dt", "B", "C", "z"), (D,)
        shape = f"{S} seqs {T} tokens ({pads}) D{D} N{N}"
    else:
        H, P, N = 32, 64, 128
        x, z = _randn(1, T, H, P), _randn(1, T, H, P)
        Bm, C, dt = _randn(1, T, 1, N), _randn(1, T, 1, N), _randn(1, T, H)
        A = -torch.rand(H, device="cuda") * 4 - 1
        Dp, bias = torch.randn(H, device="cuda"), torch.rand(H, device="cuda") * 4 - 6
        packed = dict(x=x.view(1, T, 1, H, P), dt=dt.view(1, T, 1, H), B=Bm, C=C, z=z.view(1, T, 1, H, P),
                      A_log=torch.log(-A).view(1, H), D=Dp.view(1, H), dt_bias=bias.view(1, H))
        seq_args, out_shape = ("x", "dt", "B", "C", "z"), (1, H, P)
        shape = f"{S} seqs {T} tokens ({pads}) H{H} P{P} N{N}"

    def pad(v):  # [1, T, ...] -> [S, Lmax, ...], zeros after each sequence
        out = torch.zeros((S * Lmax,) + tuple(v.shape[2:]), device="cuda", dtype=v.dtype)
        out[gather] = v[0]
        return out.view((S, Lmax) + tuple(v.shape[2:]))

    padded = {k: (pad(v) if k in seq_args else v) for k, v in packed.items()}
    unpad = lambda v: v.reshape((S * Lmax,) + tuple(v.shape[2:]))[gather][None]  # noqa: E731
    cands = []
    if not backward:
        y = lambda: layer.raw_call(**packed, cu_seqlens=cu, outputs=["y"])["y"]  # noqa: E731
        cands.append(Candidate("ssmc", run=lambda: layer.raw_call(**packed, cu_seqlens=cu, outputs=["y"]), outputs=lambda: [y()]))
        yp = lambda: layer.raw_call(**padded, outputs=["y"])["y"]  # noqa: E731
        cands.append(Candidate("ssmc padded to the longest", run=lambda: layer.raw_call(**padded, outputs=["y"]), outputs=lambda: [unpad(yp())]))
    else:
        dy = _randn(1, T, *out_shape)
        fresh = lambda d: {k: v.detach().clone().requires_grad_() for k, v in d.items()}  # noqa: E731
        cands.append(_grad_candidate("ssmc", lambda **kw: layer(**kw, cu_seqlens=cu, outputs=["y"])["y"], fresh(packed), dy))
        dyp = pad(dy)  # zero on the padding: the real steps' gradients are the packed ones

        def padded_order(g):
            return [unpad(g[k]) if k in seq_args else g[k] for k in packed]

        cands.append(_grad_candidate("ssmc padded to the longest", lambda **kw: layer(**kw, outputs=["y"])["y"], fresh(padded), dyp, padded_order))
    if name == "mamba2":
        peer = "mamba-ssm mamba_chunk_scan_combined (seq_idx)"
        if isinstance(ssd, str) or ssd is None:
            cands.append(Candidate(peer, skip=ssd or "not loaded"))
        else:
            def forward(x, dt, A, B, C, D, z, dt_bias):
                return ssd(x, dt, A, B, C, chunk_size=256, D=D, z=z, dt_bias=dt_bias, dt_softplus=True, seq_idx=seq_idx)

            ins = dict(x=x, dt=dt, A=A, B=Bm, C=C, D=Dp, z=z, dt_bias=bias)
            if not backward:
                run = lambda: forward(**ins)  # noqa: E731
                cands.append(Candidate(peer, run=run, outputs=lambda: [run().view(1, T, 1, H, P)]))
            else:
                def in_ssmc_order(g):  # dA_log = dA * A
                    return [g["x"].view(1, T, 1, H, P), g["dt"].view(1, T, 1, H), g["B"], g["C"], g["z"].view(1, T, 1, H, P),
                            (g["A"] * A).view(1, H), g["D"].view(1, H), g["dt_bias"].view(1, H)]

                leaves = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}
                cands.append(_grad_candidate(peer, lambda **kw: forward(**kw).view(1, T, 1, H, P), leaves,
                                             dy, in_ssmc_order))
    floor = mamba1_floor(1, T, D, N, backward) if name == "mamba1" else mamba2_floor(1, T, H, P, N, 1, backward)

    def truth():  # Mamba-2 (a peer to hold to it): ssmc's float32 run of the same values, packed
        f32 = {k: v.detach().float() for k, v in packed.items()}
        if not backward:
            return [layer.raw_call(**f32, cu_seqlens=cu, outputs=["y"])["y"]]
        leaves = {k: v.requires_grad_() for k, v in f32.items()}
        layer(**leaves, cu_seqlens=cu, outputs=["y"])["y"].backward(dy.float())
        return [v.grad for v in leaves.values()]
    return Case(f"{name} packed {'fwd+bwd' if backward else 'fwd'}", shape, floor, cands, T,
                truth if name == "mamba2" else None)


# -- running a case ----------------------------------------------------------------------------

_COMPILED: dict = {}


def _compiled(name: str, file: str | None = None):
    if name not in _COMPILED:
        _COMPILED[name] = ssmc.compile(example(name, file))
    return _COMPILED[name]


def check_ssmc_small(name: str) -> str:
    """ssmc's kernels for an example against the NumPy interpreter at a small size (bf16
    inputs), with the tolerance table; returns '' or what disagreed."""
    from ssmc.testing.check import check_compiled

    layer = example(name)
    sizes = {"B": 2, "L": 77, "D": 40, "N": 16, "G": 2, "R": 3, "P": 8}
    sizes = {d: sizes[d] for d in layer.dim_order}
    bad = [str(r) for r in check_compiled(layer, _compiled(name), sizes, "bf16", seed=1, device="cuda") if not r.ok]
    return "; ".join(bad)


def _output_errors(c: Candidate, ref: list[torch.Tensor]) -> list[float]:
    """Each of ``c``'s outputs' max relative error against ``ref``'s."""
    got = c.outputs()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return [rel_max_err(a, b) for a, b in zip(got, ref)]


def check_candidate(c: Candidate, want: list[torch.Tensor] | None) -> tuple[float, str]:
    """(max relative error against ssmc's outputs, '' or why it is not timed)."""
    if c.outputs is None or want is None:
        return math.nan, ""
    errs = _output_errors(c, want)
    err = max(errs) if errs else math.nan
    if not (err <= CROSS_BOUND):
        return err, f"mismatch: max |peer - ssmc| / max |ssmc| = {err:.2e} > {CROSS_BOUND:.0e} (per output: " + \
            ", ".join(f"{e:.1e}" for e in errs) + ")"
    return err, ""


def check_against_truth(c: Candidate, truth: list[torch.Tensor], ssmc_errs: list[float] | None) -> tuple[list[float], str]:
    """(each output's max relative error against ``truth``, '' or why it is not timed): the
    tolerance table's rule with ssmc's outputs (checked against the interpreter) as the 16-bit
    reference: a peer's error at most ``ratio`` times ssmc's plus ``atol``, output by output.
    Two 16-bit computations that both err by a few ulps can differ by more than CROSS_BOUND
    (session 18, Mamba-2's gradients: mamba-ssm against ssmc 8.1e-3) while neither is wrong."""
    errs = _output_errors(c, truth)
    if c.impl == "ssmc":
        return errs, ""
    if ssmc_errs is None:  # ssmc skipped or failed: no bound to hold a peer to, so not timed
        return errs, "not checked: ssmc's outputs, which set the bound, are missing"
    tol = TOLERANCES["bf16"]
    bounds = [tol.ratio * e + tol.atol for e in ssmc_errs]
    if all(e <= b for e, b in zip(errs, bounds)):
        return errs, ""
    return errs, "mismatch against the float32 outputs: per output error (bound) " + ", ".join(
        f"{e:.1e} ({b:.1e})" for e, b in zip(errs, bounds))


def run_case(case: Case, rep_ms: float = 200) -> list[dict]:
    rows = []
    want = None
    truth = [t.detach().clone() for t in case.truth()] if case.truth is not None else None
    ssmc_errs = None
    for c in case.candidates:
        row = dict(workload=case.workload, shape=case.shape, impl=c.impl, length=case.length, ms=None, status="ok", err=None)
        if c.skip:
            row["status"] = "skipped: " + c.skip
        else:
            try:
                if truth is not None and c.outputs is not None:
                    errs, why = check_against_truth(c, truth, ssmc_errs)
                    if c.impl == "ssmc":
                        ssmc_errs = errs
                    row["err"], row["errs"] = max(errs), errs
                    if why:
                        row["status"] = why
                elif c.impl == "ssmc" and c.outputs is not None:
                    want = [t.detach().clone() for t in c.outputs()]
                else:
                    err, why = check_candidate(c, want)
                    row["err"] = None if math.isnan(err) else err
                    if why:
                        row["status"] = why
                if row["status"] == "ok":
                    slow = c.impl.startswith("PyTorch loop")
                    row["ms"] = time_ms(c.run, 1 if slow else 25, 1000 if slow else rep_ms, grad_to_none=c.grads or None)
            except Exception as e:  # noqa: BLE001  (a failing candidate is reported, the run goes on)
                row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                torch.cuda.synchronize()
        rows.append(row)
        ms = f"{row['ms']:.4f} ms" if row["ms"] is not None else "-"
        err = f" err {row['err']:.1e}" if row["err"] is not None else ""
        print(f"  {case.workload:26s} {case.shape:24s} {c.impl:46s} {ms:>12s}{err}  {row['status'] if row['status'] != 'ok' else ''}", flush=True)
    return rows


__all__ = ["Case", "Candidate", "decode_case", "packed_case", "hgrn_case", "mamba1_case", "mamba2_case", "run_case", "check_ssmc_small", "peers"]
