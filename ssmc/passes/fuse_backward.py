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
from ssmc.ops.conv import CONV_FAMILY, tensor_operands
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

        def crosses(i: Node, n: Node, k: int) -> bool:
            """Whether ``n`` reads operand ``i`` (its k-th) from a kernel before its own: a sum
            across programs, or a value computed here that a conv op reads at other steps."""
            if self.partial(i) and not self.partial(n):
                return True
            return n.op in CONV_FAMILY and k in tensor_operands(n) and i.op not in ("arg", "const")

        # level: how many such boundaries lie upstream (a chain of sums counts once)
        level: dict[Node, int] = {}
        for n in live:
            level[n] = max((level[i] + crosses(i, n, k) for k, i in enumerate(n.inputs)), default=0)
        outs = {v for _, v in graph.outputs}
        crossing = {i for n in live for k, i in enumerate(n.inputs) if crosses(i, n, k)}
        # a later kernel recomputes what it needs from earlier levels, except values of the
        # recurrence: those it reads from memory where they are input-sized (a conv's cotangent
        # read at other steps forces a later kernel that may need them); state-sized ones refuse
        recurrent: set[Node] = set()
        for n in live:
            if n.op in ("scan", "scan_final", "prev") or any(i in recurrent for i in n.inputs):
                recurrent.add(n)
        sized = {a.dims for a in graph.args}
        for n in live:
            for i in n.inputs:
                if level[i] < level[n] and i in recurrent and i.dims in sized:
                    crossing.add(i)
        groups = []
        for k in range(max(level.values(), default=0) + 1):
            # a later level reads the sums of earlier ones; the rest it needs, it recomputes
            seeds = [n for n in live if level[n] == k and (n in outs or n in crossing)]
            nodes = topo_order(seeds, stop=lambda n, k=k: level[n] < k and n in crossing)
            if k > 0:
                for n in nodes:
                    if n.op in ("scan", "scan_final", "prev"):
                        raise LoweringError(
                            f"{graph.name}: a value after a sum across programs needs the recurrence; "
                            "the backward cannot be fused"
                        )
            loads = tuple(dict.fromkeys(i for n in nodes for i in n.inputs if level[i] < k and i in crossing))
            stores = tuple(n for n in nodes if level[n] == k and (n in outs or n in crossing))
            notes = ["reads sums across programs stored by earlier kernels"] if loads else []
            if k == 0 and sum(n.op == "scan" for n in nodes) > 1:
                notes.append("the forward scan is recomputed per chunk from checkpoints")
            groups.append(Group(f"k{k}", tuple(nodes), loads, stores, tuple(notes)))
        return graph.replace(groups=tuple(groups))
