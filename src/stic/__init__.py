"""stic: semantic text-image coding at ultra-low bitrates."""

from stic.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError, SticError

__version__ = "0.2.0"

__all__ = [
    "FormatError",
    "InputError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "SticError",
    "__version__",
]
