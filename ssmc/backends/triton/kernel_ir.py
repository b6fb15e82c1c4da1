"""A small kernel IR between the fused graph and Triton text.

A kernel runs one program per (grid dims index, block of the tiled dim). Every in-kernel value
is a tensor of rank ``1 + len(block_dims)``: axis 0 is time (``BLOCK_T`` steps of the sequence
axis; 1 in the sequential strategy), then one axis per block dim (the tiled dim and the dims
reduced inside the kernel, which are held whole). A value lacking a dim has size 1 on its axis.
Statements are grouped by phase: before the time loop (loop-invariant values), in it, after it
(values of the final state).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from ssmc.ir.dims import Dims


@dataclass(frozen=True)
class Tensor:
    """A tensor argument: a pointer plus one stride per dim (any layout, any strides)."""

    name: str  # identifier in the kernel: a_<arg>, o_<output>, t<k> (between kernels)
    dims: Dims  # canonical dims
    role: str  # "in" or "out"
    optional: bool = False
    source: str = ""  # the layer argument or output it binds to
    accumulate: bool = False  # programs add into it (atomically): the caller zeroes it first
    # deterministic mode: the leading dims are one slot per program along these split dims
    # (``_P<dim>`` for blocks of the tiled dim); the caller sums them away after the kernel
    partial: Dims = ()
    # a buffer between kernels stored in the outputs' dtype rather than float32 (the matrix
    # form's chunk entry states, which its outputs kernel rounds to that dtype anyway)
    low: bool = False


@dataclass(frozen=True)
class Load:
    target: str
    tensor: str
    dims: Dims
    comment: str


@dataclass(frozen=True)
class WindowLoad:
    """``target`` = the inputs a causal conv reads at each step: ``tensor`` (dims ``dims``,
    with the time dim) at steps t-(K-1) .. t, along the taps dim ``taps`` (a dim held whole,
    size K); steps before the sequence's start read ``window`` (dims ``window_dims``: the K
    values before it, oldest first) or zeros. ``end``: the K inputs ending at the last step
    (the conv's final window), loaded before the time loop. Lowered from ``conv`` and
    ``conv_final`` (ssmc/ops/conv.py); the step's position counts from the sequence's start
    in either direction of the time loop."""

    target: str
    tensor: str
    dims: Dims
    taps: str
    window: str | None
    window_dims: Dims
    comment: str
    end: bool = False
    ahead: bool = False  # steps t+(K-1) .. t instead (a transposed conv: its cotangent's reads)


@dataclass(frozen=True)
class TapAt:
    """``target`` = ``source``'s element along ``taps`` at this step's slot in the final window
    (index t - n + K; zero for the steps before the last K): the final window's cotangent
    reaching the step it holds."""

    target: str
    source: str
    taps: str
    comment: str


@dataclass(frozen=True)
class TapsShift:
    """``target`` = ``tensor`` (dims ``dims``, with ``taps``) read along ``taps`` at index
    k + ``shift`` for lane k (zero outside [0, K)); ``shift`` an expression of the sizes."""

    target: str
    tensor: str
    dims: Dims
    taps: str
    shift: str
    comment: str


@dataclass(frozen=True)
class WindowHead:
    """``target`` [.., K] = the cotangent of a conv's initial window: lane j gets
    ``sum_k w[k] * g[j-1-k]`` over the steps 0 <= j-1-k < n (``g``: ``tensor`` with the time
    dim; ``w``: ``weights``), a loop over the taps before the time loop."""

    target: str
    tensor: str
    dims: Dims
    weights: str
    weight_dims: Dims
    taps: str
    out_dims: Dims
    comment: str


@dataclass(frozen=True)
class Compute:
    """``target = expr``. Two forms address a dim held as registers by index (complex values'
    parts): ``v7[R=1]`` is v7 at index 1 of R, ``_pick_R(v3, v4)`` is v3 at index 0 of R and
    v4 at index 1 (see ``print_held.HeldPrinting.sub``)."""

    target: str
    expr: str
    comment: str
    dims: Dims | None = None  # the value's dims (register-held kernels unroll the held ones)


def parts_of(expr: str) -> set[str]:
    """The dims of complex parts that ``expr`` addresses by index (see ``Compute``)."""
    return set(re.findall(r"_pick_(\w+)\(", expr) + re.findall(r"\[(\w+)=\d\]", expr))


@dataclass(frozen=True)
class Reduce:
    target: str
    source: str
    dim: str
    kind: str  # "sum" or "mean"; "partial": the sum over this program's block of the tiled dim
    comment: str


@dataclass(frozen=True)
class TimeSum:
    """``target`` = the sum over the sequence axis of ``source``: zeroed before the time loop,
    each tile's (unmasked) rows added in it."""

    target: str
    source: str
    dims: Dims  # the result's dims
    comment: str


@dataclass(frozen=True)
class Prev:
    """``target`` = the state of scan ``scan`` before each step (one step back in the scan's
    direction; at a chunk's first step, the state entering the chunk)."""

    target: str
    scan: str  # the scan's per-step states
    carry: str  # the scan's carry: its value before the step is ``cin_<carry>``
    comment: str


@dataclass(frozen=True)
class ScanStep:
    """``target`` = every state of this time tile; ``carry`` holds the state between tiles."""

    target: str | None
    a: str
    b: str
    carry: str
    comment: str
    product: str | None = None  # also carry prod(a) (the chunk-states kernel)
    reverse: bool | None = None  # the "bidir" strategy: this scan's own direction
    checkpointed: bool = False  # "bidir": restarted every chunk from its entry state (``hin``, ``scr``)
    complex: str | None = None  # the dim (size 2, held as registers) of complex parts: a, b, h complex


@dataclass(frozen=True)
class Store:
    tensor: str
    value: str
    dims: Dims
    comment: str
    atomic: bool = False  # add into the tensor (a sum across programs)
    only_first: Dims = ()  # grid/tiled dims along which the value is the same: program 0 adds
    only_last: Dims = ()  # grid dims whose last program alone stores (a chunked kernel's final state)


Stmt = Load | WindowLoad | TapAt | TapsShift | WindowHead | Compute | Reduce | TimeSum | Prev | ScanStep | Store


@dataclass(frozen=True)
class Carry:
    """A scan state carried across time tiles: initial value from ``h0`` (a value name) or 0."""

    name: str
    dims: Dims  # the state's dims, without time
    init: str | None


@dataclass(frozen=True)
class Kernel:
    name: str
    layer: str
    strategy: str  # "sequential", "tiled", or "bidir" (a backward: see lower_backward)
    tensors: tuple[Tensor, ...]
    size_dims: Dims  # runtime sizes passed to the kernel
    time_dim: str | None
    reverse: bool
    grid_dims: Dims  # one index per program
    tiled_dim: str | None  # blocked: BLOCK_<dim> per program, masked
    full_dims: Dims  # held whole in one program (they are reduced inside the kernel)
    carries: tuple[Carry, ...]
    pre: tuple[Stmt, ...]
    loop: tuple[Stmt, ...]
    post: tuple[Stmt, ...]
    header: tuple[str, ...] = ()
    chunked: bool = False  # one program per chunk of the sequence too (grid dim "_C")
    batch_dim: str | None = None  # the grid dim that indexes sequences of a packed batch
    role: str = "full"  # "full", or "states": the chunk-states pass of the chunked strategy
    unroll: int = 1  # steps per iteration of the sequential strategy, unrolled in the source
    align_end: bool = False  # "bidir": chunks end at the sequence's end (a reverse recompute)
    # chunked, reverse: chunks aligned at step 0 (counted from the end, the first in time cut
    # short), as a split bidir kernel's are (its spans of checkpoints start at step 0)
    align_start: bool = False
    hoist_loads: bool = False  # "bidir": phase B issues every step's loads of a chunk first
    # dims held whole *as registers*, with their exact sizes: a value with such a dim is one
    # variable per index (``v7__3``), a sum over it a chain of adds (fused into FMAs), a row of
    # an input indexed by it only (Mamba's B and C) a run of scalar loads. The sequential
    # strategy's form when the held elements are few (see ``schedule.REGISTER_HELD``).
    held: tuple[tuple[str, int], ...] = ()
    pairs: tuple[str, ...] = ()  # register-held: rows loaded two elements per load (aligned)
    prefetch: bool = False  # sequential / bidir: the next tile's (chunk's) loads issued before this one's work
    prefetch_a0: bool = False  # bidir: phase A0's loads a chunk ahead too (print_bidir; with prefetch)
    matrix: Any = None  # strategy "matrix": the lower_matrix.MatrixForm its printer reads
    # the dims held whole that are a conv's taps (a value spans them and at most one other
    # held dim: [K, N] or [K, P], never a state's [N, P] times K)
    taps: Dims = ()
    # 2^x in the time loop on the FMA pipe (prelude's _ssmc_exp2_fma) instead of the MUFU
    # pipe's ex2.approx, for every k-th register-held element of a value (1: every element,
    # also in the tensor form; 0: none). Accurate (under 1 ulp on an H100, unbiased) but no
    # faster: Mamba-1's chunk-states kernel, expected MUFU-bound, was slower at every fraction
    # (bench/NOTES.md, session 13); (1, 1) on a layer is its float32-accurate mode
    exp2_fma: int = 0
    # "bidir" with no scan (a backward's elementwise chain rule and sums: Mamba-2's rest): the
    # steps of a tile of BLOCK_T are one axis of every value ([BLOCK_T, ...] tensors, as the
    # tiled strategy's), not steps unrolled one after another (see print_bidir.loop_time_tiles)
    time_tile: bool = False

    @functools.cached_property
    def complex_dims(self) -> frozenset[str]:
        """The dims of complex parts this kernel uses (held as registers wherever it is printed)."""
        out = {s.complex for s in self.loop if isinstance(s, ScanStep) and s.complex}
        for s in self.pre + self.loop + self.post:
            if isinstance(s, Compute):
                out |= parts_of(s.expr)
        return frozenset(out)

    def varying_ints(self) -> list[str]:
        """The kernel's int parameters that vary with the sequence length or batch: never
        compile-time constants (Triton's do_not_specialize), so a new length or batch size does
        not recompile. Sizes, and strides of grid dims, chunk dims (_C, _Q) and per-program
        slots (_P...): products of sizes that vary."""
        names = [f"size_{d}" for d in self.size_dims] + (["chunk_len"] if self.chunked else [])
        for t in self.tensors:
            names += [f"{t.name}_s_{d}" for d in t.dims if d in self.grid_dims or d.startswith("_")]
        return names

    def call_strides(self, call: list) -> list[tuple[Tensor, tuple[tuple[str, int], ...]]]:
        """Each tensor with its (dim, stride) pairs, read from a launch's arguments (the
        printed signature's order: a tensor's pointer, then a stride per dim; sizes after)."""
        out, i = [], 0
        for t in self.tensors:
            out.append((t, tuple((d, int(s)) for d, s in zip(t.dims, call[i + 1 : i + 1 + len(t.dims)]))))
            i += 1 + len(t.dims)
        return out

    def by_program(self, d: str) -> bool:
        """Whether a tensor's offset along ``d`` is the program's (a grid dim, or deterministic
        mode's per-program slot ``_P...``): a term of its base, not of its tile."""
        return d in self.grid_dims or d.startswith("_P")

    @functools.cached_property
    def aligned_bases(self) -> dict[str, int]:
        """The tensors read or written in the time loop at a tile (a block dim) and at grid
        offsets, each with its bit of the constexpr ``ALIGNED``: where the host finds every
        stride of those grid offsets a multiple of 8 elements, the kernel says so
        (``tl.multiple_of``) and Triton may load the tile in 16-byte vectors. Those strides are
        never compile-time constants (``varying_ints``), so Triton cannot see it itself: Mamba-2's
        backward rest loaded [P 64, 2 heads] tiles an element (2 bytes) a load (its TTGIR, sm_90)."""
        out: dict[str, int] = {}
        seen: set[str] = set()
        for s in self.loop:
            if isinstance(s, (Load, Store, WindowLoad)) and self.time_dim in s.dims and s.tensor not in seen:
                seen.add(s.tensor)
                tile = any(d in self.block_dims for d in s.dims)
                if tile and any(self.by_program(d) for d in s.dims):
                    out[s.tensor] = len(out)
        return out

    @property
    def narrow_steps(self) -> bool:
        """The prefetch's step offsets (``tn * stride``) in 32 bits where the host finds that
        every one fits (constexpr ``OFFS32``). Chunk-states kernels only: Mamba-1's lost 29 of
        593 instructions per 4 steps; its full kernels spilled to the stack in 32 bits
        (bench/NOTES.md)."""
        return self.prefetch and self.role == "states"

    @property
    def even_dims(self) -> Dims:
        """The block dims with an ``EVEN_<dim>`` constexpr: where the blocks tile the dim
        exactly, its mask is a constant (Triton drops it). The whole dims, and the tiled dim of
        a register-held kernel (one channel per thread: Mamba-1's forward lost 26 instructions
        per 4 steps to the masks, bench/NOTES.md; the tensor form stays masked, see codegen)."""
        held = dict(self.held)
        tiled = (self.tiled_dim,) if self.tiled_dim and held else ()
        return tuple(d for d in self.full_dims if d not in held) + tiled

    @functools.cached_property
    def sum_even_dims(self) -> Dims:
        """The tensor form's tiled dim where the kernel sums over it (a backward's sums across
        channels, ``Reduce`` kind "partial": Mamba-1's dB and dC each step): an ``EVEN_<dim>``
        constexpr that drops the sums' masking select where the blocks tile the dim exactly.
        Its loads stay masked (see ``even_dims``)."""
        d = self.tiled_dim
        if d is None or self.held or d in self.even_dims:
            return ()
        sums = any(isinstance(s, Reduce) and s.kind == "partial" and s.dim == d for s in self.pre + self.loop + self.post)
        return (d,) if sums else ()

    @property
    def block_dims(self) -> Dims:
        """The block axes after time: the dims held whole first, the tiled dim last, so Triton
        spreads threads along the tiled dim and each thread holds whole rows of the reduced dims
        (reductions stay in registers). Register-held dims are no block axis."""
        held = dict(self.held)
        return tuple(d for d in self.full_dims if d not in held) + ((self.tiled_dim,) if self.tiled_dim else ())
