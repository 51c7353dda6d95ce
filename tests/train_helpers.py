"""Shared pieces of the training tests: a tiny codec config, a tiny image set, a tiny random CLIP,
and a one-thread fixture."""

import numpy as np
import pytest
import torch
from PIL import Image

TINY = {"architecture": "mbt2018-mean", "N": 8, "M": 8}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared, loaded machine: more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_images(root, folders=(("set_a", 12),), seed=0):
    """Smooth random pictures (upsampled noise + a little grain), so a tiny codec visibly learns."""
    rng = np.random.default_rng(seed)
    for folder, count in folders:
        (root / folder).mkdir(parents=True)
        for i in range(count):
            h, w = (int(v) for v in rng.integers(64, 112, 2))
            coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
            grain = rng.normal(0, 4, (h, w, 3))
            rgb = np.clip(np.asarray(coarse, dtype=float) + grain, 0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / folder / f"{folder}_{i}.png")
    return root


def save_tiny_clip(folder):
    """A random CLIP (32 px vision tower, word-level tokenizer) saved where load_clip can read it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "a", "good", "bad", "photo.", "red", "barn", "blue", "sky", "</s>"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 10)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    layers = {"intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4, "hidden_size": 32}
    config = CLIPConfig(
        text_config={"vocab_size": len(words), "max_position_embeddings": 16, "eos_token_id": 10, "bos_token_id": 1, "pad_token_id": 0,
                     **layers},
        vision_config={"image_size": 32, "patch_size": 8, **layers},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
