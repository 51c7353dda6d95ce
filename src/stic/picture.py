"""How the decoded picture is presented: greyscale, and the size it had before `max_side` shrank it.

The codecs code RGB at the size in the file header. A grey photo coded as RGB comes back with
faint colour casts where the chroma was coded coarsely, and a 48 MP photo is too large to code
whole; both are fixed outside the codecs, by an optional picture section (kind 4) that tells the
decoder to return grey (ITU-R 601 luma of the decoded RGB) and the original size. The section is
written only when needed; a decoder that predates it skips it and shows the coded RGB image.

Payload: flags (varint; bit 0 grey, bit 1 original size follows), then width and height (varints).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from stic import codecs
from stic.container import MAX_DIMENSION, SECTION_PICTURE, Section, decode_varint, encode_varint
from stic.errors import FormatError
from stic.image.io import MAX_SOURCE_PIXELS

_GREY = 1
_ORIGINAL_SIZE = 2


@dataclass(frozen=True)
class Presentation:
    grey: bool = False
    original: tuple[int, int] | None = None  #: (width, height) before downscaling; None: as coded

    def section(self) -> Section | None:
        """The optional picture section, or None when the coded RGB picture is the answer."""
        if not self.grey and self.original is None:
            return None
        flags = (_GREY if self.grey else 0) | (_ORIGINAL_SIZE if self.original else 0)
        payload = encode_varint(flags)
        if self.original:
            payload += encode_varint(self.original[0]) + encode_varint(self.original[1])
        return Section(SECTION_PICTURE, codecs.PICTURE_V1, payload, required=False)

    @classmethod
    def from_section(cls, section: Section | None) -> Presentation:
        if section is None:
            return cls()
        if section.codec_id != codecs.PICTURE_V1:
            return cls()  # a later layout this stic does not know: the section is optional, skip it
        flags, pos = decode_varint(section.payload, 0, "picture flags")
        original = None
        if flags & _ORIGINAL_SIZE:
            width, pos = decode_varint(section.payload, pos, "original width")
            height, pos = decode_varint(section.payload, pos, "original height")
            if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION) or width * height > MAX_SOURCE_PIXELS:
                raise FormatError(f"corrupt picture section: original size {width}x{height}")
            original = (width, height)
        return cls(grey=bool(flags & _GREY), original=original)

    def apply(self, image: np.ndarray, original_size: bool = True) -> np.ndarray:
        """The decoded RGB picture as presented: HxW uint8 when grey, else HxWx3; scaled back to
        the original size (Lanczos) unless `original_size` is False."""
        picture = Image.fromarray(image)
        if self.grey:
            picture = picture.convert("L")
        if original_size and self.original and self.original != picture.size:
            picture = picture.resize(self.original, Image.Resampling.LANCZOS)
        return np.asarray(picture)


def presented_size(file) -> tuple[int, int]:
    """(width, height) of the picture a file decodes to: its original size if it was shrunk."""
    return Presentation.from_section(file.section(SECTION_PICTURE)).original or (file.width, file.height)


def is_grey(image: np.ndarray) -> bool:
    """True when all three channels are equal everywhere (a greyscale photo, whatever its file mode)."""
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))
