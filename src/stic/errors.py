"""Error types: every failure stic expects is one of these, with a message naming the problem.

The CLI turns them into a one-line message and a non-zero exit code; anything else is a bug.
"""


class SticError(Exception):
    """Base class of every error stic raises on purpose."""


class FormatError(SticError):
    """A .stic file (or a section payload) is corrupt, truncated or of an unknown version."""


class ModelMismatchError(SticError):
    """A file was made with other models than the ones loaded to decode it."""


class ModelNotFoundError(SticError):
    """Weights for a named model cannot be found (not installed, not cached, not downloadable)."""


class InputError(SticError):
    """User input (an image, a text, an option) cannot be used; the message says why."""
