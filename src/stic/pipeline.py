"""Image (+ caption) to .stic bytes and back: the one place where the parts meet.

Rate control is by measurement, never by guess: `bpp=` encodes with each shipped model from the
highest rate down and keeps the first whose whole file (header and caption included) fits.
Decoding resolves every model a file names before decoding anything, so a file made with other
models is refused up front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stic import codecs
from stic.container import SECTION_CAPTION, SECTION_IMAGE, Section, SticFile, pack, unpack
from stic.errors import FormatError, InputError
from stic.image.protocol import ImageCodec
from stic.image.registry import codec_for_fingerprint, load_image_codec, shipped_models
from stic.text.protocol import TextCoder
from stic.text.registry import get_text_coder, text_coder_for_section

DEFAULT_TEXT_CODER = "lm"


@dataclass
class Encoded:
    data: bytes
    file: SticFile
    image_model: str
    caption: str | None

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.file.width * self.file.height)


@dataclass
class Decoded:
    image: np.ndarray
    caption: str | None
    file: SticFile


def default_quality() -> int:
    """The middle shipped rate point: a balanced default (1 = lowest rate)."""
    return (len(shipped_models()) + 1) // 2


def _image_codec_for_quality(quality: int) -> ImageCodec:
    names = shipped_models()
    if not 1 <= quality <= len(names):
        raise InputError(f"quality must be 1..{len(names)} (shipped models: {', '.join(names)})")
    return load_image_codec(names[quality - 1])


def _caption_section(caption: str | None, text_coder: str | TextCoder) -> Section | None:
    if caption is None:
        return None
    coder = get_text_coder(text_coder) if isinstance(text_coder, str) else text_coder
    return Section(SECTION_CAPTION, coder.codec_id, coder.encode(caption), coder.fingerprint())


def _pack_with(codec: ImageCodec, image: np.ndarray, caption_section: Section | None) -> bytes:
    height, width = image.shape[:2]
    sections = [Section(SECTION_IMAGE, codec.codec_id, codec.compress(image), codec.fingerprint())]
    if caption_section is not None:
        sections.append(caption_section)
    return pack(width, height, sections)


def encode(
    image: np.ndarray,
    *,
    quality: int | None = None,
    bpp: float | None = None,
    model: str | None = None,
    caption: str | None = None,
    text_coder: str | TextCoder = DEFAULT_TEXT_CODER,
) -> Encoded:
    """Code an HxWx3 uint8 RGB image (and optionally a caption) into .stic bytes.

    Pick the image model by `model` (a shipped name or a local directory), by `quality`
    (1 = lowest shipped rate), or by `bpp` (the largest model whose real file fits the target).
    """
    if sum(option is not None for option in (quality, bpp, model)) > 1:
        raise InputError("give at most one of quality, bpp and model")
    _check_image(image)
    caption_section = _caption_section(caption, text_coder)
    if bpp is not None:
        return _encode_to_target(image, bpp, caption_section, caption)
    codec = load_image_codec(model) if model else _image_codec_for_quality(quality or default_quality())
    data = _pack_with(codec, image, caption_section)
    return Encoded(data, unpack(data), codec.name, caption)


def _encode_to_target(
    image: np.ndarray, target: float, caption_section: Section | None, caption: str | None
) -> Encoded:
    if target <= 0:
        raise InputError(f"target bpp must be positive, got {target}")
    pixels = image.shape[0] * image.shape[1]
    achieved = {}
    for name in reversed(shipped_models()):
        codec = load_image_codec(name)
        data = _pack_with(codec, image, caption_section)
        achieved[name] = 8 * len(data) / pixels
        if achieved[name] <= target:
            return Encoded(data, unpack(data), codec.name, caption)
    tried = ", ".join(f"{name} {rate:.4f}" for name, rate in achieved.items())
    raise InputError(
        f"no model reaches {target} bpp on this {image.shape[1]}x{image.shape[0]} image "
        f"(measured bpp: {tried}); raise the target or drop the caption"
    )


def _check_image(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise InputError("image must be an HxWx3 uint8 RGB array (use stic.load_image for files)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError("image has no pixels")


def resolve_models(file: SticFile, text_model: str | None = None) -> tuple[ImageCodec | None, TextCoder | None]:
    """Find the codecs a file needs, or raise ModelMismatchError/ModelNotFoundError naming them."""
    for section in file.sections:
        if section.kind == SECTION_IMAGE and section.codec_id not in codecs.IMAGE_CODEC_NAMES:
            raise FormatError(f"image section uses unknown codec id {section.codec_id}")
    image_section = file.section(SECTION_IMAGE)
    caption_section = file.section(SECTION_CAPTION)
    image_codec = codec_for_fingerprint(image_section.fingerprint) if image_section else None
    text_coder = (
        text_coder_for_section(caption_section.codec_id, caption_section.fingerprint, model=text_model)
        if caption_section
        else None
    )
    return image_codec, text_coder


def decode(data: bytes, *, text_model: str | None = None) -> Decoded:
    """Decode .stic bytes to the RGB image (exact original size) and the caption, if any."""
    return decode_file(unpack(data), text_model=text_model)


def decode_file(file: SticFile, *, text_model: str | None = None) -> Decoded:
    """Decode a parsed file; every model it names is resolved before anything is decoded."""
    image_codec, text_coder = resolve_models(file, text_model)
    if image_codec is None:
        raise FormatError("file has no image section (a caption-only file: use `stic text decode`)")
    if file.width < 1 or file.height < 1:
        raise FormatError(f"file declares an empty image ({file.width}x{file.height})")
    image = image_codec.decompress(file.section(SECTION_IMAGE).payload, file.width, file.height)
    caption = text_coder.decode(file.section(SECTION_CAPTION).payload) if text_coder else None
    return Decoded(image, caption, file)


def describe(file: SticFile) -> dict:
    """What `stic info` shows: sizes, per-section bytes and bits, header overhead, models, bpp."""
    pixels = file.width * file.height
    per_pixel = (lambda n: 8 * n / pixels) if pixels else (lambda n: None)
    sections = []
    for section in file.sections:
        names = codecs.TEXT_CODEC_NAMES if section.kind == SECTION_CAPTION else codecs.IMAGE_CODEC_NAMES
        sections.append(
            {
                "kind": section.kind_name,
                "codec": names.get(section.codec_id, f"unknown-{section.codec_id}"),
                "fingerprint": section.fingerprint.hex() or None,
                "required": section.required,
                "bytes": len(section.payload),
                "bits": 8 * len(section.payload),
                "bpp": per_pixel(len(section.payload)),
            }
        )
    return {
        "width": file.width,
        "height": file.height,
        "file_bytes": file.size,
        "file_bits": 8 * file.size,
        "bpp": per_pixel(file.size),
        "header_overhead_bytes": file.overhead_bytes,
        "header_overhead_bpp": per_pixel(file.overhead_bytes),
        "sections": sections,
    }

