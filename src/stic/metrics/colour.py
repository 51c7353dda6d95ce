"""Colour error: mean CIEDE2000 (ΔE00) between two images, scikit-image's implementation.

At 0.01 bpp a learned codec spends almost nothing on chroma, and perceptual metrics computed on
features (LPIPS, DISTS) barely see a shifted hue. ΔE00 in CIELAB (D65, sRGB input) measures what
a viewer calls "the colours are off": ~1 is a just-noticeable difference, above ~5 is obvious.
Not differentiable (numpy), so an evaluation metric only, never a training loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stic.errors import ModelNotFoundError


class CIEDE2000(nn.Module):
    """Mean ΔE00 over pixels, one value per image (N x 3 x H x W batches in [0, 1])."""

    higher_is_better = False
    differentiable = False
    name = "ciede2000"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        try:
            from skimage.color import deltaE_ciede2000, rgb2lab
        except ImportError as err:
            raise ModelNotFoundError("the ciede2000 metric needs scikit-image: pip install scikit-image") from err

        def lab(batch: torch.Tensor) -> np.ndarray:
            return rgb2lab(batch.detach().clamp(0, 1).permute(0, 2, 3, 1).double().cpu().numpy(), channel_axis=-1)

        return torch.from_numpy(deltaE_ciede2000(lab(x), lab(y), channel_axis=-1).mean(axis=(1, 2)))
