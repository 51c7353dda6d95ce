"""Tiny random vision-language models with their processors, saved to folders, for tests: one
builder per family the docs name (LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM)."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_lm import tiny_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _tokenizer(specials: list[str]):
    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer


def _text_config(tokenizer, **extra) -> dict:
    """A 2-layer Llama-shaped language model over the tiny tokenizer."""
    return {"vocab_size": len(tokenizer) + 3, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, **extra}  # fmt: skip


def _save(folder: Path, model_class, config, processor, seed: int) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    model_class(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _llava_family(folder: Path, seed: int, next_generation: bool) -> Path:
    """LLaVA (or LLaVA-NeXT, any-resolution tiles): a 16x16 CLIP tower of 2x2 patches + Llama."""
    import transformers as t

    tokenizer = _tokenizer(["<image>"])
    vision = t.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                image_size=16, patch_size=8, projection_dim=16)  # fmt: skip
    sizes = {"size": {"shortest_edge": 16}, "crop_size": {"height": 16, "width": 16}}
    common = {"image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
              "vision_feature_select_strategy": "default", "vision_feature_layer": -1}  # fmt: skip
    if next_generation:
        pinpoints = [[16, 16], [16, 32], [32, 16]]
        images = t.LlavaNextImageProcessor(**sizes, image_grid_pinpoints=pinpoints)
        names = (t.LlavaNextProcessor, t.LlavaNextConfig, t.LlavaNextForConditionalGeneration)
        common["image_grid_pinpoints"] = pinpoints
    else:
        images = t.CLIPImageProcessor(**sizes, do_center_crop=True)
        names = (t.LlavaProcessor, t.LlavaConfig, t.LlavaForConditionalGeneration)
    processor_class, config_class, model_class = names
    processor = processor_class(image_processor=images, tokenizer=tokenizer, patch_size=8, chat_template=CHAT_TEMPLATE,
                                vision_feature_select_strategy="default", image_token="<image>",
                                num_additional_image_tokens=1)  # fmt: skip
    config = config_class(vision_config=vision, text_config=t.LlamaConfig(**_text_config(tokenizer)), **common)
    return _save(folder, model_class, config, processor, seed)


def save_tiny_llava(folder: Path, seed: int = 0) -> Path:
    return _llava_family(folder, seed, next_generation=False)


def save_tiny_llava_next(folder: Path, seed: int = 0) -> Path:
    return _llava_family(folder, seed, next_generation=True)


def _qwen_family(folder: Path, seed: int, version_2_5: bool) -> Path:
    """Qwen2-VL (or Qwen2.5-VL, windowed vision attention): M-RoPE, its own vision tower; 56x56
    images give 2x2 merged patches of 28 pixels."""
    import transformers as t
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = _tokenizer(QWEN_SPECIALS)
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in QWEN_SPECIALS}
    images = t.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2)
    patches = {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if version_2_5:
        vision = {"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32,
                  "in_channels": 3, "window_size": 56, "fullatt_block_indexes": [1], **patches}  # fmt: skip
        names = (t.Qwen2_5_VLProcessor, t.Qwen2_5_VLConfig, t.Qwen2_5_VLForConditionalGeneration)
    else:
        vision = {"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2, "in_chans": 3, **patches}
        names = (t.Qwen2VLProcessor, t.Qwen2VLConfig, t.Qwen2VLForConditionalGeneration)
    processor_class, config_class, model_class = names
    processor = processor_class(image_processor=images, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                chat_template=QWEN_TEMPLATE)  # fmt: skip
    config = config_class(
        text_config=_text_config(tokenizer, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=vision, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    return _save(folder, model_class, config, processor, seed)


def save_tiny_qwen2_vl(folder: Path, seed: int = 0) -> Path:
    return _qwen_family(folder, seed, version_2_5=False)


def save_tiny_qwen2_5_vl(folder: Path, seed: int = 0) -> Path:
    return _qwen_family(folder, seed, version_2_5=True)


def save_tiny_idefics3(folder: Path, seed: int = 0) -> Path:
    """Idefics3 (SmolVLM's architecture: SigLIP tower, pixel shuffle, Llama): one 32x32 image becomes
    4 image tokens."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    tokenizer = _tokenizer(["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"])
    images = Idefics3ImageProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False)
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4, chat_template=CHAT_TEMPLATE)
    config = Idefics3Config(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", **_text_config(tokenizer)},
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    return _save(folder, Idefics3ForConditionalGeneration, config, processor, seed)
