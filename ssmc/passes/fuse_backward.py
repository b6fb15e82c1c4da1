"""fuse_backward: the fusion plan of a backward graph (made by ``ssmc.autodiff``).

A backward holds the reverse scan of the cotangents and the forward scan it needs the states
of (``prev`` of it: ``da = G * h[t-1]``). Both go into one kernel, which walks time tiles in
the reverse scan's direction and restarts the forward scan in each tile from a checkpoint
(the forward state at the tile's start, from the chunk-states pass): no [B, L, D, N] value is
stored. Every other value goes there too, except what follows a sum across programs (over the
dims the kernel splits among programs: a parameter's gradient summed over the batch, ``dB``
summed over channels): those sums are added into memory by every program, so what reads them
runs in a second, small kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssmc.errors import LoweringError
from ssmc.ir.node import Graph, Group, Node, topo_order
from ssmc.passes.base import Pass


@dataclass(frozen=True)
class FuseBackward(Pass):
    name = "fuse_backward"
    why = "the reverse scan and the forward scan it recomputes share one kernel; sums across programs end it"

    partial_dims: tuple[str, ...] = ()  # dims the kernel splits among programs (grid and tiled)

    def partial(self, n: Node) -> bool:
        return n.op == "sum" and n.attr("dim") in self.partial_dims

    def apply(self, graph: Graph) -> Graph:
        live = topo_order([v for _, v in graph.outputs])
        after: set[Node] = set()
        for n in live:
            if any(i in after for i in n.inputs) or (not self.partial(n) and any(self.partial(i) for i in n.inputs)):
                after.add(n)
        main = [n for n in live if n not in after]
        outs = {v for _, v in graph.outputs}
        groups = []
        read_after = list(dict.fromkeys(i for n in live if n in after for i in n.inputs if self.partial(i) and i not in after))
        stores = tuple(dict.fromkeys([n for n in main if n in outs] + read_after))
        notes = ["the forward scan is recomputed per time tile from chunk checkpoints"] if sum(
            n.op == "scan" for n in main
        ) > 1 else []
        groups.append(Group("k0", tuple(main), (), stores, tuple(notes)))
        if after:
            seeds = [n for n in live if n in after and n in outs]
            nodes = topo_order(seeds, stop=lambda n: n in read_after)
            for n in nodes:
                if n.op in ("scan", "scan_final", "prev"):
                    raise LoweringError(
                        f"{graph.name}: a value after a sum across programs needs the recurrence; "
                        "the backward cannot be fused"
                    )
            loads = tuple(i for i in read_after if any(i in n.inputs for n in nodes))
            groups.append(
                Group("k1", tuple(nodes), loads, tuple(n for n in nodes if n in outs), ("reads sums across programs stored by k0",))
            )
        return graph.replace(groups=tuple(groups))
