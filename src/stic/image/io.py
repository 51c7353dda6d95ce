"""Reading any common image file into the one form the codecs take (HxWx3 uint8 RGB), and
writing PNGs atomically.

Decisions (documented in the README): greyscale is coded as RGB and recorded as grey (stic.picture),
so it decodes grey; alpha is dropped with a warning;
16-bit samples are scaled to 8 bits; palette and CMYK images are converted; EXIF orientation is
applied. The size limits are checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stic.container import write_bytes_atomic
from stic.errors import InputError

#: Largest image stic codes (width x height). Larger inputs are refused before decoding, so a
#: huge or malicious header cannot exhaust memory; 4096x4096 codes in well under 8 GB.
MAX_PIXELS = 4096 * 4096
#: Longest side stic codes. The codec pads each side to a multiple of 64, so a 1-pixel strip of
#: MAX_PIXELS would cost 64x its size; with this limit padding at most about doubles the work.
MAX_SIDE = 16384

#: Largest photo stic reads when told to shrink it (`max_side`): a 200 MP phone photo; JPEGs are
#: decoded at a reduced scale (libjpeg's DCT scaling), so memory stays near the shrunk size.
MAX_SOURCE_PIXELS = 200_000_000

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
ORIENTATION = 0x0112  #: the EXIF tag; values 5-8 swap width and height
_TRANSPOSING = {5, 6, 7, 8}


def load_image(source: str | os.PathLike | bytes, max_side: int | None = None) -> np.ndarray:
    """Return an HxWx3 uint8 RGB array from a path or the file's bytes; with `max_side`, shrunk
    (Lanczos) so that its longer side is at most that many pixels, and larger photos accepted."""
    return read_image(source, max_side)[0]


def read_image(
    source: str | os.PathLike | bytes, max_side: int | None = None, name: str | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """`load_image`, and the photo's own (width, height) before any shrinking (after EXIF rotation).
    `name` is what messages call the image (default: its path, or "<bytes>")."""
    name = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except FileNotFoundError as err:
        raise InputError(f"no such image file: {name}") from err
    except IsADirectoryError as err:
        raise InputError(f"is a directory, not an image: {name}") from err
    except OSError as err:
        raise InputError(f"cannot read {name}: {err.strerror}") from err
    with handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(handle)
        except UnidentifiedImageError as err:
            raise InputError(f"{name} is not an image file stic can read") from err
        except Image.DecompressionBombError as err:
            raise InputError(f"{name}: image too large ({err})") from err
        except (OSError, SyntaxError, ValueError) as err:
            raise InputError(f"{name} is truncated or corrupt: {err}") from err
        problem = size_problem(*image.size, max_side is not None)
        if problem:
            raise InputError(f"{name} {problem}")
        try:
            size = image.size
            if max_side is not None and max(size) > max_side:
                scale = max_side / max(size)
                image.draft("RGB", (round(size[0] * scale), round(size[1] * scale)))  # JPEG only
            image.load()
            if image.getexif().get(ORIENTATION) in _TRANSPOSING:
                size = size[::-1]
            image = ImageOps.exif_transpose(image)
            return fit_to_side(to_rgb_array(image, name), max_side), size
        except (OSError, SyntaxError, ValueError) as err:
            raise InputError(f"{name} is truncated or corrupt: {err}") from err


def fit_to_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """The image shrunk (Lanczos, aspect kept) so its longer side is at most `max_side`."""
    if max_side is None:
        return image
    if max_side < 16:
        raise InputError(f"max_side must be at least 16 pixels, got {max_side}")
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def size_problem(width: int, height: int, shrinking: bool = False) -> str | None:
    """Why stic will not code (or, `shrinking`, read and shrink) an image of this size (a phrase
    after the image's name), or None."""
    if shrinking:
        if width * height > MAX_SOURCE_PIXELS:
            return f"is {width}x{height}; stic reads at most {MAX_SOURCE_PIXELS:,} pixels"
        return None if width >= 1 and height >= 1 else f"has no pixels ({width}x{height})"
    if width * height > MAX_PIXELS:
        return (
            f"is {width}x{height} = {width * height:,} pixels; stic codes at most {MAX_PIXELS:,} "
            "pixels; give a max side (stic encode --max-side 4096) to code it shrunk."
        )
    if max(width, height) > MAX_SIDE:
        return f"is {width}x{height}; stic codes sides of at most {MAX_SIDE} pixels. Crop it first."
    if width < 1 or height < 1:
        return f"has no pixels ({width}x{height})"
    return None


def to_rgb_array(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any Pillow mode to HxWx3 uint8 RGB (see the module docstring for the rules)."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        warnings.warn(f"{name}: alpha channel dropped (stic codes RGB only)", stacklevel=3)
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        samples = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode != "I" or samples.max() > 255 else 255.0
        grey = np.clip(np.round(samples * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.round(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB (HxWx3) or grey (HxW) array as PNG without ever leaving a half-written file at `path`."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    write_bytes_atomic(Path(path), buffer.getvalue())
