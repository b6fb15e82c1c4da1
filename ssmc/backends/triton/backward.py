"""Compiling a layer's backward: the autodiff graph, fused by ``fuse_backward``, lowered with
the forward's layout (the same dims split among programs), run by the same JIT."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ssmc.autodiff import backward_layer
from ssmc.backends.triton.jit import CompiledLayer, GroupPlan
from ssmc.backends.triton.lower import chunkable, layout_of, lower_group
from ssmc.backends.triton.lower_backward import carried_group, lower_bidir, recompute_group
from ssmc.backends.triton.schedule import REGISTER_HELD
from ssmc.dsl.layer import Layer
from ssmc.errors import LoweringError
from ssmc.ir.node import topo_order
from ssmc.passes import CSE, DCE, Canonicalize
from ssmc.passes.fuse_backward import FuseBackward


def recurrences(graph: Any) -> int:
    """How many recurrences (a scan with its final state) the outputs of ``graph`` need."""
    from ssmc.passes.fuse import recurrence_key

    return len({recurrence_key(n) for n in topo_order([v for _, v in graph.outputs]) if n.op in ("scan", "scan_final")})


def backward_for(layer: Layer, forward: CompiledLayer | None = None, **kwargs: Any) -> Any:
    """The compiled backward of ``layer``: ``MultiBackward`` where it has several recurrences
    side by side, else ``CompiledBackward`` (``kwargs``: their options)."""
    forward = forward or CompiledLayer(layer)
    if recurrences(forward.graph) > 1:
        return MultiBackward(layer, forward, **kwargs)
    return CompiledBackward(layer, forward, **kwargs)


def forward_layout(forward: CompiledLayer) -> tuple:
    """(grid, tiled, whole dims) of the forward's recurrence kernel (else its first kernel)."""
    groups = forward.graph.groups or ()
    g = next((g for g in groups if any(n.op in ("scan", "scan_final") for n in g.nodes)), groups[0])
    return layout_of(lower_group(forward.graph, g, "sequential"))


