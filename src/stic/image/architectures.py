"""Build CompressAI networks from a small JSON-able config, so checkpoints never need pickles.

A config is {"architecture": <name>, **constructor kwargs}. The names are CompressAI's zoo names,
so a stic checkpoint says exactly which published design it instantiates.
"""

from compressai.models import (
    Cheng2020Anchor,
    Cheng2020Attention,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)

from stic.errors import ModelNotFoundError

ARCHITECTURES = {
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
    "mbt2018": JointAutoregressiveHierarchicalPriors,
    "cheng2020-anchor": Cheng2020Anchor,
    "cheng2020-attn": Cheng2020Attention,
}

#: every architecture above downsamples by 16 (analysis) x 4 (hyper-analysis)
PAD_MULTIPLE = 64


def build_model(config: dict):
    """Instantiate the (untrained) network a config describes."""
    kwargs = dict(config)
    name = kwargs.pop("architecture", None)
    if name not in ARCHITECTURES:
        raise ModelNotFoundError(
            f"unknown image architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[name](**kwargs)
