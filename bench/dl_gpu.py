"""Mamba-2's backward with the decay's gradient from pairs of states (the matrix_scan_dl
kernel), on a GPU: (1) fwd+bwd at B8 L2048 H32 P64 N128 bf16 (SHAPE=B,L,H: another), ssmc's backward in the
variants of VARIANTS (the matrix form by default, with 16-bit products in every matrix scan,
float32-accurate ones, the recurrent backward) and mamba-ssm in one run, with each one's
kernels (torch.profiler); (2) the accuracy of every gradient against a float64 PyTorch loop
(B2, at argv's lengths) for the default, 16-bit, float32-accurate and recurrent backwards,
float32 and bf16 inputs. Results: $OUT/dl_gpu.json. Usage: [SPEED=0] [TIMED=variant,...] [SHAPE=4,8192,80] sh bench/dl_gpu.sh [L...]."""

import json
import os
import sys

import torch

sys.path[:0] = ["examples", "tests", "bench"]
from mamba2 import mamba2  # noqa: E402
from profile_cases import _peer, profile  # noqa: E402
from test_backward import mamba2_torch  # noqa: E402

import ssmc  # noqa: E402
from ssmc.backends.triton import schedule  # noqa: E402
from ssmc.backends.triton.backward import MatrixBackward, backward_for  # noqa: E402
from ssmc.benchmark import peers  # noqa: E402
from ssmc.benchmark import workloads as w  # noqa: E402
from ssmc.benchmark.measure import Ceilings  # noqa: E402
from ssmc.testing.check import make_inputs  # noqa: E402

# name: what differs from the default (None: the recurrent backward): MatrixBackward's
# arguments (args), chunk states in the products' dtype (states16), the decay gradient kernel's
# warps, P block and stages (dl), results the rest reads in the products' dtype (results16), the rest's
# (block of heads, warps) where not its own choice (rest), the rest's chunks of the sequence
# (rest_chunks; None: schedule.chunking's choice), the rest's steps per unrolled iteration (rest_unroll),
# the states kernels' stages of loads (states_stages; the forward's states kernel too)
DL_DEFAULT = (schedule.DL_WARPS, schedule.DL_BLOCK_P, schedule.DL_STAGES)  # (warps, P block, stages)
DEFAULT = dict(args={}, fwd_sub=None, states16=True, dl=DL_DEFAULT, results16=True, rest=None, rest_chunks=None, rest_unroll=None,
               states_stages=schedule.STATES_STAGES, time_tile=schedule.TIME_TILE,
               states_maxnreg=schedule.MAXNREG.get("states", 0), dl_maxnreg=schedule.MAXNREG.get("dl", 0))