class CompiledBackward(CompiledLayer):
    """The backward of ``layer`` as a compiled layer: called with the forward's arguments and
    ``grad_<output>`` cotangents (optional), it returns float32 ``grad_<argument>`` tensors
    (dims in canonical order; an argument's gradient may lack dims it is constant along).
    ``graph_layer``, ``layout``: a backward layer made elsewhere and how to split its dims among
    programs (``MatrixBackward``'s rest); by default the forward's layout."""

    defines_op = False  # called from the forward's op (its autograd formula), never on its own

    def __init__(self, layer: Layer, forward: CompiledLayer | None = None, block_t: int | None = None,
                 block: int | None = None, num_warps: int | None = None, verify: bool = False,
                 unroll: int | None = None, hoist_loads: bool = True, sub: int | None = None,
                 prefetch: bool = True, graph_layer: Layer | None = None, layout: tuple | None = None,
                 split_time: bool = True, chunks: int | None = None, held_bidir: bool = False,
                 exp2_fma: tuple[int, int] | None = None, time_tiles: bool = False, prefetch_a0: bool = False) -> None:
        forward = forward or CompiledLayer(layer)
        if exp2_fma is None:  # as the forward computes its decays
            exp2_fma = forward.exp2_fma
        if graph_layer is None and recurrences(forward.graph) > 1:
            raise LoweringError(f"{layer.name}: {recurrences(forward.graph)} recurrences: its backward is a "
                                "MultiBackward (backward_for(layer) picks it)")
        self.layout = layout or forward_layout(forward)
        grid, tiled, _ = self.layout
        partial = tuple(grid) + ((tiled,) if tiled else ())
        # ``split_time``: the main kernel's sequence split among programs too (``chunks`` of it,
        # by default as many as fill the GPU; sums over time then end it like sums across
        # programs), where its carried scan does not read the recomputed forward one
        # (``carried_group``); a layer with no scan (a conv alone) splits as its forward does
        split_time = split_time or not any(n.op == "scan" for n in forward.graph.nodes)
        self.split_time = split_time
        if split_time:
            partial += (forward.graph.scan_axis(),)
        passes = (Canonicalize(), CSE(), DCE(), FuseBackward(partial))
        super().__init__(graph_layer or backward_layer(layer), block_t=block_t, block=block, num_warps=num_warps,
                         verify=verify, passes=passes, chunks=chunks, exp2_fma=exp2_fma)
        # phase B's loads of a chunk issued before its work: measured on an H100 (bench/NOTES.md,
        # 2026-11-24) 11-14 % faster for Mamba-1's backward and 21 % for HGRN's than in place
        # chunks of 2 steps where each channel holds a whole dim of state (Mamba-1: fewer live
        # registers), of 4 where it holds one element (HGRN: 2.33 -> 2.10 ms, H100, NOTES.md)
        # the next chunk's loads issued during this chunk (``prefetch``): 1.25-1.30x for Mamba-1's
        # backward at the bench shapes, 1.45x for HGRN's (H100, NOTES.md)
        # split in time (no forward scan recomputed, so no chunk of states held): 4 steps, 0.95 ms
        # for Mamba-2's rest against 1.08 with 2 and 0.99 with 8 (H100, B8 L2048, 8 chunks)
        if unroll is None:
            main = next((g for g in self.graph.groups or () if g.name == "k0"), None)
            recomputes = main is not None and recompute_group(main) is not None
            unroll = 2 if self.layout[2] and recomputes else 4
        self.bidir_unroll, self.hoist_loads, self.prefetch = unroll, hoist_loads, prefetch
        # the main kernel's phase A0 (the recomputed forward scan over a checkpoint span) with
        # its loads a chunk ahead too (Kernel.prefetch_a0): by the sm_90 compile of Mamba-1's
        # (GPU schedule) its loop 294 -> 321 instructions, stack 72 -> 104 bytes; its loads'
        # latency otherwise falls on every 2-step chunk. Not yet timed on a GPU: off
        self.prefetch_a0 = prefetch_a0
        self.options["sub"] = sub
        self.forward_layer = layer
        self.held = forward.held  # the forward's choice of state form, for the kernels that can hold it
        # the main kernel with its whole dims held as registers too (``main_kernel``): checked
        # against the interpreter, and slower on an H100 (Mamba-1's backward 3.29 -> 4.54 ms at B8
        # L2048, 16.9 -> 21.5 at B8 L4096 D5120; bench/NOTES.md, session 13), so not the default
        self.held_bidir = held_bidir
        # bidir kernels with no scan take their steps a tile at a time (Kernel.time_tile)
        self.time_tiles = time_tiles

    def out_dtype(self, first_input_dtype: Any) -> Any:
        import torch

        return torch.float32

    def states_kernel(self, plan: GroupPlan, which: str, sizes: dict[str, int], pairable: frozenset) -> Any:
        """The states kernel of ``plan``'s checkpoint pass (``which`` "checkpoints": the
        recomputed forward scan's state every SUB chunks) or of its carried scan's chunk states
        ("carried": a split sequence), with its whole dims held as registers where the
        forward's kernels would hold them at these sizes (Mamba-1, N = 16; on an H100 the tensor
        forms took 489 and 460 us at B8 L2048 D2048 against the forward's 192 us for its own
        states pass, NOTES.md)."""
        k = plan.kernels[0] if which == "checkpoints" else plan.kernels[-2]
        # at any length: the pass runs where the sequence has two spans or more, and one form
        # for all lengths is one kernel for a warm-up to compile (tests/test_recompile.py)
        held = self.held_dims(k, sizes, any_length=True)
        part = recompute_group if which == "checkpoints" else carried_group
        g = part(plan.group) if held is not None else None
        if g is None:
            return k
        pairs = self.row_pairs(k, held, pairable)
        key = (which, id(plan), tuple(held.items()), pairs)
        if key not in self._held_plans:
            kh = lower_group(self.graph, g, "chunked", self.unroll, "states", layout=self.layout, held=held, pairs=pairs)
            kh = replace(kh, align_start=k.align_start, exp2_fma=self.exp2_fma[0])
            self._held_plans[key] = GroupPlan((kh,), True, g)
        return self._held_plans[key].kernels[0]

    def main_kernel(self, plan: GroupPlan, sizes: dict[str, int]) -> Any:
        """``plan``'s main (bidir) kernel, with its whole dims held as registers where asked
        (``held_bidir``) and the forward's rule would hold them at these sizes."""
        k = plan.kernels[-1]
        held = {d: sizes[d] for d in k.full_dims}
        if k.complex_dims:  # complex values: their parts are held as registers, always
            if k.taps:
                raise LoweringError(f"{self.layer.name}: complex values beside a conv: not lowered yet")
        elif not self.held_bidir or self.held == "tensor" or not k.full_dims or k.taps:
            return k
        elif self.held is None and math.prod(held.values()) > REGISTER_HELD:
            return k
        key = ("bidir", id(plan), tuple(held.items()))
        if key not in self._held_plans:
            kh = replace(lower_bidir(self.graph, plan.group, self.layout, self.bidir_unroll, self.hoist_loads, self.prefetch,
                                     chunked=k.chunked, held=held), prefetch_a0=self.prefetch_a0)
            self._held_plans[key] = GroupPlan((kh,), False, plan.group)
        return self._held_plans[key].kernels[0]

    def plans(self, strategy: str, sizes=None, pairable=frozenset()) -> list[GroupPlan]:
        if "bidir" not in self._plans:
            out = []
            grid, tiled, _ = self.layout
            split, axis = set(grid) | {tiled}, self.graph.scan_axis()
            for g in self.graph.groups or ():
                if g.name == "k0":
                    # kernels: the recomputed forward scan's checkpoint pass, the carried scan's
                    # chunk-states pass (a split sequence), the main kernel
                    ks = []
                    rg = recompute_group(g)
                    cg = carried_group(g) if self.split_time else None
                    scanless = not any(n.op == "scan" for n in g.nodes)
                    if rg is not None:
                        ks.append(lower_group(self.graph, rg, "chunked", self.unroll, "states", layout=self.layout))
                    if cg is not None:
                        kc = lower_group(self.graph, cg, "chunked", self.unroll, "states", layout=self.layout)
                        ks.append(replace(kc, align_start=rg is not None))  # chunks aligned as the spans are
                    main = lower_bidir(self.graph, g, self.layout, self.bidir_unroll, self.hoist_loads, self.prefetch,
                                       chunked=cg is not None or (self.split_time and scanless), time_tile=self.time_tiles)
                    ks.append(replace(main, exp2_fma=self.exp2_fma[1], prefetch_a0=self.prefetch_a0))
                    out.append(GroupPlan(tuple(ks), len(ks) >= 2, g, checkpointed=rg is not None))
                elif any(n.op == "sum" and (n.attr("dim") in split or n.attr("dim") == axis) for n in g.nodes):
                    # sums over time or across programs: the bidir loop (no scan in it)
                    out.append(GroupPlan((lower_bidir(self.graph, g, self.layout, self.bidir_unroll, self.hoist_loads, self.prefetch,
                                                      time_tile=self.time_tiles),), False, g))
                elif chunkable(self.graph, g) is None and not any(n.op == "scan" for n in g.nodes):
                    # a later kernel with no recurrence (a conv's transposed part): chunks of the sequence
                    out.append(GroupPlan((lower_group(self.graph, g, "chunked", self.unroll),), True, g))
                else:
                    out.append(GroupPlan((lower_group(self.graph, g, "sequential", self.unroll),), False, g))
            self._plans["bidir"] = out
        # kernels other than the main one (whose forms ``Run.bidir`` picks per call): held as
        # registers where they hold complex values (the only form that lowers them; at the
        # layer's fixed sizes if no call's are given); the others keep the tensor form
        return [self.held_plan(p, at, pairable) if (at := self._complex_sizes(p, sizes)) and p.kernels[-1].strategy != "bidir"
                else p for p in self._plans["bidir"]]

    def _complex_sizes(self, plan: GroupPlan, sizes: dict[str, int] | None) -> dict[str, int] | None:
        """The sizes to hold ``plan``'s complex values at (None: it has none, or no sizes)."""
        k = plan.kernels[-1]
        if not k.complex_dims:
            return None
        if sizes is None and set(k.full_dims) <= set(self.layer.fixed_sizes):
            return self.layer.fixed_sizes
        return sizes

    def kernels(self, strategy: str, sizes: dict[str, int] | None = None, pairable: frozenset = frozenset()) -> list[Any]:
        """Every kernel, in the form a call at ``sizes`` runs (the checkpoint and carried passes
        and the main kernel as ``Run.bidir`` picks them), or as lowered where no sizes are given
        (a layer with complex values: at its fixed sizes)."""
        out = []
        for plan in self.plans(strategy, sizes, pairable):
            at = sizes or self._complex_sizes(plan, sizes)
            if at is None or plan.kernels[-1].strategy != "bidir":
                out += plan.kernels
                continue
            ks = list(plan.kernels)
            if plan.checkpointed:
                ks[0] = self.states_kernel(plan, "checkpoints", at, pairable)
            if len(ks) - plan.checkpointed == 2:
                ks[-2] = self.states_kernel(plan, "carried", at, pairable)
            ks[-1] = self.main_kernel(plan, at)
            out += ks
        return out


