"""Build CompressAI networks from a small JSON-able config, so checkpoints never need pickles.

A config is {"architecture": <name>, **constructor kwargs}. The names are CompressAI's zoo names,
so a stic checkpoint says exactly which published design it instantiates.
"""

import math

import torch
from compressai.models import (
    Cheng2020Anchor,
    Cheng2020Attention,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)

from stic.errors import ModelNotFoundError
from stic.image.checkerboard import MeanScaleCheckerboard

ARCHITECTURES = {
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
    #: stic's own: mbt2018-mean + a checkerboard spatial context (stic.image.checkerboard)
    "stic-mean-checkerboard": MeanScaleCheckerboard,
    "mbt2018": JointAutoregressiveHierarchicalPriors,
    "cheng2020-anchor": Cheng2020Anchor,
    "cheng2020-attn": Cheng2020Attention,
}


#: CompressAI derives these from the weights with model.update(); they are empty while training
DERIVED_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
#: constants every constructor makes the same (masked convolutions' masks): shipped files leave them out
CONSTRUCTED_BUFFERS = (".mask",)


def build_model(config: dict):
    """Instantiate the (untrained) network a config describes."""
    kwargs = dict(config)
    name = kwargs.pop("architecture", None)
    if name not in ARCHITECTURES:
        raise ModelNotFoundError(
            f"unknown image architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[name](**kwargs)


def string_count(model) -> int:
    """How many entropy-coded strings the model's bitstream has: [y, z] for CompressAI's
    hyperprior family, [anchors, non-anchors, z] for the checkerboard one."""
    return getattr(type(model), "STRINGS", 2)


def scale_table(low: float = 0.11, high: float = 64.0, levels: int = 256) -> torch.Tensor:
    """Gaussian scales the coder keeps tables for. CompressAI's default (64 levels up to 256) made
    real bitstreams ~3 % larger than the likelihood estimate at our rates, where scales stay far
    below 64; 256 levels up to 64 cut that to under 1 % with tables of the same size."""
    return torch.exp(torch.linspace(math.log(low), math.log(high), levels))
