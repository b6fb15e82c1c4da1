"""Choosing the lowering strategy and block sizes for a kernel at given sizes.

Choosing never changes what is computed (tests run every strategy against the interpreter).
Sizes are bucketed (powers of two), so the choice and Triton's compiled binary are shared by
all lengths in a bucket: a new sequence length does not recompile."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ssmc.backends.triton.kernel_ir import Kernel
from ssmc.errors import LoweringError

KERNEL_STRATEGIES = ("sequential", "tiled")  # how one kernel runs time; "chunked" is a plan of kernels
MAX_HELD = 16384  # elements of the full (reduced) dims one program may hold
MAX_TAPS = 64  # a conv's taps held whole (Mamba's blocks: 4)
# at most this many held elements per channel are held as registers, one variable each (the
# sequential strategy; see Kernel.held): Mamba-1's N = 16 ran 1.7x faster so on an H100
# (bench/NOTES.md)
REGISTER_HELD = 16
# ... and only for calls of at least this many steps: a decode step (L = 1) ran faster in the
# tensor form on an H100 (B64 D5120 N16 in a CUDA graph: 33 us against 39 us); lengths
# between 1 and 2048 are not measured, so the cut is a guess
REGISTER_MIN_STEPS = 8


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


@dataclass(frozen=True)
class Schedule:
    strategy: str
    block_t: int
    blocks: tuple[tuple[str, int], ...]  # BLOCK_<dim> for the kernel's block dims
    num_warps: int
    num_stages: int = 1
    even: tuple[tuple[str, bool], ...] = ()  # Kernel.even_dims: True where blocks tile the dim exactly
    sub: int = 0  # bidir: chunks of BLOCK_T steps between checkpoints; matrix: tiles per chunk (0: neither)
    flags: tuple[tuple[str, str], ...] = ()  # other constexprs (matrix: PREC, tl.dot's input precision)
    maxnreg: int = 0  # a cap on registers a thread (ptx .maxnreg; 0: none): more programs an SM, maybe spills

    def launch_options(self) -> dict[str, int]:
        """Triton's launch options: warps, and the register cap where there is one."""
        return {"num_warps": self.num_warps, **({"maxnreg": self.maxnreg} if self.maxnreg else {})}

    def constexprs(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"NUM_STAGES": self.num_stages, "BLOCK_T": self.block_t}
        out.update({f"BLOCK_{d}": b for d, b in self.blocks})
        out.update({f"EVEN_{d}": e for d, e in self.even})
        if self.sub:
            out["SUB"] = self.sub
        out.update(dict(self.flags))
        return out


