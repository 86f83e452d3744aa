"""Engine exceptions: each message says what the caller should change."""

from __future__ import annotations


class EngineError(Exception):
    """Base class for every error the engine raises on purpose."""


class ModelNotFoundError(EngineError):
    """A model name or path could not be resolved to weights on this machine."""


class UnknownHookError(EngineError, KeyError):
    """A hook name that the loaded model does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InterventionError(EngineError, ValueError):
    """An intervention that cannot be applied (shape, positions, heads, missing source)."""


class TokenizationError(EngineError, ValueError):
    """Text that does not tokenise the way the caller needs (e.g. an answer that is not one token)."""


class AlignmentError(EngineError, ValueError):
    """Prompt pairs whose positions cannot be matched unambiguously."""


class UnsupportedArchitectureError(EngineError):
    """A model whose architecture has no hook adapter yet."""


class ComponentError(EngineError, ValueError):
    """A component ('L12H3', 'MLP7', 'ATTN7') that does not name a part of the loaded model."""


class MethodError(EngineError, ValueError):
    """Inputs a method cannot use as given (e.g. clean and corrupted prompts that score the same)."""
