"""fuse: group the graph's nodes into kernels.

Each recurrence (a scan and its ``scan_final``, which share operands) becomes one kernel with
every value that depends on it and on no later recurrence (its readout, skip, gate: the
epilogue). Values that depend on no recurrence (the prologue: softplus, discretize, ...) are
recomputed inside every kernel that needs them: they are elementwise, so recomputing is cheaper
than a round trip through memory. A value that depends on several recurrences goes to the
kernel of the last one, which reads the others' values from memory. Outputs that depend on no
recurrence form one pointwise kernel. Every refusal is written into the group's notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ssmc.ir.node import Graph, Group, Node, topo_order
from ssmc.passes.base import Pass


def recurrence_key(n: Node) -> tuple:
    return (n.inputs, n.attrs if n.op == "scan" else tuple(kv for kv in n.attrs if kv[0] not in ("full_dims", "sum_dims")))


@dataclass(frozen=True)
class Fuse(Pass):
    name = "fuse"
    why = "one kernel per recurrence keeps h on chip; only inputs and outputs touch memory"

    def apply(self, graph: Graph) -> Graph:
        live = topo_order([v for _, v in graph.outputs])
        dag = nx.DiGraph()
        for n in live:
            dag.add_node(n)
            for i in n.inputs:
                dag.add_edge(i, n)
        position = {n: k for k, n in enumerate(live)}
        recs: dict[tuple, list[Node]] = {}
        for n in live:
            if n.op in ("scan", "scan_final"):
                recs.setdefault(recurrence_key(n), []).append(n)
        # owner: the recurrence (by first appearance) whose kernel computes the node
        owner: dict[Node, int] = {}
        rec_list = list(recs.values())
        first_pos = [min(position[n] for n in members) for members in rec_list]
        notes: dict[int, list[str]] = {k: [] for k in range(len(rec_list))}
        for k, members in enumerate(rec_list):
            reach = set(members)
            for m in members:
                reach |= nx.descendants(dag, m)
            for n in sorted(reach, key=position.__getitem__):  # in graph order: notes the same every run
                if n not in owner or first_pos[owner[n]] < first_pos[k]:
                    if n in owner:
                        notes[k].append(
                            f"{n.op} {list(n.dims)} reads recurrences of kernels "
                            f"{owner[n]} and {k}: computed in the later one"
                        )
                    owner[n] = k
        groups: list[Group] = []
        members_of: dict[int, list[Node]] = {k: [] for k in range(len(rec_list))}
        for n in live:
            if n in owner:
                members_of[owner[n]].append(n)
        pointwise = [v for _, v in graph.outputs if v not in owner and v.op != "arg"]
        for k in range(len(rec_list)):
            groups.append(self._group(f"k{k}", members_of[k], owner, k, notes[k]))
        if pointwise:
            groups.append(self._group(f"k{len(rec_list)}", pointwise, owner, None, []))
        for k, g in enumerate(groups):
            others = [s.name for s in groups if s is not g and set(s.nodes) & set(g.loads)]
            if others:
                notes_k = list(g.notes) + [f"reads values stored by {', '.join(others)}"]
                groups[k] = Group(g.name, g.nodes, g.loads, g.stores, tuple(notes_k))
        # stores: outputs, plus values another group loads
        loaded = {n for g in groups for n in g.loads}
        outs = {v for _, v in graph.outputs}
        final = []
        pointwise_name = f"k{len(rec_list)}"
        for g in groups:
            # a value is stored by the kernel that owns it: its recurrence's, or (recurrence-free
            # outputs, recomputed wherever needed) the pointwise kernel's, once
            def mine(n: Node, g: Group = g) -> bool:
                return g.name == (f"k{owner[n]}" if n in owner else pointwise_name)

            stores = tuple(n for n in g.nodes if (n in outs or n in loaded) and mine(n))
            final.append(Group(g.name, g.nodes, g.loads, stores, g.notes))
        return graph.replace(groups=tuple(final))

    def _group(self, name, seeds, owner, k, notes) -> Group:
        """The seeds plus the recurrence-free values they need (recomputed here); values
        owned by other kernels are read from memory."""

        def foreign(n: Node) -> bool:
            return n in owner and owner[n] != k

        nodes = topo_order(seeds, stop=foreign)
        loads = list(dict.fromkeys(i for n in nodes for i in n.inputs if foreign(i)))
        return Group(name, tuple(nodes), tuple(loads), (), tuple(notes))
