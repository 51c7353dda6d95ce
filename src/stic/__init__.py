"""stic: semantic text-image coding at ultra-low bitrates."""

from stic import _light_compressai
from stic.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError, SticError

_light_compressai.install()  # CompressAI without its point-cloud dependencies (~4 s per process)

__version__ = "0.5.0"

__all__ = [
    "FormatError",
    "InputError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "SticError",
    "__version__",
]
