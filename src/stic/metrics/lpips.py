"""LPIPS v0.1 (Zhang et al. 2018) as a plain differentiable PyTorch module.

Same computation as the official `lpips` package: inputs scaled to [-1, 1], the "scaling layer",
unit-normalised ReLU features of five backbone stages, squared differences weighted by the learned
1x1 heads, spatially averaged and summed. Weights: `stic.metrics.weights`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import alexnet, vgg16

from stic.metrics.weights import backbone_state, lpips_head_state

#: `features` index of the ReLU after which each LPIPS stage is tapped
_TAPS = {"alex": [1, 4, 7, 9, 11], "vgg": [3, 8, 15, 22, 29]}
_CHANNELS = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}


def backbone_features(net: str) -> nn.Sequential:
    """The torchvision conv trunk with ImageNet weights, frozen, ReLUs not in place (so taps survive)."""
    with torch.device(
        "meta"
    ):  # skip the random init of the unused classifier (~100 M params for VGG)
        features = (alexnet if net == "alex" else vgg16)(weights=None).features
    features.load_state_dict(backbone_state(net), assign=True)
    for module in features:
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return features


def unit_normalize(feature: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feature / (feature.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Distance between image batches in [0, 1] (N x 3 x H x W); returns one value per image."""

    higher_is_better = False

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in _TAPS:
            raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.name = f"lpips-{net}"
        self.net = net
        self.features = backbone_features(net)[: _TAPS[net][-1] + 1]
        self.heads = nn.ModuleList(
            nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net]
        )
        self.heads.load_state_dict(lpips_head_state(net))
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        )
        self.register_buffer(
            "scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        )
        self.requires_grad_(False)
        self.eval()

    def _stages(self, image: torch.Tensor) -> list[torch.Tensor]:
        h = ((image * 2 - 1) - self.shift) / self.scale
        taps, out = set(_TAPS[self.net]), []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in taps:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0
        for head, fx, fy in zip(self.heads, self._stages(x), self._stages(y)):
            diff = (unit_normalize(fx) - unit_normalize(fy)) ** 2
            total = total + head(diff).mean(dim=(2, 3))
        return total.flatten()
