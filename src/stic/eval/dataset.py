"""The images (and optional captions) an evaluation runs on."""

from __future__ import annotations

import csv
from pathlib import Path

from stic.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}
_IMAGE_COLUMNS = ("image", "image_name", "file", "filename", "name")
_CAPTION_COLUMNS = ("caption", "overall_description", "text")


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
    """Captions keyed by image file name (and stem) from a CSV with an image column and a caption column."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise InputError(f"cannot read captions file {path}: {err.strerror}") from err
    if not rows:
        raise InputError(f"captions file {path} has no rows")
    columns = rows[0].keys()
    image_column = next((c for c in _IMAGE_COLUMNS if c in columns), None)
    caption_column = column or next((c for c in _CAPTION_COLUMNS if c in columns), None)
    if image_column is None or caption_column not in columns:
        raise InputError(
            f"captions file {path} needs an image column ({'/'.join(_IMAGE_COLUMNS)}) and a caption column "
            f"({column or '/'.join(_CAPTION_COLUMNS)}); it has: {', '.join(columns)}"
        )
    captions = {}
    for row in rows:
        name, text = Path(row[image_column].strip()).name, row[caption_column].strip()
        captions[name] = captions[Path(name).stem] = text
    return captions


def caption_for(image: Path, captions: dict[str, str] | None) -> str | None:
    if captions is None:
        return None
    return captions.get(image.name, captions.get(image.stem))
