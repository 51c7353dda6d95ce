"""Encoder-side latent search: spend encode time to find latents that code *this* image better.

The analysis transform g_a is a one-shot guess of good latents, trained to be right on average;
for one image, gradient descent on the latents y and z themselves lowers the model's training
loss (rate + λ·MSE, + LPIPS for a perceptual model) further (the "amortization gap"). Rounding is
relaxed by stochastic Gumbel annealing (SGA: Yang, Bamler and Mandt, "Improving Inference for
Neural Image Compression", NeurIPS 2020): each latent is a soft, random mix of its floor and
ceiling that hardens as the temperature falls. The decoder and
the file format do not change: a searched file decodes with any stic. Only the hyperprior
architectures are supported (their latents are independent given z; the autoregressive ones are not).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from compressai.models import MeanScaleHyperprior, ScaleHyperprior
from tqdm import tqdm

from stic.errors import InputError
from stic.image.checkerboard import MeanScaleCheckerboard

#: Adam step on the latents and the temperature schedule (linear from TAU_START to TAU_END);
#: chosen on two Kodak images with stic-q3 (docs/latent_search.md)
LEARNING_RATE = 0.01
TAU_START, TAU_END = 0.5, 0.05
#: a rate cap's multiplier on the rate term grows by exp(RATE_CAP_STEP * relative overshoot) per step;
#: 2 held a cap 3 % under the plain rate within 50 steps on four crops (stic-q2, stic-p2), where 0.5
#: was too slow and 5 cost more loss (docs/latent_search.md)
RATE_CAP_STEP = 2.0


@dataclass
class Latents:
    y: torch.Tensor
    z: torch.Tensor


@dataclass(frozen=True)
class Objective:
    """What the search minimises: the training loss `stic.image.losses.rate_distortion` builds,
    rate (bpp) + λ·MSE (0-255 scale) + Σ weight · metric(x̂, x), the metrics named as in
    `stic.metrics` (e.g. {"lpips-alex": 1.0} for a perceptual model)."""

    lmbda: float
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if not self.lmbda > 0:
            raise InputError(f"latent search needs the model's rate-distortion λ > 0, got {self.lmbda}")

    @cached_property
    def loss(self):
        """Built on first use, so loading a model never loads metric backbones it may not search with."""
        from stic.image.losses import rate_distortion

        return rate_distortion(self.lmbda, self.metrics)


#: weight of a decoder-only perceptual model's metric terms in its search, relative to its training
#: loss. Its decoder was fine-tuned alone, so training never traded those terms against rate: at the
#: full weight the search buys LPIPS with +60 % rate; at 0.3 it spends +15 % (two held-out photos,
#: stic-p2 of 2026-11-26; docs/latent_search.md). A model whose encoder trained with the terms
#: searches with their full weight.
PERCEPTUAL_SEARCH_SCALE = 0.3


def search_objective(
    lmbda: float | None, perceptual: dict[str, float] | None = None, encoder_trained: bool = False
) -> Objective | None:
    """The search objective of weights trained with rate + λ·MSE (+ the `perceptual` metric terms,
    with the encoder trained on them too if `encoder_trained`); None when λ is unknown."""
    if lmbda is None:
        return None
    scale = 1.0 if encoder_trained else PERCEPTUAL_SEARCH_SCALE
    return Objective(lmbda, {name: scale * w for name, w in (perceptual or {}).items()})


def check_searchable(model) -> None:
    # exact types: the autoregressive models (mbt2018, cheng2020-*) derive from MeanScaleHyperprior
    if type(model) not in (ScaleHyperprior, MeanScaleHyperprior, MeanScaleCheckerboard):
        raise InputError(
            f"latent search supports the hyperprior architectures (bmshj2018-hyperprior, mbt2018-mean, "
            f"stic-mean-checkerboard), "
            f"not {type(model).__name__}"
        )


def initial_latents(model, x: torch.Tensor) -> Latents:
    y = model.g_a(x)
    z = model.h_a(y if isinstance(model, MeanScaleHyperprior) else torch.abs(y))
    return Latents(y, z)


def hyper_params(model, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scales and means (None for the scale-only hyperprior) of y given the decoded z."""
    params = model.h_s(z_hat)
    if isinstance(model, MeanScaleHyperprior):
        scales, means = params.chunk(2, 1)
        return scales, means
    return params, None


def compress_latents(model, latents: Latents) -> list[bytes]:
    """CompressAI's compress() from given latents instead of g_a's: strings [y, z] (or the
    checkerboard model's [anchors, non-anchors, z])."""
    if isinstance(model, MeanScaleCheckerboard):
        return [s[0] for s in model.compress_latents(latents.y, latents.z)]
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    z_strings = eb.compress(latents.z)
    z_hat = eb.decompress(z_strings, latents.z.shape[-2:])
    scales, means = hyper_params(model, z_hat)
    y_strings = gc.compress(latents.y, gc.build_indexes(scales), means=means)
    return [y_strings[0], z_strings[0]]


def _soft_round(v: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """SGA: floor(v) + a Gumbel-softmax draw between 0 and 1, sharper as tau falls."""
    floor = torch.floor(v)
    frac = (v - floor).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(frac), -torch.atanh(1 - frac)], -1) / tau
    uniform = torch.rand(logits.shape, generator=generator).clamp_(1e-10, 1 - 1e-10)
    weights = torch.softmax(logits - torch.log(-torch.log(uniform)), -1)
    return floor + weights[..., 1]


