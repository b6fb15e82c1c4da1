"""ssmc: a compiler for selective state-space models.

Write a layer as a Python function over named dims; ssmc traces it into an IR, runs passes,
and generates Triton kernels that keep the recurrent state on chip. The NumPy interpreter of the
IR defines what every layer means.
"""

from ssmc.dsl import *  # noqa: F401,F403
from ssmc.dsl import __all__ as _dsl_all
from ssmc.errors import ArgumentError, DefinitionError, LoweringError, SsmcError

__version__ = "0.1.0"


def compile(layer, **options):  # noqa: A001  (ssmc.compile, like torch.compile)
    """Compile ``layer`` to Triton kernels; returns a callable on torch tensors."""
    from ssmc.backends.triton.jit import CompiledLayer

    return CompiledLayer(layer, **options)


def fuzz(layer, examples: int = 100, seed: int = 0, **options):
    """Differential-test ``layer``'s compiled kernels against the interpreter on random cases;
    returns a report (``.ok``, ``.failure`` with a reproduction snippet)."""
    from ssmc.testing.fuzz import fuzz as _fuzz

    return _fuzz(layer, examples, seed, **options)


def to_module(layer, sizes, seed: int = 0, **options):
    """``layer`` as a ``torch.nn.Module`` (parameters under their DSL names; forward only)."""
    from ssmc.export import to_module as _to_module

    return _to_module(layer, sizes, seed, **options)


def warmup(layer, dtypes=("bf16",), sizes=(), **options):
    """Generate, cache and (on a GPU) compile every kernel variant for these dtypes and sizes."""
    from ssmc.backends.triton.warmup import warmup as _warmup

    return _warmup(layer, dtypes, sizes, **options)


__all__ = [*_dsl_all, "fuzz", "to_module", "warmup", "ArgumentError", "DefinitionError", "LoweringError", "SsmcError", "compile"]
