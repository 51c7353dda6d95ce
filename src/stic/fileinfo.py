"""What `stic info` reports about a file, computed from the container alone (no model loads,
no torch import), so inspecting a file is instant."""

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path

from stic import codecs
from stic.container import SECTION_CAPTION, SECTION_COLOUR, SECTION_IMAGE, SECTION_PICTURE, SECTION_REFINE, SticFile

_CODEC_NAMES = {
    SECTION_CAPTION: codecs.TEXT_CODEC_NAMES,
    SECTION_IMAGE: codecs.IMAGE_CODEC_NAMES,
    SECTION_REFINE: codecs.REFINER_NAMES,
    SECTION_PICTURE: codecs.PICTURE_NAMES,
    SECTION_COLOUR: codecs.COLOUR_NAMES,
}


@cache
def shipped_names() -> dict[bytes, str]:
    """Fingerprint -> name of the image models and refiners inside the package (hashing their
    files, as the codecs do; no model is loaded)."""
    folder = Path(str(resources.files("stic") / "weights"))
    files = [p for p in folder.glob("*.safetensors") if p.with_suffix(".json").is_file()]
    files += list((folder / "refiners").glob("*.safetensors"))
    return {hashlib.sha256(p.read_bytes()).digest()[:4]: p.stem for p in files}


def describe(file: SticFile) -> dict:
    """What `stic info` shows: sizes, per-section bytes and bits, header overhead, models, bpp."""
    from stic.picture import Presentation, presented_size

    width, height = presented_size(file)
    pixels = width * height  # of the picture it decodes to: bits per pixel of what the user gets
    per_pixel = (lambda n: 8 * n / pixels) if pixels else (lambda n: None)
    sections = []
    for section in file.sections:
        names = _CODEC_NAMES.get(section.kind, {})
        sections.append(
            {
                "kind": section.kind_name,
                "codec": names.get(section.codec_id, f"unknown-{section.codec_id}"),
                "fingerprint": section.fingerprint.hex() or None,
                "model": shipped_names().get(section.fingerprint) if section.kind != SECTION_CAPTION else None,
                "required": section.required,
                "bytes": len(section.payload),
                "bits": 8 * len(section.payload),
                "bpp": per_pixel(len(section.payload)),
            }
        )
        if section.kind == SECTION_IMAGE and section.codec_id == codecs.IMAGE_LEARNED_EXACT_STEP and section.payload:
            sections[-1]["step"] = section.payload[0]  # the finer quantisation step
    picture = Presentation.from_section(file.section(SECTION_PICTURE))
    return {
        "width": file.width,
        "height": file.height,
        "grey": picture.grey,
        "original_size": list(picture.original) if picture.original else None,
        "file_bytes": file.size,
        "file_bits": 8 * file.size,
        "bpp": per_pixel(file.size),
        "header_overhead_bytes": file.overhead_bytes,
        "header_overhead_bpp": per_pixel(file.overhead_bytes),
        "sections": sections,
    }
