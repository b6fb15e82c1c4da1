"""Export: layers as torch modules that train (generated backward kernels) and generate (step,
decode, an inference cache), and full Mamba-1 / Mamba-2 mixer blocks around them."""

from ssmc.export.blocks import Mamba2Mixer, MambaMixer
from ssmc.export.cache import InferenceCache
from ssmc.export.module import SSMModule, to_module

__all__ = ["InferenceCache", "Mamba2Mixer", "MambaMixer", "SSMModule", "to_module"]
