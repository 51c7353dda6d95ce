"""Captions that need no model: the user's own words, or a precomputed CSV/JSON of image -> caption.

Precomputed files let evaluations run without a VLM (e.g. the published LLaVA-1.5 Kodak captions).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from stic.caption.clip_tokens import CLIP_CAPTION_TOKENS, FittedCaption, fit_caption
from stic.errors import InputError

#: column names tried, in order, for the image and the caption in a CSV
IMAGE_COLUMNS = ("image", "image_name", "file", "filename", "name")
CAPTION_COLUMNS = ("caption", "overall_description", "text", "description")


class TextCaptioner:
    """The same given caption for every image (`--caption`)."""

    def __init__(self, text: str, max_tokens: int = CLIP_CAPTION_TOKENS):
        if not text.strip():
            raise InputError("the caption is empty")
        self.name = "text"
        self._fitted = fit_caption(text, max_tokens)

    def caption(self, image: np.ndarray, source: str | None = None) -> FittedCaption:
        return self._fitted


def _key(name: str) -> str:
    """Images are matched by file stem: 'kodim05.png', 'data/kodim05' and 'kodim05' agree."""
    return Path(name.strip()).stem


def _read_csv(path: Path, column: str | None = None) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        image_col = next((c for c in IMAGE_COLUMNS if c in fields), None)
        caption_col = column if column in fields else None if column else next((c for c in CAPTION_COLUMNS if c in fields), None)
        if image_col is None or caption_col is None:
            raise InputError(
                f"{path}: need an image column ({', '.join(IMAGE_COLUMNS)}) and a caption column "
                f"({column or ', '.join(CAPTION_COLUMNS)}); found {', '.join(fields) or 'no header'}"
            )
        return {_key(row[image_col]): row[caption_col] for row in reader if row[image_col]}


def _read_json(path: Path, column: str | None = None) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {_key(k): v for k, v in data.items()}
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        out = {}
        for item in data:
            image = next((item[c] for c in IMAGE_COLUMNS if c in item), None)
            caption = item.get(column) if column else next((item[c] for c in CAPTION_COLUMNS if c in item), None)
            if not isinstance(image, str) or not isinstance(caption, str):
                raise InputError(f"{path}: every entry needs an image name and a caption string")
            out[_key(image)] = caption
        return out
    raise InputError(f'{path}: expected {{"image": "caption", ...}} or a list of {{"image":, "caption":}} objects')


def read_caption_table(path: str | Path, column: str | None = None) -> dict[str, str]:
    """Image file stem -> caption (as written) from a CSV (an image column and a caption column,
    `column` naming the latter) or a JSON file: one reader for `--caption-file` and `stic eval
    --captions`."""
    path = Path(path)
    try:
        return (_read_json if path.suffix.lower() == ".json" else _read_csv)(path, column)
    except OSError as err:
        raise InputError(f"cannot read caption file {path}: {err.strerror}") from err
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise InputError(f"{path} is not a valid caption file: {err}") from err


def caption_key(name: str | Path) -> str:
    """The key an image's caption has in `read_caption_table`'s result."""
    return _key(str(name))


class PrecomputedCaptioner:
    """Captions looked up by image file name in a CSV or JSON file."""

    def __init__(self, path: str | Path, max_tokens: int = CLIP_CAPTION_TOKENS):
        self.path = Path(path)
        self.name = f"file:{self.path.name}"
        self.max_tokens = max_tokens
        self.captions = read_caption_table(self.path)

    def caption(self, image: np.ndarray, source: str | None = None) -> FittedCaption:
        if source is None:
            raise InputError(f"{self.name}: captions are looked up by image file name; none given")
        text = self.captions.get(_key(source))
        if text is None or not text.strip():
            raise InputError(f"{self.path} has no caption for {Path(source).name}")
        return fit_caption(text, self.max_tokens)
