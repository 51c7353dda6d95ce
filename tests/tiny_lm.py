"""A tiny random causal LM + byte-level BPE tokenizer, built offline in a second, for tests."""

from __future__ import annotations

import torch

from stic.text.lm import LanguageModel

CORPUS = [
    "The image features a red barn with a white roof, surrounded by a lush green field.",
    "A man is riding a bicycle down a busy city street next to parked cars.",
    "The scene captures a peaceful moment: two dogs resting on a wooden porch.",
    "There are several boats docked in the harbour, and the water is calm.",
    "In the background, mountains rise above a small village with colourful houses.",
] * 4


def tiny_tokenizer():
    """Byte-level BPE (every UTF-8 string round-trips) with <bos>/<eos> specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>")


def tiny_lm(seed: int = 0, extra_vocab: int = 7) -> LanguageModel:
    """Random 2-layer Llama; `extra_vocab` padding rows beyond the tokenizer, as real models have."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer) + extra_vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return LanguageModel("tiny-llama", model, tokenizer)