class _MatrixPart(CompiledLayer):
    """The matrix scans of a backward, each a pair of matrix-form kernels, and the decay's
    gradient (its kernel reads two of their chunk states); float32 results (16-bit ones where
    ``results_in_products_dtype`` says: see jit). Those named in ``exact`` from float32-accurate
    products (tf32x3) whatever the inputs' dtype; the others from products at the inputs'
    precision, where ``matrix_exact`` says."""

    defines_op = False
    out_dtype = CompiledBackward.out_dtype  # float32, like every backward's
    states_in_products_dtype = True  # chunk states of 16-bit products: half the bytes (see jit)

    # where 16-bit products ran clean (see MatrixBackward): the result's dim at least this,
    # the other state dim at most this
    LOW_MIN_RESULT, LOW_MAX_OTHER = 33, 256

    def __init__(self, layer: Layer, exact: frozenset[str], low_where_clean: bool = False, **kwargs: Any) -> None:
        super().__init__(layer, **kwargs)
        self.exact = exact
        self.low_where_clean = low_where_clean

    def matrix_exact(self, group: Any, shape: tuple[int, int] | None = None) -> bool:
        """Float32-accurate products for the scan of ``group``: one named in ``exact``, and,
        with ``low_where_clean``, at a call (``shape``: the sizes of its result's own dim and of
        the state's other dim) one outside the shapes measured clean (see MatrixBackward)."""
        if any(name in self.exact for name, v in self.graph.outputs if v in group.stores):
            return True
        if not self.low_where_clean or shape is None:
            return False
        result, other = shape
        return result < self.LOW_MIN_RESULT or other > self.LOW_MAX_OTHER


