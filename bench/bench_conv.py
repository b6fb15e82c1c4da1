"""The short causal conv (issue 9): ssmc's generated conv kernel (examples/causal_conv.py:
depthwise conv, bias, SiLU, final window) against PyTorch's conv1d (cuDNN) + SiLU, forward and
forward+backward; then Mamba-2 with the conv fused into the scan's kernel
(examples/mamba2_conv.py) against the conv kernel followed by Mamba-2's matrix-form scan.
Each result is checked against a float64 PyTorch reference first. bf16 inputs. One run, the
copy rate measured in it; a table on stdout, everything in $OUT/conv.json."""

import json
import os
import sys

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from causal_conv import causal_conv  # noqa: E402
from mamba2 import mamba2  # noqa: E402
from mamba2_conv import mamba2_conv  # noqa: E402

import ssmc  # noqa: E402
from ssmc.benchmark.measure import Ceilings  # noqa: E402

copy = Ceilings.measure().copy
print(f"copy {copy / 1e9:.0f} GB/s", flush=True)
dev, bf = "cuda", torch.bfloat16
rows = []


def bench(f):
    f()
    torch.cuda.synchronize()
    return triton.testing.do_bench(f, warmup=25, rep=200)


def torch_conv(x, w, b):  # x [B, L, C], w [C, K]: PyTorch's depthwise conv1d, the blocks' old path
    K = w.shape[1]
    return F.silu(F.conv1d(x.transpose(1, 2), w[:, None, :], b, padding=K - 1, groups=x.shape[2])[..., : x.shape[1]].transpose(1, 2))


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


# --- the conv alone -------------------------------------------------------------------------
conv_default = ssmc.compile(causal_conv)
conv_seq = ssmc.compile(causal_conv, strategy="sequential")
for B, L, C, K in [] if os.environ.get("ONLY_MAMBA2") else [(8, 2048, 4096, 4), (8, 2048, 2304, 4), (2, 8192, 4096, 4)]:
    x = torch.randn(B, L, C, device=dev, dtype=bf)
    w = (torch.rand(C, K, device=dev) - 0.5) / K ** 0.5
    b = torch.randn(C, device=dev) * 0.1
    ref = torch_conv(x.double(), w.double(), b.double())
    got = conv_default(x=x, weight=w, bias=b)["y"]
    err, err_t = rel(got, ref), rel(torch_conv(x, w.to(bf), b.to(bf)), ref)
    moved = 2 * x.numel() * 2  # x read once, y written once (bf16); weights and window negligible
    t = {"ssmc (default)": bench(lambda: conv_default(x=x, weight=w, bias=b)),
         "ssmc (sequential, no chunks)": bench(lambda: conv_seq(x=x, weight=w, bias=b)),
         "torch conv1d + silu": bench(lambda: torch_conv(x, w.to(bf), b.to(bf)))}
    # forward + backward through autograd
    xg, wg, bg = (v.clone().requires_grad_() for v in (x, w, b))
    gy = torch.randn_like(x)

    def fb_ssmc():
        y = conv_default(x=xg, weight=wg, bias=bg)["y"]
        torch.autograd.grad(y, (xg, wg, bg), gy)

    wb, bb = wg.detach().to(bf).requires_grad_(), bg.detach().to(bf).requires_grad_()

    def fb_torch():
        y = torch_conv(xg, wb, bb)
        torch.autograd.grad(y, (xg, wb, bb), gy)

    # gradient check against float64 autograd
    xd, wd, bd = (v.detach().double().requires_grad_() for v in (x, w, b))
    gref = torch.autograd.grad(torch_conv(xd, wd, bd), (xd, wd, bd), gy.double())
    ggot = torch.autograd.grad(conv_default(x=xg, weight=wg, bias=bg)["y"], (xg, wg, bg), gy)
    gerr = max(rel(a, r) for a, r in zip(ggot, gref))
    t["ssmc fwd+bwd"] = bench(fb_ssmc)
    t["torch fwd+bwd"] = bench(fb_torch)
    shape = f"B{B} L{L} C{C} K{K}"
    for name, ms in t.items():
        frac = moved / (ms * 1e-3) / copy if "bwd" not in name else None
        rows.append(dict(case="conv", shape=shape, variant=name, ms=ms, copy_fraction=frac))
    print(f"conv {shape}: err ssmc {err:.1e} torch-bf16 {err_t:.1e}, grads {gerr:.1e}", flush=True)
    for name, ms in t.items():
        extra = f"  {moved / (ms * 1e-3) / copy:.2f} of copy" if "bwd" not in name else ""
        print(f"  {name:32s} {ms:.3f} ms{extra}   x torch: {t['torch conv1d + silu' if 'bwd' not in name else 'torch fwd+bwd'] / ms:.2f}", flush=True)

