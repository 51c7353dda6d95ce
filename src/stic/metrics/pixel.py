"""PSNR (RGB, 0-255) and MS-SSIM (`pytorch-msssim`) as modules with the same call shape as LPIPS."""

from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim
from torch import nn

from stic.errors import InputError

#: pytorch-msssim's default 11-pixel window over 5 scales needs sides > (11 - 1) * 2**4
MSSSIM_MIN_SIDE = 161


class PSNR(nn.Module):
    """Peak signal-to-noise ratio over all RGB samples, in dB, one value per image (inf if equal)."""

    higher_is_better = True
    name = "psnr"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mse = ((x - y) * 255).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(255**2 / mse)


class MSSSIM(nn.Module):
    """Multi-scale SSIM on the 0-255 RGB scale (data_range 255), one value per image."""

    higher_is_better = True
    name = "msssim"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MSSSIM_MIN_SIDE:
            raise InputError(
                f"MS-SSIM needs images at least {MSSSIM_MIN_SIDE} pixels on each side, got "
                f"{x.shape[-1]}x{x.shape[-2]}"
            )
        return ms_ssim(x * 255, y * 255, data_range=255, size_average=False)
