"""Adversarial loss: a conditional patch discriminator in the HiFiC manner (Mentzer et al. 2020,
also MS-ILLM), so the decoder learns to put back plausible texture instead of the mean (mush).

Conditioning: the discriminator sees the image together with the decoded latent y_hat that the
synthesis transform received (a 3x3 conv to 12 channels, nearest-upsampled to the image size and
concatenated with it, as in HiFiC). It thus judges "is this a plausible image *for this bitstream*",
which keeps generated detail consistent with what was coded; the latent is detached, so only the
image carries the generator's gradient. The latent is what both training modes decode from
(rounded latents with trainable="decoder", noisy ones with "all").

Losses: non-saturating (HiFiC) or hinge, averaged over the patch logits. Stability: the
discriminator has spectral norm, its own Adam, and trains from step 0, while the generator's
adversarial weight stays 0 for the first `warmup` steps so the discriminator is informative
before its gradient reaches the decoder.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from stic.train import distributed

LOSSES = ("nonsaturating", "hinge")
CONTEXT_CHANNELS = 12


class PatchDiscriminator(nn.Module):
    """Image + latent context -> one logit per patch (receptive field ~70 px: convs of stride 2, 2, 2, 1)."""

    def __init__(self, latent_channels: int, channels: int = 64):
        super().__init__()
        self.context = nn.Sequential(
            spectral_norm(nn.Conv2d(latent_channels, CONTEXT_CHANNELS, 3, padding=1)), nn.LeakyReLU(0.2)
        )
        layers, width = [], 3 + CONTEXT_CHANNELS
        for out, kernel, stride in ((channels, 4, 2), (2 * channels, 4, 2), (4 * channels, 4, 2), (8 * channels, 3, 1)):
            layers += [spectral_norm(nn.Conv2d(width, out, kernel, stride=stride, padding=1)), nn.LeakyReLU(0.2)]
            width = out
        layers.append(spectral_norm(nn.Conv2d(width, 1, 1)))
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        context = F.interpolate(self.context(latent.detach()), size=image.shape[-2:], mode="nearest")
        return self.body(torch.cat([image * 2 - 1, context], dim=1))


def latent_channels(model) -> int:
    """Channels of the latent the synthesis transform g_s decodes (its first layer's input)."""
    for layer in model.g_s.modules():
        if hasattr(layer, "in_channels"):
            return layer.in_channels
    raise ValueError("cannot find the synthesis transform's input channels")


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


class Adversarial:
    """The discriminator, its optimizer and the warm-up schedule of the generator's weight."""

    name = "adv"

    def __init__(self, latent_channels: int, weight: float, warmup: int, loss: str = "nonsaturating",
                 lr: float = 1e-4, channels: int = 64, device="cpu", autocast=contextlib.nullcontext):
        """`autocast`: a factory of the mixed-precision context for the discriminator's forward."""
        if loss not in LOSSES:
            raise ValueError(f"adversarial loss must be one of {LOSSES}, got {loss!r}")
        self.weight, self.warmup, self.loss, self.autocast = weight, warmup, loss, autocast
        self.discriminator = PatchDiscriminator(latent_channels, channels).to(device)
        distributed.broadcast_parameters(self.discriminator)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def weight_at(self, step: int) -> float:
        """0 during the warm-up, then the configured weight."""
        return 0.0 if step < self.warmup else self.weight

    def generator_term(self, x_hat: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The generator's loss on x_hat; gradients reach x_hat, not the discriminator."""
        self.discriminator.requires_grad_(False)
        return generator_loss(self.discriminator(x_hat, latent), self.loss)

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """One update of the discriminator on real crops vs (detached) reconstructions."""
        self.discriminator.requires_grad_(True)
        with self.autocast():
            both = self.discriminator(torch.cat([real, fake.detach()]), torch.cat([latent, latent]))
        loss = discriminator_loss(*both.float().chunk(2), self.loss)
        self.optimizer.zero_grad()
        loss.backward()
        distributed.average_gradients(self.discriminator.parameters())
        self.optimizer.step()
        return loss.detach()
