"""One Mamba-1 decode step (the forward at L = 1 from an fp32 state) on the GPU: called eagerly,
and replayed from a CUDA graph (host work gone: what the kernel and a launch cost). Checks the
replay against the eager call first. Speed: state bytes read and written per second as a
fraction of the copy rate measured in the same run (the issue's measure; mamba-ssm's
selective_state_update: 37 us eager, 21 us in a CUDA graph at B64 D5120 N16, DESIGN.md)."""

from __future__ import annotations

import json
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
sys.path.insert(0, os.path.dirname(__file__))
from mamba1 import mamba1  # noqa: E402
from sweep_mamba1 import copy_rate_gbs  # noqa: E402

import ssmc  # noqa: E402


def main() -> None:
    out_dir = os.environ.get("OUT", "bench/results")
    copy = copy_rate_gbs()
    print(f"device {torch.cuda.get_device_name()}; copy rate {copy:.0f} GB/s (read+write)", flush=True)
    rows = []
    configs = json.loads(sys.argv[1]) if len(sys.argv) > 1 else [{}]  # compile options, as JSON
    for cfg, (B, D, N) in ((c, s) for c in configs for s in ((64, 5120, 16), (256, 2048, 16))):
        m = ssmc.to_module(mamba1, {"D": D, "N": N}, seed=0, **cfg).cuda()
        g = torch.Generator(device="cuda").manual_seed(0)
        x = {k: torch.randn(B, D, device="cuda", generator=g) for k in ("x", "dt", "z")}
        x.update({k: torch.randn(B, N, device="cuda", generator=g) for k in ("B", "C")})
        state = {"h_final": torch.randn(B, D, N, device="cuda", generator=g)}
        with torch.no_grad():
            for _ in range(3):  # compile, warm up
                y, s = m.step(state, **x)
            eager_ms = triton.testing.do_bench(lambda: m.step(state, **x), warmup=25, rep=200, return_mode="median")  # noqa: B023
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    m.step(state, **x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y_g, s_g = m.step(state, **x)
            graph.replay()
            torch.cuda.synchronize()
            y_e, s_e = m.step(state, **x)
            same = torch.equal(y_g["y"], y_e["y"]) and torch.equal(s_g["h_final"], s_e["h_final"])
            graph_ms = triton.testing.do_bench(graph.replay, warmup=25, rep=200, return_mode="median")
        state_bytes = 2 * B * D * N * 4
        for how, ms in (("eager", eager_ms), ("cuda graph", graph_ms)):
            frac = state_bytes / (ms * 1e-3) / 1e9 / copy
            rows.append(dict(shape=f"B{B} D{D} N{N}", config=cfg, how=how, us=ms * 1e3, state_fraction_of_copy=frac))
            print(f"decode step B{B} D{D} N{N} {cfg or 'defaults'} {how:10s}: {ms * 1e3:6.1f} us  state r+w {frac:.3f} of copy"
                  + ("" if how == "eager" else f"  (replay equals eager: {same})"), flush=True)
    rows += multi_token(copy)
    with open(os.path.join(out_dir, "bench_decode.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), copy_gbs=copy, rows=rows, torch=torch.__version__,
                       triton=triton.__version__), f, indent=1)


def multi_token(copy: float) -> list[dict]:
    """``module.decode(cache, ...)`` with k = 1 and k = 4 tokens per call (one kernel call each,
    inputs [B, k, ...]) from an fp32 cache, eager and in a CUDA graph; each k-token output is
    checked against k single steps first. Issue 9's bar: a 4-token call under 2x a 1-token call."""
    rows = []
    for B, D, N in ((64, 5120, 16), (256, 2048, 16)):
        m = ssmc.to_module(mamba1, {"D": D, "N": N}, seed=0).cuda()
        g = torch.Generator(device="cuda").manual_seed(1)
        times = {}
        for k in (1, 4):
            x = {n: torch.randn(B, k, D, device="cuda", generator=g) for n in ("x", "dt", "z")}
            x.update({n: torch.randn(B, k, N, device="cuda", generator=g) for n in ("B", "C")})
            cache = m.new_cache(B)
            cache.states["h_final"].normal_(generator=g)
            start = cache.states["h_final"].clone()
            y = m.decode(cache, **x)["y"]
            cache.states["h_final"].copy_(start)
            steps = torch.stack([m.decode(cache, **{n: v[:, j] for n, v in x.items()})["y"] for j in range(k)], 1)
            err = ((y - steps).abs().max() / steps.abs().max()).item()
            assert err < 1e-5, (k, err)

            def call(cache=cache, x=x, m=m):
                m.decode(cache, **x)

            for _ in range(3):
                call()
            eager = triton.testing.do_bench(call, warmup=25, rep=200, return_mode="median")
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    call()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                call()
            graphed = triton.testing.do_bench(graph.replay, warmup=25, rep=200, return_mode="median")
            times[k] = (eager, graphed)
            frac = 2 * B * D * N * 4 / (graphed * 1e-3) / 1e9 / copy
            rows.append(dict(shape=f"B{B} D{D} N{N}", how=f"decode k={k}", eager_us=eager * 1e3, graph_us=graphed * 1e3,
                             state_fraction_of_copy_graph=frac, max_rel_err_vs_steps=err))
            print(f"decode k={k} B{B} D{D} N{N}: eager {eager * 1e3:6.1f} us, graph {graphed * 1e3:6.1f} us "
                  f"(state r+w {frac:.3f} of copy; vs {k} steps: rel err {err:.1e})", flush=True)
        print(f"  4-token / 1-token call: eager {times[4][0] / times[1][0]:.2f}x, graph {times[4][1] / times[1][1]:.2f}x "
              "(bar: < 2x)", flush=True)
    return rows


if __name__ == "__main__":
    main()
