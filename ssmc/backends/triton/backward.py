"""Compiling a layer's backward: the autodiff graph, fused by ``fuse_backward``, lowered with
the forward's layout (the same dims split among programs), run by the same JIT."""

from __future__ import annotations

from typing import Any

from ssmc.autodiff import backward_layer
from ssmc.backends.triton.jit import CompiledLayer, GroupPlan
from ssmc.backends.triton.lower import layout_of, lower_group
from ssmc.backends.triton.lower_backward import lower_bidir, recompute_group
from ssmc.dsl.layer import Layer
from ssmc.passes import CSE, DCE, Canonicalize
from ssmc.passes.fuse_backward import FuseBackward


def forward_layout(forward: CompiledLayer) -> tuple:
    """(grid, tiled, whole dims) of the forward's recurrence kernel (else its first kernel)."""
    groups = forward.graph.groups or ()
    g = next((g for g in groups if any(n.op in ("scan", "scan_final") for n in g.nodes)), groups[0])
    return layout_of(lower_group(forward.graph, g, "sequential"))


class CompiledBackward(CompiledLayer):
    """The backward of ``layer`` as a compiled layer: called with the forward's arguments and
    ``grad_<output>`` cotangents (optional), it returns float32 ``grad_<argument>`` tensors
    (dims in canonical order; an argument's gradient may lack dims it is constant along)."""

    defines_op = False  # called from the forward's op (its autograd formula), never on its own

    def __init__(self, layer: Layer, forward: CompiledLayer | None = None, block_t: int | None = None,
                 block: int | None = None, num_warps: int | None = None, verify: bool = False,
                 unroll: int | None = None, hoist_loads: bool = True, sub: int | None = None,
                 prefetch: bool = True) -> None:
        forward = forward or CompiledLayer(layer)
        self.layout = forward_layout(forward)
        grid, tiled, _ = self.layout
        partial = tuple(grid) + ((tiled,) if tiled else ())
        passes = (Canonicalize(), CSE(), DCE(), FuseBackward(partial))
        super().__init__(backward_layer(layer), block_t=block_t, block=block, num_warps=num_warps,
                         verify=verify, passes=passes)
        # phase B's loads of a chunk issued before its work: measured on an H100 (bench/NOTES.md,
        # 2026-11-24) 11-14 % faster for Mamba-1's backward and 21 % for HGRN's than in place
        # chunks of 2 steps where each channel holds a whole dim of state (Mamba-1: fewer live
        # registers), of 4 where it holds one element (HGRN: 2.33 -> 2.10 ms, H100, NOTES.md)
        # the next chunk's loads issued during this chunk (``prefetch``): 1.25-1.30x for Mamba-1's
        # backward at the bench shapes, 1.45x for HGRN's (H100, NOTES.md)
        if unroll is None:
            unroll = 2 if self.layout[2] else 4
        self.bidir_unroll, self.hoist_loads, self.prefetch = unroll, hoist_loads, prefetch
        self.options["sub"] = sub
        self.forward_layer = layer

    def out_dtype(self, first_input_dtype: Any) -> Any:
        import torch

        return torch.float32

    def plans(self, strategy: str, sizes=None, pairable=frozenset()) -> list[GroupPlan]:
        if "bidir" not in self._plans:
            out = []
            grid, tiled, _ = self.layout
            split, axis = set(grid) | {tiled}, self.graph.scan_axis()
            for g in self.graph.groups or ():
                if g.name == "k0":
                    ks = []
                    rg = recompute_group(g)
                    if rg is not None:
                        ks.append(lower_group(self.graph, rg, "chunked", self.unroll, "states", layout=self.layout))
                    ks.append(lower_bidir(self.graph, g, self.layout, self.bidir_unroll, self.hoist_loads, self.prefetch))
                    out.append(GroupPlan(tuple(ks), rg is not None, g))
                elif any(n.op == "sum" and (n.attr("dim") in split or n.attr("dim") == axis) for n in g.nodes):
                    # sums over time or across programs: the bidir loop (no scan in it)
                    out.append(GroupPlan((lower_bidir(self.graph, g, self.layout, self.bidir_unroll, self.hoist_loads, self.prefetch),), False, g))
                else:
                    out.append(GroupPlan((lower_group(self.graph, g, "sequential", self.unroll),), False, g))
            self._plans["bidir"] = out
        return self._plans["bidir"]
