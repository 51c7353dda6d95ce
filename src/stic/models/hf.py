"""Identity digests of transformers models: what a float caption coder's fingerprint is made of."""

from __future__ import annotations

import hashlib
import json

import torch

_CONFIG_KEYS_IGNORED = {
    "architectures", "dtype", "torch_dtype", "transformers_version", "quantization_config",
    "use_cache", "output_attentions", "output_hidden_states", "return_dict", "name_or_path",
}  # fmt: skip


def model_digest(model: torch.nn.Module, tokenizer) -> bytes:
    """BLAKE2b over the config (what changes outputs), tokenizer JSON and all weights."""
    h = hashlib.blake2b(digest_size=16)
    config = {
        k: v
        for k, v in model.config.to_dict().items()
        if not k.startswith("_") and k not in _CONFIG_KEYS_IGNORED
    }
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    seen: set[int] = set()
    for key, tensor in sorted(model.state_dict().items()):
        if tensor.data_ptr() in seen:  # tied weights (e.g. lm_head = embeddings) count once
            continue
        seen.add(tensor.data_ptr())
        h.update(key.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.digest()
