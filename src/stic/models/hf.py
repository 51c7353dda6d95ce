"""Identity digests of transformers models: what a float caption coder's fingerprint is made of.

A digest covers what decides a caption's probabilities: every weight, the tokenizer's vocabulary
(token id -> string: what a decoder turns ids back into) and the config values that change the
outputs for given weights, read by name. Never a library's serialisation of a config or a
tokenizer: a transformers or tokenizers release that adds or renames an attribute must not turn
every existing file into "made with another model".
"""

from __future__ import annotations

import hashlib
import json

import torch

#: config attributes that change a model's outputs given its weights (absent ones are skipped);
#: nested text and vision configs are read the same way
BEHAVIOUR_KEYS = (
    "model_type", "hidden_act", "hidden_activation", "rms_norm_eps", "layer_norm_eps", "rope_theta",
    "rope_scaling", "rope_parameters", "partial_rotary_factor", "sliding_window", "layer_types", "num_attention_heads",
    "num_key_value_heads", "head_dim", "query_pre_attn_scalar", "attn_logit_softcapping",
    "final_logit_softcapping", "tie_word_embeddings", "image_token_index", "image_token_id",
    "vision_feature_layer", "vision_feature_select_strategy", "image_grid_pinpoints", "scale_factor",
    "image_size", "patch_size", "spatial_merge_size", "mrope_section",
)  # fmt: skip
_NESTED = ("text_config", "vision_config")


def behaviour(config) -> dict:
    """The BEHAVIOUR_KEYS values of a config (and of its text and vision configs)."""
    values = {k: getattr(config, k) for k in BEHAVIOUR_KEYS if getattr(config, k, None) is not None}
    for name in _NESTED:
        nested = getattr(config, name, None)
        if nested is not None:
            values[name] = behaviour(nested)
    return values


def model_digest(model: torch.nn.Module, tokenizer) -> bytes:
    """BLAKE2b over the behaviour config values, the tokenizer's vocabulary and all weights."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(behaviour(model.config), sort_keys=True, default=str).encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])).encode())
    seen: set[int] = set()
    for key, tensor in sorted(model.state_dict().items()):
        if tensor.data_ptr() in seen:  # tied weights (e.g. lm_head = embeddings) count once
            continue
        seen.add(tensor.data_ptr())
        h.update(key.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return h.digest()