class MatrixBackward:
    """The backward of a layer whose scan has the matrix form (``form_matrix_scans``): derived
    from the matrix scan, it holds four more (``autodiff.matrix_vjp``: the outputs recomputed,
    two reverse ones, one along the other state dim), each run as the matrix form's kernel pair
    on tensor cores with its elementwise operands recomputed, and the decay's gradient
    (``matrix_scan_dl``: one kernel per chunk reading the chunk states of the scan and of its
    cotangent, which two of those store); they store their [heads, L, P], [heads, L, N] or
    [heads, L] results in float32 (in the inputs' 16-bit dtype where the scan's products are
    16-bit and only the rest reads the result), and the rest of the backward (elementwise chain rule, sums
    over heads of a group, batch and time) is a backward like any other (``CompiledBackward``)
    reading them as arguments. No [B, L, ..., N, P] value is stored. Called like
    ``CompiledBackward``.

    Accuracy: the decay's gradient sums, for each step i, the pairs of steps s < i <= t that it
    joins, each term a product of values the forward has, so nothing cancels and every scan may
    take 16-bit products (until session 15 it was a running sum of differences, ``sum_{t >= i}
    (dy[t] . y[t] - v[t] . dv[t])``, whose terms mostly cancel: those scans needed float32-
    accurate products, and float32 inputs erred 7.9e-4 at L 8192 against 1.4e-6 for the
    recurrent backward; bench/NOTES.md). Float32 inputs and calls longer than ``MAX_STEPS``
    still run the recurrent backward (``CompiledBackward``) until the new form is measured
    there; 16-bit inputs run this.
    """

    MAX_STEPS = 8192

    def __init__(self, layer: Layer, forward: CompiledLayer | None = None, verify: bool = False,
                 block_t: int | None = None, sub: int | None = None, low_precision: bool | None = None,
                 dl_from_sums: bool = True, rest_time_tiles: bool = False) -> None:
        from ssmc.dsl.trace import ArgSpec
        from ssmc.ir.node import Node
        from ssmc.passes import run_passes
        from ssmc.passes.base import rewrite
        from ssmc.passes.matrix_scans import MATRIX_DL, MATRIX_OPS, FuseMatrixScans

        forward = forward or CompiledLayer(layer)
        self.forward, self.recurrent = forward, None
        self.force = False  # every call through the matrix scans (tests)
        full = backward_layer(layer, matrix=True)
        g = run_passes(full.graph, (Canonicalize(), CSE(), DCE()), verify_each=verify)
        self.graph, self.deterministic = g, False
        mnodes = [n for n in topo_order([v for _, v in g.outputs]) if n.op in MATRIX_OPS or n.op == MATRIX_DL]
        if not mnodes:
            raise LoweringError(f"{layer.name}: no scan has the matrix form; use CompiledBackward")
        names = {n: f"mx{i}" for i, n in enumerate(mnodes)}
        # results a running sum over time adds up would need float32-accurate products (a sum
        # of differences that cancel); the decay's gradient is its own kernel now (pairs of
        # states: autodiff's matrix_scan_dl), so no matrix scan's result is one
        summed = {x for n in g.nodes if n.op == "scan" for x in topo_order(list(n.inputs))}
        self.summed = frozenset(names[n] for n in mnodes if n in summed)
        # 16-bit products otherwise, where they were seen clean: Triton 3.6.0 compiled dk's
        # outputs kernel (PREC bf16) into one that faults with an illegal shared/local address
        # (compute-sanitizer on an H100, bench/NOTES.md "2026-11-24 (9)") where its result's
        # blocks are narrower than 64 against a state dim of 64 or more (Mamba-2 at N 32 with
        # P 64 or 128; with a conv fused, at N 16); dk's kernel at P 64 with N 48, 64, 96, 128,
        # 256 and at N 32 with P 32 ran clean, and the forward's outputs kernel (the same code,
        # 16-bit, results along P in blocks of 64 against N whole) runs at P 64 with N up to 256
        # in every bf16 forward. So by default (``low_precision`` None) 16-bit products where the
        # result dim is 33 or more (blocks of 64) (_MatrixPart.LOW_*); True: everywhere; False:
        # never (float32-accurate products, tf32x3 or bf16 splits, in every matrix kernel).
        self.exact = frozenset(names.values()) if low_precision is False else self.summed
        part = g.replace(name=f"{g.name}_matrix", outputs=tuple((names[n], n) for n in mnodes),
                         nodes=tuple(topo_order(mnodes)), groups=None)
        self.part = _MatrixPart(Layer.from_graph(part, full.specs, full.optional, full.fixed_sizes), self.exact,
                                low_precision is None, strategy="matrix", passes=(FuseMatrixScans(),), verify=verify, block_t=block_t)
        self.part.options["sub"] = sub
        # the decay gradient's per-step sums with the entry / exit states from the dq and dk
        # kernels (lower_matrix.with_sides): two of its four products per chunk and head gone.
        # H100, Mamba-2 fwd+bwd B8 L2048 H32 P64 N128 bf16 (bench/NOTES.md, session 20): the
        # decay gradient 415 -> 350 us, the dB / dC kernels +20 / +5, all kernels 2748 -> 2683 us
        self.part.dl_from_sums = dl_from_sums
        self.layer = full  # the backward as a layer: what tests interpret
        margs = {}
        for n in mnodes:
            attrs = {"name": names[n], "kind": "input", "dims": n.dims, "layout": n.dims, "optional": False, "init": None}
            margs[n] = Node("arg", (), n.dims, n.dtype, tuple(attrs.items()))
        rest = rewrite(g, lambda n: margs.get(n))
        # gradients that are matrix scans' results (an initial state's) come from the part as they are
        self.direct = {k: v.attr("name") for k, v in rest.outputs if v.op == "arg" and v in margs.values()}
        outs = tuple((k, v) for k, v in rest.outputs if k not in self.direct)
        self.rest = None
        self.rest_reads: frozenset[str] = frozenset()  # the part's results the rest reads
        self.rest_args: frozenset[str] = frozenset()  # the arguments the rest reads
        if outs:
            live = set(topo_order([v for _, v in outs]))
            read = [a for a in margs.values() if a in live]
            self.rest_reads = frozenset(a.attr("name") for a in read)
            self.rest_args = frozenset(n.attr("name") for n in live if n.op == "arg")
            rest = rest.replace(args=tuple(g.args) + tuple(read), outputs=outs, nodes=tuple(topo_order([v for _, v in outs])),
                                groups=None)
            specs = dict(full.specs)
            specs.update({names[n]: ArgSpec("input", n.dims) for n in mnodes if names[n] in self.rest_reads})
            # per head, both state dims held whole in a program: the sums over them stay
            # inside it; the last head dim is tiled
            at = mnodes[0].attr_dict
            heads = tuple(d for d in at["full_dims"] if d not in (at["axis"], at["kdim"], at["vdim"]))
            whole = tuple(d for d in at["full_dims"] if d in (at["kdim"], at["vdim"]))
            layout = (heads[:-1], heads[-1] if heads else None, whole)
            # elementwise work and sums only (no scan left: Mamba-2's): 1 warp on a [P, 2 heads]
            # tile a step. Timed on an H100 (Mamba-2 fwd+bwd, B8 L2048 H32 P64 N128, bf16; NOTES
            # session 17), this kernel alone, (heads, warps): (2, 1) 371 us, (1, 1) 419, (2, 2)
            # 489, (1, 2) 618, (2, 4) 669, (4, 4) 706, (4, 8) 878, (2, 8) 1558, (4, 2) 1646,
            # (1, 4) 81569 (a layout that replicates), the backward's default (16, 1) 11033
            # ``rest_time_tiles``: its steps a tile of BLOCK_T at a time (Kernel.time_tile), time an
            # axis of every value: [BLOCK_T, P, 2 heads] at 4 warps, the sums over P once a tile;
            # 1.9x slower on an H100 (722 against 382 us, bench/NOTES.md session 21), so off
            plain = {} if any(n.op == "scan" for n in rest.nodes) else dict(block=2, num_warps=4 if rest_time_tiles else 1)
            self.rest = CompiledBackward(layer, forward, verify=verify, layout=layout, split_time=True,
                                         graph_layer=Layer.from_graph(rest, specs, full.optional, full.fixed_sizes),
                                         time_tiles=rest_time_tiles, **plain)
        # a result from 16-bit products that only the rest reads: stored in 16 bits (its products
        # rounded it to that precision already; half the bytes written and read back)
        self.part.results_in_products_dtype = self.rest_reads - set(self.direct.values())

    def result_precision(self, input_dtype: str, sizes: dict[str, int] | None = None) -> dict[str, str]:
        """The gradients whose kernels multiply in ``input_dtype`` ("bf16", "f16"; float32 results
        nonetheless): those computed from matrix scans that need no float32 accuracy (their
        products are 16-bit on a GPU; at ``sizes``, where they are), to be held to that dtype's
        tolerance."""
        if input_dtype == "f32":
            return {}
        part = self.part.graph

        def shape(v: Any) -> tuple[int, int] | None:  # a matrix scan's result dim and other state dim
            return (sizes[v.attr("vdim")], sizes[v.attr("kdim")]) if sizes is not None else None

        low = {k for g in part.groups or () for k, v in part.outputs if v in g.stores
               and not self.part.matrix_exact(g, shape(v))}
        out = {k: input_dtype for k, name in self.direct.items() if name in low}
        for name, v in self.rest.graph.outputs if self.rest is not None else ():
            if any(n.op == "arg" and n.attr("name") in low for n in topo_order([v])):
                out[name] = input_dtype
        return out

    def recurrent_for(self, cu_seqlens: Any, kwargs: dict[str, Any]) -> bool:
        """Whether this call runs the recurrent backward instead (see the class's accuracy note)."""
        import torch

        if self.force:
            return False
        layer = self.forward.layer
        axis = self.forward.graph.scan_axis()
        given = [(kwargs[k], s) for k, s in layer.specs.items() if s.kind == "input" and kwargs.get(k) is not None]
        if given[0][0].dtype == torch.float32:
            return True
        if cu_seqlens is not None:
            return int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) > self.MAX_STEPS
        return any(t.shape[s.layout.index(axis)] > self.MAX_STEPS for t, s in given if axis in s.layout)

    def raw_call(self, cu_seqlens: Any = None, grads_as_inputs: bool = False, **kwargs: Any) -> dict[str, Any]:
        if self.recurrent_for(cu_seqlens, kwargs):
            if self.recurrent is None:
                self.recurrent = CompiledBackward(self.forward.layer, forward=self.forward)
            self.recurrent.deterministic = self.deterministic
            return self.recurrent.raw_call(cu_seqlens=cu_seqlens, grads_as_inputs=grads_as_inputs, **kwargs)
        return self.matrix_call(cu_seqlens, grads_as_inputs, **kwargs)

    def matrix_call(self, cu_seqlens: Any = None, grads_as_inputs: bool = False, **kwargs: Any) -> dict[str, Any]:
        """The matrix scans' kernels, then the rest's, whatever the inputs' dtype and length
        (``grads_as_inputs``: the rest's, as ``Run.result_dtype`` says; the matrix scans'
        results returned as gradients, ``direct``, stay float32)."""
        self.part.deterministic = self.deterministic
        mx = self.part.raw_call(cu_seqlens=cu_seqlens, **kwargs)
        res = {}
        if self.rest is not None:
            self.rest.deterministic = self.deterministic
            if cu_seqlens is not None and self.rest.graph.scan_axis() is None:
                # elementwise and sums only (no scan, no conv): a packed batch is one row to it;
                # per-sequence values (initial states: optional) it does not read are left out
                optional = self.rest.layer.optional
                kwargs, cu_seqlens = {k: v for k, v in kwargs.items() if k in self.rest_args or k not in optional}, None
            reads = {k: v for k, v in mx.items() if k in self.rest_reads}
            res = self.rest.raw_call(cu_seqlens=cu_seqlens, grads_as_inputs=grads_as_inputs, **kwargs, **reads)
        for k, name in self.direct.items():
            res[k] = mx[name]
        return res

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.raw_call(*args, **kwargs)

    def sources(self) -> list[str]:
        """The generated source of each kernel: the matrix scans' pairs, then the rest's."""
        return self.part.sources("matrix") + (self.rest.sources("bidir") if self.rest is not None else [])


