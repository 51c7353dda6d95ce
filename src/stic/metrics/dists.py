"""DISTS (Ding et al. 2020) as a differentiable PyTorch module, computed as in `DISTS_pytorch` 0.1.

VGG16 with max-pools replaced by L2 (Hanning) pooling; per-channel structure and texture
similarities of six stages (the image itself first), weighted by the learned alpha/beta.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stic.metrics.lpips import backbone_features
from stic.metrics.weights import dists_state

_STAGES = [
    (0, 4),
    (5, 9),
    (10, 16),
    (17, 23),
    (24, 30),
]  # VGG16 `features` ranges, pools dropped
_CHANNELS = [3, 64, 128, 256, 512, 512]


class L2Pooling(nn.Module):
    def __init__(self, channels: int, filter_size: int = 5, stride: int = 2):
        super().__init__()
        window = np.hanning(filter_size)[1:-1]
        kernel = torch.tensor(window[:, None] * window[None, :], dtype=torch.float32)
        kernel = kernel / kernel.sum()
        self.register_buffer("filter", kernel[None, None].repeat(channels, 1, 1, 1))
        self.stride, self.padding = stride, (filter_size - 2) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(
            x**2,
            self.filter,
            stride=self.stride,
            padding=self.padding,
            groups=x.shape[1],
        )
        return (out + 1e-12).sqrt()


class DISTS(nn.Module):
    """Distance between image batches in [0, 1] (N x 3 x H x W); returns one value per image."""

    higher_is_better = False
    name = "dists"

    def __init__(self):
        super().__init__()
        vgg = backbone_features("vgg")
        stages = []
        for number, (start, stop) in enumerate(_STAGES):
            pool = [L2Pooling(_CHANNELS[number])] if number else []
            stages.append(nn.Sequential(*pool, *vgg[start:stop]))
        self.stages = nn.ModuleList(stages)
        state = dists_state()
        self.register_buffer("alpha", state["alpha"])
        self.register_buffer("beta", state["beta"])
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        )
        self.requires_grad_(False)
        self.eval()

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        out, h = [image], (image - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c1 = c2 = 1e-6
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, _CHANNELS, dim=1)
        betas = torch.split(self.beta / total, _CHANNELS, dim=1)
        structure = texture = 0
        for alpha, beta, fx, fy in zip(
            alphas, betas, self._features(x), self._features(y)
        ):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            s1 = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            structure = structure + (alpha * s1).sum(1, keepdim=True)
            vx, vy = (
                ((fx - mx) ** 2).mean((2, 3), keepdim=True),
                ((fy - my) ** 2).mean((2, 3), keepdim=True),
            )
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            texture = texture + (beta * s2).sum(1, keepdim=True)
        return (1 - (structure + texture)).flatten()
