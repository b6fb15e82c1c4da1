"""Backends: code generators from the fused IR. ``triton`` is the one there is."""
