"""The image models' losses: total = sum of weighted terms (rate + lambda*MSE, plus LPIPS, GAN or
semantic terms appended as Term objects). Training (stic.train) minimises them over a data set;
latent search (stic.image.latent_search) minimises the same loss for one image, so they live
with the codec, not with the trainer. Each term returns a scalar tensor; the training loop logs
every term's value by name.
"""

import math
from dataclasses import dataclass

import torch


class Term:
    name: str = "term"
    needs_caption: bool = False  # judged only on crops that come with a caption

    def __call__(self, output: dict, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device) -> "Term":
        """Move the term's networks (metric backbone, CLIP, refiner) to `device`."""
        for value in vars(self).values():
            if isinstance(value, (torch.nn.Module, Term)):
                value.to(device)
        return self


class BitsPerPixel(Term):
    """Estimated rate from the entropy models' likelihoods, in bits per pixel."""

    name = "bpp"

    def __call__(self, output, target):
        n, _, h, w = target.shape
        bits = sum((-torch.log(lik).sum()) for lik in output["likelihoods"].values()) / math.log(2)
        return bits / (n * h * w)


class MSE255(Term):
    """Mean squared error on the 0..255 scale (CompressAI's convention for lambda)."""

    name = "mse"

    def __call__(self, output, target):
        return torch.mean((output["x_hat"] - target) ** 2) * 255.0**2


class MetricTerm(Term):
    """A full-reference metric from `stic.metrics` (LPIPS, DISTS, ...) as a loss: its batch mean.

    The metric's backbone is frozen; gradients flow only into x_hat."""

    def __init__(self, metric: str):
        from stic.metrics import create_loss

        self.name = metric
        self.metric = create_loss(metric)

    def __call__(self, output, target):
        return self.metric(output["x_hat"], target).mean()


@dataclass
class WeightedTerm:
    weight: float
    term: Term


class CompositeLoss:
    """Weighted sum of terms; returns (loss, {term name: value}) for logging."""

    def __init__(self, terms: list[WeightedTerm]):
        self.terms = terms

    def __call__(self, output, target):
        values = {t.term.name: t.term(output, target) for t in self.terms}
        loss = sum(t.weight * values[t.term.name] for t in self.terms)
        return loss, values

    def to(self, device) -> "CompositeLoss":
        for t in self.terms:
            t.term.to(device)
        return self


def rate_distortion(lmbda: float, perceptual: dict[str, float] | None = None) -> CompositeLoss:
    """CompressAI's R + lambda * 255^2 * MSE (lambda 0.0018 is its quality-1 point), plus
    weight * metric for each perceptual metric named, e.g. {"lpips-alex": 1.0}."""
    terms = [WeightedTerm(1.0, BitsPerPixel()), WeightedTerm(lmbda, MSE255())]
    terms += [WeightedTerm(weight, MetricTerm(name)) for name, weight in (perceptual or {}).items()]
    return CompositeLoss(terms)


def psnr_from_mse255(mse: float) -> float:
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))
