"""Where Mamba-2's matrix-form backward spends its time on the GPU (B8 L2048 H32 P64 N128, bf16):
each kernel's time from torch's profiler with its grid and constexprs, then whole-part timings of
schedule variants (do_bench medians, one run, the copy rate measured in it)."""

import json
import os

import torch
import triton
from torch.profiler import ProfilerActivity, profile

import ssmc.backends.triton.replay as replay
from ssmc.benchmark import workloads as w
from ssmc.benchmark.measure import Ceilings

LAUNCHES = []
_launch = replay.Recorder.launch


def launch(self, fn, grid, args, kwargs):
    LAUNCHES.append((getattr(fn, "__name__", str(fn)), grid, {k: v for k, v in kwargs.items() if k.isupper() or k == "num_warps"}))
    return _launch(self, fn, grid, args, kwargs)


replay.Recorder.launch = launch


def kernel_times(f, reps=20):
    f()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            f()
        torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        if e.device_type.name == "CUDA" or getattr(e, "self_device_time_total", 0):
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if t:
                out[e.key] = t / reps / 1e3
    return out


def _edited(src, edit):
    for old, new in edit:
        src = src.replace(old, new)
    return src


def main():
    out_dir = os.environ.get("OUT", ".")
    copy = Ceilings.measure().copy
    print(f"copy {copy / 1e9:.0f} GB/s", flush=True)
    B, L, H, P, N = 8, 2048, 32, 64, 128
    bf = torch.bfloat16
    kw = dict(x=torch.randn(B, L, 1, H, P, device="cuda", dtype=bf), dt=torch.randn(B, L, 1, H, device="cuda", dtype=bf),
              B=torch.randn(B, L, 1, N, device="cuda", dtype=bf), C=torch.randn(B, L, 1, N, device="cuda", dtype=bf),
              z=torch.randn(B, L, 1, H, P, device="cuda", dtype=bf), A_log=torch.rand(1, H, device="cuda"),
              D=torch.randn(1, H, device="cuda"), dt_bias=torch.rand(1, H, device="cuda") * 4 - 6)
    cot = dict(grad_y=torch.randn(B, L, 1, H, P, device="cuda", dtype=bf))
    layer = w._compiled("mamba2")
    bwd = layer.backward_compiled()
    res = {"copy_gbs": copy / 1e9}
    LAUNCHES.clear()
    mx = bwd.part.raw_call(**kw, **cot)
    bwd.rest.raw_call(**kw, **cot, **mx)
    for name, grid, k in LAUNCHES:
        print(f"  launch {name} grid {grid} {k}")
    res["launches"] = [(n, list(g), {a: str(b) for a, b in k.items()}) for n, g, k in LAUNCHES]
    times = kernel_times(lambda: (bwd.part.raw_call(**kw, **cot), bwd.rest.raw_call(**kw, **cot, **mx)))
    res["kernels_ms"] = times
    for k, t in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"  {t:7.3f} ms  {k[:90]}")
    variants = {}
    variants["forward"] = lambda: layer.raw_call(**kw)
    variants["part"] = lambda: bwd.part.raw_call(**kw, **cot)
    variants["rest"] = lambda: bwd.rest.raw_call(**kw, **cot, **mx)
    bench = {}
    for name, f in variants.items():
        bench[name] = triton.testing.do_bench(f, warmup=25, rep=200)
        print(f"  {name:32s} {bench[name]:.3f} ms", flush=True)
    bwd.part.matrix_exact = False
    # the rest: schedule variants, and (diagnosis only: wrong results) its atomic adds as stores
    import ssmc.backends.triton.jit as jit

    generate = jit.generate
    edit = []
    jit.generate = lambda kernel, *a: _edited(generate(kernel, *a), edit)
    rest = bwd.rest
    variants = [("rest 1 chunk", dict(chunks=1), []), ("rest 16 chunks", dict(chunks=16), [])]
    for name, opts, ed in variants:
        saved = dict(rest.options), rest.bidir_unroll
        rest.options.update({k: v for k, v in opts.items() if k not in ("unroll", "chunks")})
        rest.bidir_unroll = opts.get("unroll", rest.bidir_unroll)
        rest.chunks = opts.get("chunks")
        edit[:] = ed
        rest._recipes.clear()
        rest._plans.clear()
        rest._fns.clear() if hasattr(rest, "_fns") and hasattr(rest._fns, "clear") else None
        try:
            bench[name] = triton.testing.do_bench(lambda: rest.raw_call(**kw, **cot, **mx), warmup=25, rep=200)
            kt = kernel_times(lambda: rest.raw_call(**kw, **cot, **mx), reps=5)
            parts = "  ".join(f"{k.split('_k0_')[-1][:16]} {t:.3f}" for k, t in kt.items() if "_k0_" in k)
            print(f"  {name:32s} {bench[name]:.3f} ms   ({parts})", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"  {name:32s} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        rest.options.clear()
        rest.options.update(saved[0])
        rest.bidir_unroll = saved[1]
        rest.chunks = None
    res["bench_ms"] = bench
    json.dump(res, open(os.path.join(out_dir, "profile-matrix-backward.json"), "w"), indent=1)


main()
