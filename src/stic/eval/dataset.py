"""The images (and optional captions) an evaluation runs on."""

from __future__ import annotations

from pathlib import Path

from stic.caption.fixed import caption_key, read_caption_table
from stic.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"data folder not found: {folder}")
    images = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not images:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images


def read_captions(path: str | Path, column: str | None = None) -> dict[str, str]:
    """Captions keyed by image file stem (stic.caption.fixed's reader: CSV or JSON), stripped."""
    captions = {key: text.strip() for key, text in read_caption_table(path, column).items()}
    if not captions:
        raise InputError(f"captions file {path} has no rows")
    return captions


def caption_for(image: Path, captions: dict[str, str] | None) -> str | None:
    return None if captions is None else captions.get(caption_key(image.name))
