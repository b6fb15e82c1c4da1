"""Export: layers as torch modules (forward now; autograd, decode and torch.compile next)."""

from ssmc.export.module import SSMModule, to_module

__all__ = ["SSMModule", "to_module"]
