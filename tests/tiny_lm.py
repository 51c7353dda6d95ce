"""Tiny random causal LMs + a byte-level BPE tokenizer, built offline in a second, for tests.

Each model is saved as a transformers-style folder (config.json, model.safetensors,
tokenizer.json), the form users bring, and read back by the exact engine (`tiny_lm`) or by the
float engine (`tiny_float_lm`) from the same files, so both share one identity digest.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

CORPUS = [
    "The image features a red barn with a white roof, surrounded by a lush green field.",
    "A man is riding a bicycle down a busy city street next to parked cars.",
    "The scene captures a peaceful moment: two dogs resting on a wooden porch.",
    "There are several boats docked in the harbour, and the water is calm.",
    "In the background, mountains rise above a small village with colourful houses.",
] * 4

_ROOT = Path(tempfile.mkdtemp(prefix="stic-tiny-lm-"))


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


def _config(family: str, vocab: int, tok):
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    if family == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, tie_word_embeddings=True, **common)
    if family == "qwen2":  # biased q/k/v, untied head
        return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, tie_word_embeddings=False, **common)
    if family == "gemma3":  # a 5-token sliding window, so window masking is exercised
        return Gemma3TextConfig(
            hidden_size=64, intermediate_size=96, num_hidden_layers=4, head_dim=16, sliding_window=5,
            layer_types=["sliding_attention", "full_attention"] * 2, query_pre_attn_scalar=16,
            pad_token_id=0, **common,
        )  # fmt: skip
    raise ValueError(family)


@functools.cache
def tiny_folder(family: str = "llama", seed: int = 0, extra_vocab: int = 7) -> Path:
    """A random model of `family` ("llama", "qwen2", "gemma3") saved as a model folder;
    `extra_vocab` padding rows beyond the tokenizer, as real models have."""
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config = _config(family, len(tokenizer) + extra_vocab, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    if family != "llama":  # default init leaves norms at 0/1 and biases at 0: make every part matter
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.3 if family == "gemma3" else 0.1)
    folder = _ROOT / f"{family}-{seed}-{extra_vocab}"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_lm(seed: int = 0, extra_vocab: int = 7, family: str = "llama"):
    """The tiny model on the exact engine (stic.text.exact_model)."""
    from stic.text.exact_model import from_weights
    from stic.text.lm_weights import read_folder

    model = from_weights(read_folder(tiny_folder(family, seed, extra_vocab)))
    model.name = f"tiny-{family}"
    return model


def tiny_float_lm(seed: int = 0, extra_vocab: int = 7, family: str = "llama", engine: str = "auto"):
    """The same tiny model on a float engine (stic.text.lm.LanguageModel)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stic.text.lm import LanguageModel

    folder = tiny_folder(family, seed, extra_vocab)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return LanguageModel(f"tiny-{family}", model, AutoTokenizer.from_pretrained(folder), engine=engine, source=folder)


def tiny_gguf(path: Path, seed: int = 0) -> Path:
    """The tiny Llama written as a llama.cpp-style GGUF (float32 tensors, Q/K rows permuted as
    llama.cpp's converter does, GPT-2 style tokenizer in the metadata)."""
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    folder = tiny_folder("llama", seed, 7)
    config = json.loads((folder / "config.json").read_text())
    spec = json.loads((folder / "tokenizer.json").read_text())
    tensors = load_file(str(folder / "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]

    def permute(w, n):  # llama.cpp convert_hf_to_gguf.LlamaModel.permute
        return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"] if "rope_parameters" in config else config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    tokens += [f"<pad{i}>" for i in range(config["vocab_size"] - len(tokens))]
    special = {t["content"] for t in spec["added_tokens"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}  # fmt: skip
    for key, value in tensors.items():
        value = np.ascontiguousarray(value.astype(np.float32))
        if key == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "model.norm.weight":
            name = "output_norm.weight"
        else:
            _, _, layer, *rest = key.split(".")
            base = ".".join(rest[:-1])
            name = f"blk.{layer}.{names[base]}.weight"
            if base == "self_attn.q_proj":
                value = permute(value, heads)
            elif base == "self_attn.k_proj":
                value = permute(value, kv_heads)
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
