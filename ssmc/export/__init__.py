"""Export: layers as torch modules (forward now; autograd, decode and torch.compile next)."""

from ssmc.export.cache import InferenceCache
from ssmc.export.module import SSMModule, to_module

__all__ = ["InferenceCache", "SSMModule", "to_module"]
