"""Loss on the refined output: perceptual and semantic terms judge x_hat after the frozen offline
Real-ESRGAN refiner (stic.refine.esrgan), i.e. the picture users see when the file asks for it,
so the codec learns to give the refiner what it turns into a good image rather than to look good
on its own. Rate and MSE stay on x_hat, keeping the reconstruction anchored to the input.

The refiner is the decoder's (downscale by 4, the x4 network, back to x_hat's size) with the
resizes done in torch (bicubic, antialiased like PIL's) so gradients reach x_hat; it runs as one
tile, which suits training crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stic.errors import InputError
from stic.image.losses import Term
from stic.refine.esrgan import SCALE, VARIANTS, load_network


class DifferentiableRefiner(nn.Module):
    def __init__(self, variant: str = "realesrgan-compact"):
        super().__init__()
        if variant not in VARIANTS:
            raise InputError(f"training through refiner {variant!r} is not supported; choose from {', '.join(VARIANTS)}")
        network, _ = load_network(variant)
        self.net = network.requires_grad_(False).eval()

    def forward(self, x_hat: torch.Tensor) -> torch.Tensor:
        h, w = x_hat.shape[-2:]
        small = F.interpolate(x_hat, size=(max(1, round(h / SCALE)), max(1, round(w / SCALE))), mode="bicubic",
                              align_corners=False, antialias=True).clamp(0, 1)
        out = self.net(small)
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bicubic", align_corners=False)
        return out.clamp(0, 1)


class OnRefined(Term):
    """`term` measured on the refined x_hat (computed once per output, shared by all wrapped terms)."""

    def __init__(self, term: Term, refiner: DifferentiableRefiner):
        self.term, self.refiner = term, refiner
        self.name = f"{term.name}@refined"
        self.needs_caption = term.needs_caption

    def __call__(self, output, target):
        if "x_refined" not in output:
            output["x_refined"] = self.refiner(output["x_hat"])
        return self.term({**output, "x_hat": output["x_refined"]}, target)
