"""Semantic loss terms with a frozen CLIP: agreement of x_hat with its caption, and CLIP-IQA.

The published method meant to fine-tune its codec with both; in its code the image-text term never
ran and the IQA term had the wrong sign. Here both are differentiable end to end (resize, crop and
normalisation in torch: stic.metrics.clip.CLIPScore.preprocess) and both are losses to minimise:

- "clip-text": 1 - cosine(CLIP(x_hat), CLIP(caption)), over the crops that have a caption (the
  sampler draws one of the image's captions per crop; crops of uncaptioned images are left out);
- "clip-iqa": -p("a good photo." | x_hat), the softmax over the prompt pair ("a good photo.",
  "a bad photo.") at CLIP's logit scale (Wang et al. 2023): minimising it *rewards* quality.

CLIP weights load through stic.metrics.clip.load_clip (a transformers model id already in the
cache, or a local folder); without them it raises ModelNotFoundError.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stic.errors import InputError
from stic.image.losses import Term, WeightedTerm

QUALITY_PROMPTS = ("a good photo.", "a bad photo.")
SEMANTIC_TERMS = ("clip-text", "clip-iqa")


class ClipText(Term):
    name = "clip-text"
    needs_caption = True

    def __init__(self, clip):
        self.clip = clip

    def __call__(self, output, target):
        captions = output.get("captions") or []
        keep = [i for i, caption in enumerate(captions) if caption]
        if not keep:  # no captioned crop in this batch: a zero that still belongs to the graph
            return output["x_hat"].sum() * 0.0
        images = self.clip.image_features(output["x_hat"][keep])
        with torch.no_grad():
            texts = self.clip.text_features([captions[i] for i in keep])
        return (1 - F.cosine_similarity(images.float(), texts.float(), dim=-1)).mean()


class ClipIQA(Term):
    name = "clip-iqa"

    def __init__(self, clip):
        self.clip = clip
        self._prompts: torch.Tensor | None = None

    def to(self, device):
        self._prompts = None  # re-embedded on the new device
        return super().to(device)

    def prompts(self) -> torch.Tensor:
        if self._prompts is None:
            with torch.no_grad():
                self._prompts = F.normalize(self.clip.text_features(list(QUALITY_PROMPTS)).float(), dim=-1)
        return self._prompts

    def p_good(self, images: torch.Tensor) -> torch.Tensor:
        """Probability of "a good photo." against "a bad photo." for each image."""
        features = F.normalize(self.clip.image_features(images).float(), dim=-1)
        logits = self.clip.model.logit_scale.exp().float() * features @ self.prompts().T
        return logits.softmax(dim=-1)[:, 0]

    def __call__(self, output, target):
        return -self.p_good(output["x_hat"]).mean()


def semantic_terms(weights: dict[str, float], clip_model: str) -> list[WeightedTerm]:
    """Weighted CLIP terms by name ({"clip-text": 0.1, "clip-iqa": 0.1}); one CLIP serves both."""
    if not weights:
        return []
    unknown = set(weights) - set(SEMANTIC_TERMS)
    if unknown:
        raise InputError(f"unknown semantic term(s) {sorted(unknown)}; choose from {', '.join(SEMANTIC_TERMS)}")
    from stic.metrics.clip import load_clip

    clip = load_clip(clip_model)
    kinds = {"clip-text": ClipText, "clip-iqa": ClipIQA}
    return [WeightedTerm(weight, kinds[name](clip)) for name, weight in weights.items()]