class _Saved(CompiledLayer):
    """A forward pass storing values a ``MultiBackward`` part reads, in float32."""

    defines_op = False
    out_dtype = CompiledBackward.out_dtype


class MultiBackward:
    """The backward of a layer with several recurrences side by side (a bidirectional layer's
    forward and reverse scans): autodiff's parts (``backward_parts``), one per recurrence, each
    compiled as a one-recurrence backward (its backward scan and the forward scan it recomputes
    in one main kernel, the forward's layout for that recurrence); the gradients are the parts'
    sums. Values of another recurrence that a part needs (``dz`` of a gate after both scans'
    readouts) come from a forward pass run first (``saved``: input-sized values, stored in
    float32; a part that would need another recurrence's states is refused). Called like
    ``CompiledBackward``; ``layer`` is the whole backward, what tests interpret."""

    def __init__(self, layer: Layer, forward: CompiledLayer | None = None, verify: bool = False, **kwargs: Any) -> None:
        from ssmc.autodiff import backward_parts
        from ssmc.dsl.trace import ArgSpec
        from ssmc.ir.node import Graph, Node
        from ssmc.passes import REWRITES, run_passes
        from ssmc.passes.base import rewrite
        from ssmc.passes.fuse import recurrence_key

        forward = forward or CompiledLayer(layer)
        rewritten = run_passes(layer.graph, REWRITES)
        self.layer = backward_layer(layer)
        self.graph = self.layer.graph
        self.deterministic = False
        live = topo_order([v for _, v in rewritten.outputs])
        member = {n: recurrence_key(n) for n in live if n.op in ("scan", "scan_final")}
        forward_nodes = set(live)
        arg_dims = [set(a.dims) for a in rewritten.args]
        saved: dict[Node, Node] = {}  # a value another recurrence's part needs -> its argument
        self.parts: list[CompiledBackward] = []
        self._missing: list[dict[str, list[int]]] = []
        for key, part in backward_parts(rewritten):
            nodes = topo_order([v for _, v in part.outputs])
            other = set()  # forward values downstream of other recurrences that this part reads
            for n in nodes:
                if n in forward_nodes and ((n in member and member[n] != key) or any(i in other for i in n.inputs)):
                    other.add(n)
            users = {i: [n for n in nodes if i in n.inputs] for i in other}
            outs = {v for _, v in part.outputs}
            frontier = [n for n in nodes if n in other and (n in outs or any(u not in other for u in users[n]))]
            for n in frontier:
                if not any(set(n.dims) <= dims for dims in arg_dims):
                    raise LoweringError(
                        f"{layer.name}: the backward through one recurrence needs another's states "
                        f"({list(n.dims)}), not only values of an input's size: not supported yet"
                    )
                if n not in saved:
                    name = f"saved_{len(saved)}"
                    at = {"name": name, "kind": "input", "dims": n.dims, "layout": n.dims, "optional": False, "init": None}
                    saved[n] = Node("arg", (), n.dims, n.dtype, tuple(at.items()))
            if frontier:
                part = rewrite(part, lambda n, f=frozenset(frontier): saved[n] if n in f else None)
                part = part.replace(args=tuple(part.args) + tuple(saved[n] for n in frontier))
            specs = dict(self.layer.specs)
            specs.update({saved[n].attr("name"): ArgSpec("input", n.dims) for n in frontier})
            group = next((g for g in forward.graph.groups or () if any(member.get(n) == key for n in g.nodes)), None)
            layout = layout_of(lower_group(forward.graph, group, "sequential")) if group is not None else None
            self.parts.append(CompiledBackward(layer, forward, verify=verify, layout=layout,
                                               graph_layer=Layer.from_graph(part, specs, self.layer.optional, layer.fixed_sizes),
                                               **kwargs))
            # where each of its gradients lacks a dim the whole one has: a size-1 axis there
            whole = {k: v.dims for k, v in self.graph.outputs}
            self._missing.append({k: [i for i, d in enumerate(whole[k]) if d not in v.dims] for k, v in part.outputs})
        self.saved = None
        if saved:
            outputs = tuple((a.attr("name"), n) for n, a in saved.items())
            g = Graph(name=f"{layer.name}_saved", dim_order=rewritten.dim_order, args=rewritten.args, outputs=outputs,
                      nodes=tuple(topo_order([v for _, v in outputs])), fixed_sizes=rewritten.fixed_sizes)
            self.saved = _Saved(Layer.from_graph(g, layer.specs, layer.optional, layer.fixed_sizes), verify=verify,
                                chunks=kwargs.get("chunks"))

    def raw_call(self, cu_seqlens: Any = None, grads_as_inputs: bool = False, **kwargs: Any) -> dict[str, Any]:
        """``grads_as_inputs`` is accepted and does nothing: the gradients are sums of the parts'
        float32 ones."""
        extra = {}
        if self.saved is not None:
            self.saved.deterministic = self.deterministic
            extra = self.saved.raw_call(cu_seqlens=cu_seqlens, **{k: v for k, v in kwargs.items() if k in self.saved.layer.specs})
        res: dict[str, Any] = {}
        for p, missing in zip(self.parts, self._missing):
            p.deterministic = self.deterministic
            args = {k: v for k, v in {**kwargs, **extra}.items() if k in p.layer.specs}
            for k, g in p.raw_call(cu_seqlens=cu_seqlens, **args).items():
                for i in missing[k]:  # to the whole gradient's dims
                    g = g.unsqueeze(i)
                res[k] = g if k not in res else res[k] + g
        return res

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.raw_call(*args, **kwargs)

    @property
    def stats(self) -> dict[str, int]:
        """The counters of every compiled part (and the saved values' pass) added up."""
        out: dict[str, int] = {}
        for p in self.parts + ([self.saved] if self.saved is not None else []):
            for k, v in p.stats.items():
                out[k] = out.get(k, 0) + v
        return out

    def sources(self, strategy: str = "bidir") -> list[str]:
        """The generated source of each kernel: the saved values' forward pass, then each part's."""
        out = self.saved.sources("chunked") if self.saved is not None else []
        for p in self.parts:
            out += p.sources(strategy)
        return out