# --- Mamba-2 with the conv fused, against conv kernel + matrix-form scan ----------------------
fused = ssmc.compile(mamba2_conv)
plain = ssmc.compile(mamba2)
for B, L, H, P, N, K in [(8, 2048, 32, 64, 128, 4), (8, 2048, 32, 64, 16, 4)]:
    C = H * P + 2 * N
    xBC = torch.randn(B, L, C, device=dev, dtype=bf)
    w = (torch.rand(C, K, device=dev) - 0.5) / K ** 0.5
    cb = torch.randn(C, device=dev) * 0.1
    dt = torch.randn(B, L, 1, H, device=dev, dtype=bf)
    z = torch.randn(B, L, 1, H, P, device=dev, dtype=bf)
    A_log, D, dt_bias = torch.rand(1, H, device=dev), torch.randn(1, H, device=dev), torch.rand(1, H, device=dev) * 4 - 6
    x, Bm, Cm = xBC.split([H * P, N, N], dim=-1)
    wx, wB, wC = w.split([H * P, N, N])
    bx, bB, bC = cb.split([H * P, N, N])
    fargs = dict(x=x.reshape(B, L, 1, H, P), B=Bm.reshape(B, L, 1, N), C=Cm.reshape(B, L, 1, N), dt=dt, z=z,
                 conv_x=wx.reshape(1, H, P, K), conv_x_bias=bx.reshape(1, H, P), conv_B=wB.reshape(1, N, K),
                 conv_B_bias=bB.reshape(1, N), conv_C=wC.reshape(1, N, K), conv_C_bias=bC.reshape(1, N),
                 A_log=A_log, D=D, dt_bias=dt_bias)

    def unfused():
        xc = conv_default(x=xBC, weight=w, bias=cb)["y"]
        xs, Bs, Cs = xc.split([H * P, N, N], dim=-1)
        return plain(x=xs.reshape(B, L, 1, H, P), B=Bs.reshape(B, L, 1, N), C=Cs.reshape(B, L, 1, N), dt=dt, z=z,
                     A_log=A_log, D=D, dt_bias=dt_bias)

    def fused_call():
        return fused(**fargs)

    err = rel(fused_call()["y"], unfused()["y"])
    t = {"fused (conv in the scan kernel)": bench(fused_call), "conv kernel + matrix-form scan": bench(unfused)}
    # forward + backward: gradients of xBC, the conv's weights and bias, dt
    leaves = [v.requires_grad_() for v in (xBC, w, cb, dt)]
    gy = torch.randn_like(z)

    def fused_fb():
        xs, Bs, Cs = xBC.split([H * P, N, N], dim=-1)
        wx_, wB_, wC_ = w.split([H * P, N, N])
        bx_, bB_, bC_ = cb.split([H * P, N, N])
        y = fused(**{**fargs, "x": xs.reshape(B, L, 1, H, P), "B": Bs.reshape(B, L, 1, N), "C": Cs.reshape(B, L, 1, N),
                     "conv_x": wx_.reshape(1, H, P, K), "conv_x_bias": bx_.reshape(1, H, P), "conv_B": wB_.reshape(1, N, K),
                     "conv_B_bias": bB_.reshape(1, N), "conv_C": wC_.reshape(1, N, K), "conv_C_bias": bC_.reshape(1, N), "dt": dt})["y"]
        return torch.autograd.grad(y, leaves, gy)

    def unfused_fb():
        return torch.autograd.grad(unfused()["y"], leaves, gy)

    gf, gu = fused_fb(), unfused_fb()
    gerr = max(rel(a, b) for a, b in zip(gf, gu))
    t["fused fwd+bwd"] = bench(fused_fb)
    t["unfused fwd+bwd"] = bench(unfused_fb)
    for v in leaves:
        v.requires_grad_(False)
    shape = f"B{B} L{L} H{H} P{P} N{N} K{K}"
    print(f"mamba2+conv {shape}: fused vs unfused max rel diff {err:.1e}, gradients {gerr:.1e}", flush=True)
    for name, ms in t.items():
        rows.append(dict(case="mamba2_conv", shape=shape, variant=name, ms=ms))
        print(f"  {name:34s} {ms:.3f} ms", flush=True)

json.dump(dict(copy_gbs=copy / 1e9, rows=rows), open(os.path.join(os.environ.get("OUT", "."), "conv.json"), "w"), indent=1)
