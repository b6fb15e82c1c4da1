"""The op registry (``REGISTRY``), its op groups, and the NumPy interpreter."""

from ssmc.ops import conv, elementwise, structural  # noqa: F401  (register the ops)
from ssmc.ops.registry import ELEMENTWISE, GROUPS, REDUCE, REGISTRY, SCAN, STRUCTURAL, OpDef, get

__all__ = ["ELEMENTWISE", "GROUPS", "REDUCE", "REGISTRY", "SCAN", "STRUCTURAL", "OpDef", "get"]
