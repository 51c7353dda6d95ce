"""Vision-language models through transformers: what the captioner (stic.caption.vlm) and the VLM
caption coder (stic.text.vlm_coder) run — the paper's "one LMM" that both describes the image and
codes the words.

Any model with an `AutoProcessor` and an image-text-to-text auto class loads by id or local
directory (SmolVLM/Idefics3, Qwen2-VL/2.5-VL, LLaVA, LLaVA-NeXT, ...). Loaded models are cached
per process by (resolved folder or id, device, dtype).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stic.errors import ModelNotFoundError
from stic.models.cache import ModelCache
from stic.models.hf import model_digest
from stic.paths import model_key

#: What the captioner asks (about what CLIP can read, 75 tokens ≈ 55 words, in plain declarative
#: sentences), and the context the VLM caption coder predicts the caption in: the model that wrote
#: the caption under this prompt assigns its words the highest probabilities under it too.
CAPTION_PROMPT = "Describe this image in two or three sentences of at most 50 words in total."


#: image processor settings that change the pixels the vision tower sees or how many tokens it gives
_IMAGE_SETTINGS = (
    "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
    "do_normalize", "image_mean", "image_std", "do_convert_rgb", "do_pad", "min_pixels", "max_pixels",
    "patch_size", "merge_size", "temporal_patch_size", "image_grid_pinpoints", "do_image_splitting",
    "max_image_size",
)  # fmt: skip
#: processor settings that decide how many image tokens the prompt holds
_PROCESSOR_SETTINGS = ("patch_size", "num_additional_image_tokens", "vision_feature_select_strategy", "image_seq_len")


class VisionLanguageModel:
    """A VLM and its processor; builds the chat-formatted inputs both captioner and coder use."""

    def __init__(self, name: str, model: torch.nn.Module, processor):
        self.name = name
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._fingerprint: bytes | None = None

    def fingerprint(self) -> bytes:
        """4 bytes over the model's digest (stic.models.hf) and the image settings that change the
        image tokens, hence the probabilities (read by name, not through a library's serialisation)."""
        if self._fingerprint is None:
            h = hashlib.blake2b(model_digest(self.model, self.tokenizer), digest_size=4)
            images = getattr(self.processor, "image_processor", None)
            settings = {f"processor.{k}": getattr(self.processor, k) for k in _PROCESSOR_SETTINGS
                        if getattr(self.processor, k, None) is not None}  # fmt: skip
            if images is not None:
                settings.update({k: getattr(images, k) for k in _IMAGE_SETTINGS if getattr(images, k, None) is not None})
            h.update(json.dumps(settings, sort_keys=True, default=str).encode())
            self._fingerprint = h.digest()
        return self._fingerprint

    def prompt_inputs(self, image: np.ndarray | None, prompt: str) -> dict[str, torch.Tensor]:
        """Model inputs for one user turn (the image, if any, then `prompt`), ending where the
        assistant's answer starts."""
        content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": prompt}]
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        images = [Image.fromarray(image)] if image is not None else None
        return dict(self.processor(text=text, images=images, return_tensors="pt"))


def load_vlm(name_or_dir: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> VisionLanguageModel:
    """Load a VLM by model id or local directory onto `device` in `dtype` (the caption coder's
    placement, float32 on the CPU, by default)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(name_or_dir)
        model = AutoModelForImageTextToText.from_pretrained(name_or_dir, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load vision-language model {name_or_dir!r} (give a local transformers "
            f"directory or a reachable model id; none ships offline): {exc}"
        ) from exc
    return VisionLanguageModel(Path(name_or_dir).name or name_or_dir, model.to(device), processor)


LOADED_VLMS = ModelCache("vision-language models", maxsize=2)


def cached_vlm(model: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> VisionLanguageModel:
    """VLMs are loaded once per process and placement: a captioner and a caption coder of the same
    model and placement share one (the coder's is always float32 on the CPU). Keyed by the
    resolved folder for a local model."""
    key = model_key(model)
    return LOADED_VLMS.get((key, device, dtype), lambda: load_vlm(key, device, dtype))



def captioner_vlm(model: str, device: str | None = None, dtype: str | None = None) -> VisionLanguageModel:
    """The VLM for captioning, placed by stic.placement (bfloat16 on the CPU by default)."""
    from stic.placement import resolve

    return cached_vlm(model, *resolve(device, dtype, cpu_dtype="bfloat16"))