def _quantised(model, latents: Latents, rounding: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """y_hat and the likelihoods of y and z, each latent rounded by `rounding` about its entropy
    model's offset (z's medians, y's predicted means) as the coder does."""
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    medians = eb._get_medians().detach()
    z_hat = rounding(latents.z - medians) + medians
    channels = z_hat.shape[1]
    z_lik = eb._likelihood(z_hat.permute(1, 0, 2, 3).reshape(channels, 1, -1))[0]
    if eb.use_likelihood_bound:
        z_lik = eb.likelihood_lower_bound(z_lik)
    if isinstance(model, MeanScaleCheckerboard):
        y_hat, y_lik = model.quantise(latents.y, model.h_s(z_hat), rounding)
        return y_hat, {"y": y_lik, "z": z_lik}
    scales, means = hyper_params(model, z_hat)
    offset = means if means is not None else torch.zeros_like(latents.y)
    y_hat = rounding(latents.y - offset) + offset
    y_lik = gc._likelihood(y_hat, scales, means)
    if gc.use_likelihood_bound:
        y_lik = gc.likelihood_lower_bound(y_lik)
    return y_hat, {"y": y_lik, "z": z_lik}


def rd_cost(model, x: torch.Tensor, latents: Latents, objective: Objective, height: int, width: int,
            rounding: Callable[[torch.Tensor], torch.Tensor] = torch.round) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective's loss and its rate term, bits per pixel of the image's own pixels (padding
    excluded, as from the distortion); with hard rounding the rate is what the coder writes, to
    within ~3 %."""
    y_hat, likelihoods = _quantised(model, latents, rounding)
    x_hat = model.g_s(y_hat)[..., :height, :width]
    loss, terms = objective.loss({"x_hat": x_hat, "likelihoods": likelihoods}, x[..., :height, :width])
    return loss, terms["bpp"]


@torch.no_grad()
def coded_bpp(model, latents: Latents, height: int, width: int) -> float:
    """The rate of hard-rounded latents (what the coder writes, to within ~3 %), without decoding."""
    bits = sum(-torch.log2(lik).sum() for lik in _quantised(model, latents, torch.round)[1].values())
    return float(bits) / (height * width)


def search_latents(model, x: torch.Tensor, objective: Objective, steps: int, height: int, width: int,
                   seed: int = 0, progress: bool = False, max_bpp: float | None = None) -> Latents:
    """`steps` SGA steps from g_a's latents; returns whichever of the start and the result costs
    less by the objective, so a search never makes the file worse by that measure.

    `max_bpp` caps the rate: the search then minimises the objective subject to rate <= max_bpp
    (the rate term's multiplier rises while the rate is over the cap, by dual ascent), and its
    result replaces the start only if it is within the cap as well. The start itself is returned
    whatever its rate: the caller knows whether the plain file fits its budget."""
    check_searchable(model)
    if steps < 1:
        raise InputError(f"latent search needs at least 1 step, got {steps}")
    if max_bpp is not None and not max_bpp > 0:
        raise InputError(f"a rate cap must be positive, got {max_bpp} bpp")
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            start = initial_latents(model, x)
        found = _descend(model, x, start, objective, steps, height, width, seed, progress, max_bpp)
        with torch.no_grad():
            (found_loss, found_bpp), (start_loss, _) = (rd_cost(model, x, c, objective, height, width) for c in (found, start))
        fits = max_bpp is None or found_bpp <= max_bpp
        return found if fits and found_loss < start_loss else start
    finally:
        for p in frozen:
            p.requires_grad_(True)


@torch.enable_grad()  # callers may be inside no_grad
def _descend(model, x, start: Latents, objective: Objective, steps: int, height: int, width: int,
             seed: int, progress: bool, max_bpp: float | None) -> Latents:
    """The final latents or, under a cap, the last ones whose coded rate fits it. The cap is held
    against the hard-rounded rate: SGA's soft rate runs up to twice it while the temperature is high."""
    generator = torch.Generator().manual_seed(seed)
    latents = Latents(start.y.clone().requires_grad_(True), start.z.clone().requires_grad_(True))
    optimizer = torch.optim.Adam([latents.y, latents.z], lr=LEARNING_RATE)
    rate_weight = 1.0  # the objective's own; a cap only ever raises it
    fitting = None
    for step in tqdm(range(steps), desc="latent search", unit="step", disable=not progress, leave=False):
        tau = TAU_START + (TAU_END - TAU_START) * step / max(steps - 1, 1)
        loss, bpp = rd_cost(model, x, latents, objective, height, width, lambda v: _soft_round(v, tau, generator))
        optimizer.zero_grad()
        (loss + (rate_weight - 1.0) * bpp).backward()
        optimizer.step()
        if max_bpp is not None:
            coded = coded_bpp(model, latents, height, width)
            rate_weight = max(1.0, rate_weight * math.exp(RATE_CAP_STEP * (coded / max_bpp - 1.0)))
            if coded <= max_bpp:
                fitting = Latents(latents.y.detach().clone(), latents.z.detach().clone())
    return fitting or Latents(latents.y.detach(), latents.z.detach())
