"""Training images held in RAM, served as random crops.

Decoding a JPEG/PNG every step would cost more CPU than a small codec's training step, so every
image is decoded once (plus one downscaled copy, so crops also see Kodak-like coarser detail) and
batches are cut from that cached list. A fixed, name-hashed slice is held out for validation.
"""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from stic.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
#: the training sets named in issue 3; Kodak is the test set and is never listed here
DEFAULT_DATASETS = ("urban100", "unsplash", "coco_mini")


def list_images(folders) -> list[Path]:
    """All image files under the folders, sorted; refuses a Kodak folder."""
    files = []
    for folder in folders:
        folder = Path(folder)
        if "kodak" in folder.name.lower():
            raise InputError(f"{folder} looks like Kodak, the test set: never train on it")
        if not folder.is_dir():
            raise InputError(f"training folder {folder} does not exist")
        files += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files)


def is_validation(path: Path, every: int = 20) -> bool:
    """Stable hold-out: about 1 in `every` files by a hash of the file name."""
    return int(hashlib.sha1(path.name.encode()).hexdigest(), 16) % every == 0


def split(files: list[Path], every: int = 20) -> tuple[list[Path], list[Path]]:
    val = [p for p in files if is_validation(p, every)] or files[:1]  # never an empty hold-out
    train = [p for p in files if p not in val]
    return train, val


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_all(files: list[Path], extra_scales=(0.6,), desc="decoding") -> list[np.ndarray]:
    """Decode every file once; append downscaled (Lanczos) copies at `extra_scales`."""
    images = []
    for path in tqdm(files, desc=desc, unit="img", leave=False):
        rgb = load_rgb(path)
        images.append(rgb)
        for scale in extra_scales:
            h, w = rgb.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            images.append(np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS)))
    return images


def load_captions(path: Path) -> dict[str, list[str]]:
    """Captions by image file name from a .jsonl ({"image": ..., "captions": [...]} per line, as in
    coco_mini/pairs.jsonl; or "caption": str), a .json ({name: caption or [captions]}) or a .csv
    (columns image, caption; one row per caption)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"caption file {path} does not exist")
    table: dict[str, list[str]] = {}

    def add(image, captions):
        captions = [captions] if isinstance(captions, str) else list(captions)
        table.setdefault(Path(image).name, []).extend(c.strip() for c in captions if c and c.strip())

    if path.suffix == ".jsonl":
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                add(record["image"], record.get("captions", record.get("caption", [])))
    elif path.suffix == ".json":
        for image, captions in json.loads(path.read_text()).items():
            add(image, captions)
    elif path.suffix == ".csv":
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                add(row["image"], row["caption"])
    else:
        raise InputError(f"caption file {path}: expected .jsonl, .json or .csv")
    return table


def captions_per_image(files: list[Path], table: dict[str, list[str]], copies: int) -> list[list[str]]:
    """Align captions with load_all's output (each file followed by its `copies - 1` rescaled copies);
    files without a caption get an empty list."""
    return [table.get(path.name, []) for path in files for _ in range(copies)]


class CropSampler:
    """Random crops + horizontal flips from cached images, optionally each with one of its image's
    captions (drawn by the same RNG); the RNG state can be saved and restored."""

    def __init__(self, images: list[np.ndarray], crop: int, seed: int, captions: list[list[str]] | None = None):
        if not images:
            raise InputError("no training images")
        if captions is not None and len(captions) != len(images):
            raise InputError(f"{len(images)} images but {len(captions)} caption lists")
        self.images = images
        self.captions = captions
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def _crop(self, rgb: np.ndarray) -> np.ndarray:
        c = self.crop
        h, w = rgb.shape[:2]
        if h < c or w < c:  # small image: replicate-pad up to the crop size
            rgb = np.pad(rgb, ((0, max(0, c - h)), (0, max(0, c - w)), (0, 0)), mode="edge")
            h, w = rgb.shape[:2]
        top = int(self.rng.integers(0, h - c + 1))
        left = int(self.rng.integers(0, w - c + 1))
        patch = rgb[top : top + c, left : left + c]
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        return patch

    def batch(self, size: int) -> torch.Tensor:
        return self._batch(size)[0]

    def batch_with_captions(self, size: int) -> tuple[torch.Tensor, list[str]]:
        """Crops and one caption per crop, picked at random among its image's ("" if it has none)."""
        if self.captions is None:
            raise InputError("this sampler was built without captions")
        crops, picks = self._batch(size)
        chosen = []
        for i in picks:
            options = self.captions[i]
            chosen.append(options[int(self.rng.integers(0, len(options)))] if options else "")
        return crops, chosen

    def _batch(self, size: int) -> tuple[torch.Tensor, np.ndarray]:
        picks = self.rng.integers(0, len(self.images), size)
        patches = np.stack([self._crop(self.images[i]) for i in picks])
        return batch_tensor(patches), picks

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def center_crops(images: list[np.ndarray], size: int) -> torch.Tensor:
    """Deterministic validation batch: the centre `size`² of each image (padded if smaller)."""
    out = []
    for rgb in images:
        h, w = rgb.shape[:2]
        if h < size or w < size:
            rgb = np.pad(rgb, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
            h, w = rgb.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        out.append(rgb[top : top + size, left : left + size])
    return batch_tensor(out)


def batch_tensor(images) -> torch.Tensor:
    """HxWx3 uint8 images (a list or a stacked array) -> N x 3 x H x W float batch in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