def choose(
    kernel: Kernel,
    sizes: dict[str, int],
    on_gpu: bool,
    strategy: str | None = None,
    block_t: int | None = None,
    block_tiled: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    sub: int | None = None,
) -> Schedule:
    """The schedule for ``kernel`` at ``sizes`` (overrides for tests and tuning)."""
    strategy = strategy or default_strategy(on_gpu)
    if strategy not in KERNEL_STRATEGIES + ("bidir",):
        raise LoweringError(f"unknown kernel strategy {strategy!r}; choose from {KERNEL_STRATEGIES}")
    held = 1
    blocks = []
    in_registers = dict(kernel.held)
    for d in kernel.full_dims:
        b = in_registers.get(d) or next_pow2(sizes[d])
        if d in kernel.taps:  # a conv's window: alongside one other held dim at most
            if b > MAX_TAPS:
                raise LoweringError(f"{kernel.layer}: a conv of {d}={sizes[d]} taps; at most {MAX_TAPS}")
        else:
            held *= b
        if d not in in_registers:
            blocks.append((d, b))
    if held > MAX_HELD:
        dims = ", ".join(f"{d}={sizes[d]}" for d in kernel.full_dims)
        raise LoweringError(
            f"{kernel.layer}: the dims held whole in one program ({dims}) need {held} elements "
            f"of state per channel; the limit is {MAX_HELD}"
        )
    if kernel.held and any(sizes[d] != n for d, n in kernel.held):
        raise LoweringError(f"{kernel.name} holds {dict(kernel.held)} as registers; the sizes are {sizes}")
    if strategy == "sequential":
        bt = 1
    elif strategy == "bidir" and kernel.time_tile:
        # steps a tile of a bidir kernel with no scan (Kernel.time_tile); on the CPU 4, so
        # tests cover tiles cut by a chunk's or the sequence's end
        bt = block_t or (TIME_TILE if on_gpu else 4)
    elif strategy == "bidir":
        bt = kernel.unroll  # the checkpoint interval: the chunk a program unrolls
    else:
        bt = block_t or (16 if on_gpu else 8)
        if kernel.time_dim is not None:
            bt = min(bt, next_pow2(sizes[kernel.time_dim]))
    if kernel.tiled_dim is not None:
        d = kernel.tiled_dim
        if block_tiled is None:
            # one channel per thread, one warp per program: the best of the blocks swept on an
            # H100 for Mamba-1 (bench/NOTES.md); fewer when the whole dims are large
            budget = max(1, (4096 if on_gpu else 1024) // (held * bt))
            # bidir (a backward) holds a chunk of states and more values per step: BIDIR_CHANNELS
            # (held as registers: a channel per thread, as the forward's)
            widest = BIDIR_CHANNELS if strategy == "bidir" and not kernel.held else 32
            block_tiled = max(1, min(next_pow2(sizes[d]), budget, widest))
        blocks.append((d, block_tiled))
    blocks.sort(key=lambda db: kernel.size_dims.index(db[0]))
    warps = num_warps or 1
    even = tuple((d, sizes[d] % b == 0) for d, b in blocks if d in kernel.even_dims + kernel.sum_even_dims)
    # bidir: checkpoints every SUB chunks (fewer bytes of checkpoints; the chunks' entry
    # states are recomputed into a cache-resident buffer)
    # (a checkpoint every 64 steps on a GPU; every 2 chunks on the CPU, so tests cover both)
    sub = (sub or (max(1, 64 // kernel.unroll) if on_gpu else 2)) if strategy == "bidir" else 0
    if not on_gpu:
        cap = 0
    elif strategy == "bidir":
        cap = MAXNREG.get("bidir", 0)
    else:  # a register-held chunk-states kernel (the forward's, a backward's checkpoint pass)
        cap = MAXNREG.get("held_states", 0) if kernel.role == "states" and kernel.held else 0
    return Schedule(strategy, bt, tuple(blocks), warps, num_stages or 1, even, sub, (), cap)


# channels a program of a bidir kernel in the tensor form takes at most (a backward's main kernel):
# 16 was the fastest of 8 / 16 / 32 for Mamba-1 on an H100 (bench/NOTES.md)
BIDIR_CHANNELS = 16

# the matrix form (lower_matrix) is the default from this many steps; shorter calls (decode,
# a few tokens) run the chunked / sequential kernels. A guess, not yet measured between 1 and 2048.
MATRIX_MIN_STEPS = 64


# the decay gradient's kernel (lower_matrix_dl): it holds two [N, BLOCK_P] chunk states and
# four [BLOCK_T, BLOCK_T] or [BLOCK_T, BLOCK_P] tiles in float32. (warps, P block, stages of its
# loop over P blocks) timed on an H100 (Mamba-2 fwd+bwd, B8 L2048 H32 P64 N128, bf16; this
# kernel's us, torch.profiler, one warm machine; bench/NOTES.md session 19): (4, 16, 3) 404,
# (4, 32, 2) 410, (4, 16, 2) 419-430, (2, 16, 2) 470, (4, 16, 1) 533, (8, 32, 3) 609-627 (the
# default until session 19), (8, 16, 2) 787. Compiled for sm_90 (bench/aot_new_kernels.py):
# (8, 32, 3) 189 registers; (4, 16, 2) 246, 51 KB of shared memory; (4, 16, 3) 249, 64 KB; none
# spills.
DL_WARPS, DL_BLOCK_P, DL_STAGES = 4, 16, 3

# a states kernel's tiles of loads in flight as it walks a head's sequence (its per-tile time is
# the loads' latency: Mamba-2's forward states kernel walks 32 tiles in 244 us at B8 L2048, one
# wave of programs). 2 against 1: 0.22 against 0.32 ms (H100, session 6, bench/NOTES.md); 3 and 4
# not yet timed (bench/dl_gpu.py variants)
STATES_STAGES = 2

# steps a tile of a time-tiled bidir kernel (Kernel.time_tile: no scan) on a GPU. Timed on an
# H100 (session 21, bench/dl_gpu.py): Mamba-2's rest took 722 us in time tiles of 4 against 382
# unrolled, though by the sm_90 compiles of Mamba-2's rest at P 64, 2 heads a program (bench/aot_new_kernels.py
# mamba2_rest_tiles, TIME_TILE / REST_WARPS): 4 steps at 4 warps 161 registers, no stack, 317
# instructions a thread per tile (317 warp-instructions a step); 8 steps at 4 warps 255, 586;
# 16 steps 608 bytes of stack; at 1 or 2 warps 255 registers and spills from 8 steps. The
# unrolled form (1 warp, 4 steps) issues 669 a step at 255 registers and 144 bytes of stack.
TIME_TILE = 4

# caps on registers a thread (ptx .maxnreg) by kind of kernel: "states" (the matrix form's
# states kernels), "dl" (a decay gradient's), "bidir" (a backward's main kernel); absent or 0:
# none. Measured on an H100 (Mamba-2 fwd+bwd B8 L2048 H32 P64 N128 bf16, one run, session 21,
# bench/dl_gpu.py): states at 128 took the backward's m0 / m3 states kernels from 251 / 246 to
# 192 / 183 us (2.453 -> 2.313 ms the call); dl at 168 the decay gradient from 357 to 295 us
# (2.391 ms). The programs an SM holds are set by registers, and a states kernel's time is rounds of
# programs that walk the sequence (bench/NOTES.md, session 20). By the sm_90 compiles
# (bench/aot_new_kernels.py with MAXNREG; session 21, after the hoisting of loop-invariant
# values): Mamba-2's forward states kernel takes 103 registers in two bf16 products (4 programs
# of 4 warps an SM; at 96, 5 for 16 bytes of stack) and 128 in three (4; at 96, 48 bytes); the
# backward's m0 / m3 states 130 / 139 (3; at 128 no stack, 4); the decay gradient 198 (2; at
# 168 no stack, 3); Mamba-1's backward main kernel 232 (at 168, 120 bytes of stack; not yet
# timed: bench/sweep_backward.py). Float32-accurate (tf32x3) kernels are left uncapped: the
# states cap spilled m0's 88 bytes there. "held_states": a register-held chunk-states kernel
# (Mamba-1's forward states pass, a backward's checkpoint pass): with B's rows in float32
# (run.WIDEN_ROWS) Mamba-1's takes 168 registers (95 in bf16), at a cap of 128 no stack and 485
# instructions per 4 steps against 461 (sm_90, session 23; not yet timed: bench/wide_rows_gpu.py)
MAXNREG: dict[str, int] = {"states": 128, "dl": 168}


def choose_matrix(kernel: Kernel, sizes: dict[str, int], on_gpu: bool, f32: bool, k_bf16: bool = False,
                  low: str | None = None, block_t: int | None = None, num_warps: int | None = None,
                  sub: int | None = None, num_stages: int | None = None, two_parts: bool = False, **_: object) -> Schedule:
    """Tiles of the matrix form's kernels: ``BLOCK_T`` steps (a multiple of 16 on a GPU, for
    tl.dot), ``SUB`` tiles per chunk (states stored at chunk boundaries), blocks of N and P.
    ``PREC``, the products' precision: where ``f32`` (the caller's: a forward's states kernel,
    whose state and final state are float32 results; float32 inputs; a backward's results that
    must be float32-accurate) at float32 accuracy, tf32x3; else with 16-bit operands on tensor
    cores (``low``, the inputs' "bf16" or "fp16"). ``k_bf16``: k is one bf16 argument, exact as
    a tensor-core operand: a states kernel's float32-accurate products then split the other
    operand in three bf16 parts instead; for an outputs kernel, ``k_bf16`` says c is one too:
    c . k is then exact in one bf16 product, and c times the entry state three bf16 products
    (measured on an H100, Mamba-2's backward at B8 L2048: see bench/NOTES.md). ``two_parts``
    (a states kernel, k one bf16 argument, its chunk states read only by an outputs kernel that
    rounds them to bf16): the other operand in two bf16 parts, two products a tile. A states
    kernel's registers are capped at ``MAXNREG["states"]`` (a decay gradient's at ``MAXNREG["dl"]``) on a GPU where set."""
    from ssmc.backends.triton.lower_matrix import MAX_N

    m = kernel.matrix
    N, P = sizes[m.n], sizes[m.p]
    if N > MAX_N:
        raise LoweringError(f"{kernel.layer}: the matrix form holds {m.n} whole, at most {MAX_N}; got {m.n}={N}")
    lo = 16 if on_gpu else 1
    bt = max(lo, next_pow2(block_t or (64 if on_gpu else 8)))
    # chunks of one tile on a GPU: measured on an H100 (Mamba-2 B8 L2048 H32 P64 N128, bf16;
    # bench/inspect_matrix.py, NOTES.md) the outputs kernel took 0.26 ms with chunks of 64 steps,
    # 0.30 with 128, 0.38 with 256 (it walks the chunk's earlier tiles; 64 needs the fewest
    # registers), for 0.23 / 0.21 / 0.21 ms of the states kernel. On the CPU 2, so tests cover
    # chunks of several tiles.
    # a power of two: a decay gradient's kernel takes a whole chunk as one tile (lower_matrix_dl)
    sub = next_pow2(sub or (1 if on_gpu else 2))
    # Triton 3.6.0's interpreter multiplies 16-bit dot operands as raw integers (seen: a bf16
    # 16x16 product off by 1e10): there, float32 operands
    if kernel.role == "dl":
        # a chunk per program (BLOCK_T: the chunk states' span), N whole, P in blocks
        bn, bp, warps = max(lo, next_pow2(N)), max(lo, min(next_pow2(P), DL_BLOCK_P)), num_warps or DL_WARPS
        prec = "tf32x3" if not on_gpu or f32 or low is None else low
        stages = num_stages or DL_STAGES
        sub = 1
    elif kernel.role == "states":
        # blocks of 64 x 32 of the state per program: 0.19 ms against 0.21 for 64 x 64 and 0.38
        # for 32 x 64 (same run, chunks of 128); two stages of loads in flight: 0.21 against 0.32 for one
        bn, bp, warps = max(lo, min(next_pow2(N), 64)), max(lo, min(next_pow2(P), 32)), num_warps or 4
        if not on_gpu or (f32 and not k_bf16) or low is None:
            prec = "tf32x3"
        elif two_parts and k_bf16 and low == "bf16":
            prec = "bf16x2"
        else:
            prec = "bf16split" if f32 else low
        stages = num_stages or (STATES_STAGES if on_gpu else 1)
    else:
        # 4 warps: 0.26 ms against 0.62 with 8 (B8 L2048, chunks of 64)
        bn, bp, warps = max(lo, next_pow2(N)), max(lo, min(next_pow2(P), 64)), num_warps or 4
        if not on_gpu or low is None:
            prec = "tf32x3"
        else:  # k_bf16 here: c and k both one bf16 argument each (their product exact in bf16)
            prec = ("bf16split" if k_bf16 else "tf32x3") if f32 else low
        # a loop over the heads it sums (print_matrix summed_heads): the next head's loads in
        # flight (sm_90, Mamba-2's dB kernel at P 64 N 128: 230 registers, no spills, against
        # 255 and 16 bytes of stack unpipelined; not yet timed)
        stages = num_stages or (2 if on_gpu and m.summed else 1)
    even = ((m.n, N % bn == 0), (m.p, P % bp == 0))
    # (float32-accurate products in float32 parts hold more: tf32x3 kernels are not capped)
    cap = MAXNREG.get(kernel.role, 0) if on_gpu and kernel.role in ("states", "dl") and prec != "tf32x3" else 0
    return Schedule("matrix", bt, ((m.n, bn), (m.p, bp)), warps, stages, even, sub, (("PREC", prec),), cap)


def smaller_matrix(kernel: Kernel, sched: Schedule, sizes: dict[str, int], on_gpu: bool) -> Iterator[Schedule]:
    """Schedules of matrix-form ``kernel`` that ask less shared memory than ``sched``, each
    smaller than the last, for a GPU that refuses ``sched`` (``run.Run.fit``): one stage of
    loads in flight instead of several, then P blocks halved down to tl.dot's 16, then (a
    states kernel, the one that takes N in blocks) N blocks halved. Same chunks and products:
    what is computed does not change, only how the state is split among programs."""
    m = kernel.matrix
    lo = 16 if on_gpu else 1
    s = sched
    if s.num_stages > 1:
        s = replace(s, num_stages=1)
        yield s
    for d in (m.p, m.n) if kernel.role == "states" else (m.p,):
        while dict(s.blocks)[d] > lo:
            blocks = tuple((x, b // 2 if x == d else b) for x, b in s.blocks)
            s = replace(s, blocks=blocks, even=tuple((x, sizes[x] % dict(blocks)[x] == 0) for x, _ in s.even))
            yield s


def default_strategy(on_gpu: bool) -> str:
    """Chunked where splitting the sequence pays (too few programs to fill the GPU), else the
    plain sequential kernel: ``chunking`` decides per call."""
    return "chunked"


def warps_an_sm(regs: int, num_warps: int) -> int:
    """The warps an H100 SM holds of a kernel of ``regs`` registers a thread and ``num_warps``
    warps a program: 64K registers (a thread's count rounded up to 8), at most 64 warps and 32
    programs."""
    per_program = -(-max(1, regs) // 8) * 8 * 32 * num_warps
    return max(1, min(65536 // per_program, 32, 64 // num_warps)) * num_warps


def chunking(kernel: Kernel, sizes: dict[str, int], sched: Schedule, on_gpu: bool, chunks: int | None,
             regs: int | None = None) -> tuple[int, int]:
    """(number of chunks, steps per chunk) for the chunked strategy. Measured on an H100
    (bench/NOTES.md; Mamba-1, state held as registers): splitting pays when the programs give
    fewer than ~8 warps per SM (B8 D2048: 512 warps, 8 chunks best; B2 D2048: 128 warps, 32
    chunks) and costs when they give more (B8 D5120: 1280 warps, sequential best). Chunks are at least 256 steps and a multiple of
    the unroll factor, so only the last chunk has a tail. On the CPU: 1 unless asked.
    ``regs``: a backward main kernel's registers a thread as compiled (Run.main_registers), for
    the warps an SM holds of it; without them, 8 (Mamba-1's, ~240 registers)."""
    L = sizes[kernel.time_dim]
    if chunks is None:
        programs = math.prod(sizes[d] for d in kernel.grid_dims if d != "_C")
        if kernel.tiled_dim is not None:
            programs *= -(-sizes[kernel.tiled_dim] // dict(sched.blocks)[kernel.tiled_dim])
        warps = max(1, programs * sched.num_warps)
        sms = 132
        if kernel.strategy == "bidir":
            # a backward's main kernel (~240 registers: a wave is 8 warps per SM): split where
            # the last wave of programs would leave over a tenth of the GPU idle, into ~16 waves
            # (H100, Mamba-1's backward alone, bench/NOTES.md: B2 L8192 D2048, 256 warps, 0.24
            # of a wave: 10.1 ms unsplit, 4.2 / 3.60 / 3.60 in 4 / 8 / 16 chunks; B8 L4096 D5120,
            # 2.4 waves: 18.4 unsplit, 17.9 / 17.0 / 16.9 in 2 / 8 / 16; B8 L2048, 0.97 of a
            # wave: 3.24 unsplit, 3.55 in 8 chunks: the carried scan's states pass and no gain)
            # (a wave from the compiled kernel's registers: HGRN's, 166 on sm_90, holds 12 warps an
            # SM, so its 1024 one-warp programs at B8 D2048 are 0.65 of a wave, not 0.97; session 11
            # measured its backward at 1.42 ms unsplit, 1.33 in 16 chunks, H100, bench/NOTES.md)
            wave = (8 if regs is None else warps_an_sm(regs, sched.num_warps)) * sms
            waves = warps / wave
            want = 1 if (not on_gpu or waves / math.ceil(waves) >= 0.9) else -(-(16 * wave) // warps)
        else:
            want = 1 if (not on_gpu or warps >= 8 * sms) else -(-(32 * sms) // warps)
        chunks = max(1, min(want, L // 256))
    chunks = max(1, min(chunks, L))
    u = sched.block_t if kernel.time_tile else max(1, kernel.unroll)  # whole tiles, or unrolled pieces
    per_chunk = _cdiv(L, chunks)
    chunk_len = max(u, _cdiv(per_chunk, u) * u)
    return (_cdiv(L, chunk_len) if L else 1), chunk_len


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)