VARIANTS = {"matrix default": {}, "dl P blocks 64": dict(dl=(8, 64)), "dl 4 warps": dict(dl=(4, 32)),
            "dl P16 2 stages": dict(dl=(8, 16, 2)), "dl P32 2 stages": dict(dl=(8, 32, 2)), "dl 4 warps P16 2 stages": dict(dl=(4, 16, 2)),
            "dl 4 warps P16 1 stage": dict(dl=(4, 16, 1)), "dl 4 warps P16 3 stages": dict(dl=(4, 16, 3)),
            "dl 4 warps P32 2 stages": dict(dl=(4, 32, 2)), "dl 2 warps P16 2 stages": dict(dl=(2, 16, 2)),
            "dl P16": dict(dl=(8, 16)), "dl 1 stage": dict(dl=(8, 32, 1)),
            "f32 states": dict(states16=False), "f32 results": dict(results16=False),
            "rest on 1 warp": dict(rest=(None, None)), "rest 2 heads 4 warps": dict(rest=(2, 4)),
            "rest 2 heads 2 warps": dict(rest=(2, 2)),
            "rest 16 chunks": dict(rest_chunks=16), "rest 32 chunks": dict(rest_chunks=32),
            "rest 64 chunks": dict(rest_chunks=64), "rest 128 chunks": dict(rest_chunks=128),
            "rest unroll 2": dict(rest_unroll=2), "rest unroll 1": dict(rest_unroll=1),
            "states 3 stages": dict(states_stages=3), "states 4 stages": dict(states_stages=4),
            "rest 1 head 1 warp": dict(rest=(1, 1)), "chunks of 128": dict(args=dict(sub=2)), "chunks of 32": dict(args=dict(block_t=32)),
            # session 23: the forward's chunks too (its chunk states are stored half as often: by
            # the byte count half of its states and outputs kernels' time at B4 L8192 H80)
            "chunks of 128 fwd+bwd": dict(args=dict(sub=2), fwd_sub=2),
            "fwd chunks of 256": dict(fwd_sub=4),  # (the decay gradient takes chunks of 128 at most)
            "matrix exact": dict(args=dict(low_precision=False)),
            "dl from sums": dict(args=dict(dl_from_sums=True)), "dl from sums 8 warps P32": dict(args=dict(dl_from_sums=True), dl=(8, 32)), "matrix 16-bit": dict(args=dict(low_precision=True)),
            # session 21: the rest in time tiles (Kernel.time_tile; [BLOCK_T, P, 2 heads] at 4
            # warps), BLOCK_T by schedule.TIME_TILE (4 by the sm_90 compiles) or as named
            "rest time tiles": dict(args=dict(rest_time_tiles=True)),
            "rest time tiles T8": dict(args=dict(rest_time_tiles=True), time_tile=8),
            "rest time tiles 8 warps": dict(args=dict(rest_time_tiles=True), rest=(2, 8)),
            "rest time tiles 4 heads": dict(args=dict(rest_time_tiles=True), rest=(4, 4)),
            # session 22, tiles loaded as 16-byte vectors (Kernel.aligned_bases): by the sm_90
            # compiles 330 warp-instructions a step at 8 elements a thread (T16 at 4 warps, T8 at
            # 2) against 477 for the default's 4 steps unrolled on 1 warp
            "rest time tiles T16": dict(args=dict(rest_time_tiles=True), time_tile=16),
            "rest time tiles T8 2 warps": dict(args=dict(rest_time_tiles=True), time_tile=8, rest=(2, 2)),
            # session 21: every states kernel capped at 128 registers (schedule.MAXNREG): by the
            # sm_90 compiles the backward's m0 / m3 states (130 / 139) then fit 4 programs an SM
            # instead of 3 with no stack; the forward's (128 / 103) do not change
            "states maxnreg 128": dict(states_maxnreg=128),
            "states maxnreg 128 rest time tiles": dict(states_maxnreg=128, args=dict(rest_time_tiles=True)),
            # the decay gradient capped at 168 (198 registers: 2 programs an SM; at 168 no stack, 3)
            "dl maxnreg 168": dict(dl_maxnreg=168),
            # the defaults are the caps above since session 21: this row is the uncapped baseline
            "no register caps": dict(states_maxnreg=0, dl_maxnreg=0),
            "states 128 dl 168 rest time tiles": dict(states_maxnreg=128, dl_maxnreg=168, args=dict(rest_time_tiles=True)),
            "recurrent": None}
TIMED = tuple(os.environ["TIMED"].split(",")) if os.environ.get("TIMED") else ("matrix default", "f32 results", "dl P blocks 64", "matrix exact")
SHAPE = tuple(int(x) for x in os.environ.get("SHAPE", "8,2048,32").split(","))  # B, L, H of the timed case


def backward(c, variant):
    # every states kernel's stages, the forward's too (each variant sets it: the forward is shared)
    schedule.STATES_STAGES = (VARIANTS[variant] or {}).get("states_stages", DEFAULT["states_stages"])
    for kind in ("states", "dl"):  # register caps (0: none)
        schedule.MAXNREG[kind] = (VARIANTS[variant] or {}).get(f"{kind}_maxnreg", DEFAULT[f"{kind}_maxnreg"])
    v = {**DEFAULT, **(VARIANTS[variant] or {})}
    c.options["sub"] = v["fwd_sub"]  # the forward's tiles per chunk (None: choose_matrix's)
    if VARIANTS[variant] is None:  # the forward in the matrix form still
        c._backward = backward_for(c.layer, forward=c)
        return c._backward
    schedule.DL_WARPS, schedule.DL_BLOCK_P, schedule.DL_STAGES = (*v["dl"], *DL_DEFAULT[len(v["dl"]):])  # unnamed: the default's
    schedule.TIME_TILE = v["time_tile"]
    c._backward = MatrixBackward(c.layer, forward=c, **v["args"])
    c._backward.part.states_in_products_dtype = v["states16"]
    if not v["results16"]:
        c._backward.part.results_in_products_dtype = frozenset()
    if v["rest"] is not None:
        c._backward.rest.options["block_tiled"], c._backward.rest.options["num_warps"] = v["rest"]
    c._backward.rest.chunks = v["rest_chunks"]  # (None: chunking's choice)
    if v["rest_unroll"]:  # before the first call (its kernels are lowered then)
        c._backward.rest.bidir_unroll = v["rest_unroll"]
    c._backward.force = True  # float32 inputs and long calls too
    return c._backward


