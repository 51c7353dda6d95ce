"""Image quality metrics, each a differentiable torch module `metric(x, y) -> one value per image`
taking N x 3 x H x W batches in [0, 1] (so they double as training losses), plus helpers for
uint8 RGB arrays.

Full-reference: psnr, msssim, lpips-alex, lpips-vgg, dists, and ciede2000 (colour error; not
differentiable, so never a loss). Distribution and text-image metrics
(FID/KID on HiFiC patches, CLIP score) live in `stic.metrics.distribution` and `stic.metrics.clip`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stic.errors import InputError
from stic.models.cache import ModelCache

METRICS = ("psnr", "msssim", "lpips-alex", "lpips-vgg", "dists", "ciede2000")


def create_metric(name: str) -> nn.Module:
    """A new metric module by name (weights loaded; raises ModelNotFoundError if unavailable)."""
    if name == "psnr":
        from stic.metrics.pixel import PSNR

        return PSNR()
    if name == "msssim":
        from stic.metrics.pixel import MSSSIM

        return MSSSIM()
    if name in ("lpips-alex", "lpips-vgg"):
        from stic.metrics.lpips import LPIPS

        return LPIPS(name.split("-")[1])
    if name == "dists":
        from stic.metrics.dists import DISTS

        return DISTS()
    if name == "ciede2000":
        from stic.metrics.colour import CIEDE2000

        return CIEDE2000()
    raise InputError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")


def create_loss(name: str) -> nn.Module:
    """`create_metric` for a training loss: refuses a metric that gradients cannot pass (ciede2000)."""
    metric = create_metric(name)
    if not getattr(metric, "differentiable", True):
        raise InputError(f"{name} is not differentiable: an evaluation metric, not a training loss")
    return metric


LOADED_METRICS = ModelCache("metric networks", maxsize=len(METRICS))


def get_metric(name: str) -> nn.Module:
    """A shared, cached instance (for evaluation loops; use `create_metric` for a private one)."""
    return LOADED_METRICS.get(name, lambda: create_metric(name))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB array -> 1x3xHxW float tensor in [0, 1]."""
    if not (
        isinstance(rgb, np.ndarray)
        and rgb.dtype == np.uint8
        and rgb.ndim == 3
        and rgb.shape[2] == 3
    ):
        kind = (
            f"{rgb.dtype} array of shape {rgb.shape}"
            if isinstance(rgb, np.ndarray)
            else type(rgb).__name__
        )
        raise InputError(f"metrics take HxWx3 uint8 RGB arrays, got a {kind}")
    return torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255


def compare(
    reference: np.ndarray, distorted: np.ndarray, metrics=METRICS
) -> dict[str, float]:
    """Score one distorted image against its reference with each named metric."""
    if reference.shape != distorted.shape:
        raise InputError(
            f"image sizes differ: reference {_describe(reference)} vs distorted {_describe(distorted)}"
        )
    x, y = to_tensor(reference), to_tensor(distorted)
    with torch.no_grad():
        return {name: float(get_metric(name)(x, y)[0]) for name in metrics}


def _describe(rgb: np.ndarray) -> str:
    return f"{rgb.shape[1]}x{rgb.shape[0]}" + (
        f"x{rgb.shape[2]}" if rgb.ndim == 3 else " (greyscale)"
    )
