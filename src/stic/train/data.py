"""Training images held in RAM, served as random crops.

Decoding a JPEG/PNG every step would cost more CPU than a small codec's training step, so every
image is decoded once (plus one downscaled copy, so crops also see Kodak-like coarser detail) and
batches are cut from that cached list. A fixed, name-hashed slice is held out for validation.
"""

import hashlib
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


class CropSampler:
    """Random crops + horizontal flips from cached images; its RNG state can be saved and restored."""

    def __init__(self, images: list[np.ndarray], crop: int, seed: int):
        if not images:
            raise InputError("no training images")
        self.images = images
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
        picks = self.rng.integers(0, len(self.images), size)
        patches = np.stack([self._crop(self.images[i]) for i in picks])
        return torch.from_numpy(patches).permute(0, 3, 1, 2).float().div_(255.0)

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
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255.0)