def accuracy(L: int, out: dict) -> None:
    sizes = dict(B=2, L=L, G=1, R=4, P=64, N=128)
    values = make_inputs(mamba2, sizes, "f32", seed=3)
    ref_in = {k: torch.tensor(v, dtype=torch.float64, device="cuda", requires_grad=True) for k, v in values.items()}
    ref = mamba2_torch(**ref_in)
    cot = {k: torch.randn(v.shape, dtype=torch.float64, device="cuda") for k, v in ref.items()}
    g_ref = torch.autograd.grad(sum((ref[k] * cot[k]).sum() for k in ref), list(ref_in.values()))
    for dtype in (torch.float32, torch.bfloat16):
        for variant in ("matrix default", "f32 results", "matrix exact", "recurrent"):
            c = ssmc.compile(mamba2)
            backward(c, variant)
            got_in = {k: v.detach().to(dtype if v.dim() > 2 else torch.float32).requires_grad_() for k, v in ref_in.items()}
            try:
                got = c(**got_in)
                g = torch.autograd.grad(sum((got[k].double() * cot[k]).sum() for k in got), list(got_in.values()))
            except Exception as e:  # a variant the GPU refuses is a row, not the end
                print(f"L{L} {str(dtype):15s} {variant:15s} {type(e).__name__}: {str(e)[:300]}", flush=True)
                out["accuracy"].append(dict(L=L, dtype=str(dtype), variant=variant, error=repr(e)))
                continue
            errs = {k: float((a.double() - b).abs().max() / b.abs().max()) for k, a, b in zip(ref_in, g, g_ref)}
            out["accuracy"].append(dict(L=L, dtype=str(dtype), variant=variant, errs=errs))
            print(f"L{L} {str(dtype):15s} {variant:15s} " + "  ".join(f"{k} {e:.1e}" for k, e in errs.items()), flush=True)


def speed(out: dict) -> None:
    ssd = _peer(lambda: peers.mamba_triton("mamba_chunk_scan_combined"))
    layer = w._compiled("mamba2")
    for i, variant in enumerate(TIMED):
        backward(layer, variant)
        layer._recipes.clear()  # the shared forward's recorded launches: its states kernel's stages and cap are per variant
        case = w.mamba2_case(*SHAPE, 64, 128, True, ssd)
        if i:  # the peer once
            case.candidates[:] = [x for x in case.candidates if x.impl == "ssmc"]
        try:  # (the case's float32 outputs run the variant too, with float32-accurate products)
            rows = w.run_case(case)
        except Exception as e:  # a variant the GPU refuses (shared memory) is a row, not the end
            print(f"{variant}: {type(e).__name__}: {str(e)[:300]}", flush=True)
            out["rows"].append(dict(variant=variant, error=repr(e)))
            continue
        for r in rows:
            out["rows"].append(dict(r, variant=variant))
        for cand in case.candidates:
            if cand.run is not None and not cand.skip:
                try:
                    out["profile"][f"{variant} {cand.impl}"] = profile(cand, top=20)
                except Exception as e:  # a variant that does not fit (shared memory) is a row, not the end
                    print(f"{variant} {cand.impl}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                    out["profile"][f"{variant} {cand.impl}"] = repr(e)
        torch.cuda.empty_cache()


def main() -> None:
    c = Ceilings.measure()
    print(f"{torch.cuda.get_device_name()}  copy {c.copy / 1e9:.0f} GB/s", flush=True)
    out = dict(device=torch.cuda.get_device_name(), copy_gbs=c.copy / 1e9, accuracy=[], rows=[], profile={})
    name = "dl_gpu.json" if SHAPE == (8, 2048, 32) else f"dl_gpu_{'_'.join(map(str, SHAPE))}.json"
    path = os.path.join(os.environ.get("OUT", "."), name)
    if os.environ.get("SPEED", "1") == "1":
        speed(out)
        json.dump(out, open(path, "w"), indent=1)  # after each part: a call cut short keeps what it did
    for L in [int(x) for x in sys.argv[1:]]:
        accuracy(L, out)
        json.dump(out, open(path, "w"), indent=1)


if __name__ == "__main__":
    main()
