"""Passes over the IR and the default pipeline."""

from ssmc.passes.base import Pass
from ssmc.passes.canonicalize import Canonicalize
from ssmc.passes.cse import CSE
from ssmc.passes.dce import DCE
from ssmc.passes.expand_discretize import ExpandDiscretize
from ssmc.passes.fuse import Fuse
from ssmc.passes.manager import DEFAULT_PIPELINE, REWRITES, TraceStep, pipeline_name, run_passes
from ssmc.passes.strength import FoldExp2, Reassociate

__all__ = [
    "CSE", "DCE", "DEFAULT_PIPELINE", "REWRITES", "Canonicalize", "ExpandDiscretize", "FoldExp2", "Fuse", "Reassociate", "Pass",
    "TraceStep", "pipeline_name", "run_passes",
]
