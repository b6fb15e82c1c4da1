"""Autodiff: the backward of a layer, derived from its IR as another IR graph.

``backward_layer(layer)`` is a layer (a ``Layer`` built from a graph, not traced) that takes the
forward's arguments plus one cotangent ``grad_<output>`` per output and returns
``grad_<argument>`` for every argument the outputs depend on. It is interpreted by the NumPy
interpreter (its meaning) and compiled by the same backend as any layer.
"""

from ssmc.autodiff.grad import backward_graph, backward_layer, backward_parts

__all__ = ["backward_graph", "backward_layer", "backward_parts"]
