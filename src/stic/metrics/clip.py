"""CLIP score of images against captions (torchmetrics' convention: 100 x max(cosine, 0)).

Built on transformers' CLIPModel, so any CLIP checkpoint a user has (a local folder, or a hub id
already in the cache) works. No CLIP weights can be had on machines without a model hub: then
`load_clip` raises ModelNotFoundError ("weights unavailable offline"). Preprocessing is done in
torch (bicubic resize of the short side, centre crop, CLIP normalisation) so the score is
differentiable in the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stic.errors import InputError, ModelNotFoundError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(name_or_path: str) -> CLIPScore:
    from transformers import AutoTokenizer, CLIPModel

    try:
        model = CLIPModel.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"CLIP weights unavailable offline: cannot load {name_or_path!r} ({str(err).splitlines()[0]})"
        ) from err
    return CLIPScore(model, tokenizer)


class CLIPScore(nn.Module):
    higher_is_better = True
    name = "clipscore"

    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        self.model, self.tokenizer = model.eval().requires_grad_(False), tokenizer
        self.size = model.config.vision_config.image_size
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        scale = self.size / min(height, width)
        resized = F.interpolate(
            images,
            size=(
                max(self.size, round(height * scale)),
                max(self.size, round(width * scale)),
            ),
            mode="bicubic",
            align_corners=False,
            antialias=True,
        ).clamp(0, 1)
        top, left = (
            (resized.shape[-2] - self.size) // 2,
            (resized.shape[-1] - self.size) // 2,
        )
        crop = resized[..., top : top + self.size, left : left + self.size]
        return (crop - self.mean) / self.std

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images N x 3 x H x W in [0, 1] -> N x D embeddings (differentiable in the images)."""
        return _embedding(self.model.get_image_features(pixel_values=self.preprocess(images)))

    def text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings,
            return_tensors="pt",
        ).to(self.mean.device)
        return _embedding(
            self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        )

    def forward(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Images N x 3 x H x W in [0, 1] and N captions -> N scores in [0, 100]."""
        if len(texts) != images.shape[0]:
            raise InputError(f"{images.shape[0]} images but {len(texts)} captions")
        cosine = F.cosine_similarity(
            self.image_features(images), self.text_features(texts), dim=-1
        )
        return 100 * cosine.clamp(min=0)


def _embedding(output) -> torch.Tensor:
    """transformers 5 returns model outputs from get_*_features; older versions return tensors."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
