"""The pass manager and the default pipeline (one list, one line of why per step)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ssmc.ir.node import Graph
from ssmc.ir.printer import format_graph
from ssmc.ops.verify import verify
from ssmc.passes.base import Pass
from ssmc.passes.canonicalize import Canonicalize
from ssmc.passes.cse import CSE
from ssmc.passes.dce import DCE
from ssmc.passes.expand_discretize import ExpandDiscretize
from ssmc.passes.fuse import Fuse
from ssmc.passes.strength import FoldExp2, Reassociate

DEFAULT_PIPELINE: tuple[Pass, ...] = (
    DCE(),  # drop what no output uses before anything looks at it
    Canonicalize(),  # gate -> mul/act, fold constants, drop identities
    ExpandDiscretize(),  # discretize -> elementwise math (stable exact ZOH)
    Canonicalize(),  # clean up what expansion produced (x*1 from Euler, constants)
    Reassociate(),  # low-rank factors first: (delta*x)*B, not (delta*B)*x
    FoldExp2(),  # exp(delta*A) -> exp2(delta*(A*log2e)): one multiply less per element
    Canonicalize(),  # fold the constants those introduced
    CSE(),  # share delta*A and friends
    DCE(),  # drop what rewriting orphaned
    Fuse(),  # one kernel per recurrence, prologue recomputed, epilogue fused
)
# the rewrites without fusion: the graph a backward is derived from (and other plans made of it)
REWRITES: tuple[Pass, ...] = tuple(p for p in DEFAULT_PIPELINE if p.name != "fuse")


@dataclass(frozen=True)
class TraceStep:
    name: str
    before: str
    after: str


def pipeline_name(passes: Sequence[Pass] = DEFAULT_PIPELINE) -> str:
    return ",".join(p.name for p in passes)


def run_passes(
    graph: Graph,
    passes: Sequence[Pass] = DEFAULT_PIPELINE,
    verify_each: bool = False,
    trace: list[TraceStep] | None = None,
) -> Graph:
    """Run ``passes`` in order. ``verify_each`` runs the verifier after every pass (tests do);
    ``trace`` collects the IR text before and after each pass."""
    if verify_each:
        verify(graph)
    for p in passes:
        before = format_graph(graph) if trace is not None else ""
        graph = p.apply(graph)
        if verify_each:
            verify(graph)
        if trace is not None:
            trace.append(TraceStep(p.name, before, format_graph(graph)))
    return graph