class BidirForward(CompiledBackward):
    """The forward of a layer with two recurrences side by side in opposite directions (a
    bidirectional layer) as one main kernel (``strategy="bidir"``): the backward's form, whose
    kernel walks time in the reverse scan's direction and recomputes the forward scan per chunk
    from checkpoints (a states pass), so both directions' values meet in one kernel and only the
    outputs are written. The default is one kernel per direction (the first stores its readout):
    this form computes the forward direction twice (states pass and recompute), which costs
    where exponentials bound the forward (Mamba's); not yet measured against it on a GPU."""

    defines_op = False

    def __init__(self, layer: Layer, forward: CompiledLayer, **kwargs: Any) -> None:
        from ssmc.passes import REWRITES, run_passes
        from ssmc.passes.fuse import recurrence_key

        graph = run_passes(layer.graph, REWRITES)
        scans = {recurrence_key(n): bool(n.attr("reverse")) for n in topo_order([v for _, v in graph.outputs])
                 if n.op in ("scan", "scan_final")}
        if len(scans) != 2 or set(scans.values()) != {False, True}:
            raise LoweringError(
                f"{layer.name}: strategy 'bidir' runs two recurrences in opposite directions in one kernel; "
                f"this layer has {len(scans)} ({', '.join('reverse' if r else 'forward' for r in scans.values()) or 'none'})"
            )
        super().__init__(layer, forward, graph_layer=Layer.from_graph(graph, layer.specs, layer.optional, layer.fixed_sizes),
                         **kwargs)

    def out_dtype(self, first_input_dtype: Any) -> Any:
        return first_input_dtype  # a forward's outputs (final states are float32 anyway)
