"""The IR: immutable nodes with named dims and symbolic sizes, the layer graph, its printer
and verifier. Imports neither torch nor triton."""

from ssmc.ir.dims import Dims, parse_dims, size_symbol
from ssmc.ir.node import Graph, Group, Node, topo_order

__all__ = ["Dims", "Graph", "Group", "Node", "parse_dims", "size_symbol", "topo_order"]
