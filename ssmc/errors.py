"""Errors a user can act on. Every error names the layer and, where there is one, the argument
and the dim; no bare assert reaches a user."""

from __future__ import annotations


class SsmcError(Exception):
    """Base class of every error ssmc raises on purpose."""


class DefinitionError(SsmcError):
    """The layer's definition is not valid (bad dims, unknown op, wrong operand)."""


class ArgumentError(SsmcError):
    """A call passed arguments the layer cannot take (missing, extra, wrong rank/size/dtype)."""


class LoweringError(SsmcError):
    """The backend cannot lower (part of) a layer; the message says what and why."""


class VerificationError(SsmcError):
    """The IR broke an invariant (a pass or the tracer has a bug)."""
