"""Read a causal LM's configuration, tensors and tokenizer straight from a GGUF file or a
transformers-style folder (config.json + safetensors + tokenizer.json), without transformers.

Why: the exact caption engine (stic.text.exact_lm) needs the weights as numbers, not a
transformers module; importing transformers and converting a GGUF costs seconds per process.
The model's identity is a digest of what decides its outputs: the tensors' stored bytes, the
tokenizer's vocabulary and merges, and the few config values the engine reads — never a
library's serialisation of a config, which changes between releases.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stic.errors import ModelNotFoundError

#: Architectures the exact engine implements (transformers' model_type names).
ARCHITECTURES = ("llama", "qwen2", "gemma3_text")

_GGUF_ARCH = {"llama": "llama", "qwen2": "qwen2", "gemma3": "gemma3_text"}
_GGUF_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_GGUF_NAMES_BY_ARCH = {  # the same GGUF name means another norm in Gemma 3
    "gemma3_text": {"ffn_norm": "pre_feedforward_layernorm",
                    "post_attention_norm": "post_attention_layernorm"},
    "llama": {"ffn_norm": "post_attention_layernorm"},
    "qwen2": {"ffn_norm": "post_attention_layernorm"},
}  # fmt: skip


@dataclass
class LMConfig:
    """What the exact engine reads of a model's configuration."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rms_eps: float
    #: per layer: (rope theta, linear scaling factor)
    rope: list[tuple[float, float]]
    #: per layer: sliding window length or None
    windows: list[int | None]
    tied: bool
    query_pre_attn_scalar: float | None = None  # Gemma: attention scale 1/sqrt(this)
    bos_id: int | None = None
    eos_id: int | None = None

    def digest_fields(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("bos_id", "eos_id")}


@dataclass
class LMWeights:
    """A model's config, tensors (float32, transformers' names and layout) and tokenizer."""

    name: str
    config: LMConfig
    tensors: dict[str, np.ndarray]
    tokenizer_json: str
    #: bytes that identify the weights as stored (GGUF blocks or safetensors data)
    content_digest: bytes = field(default=b"")

    def digest(self) -> bytes:
        """16 bytes over config values, tokenizer vocabulary/merges and stored tensor bytes."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps(self.config.digest_fields(), sort_keys=True).encode())
        h.update(tokenizer_identity(self.tokenizer_json))
        h.update(self.content_digest)
        return h.digest()


def tokenizer_identity(tokenizer_json: str) -> bytes:
    """The vocabulary, merges, added tokens and pre-tokenizer of a tokenizer.json, canonically."""
    spec = json.loads(tokenizer_json)
    model = spec.get("model", {})
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    vocab = model.get("vocab", {})
    vocab_items = sorted(vocab.items()) if isinstance(vocab, dict) else vocab
    added = sorted((t["id"], t["content"], bool(t.get("special"))) for t in spec.get("added_tokens", []))
    parts = [model.get("type"), vocab_items, merges, added, spec.get("pre_tokenizer"), spec.get("normalizer")]
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).digest()


def identity_digest(path: Path) -> bytes:
    """`LMWeights.digest()` of a GGUF file or model folder (what learned prefixes are bound to)."""
    path = Path(path)
    return (read_gguf(path, path.stem, dequantize_tensors=False) if path.suffix == ".gguf" else read_folder(path)).digest()


# -- transformers-style folders --------------------------------------------------------------
def read_folder(folder: Path) -> LMWeights:
    """config.json, *.safetensors and tokenizer.json of a local model folder."""
    from safetensors import safe_open

    folder = Path(folder)
    config_path, tokenizer_path = folder / "config.json", folder / "tokenizer.json"
    files = sorted(folder.glob("*.safetensors"))
    if not files and any(folder.glob("*.bin")):
        raise ModelNotFoundError(
            f"refusing language model {str(folder)!r}: its weights are a pickle (.bin), and only "
            "safetensors are loaded (pickles can run code)"
        )
    if not config_path.is_file() or not tokenizer_path.is_file() or not files:
        raise ModelNotFoundError(
            f"{folder}: a model folder needs config.json, tokenizer.json and *.safetensors"
        )
    raw = json.loads(config_path.read_text())
    raw = raw.get("text_config", raw) if raw.get("model_type") == "gemma3" else raw
    config = _config_from_hf(raw)
    tensors: dict[str, np.ndarray] = {}
    h = hashlib.blake2b(digest_size=16)
    for path in files:
        with safe_open(str(path), framework="np") as f:
            for key in sorted(f.keys()):
                array = f.get_tensor(key)
                name = key.removeprefix("language_model.").removeprefix("model.language_model.")
                if not name.startswith("lm_head"):
                    name = "model." + name.removeprefix("model.")
                tensors[name] = array
                h.update(key.encode() + str(array.shape).encode())
                h.update(np.ascontiguousarray(array).tobytes())
    if config.model_type == "gemma3_text":
        for key in [k for k in tensors if k.endswith("norm.weight")]:
            tensors[key] = 1.0 + tensors[key].astype(np.float32)  # Gemma's norms scale by 1 + w
    return LMWeights(
        folder.name, config, tensors, tokenizer_path.read_text(), content_digest=h.digest()
    )


def _config_from_hf(raw: dict) -> LMConfig:
    kind = raw.get("model_type")
    if kind not in ARCHITECTURES:
        raise ModelNotFoundError(
            f"the exact caption engine runs {', '.join(ARCHITECTURES)} models, not {kind!r}"
        )
    layers = int(raw["num_hidden_layers"])
    heads = int(raw["num_attention_heads"])
    head_dim = int(raw.get("head_dim") or raw["hidden_size"] // heads)
    rope = _hf_rope(raw, kind, layers)
    if kind == "gemma3_text":
        types = raw.get("layer_types") or [
            "full_attention" if (i + 1) % raw.get("sliding_window_pattern", 6) == 0
            else "sliding_attention" for i in range(layers)
        ]  # fmt: skip
        windows = [raw["sliding_window"] if t == "sliding_attention" else None for t in types]
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if raw.get(key):
                raise ModelNotFoundError(f"the exact caption engine does not implement {key}")
    else:
        windows = [None] * layers
        if raw.get("use_sliding_window"):
            raise ModelNotFoundError("the exact caption engine does not implement sliding windows for Qwen2")
    if raw.get("mlp_bias") or (kind == "llama" and raw.get("attention_bias")):
        raise ModelNotFoundError("the exact caption engine does not implement biased Llama layers")
    return LMConfig(
        model_type=kind,
        hidden=int(raw["hidden_size"]),
        layers=layers,
        heads=heads,
        kv_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        vocab=int(raw["vocab_size"]),
        rms_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope=rope,
        windows=windows,
        tied=bool(raw.get("tie_word_embeddings", kind == "gemma3_text")),
        query_pre_attn_scalar=(
            float(raw.get("query_pre_attn_scalar", head_dim)) if kind == "gemma3_text" else None
        ),
        bos_id=raw.get("bos_token_id"),
        eos_id=raw.get("eos_token_id") if not isinstance(raw.get("eos_token_id"), list) else raw["eos_token_id"][0],
    )


def _hf_rope(raw: dict, kind: str, layers: int) -> list[tuple[float, float]]:
    """Per-layer (theta, linear factor) from either transformers 4 or 5 style configs."""
    params = raw.get("rope_parameters")
    if params is None:
        scaling = raw.get("rope_scaling") or {}
        params = {"rope_theta": raw.get("rope_theta", 10000.0), **scaling}
        if kind == "gemma3_text":
            params = {
                "full_attention": params,
                "sliding_attention": {"rope_theta": raw.get("rope_local_base_freq", 10000.0)},
            }
    per_type = {"all": params} if "rope_theta" in params else params
    for p in per_type.values():
        kind_of = p.get("rope_type", p.get("type", "default"))
        if kind_of not in ("default", "linear"):
            raise ModelNotFoundError(f"the exact caption engine does not implement {kind_of!r} RoPE")

    def pair(p: dict) -> tuple[float, float]:
        factor = p.get("factor", 1.0) if p.get("rope_type", p.get("type")) == "linear" else 1.0
        return float(p["rope_theta"]), float(factor)

    if "all" in per_type:
        return [pair(per_type["all"])] * layers
    types = raw.get("layer_types") or [
        "full_attention" if (i + 1) % raw.get("sliding_window_pattern", 6) == 0
        else "sliding_attention" for i in range(layers)
    ]  # fmt: skip
    return [pair(per_type[t]) for t in types]


# -- GGUF -------------------------------------------------------------------------------------
def read_gguf(path: Path, name: str, dequantize_tensors: bool = True) -> LMWeights:
    """A GGUF file: tensors de-quantised by the gguf package, Q/K rows of Llama un-permuted to
    transformers' layout, and a tokenizer.json built from the file's vocabulary and merges.
    Without `dequantize_tensors` only the identity is read (no tensors: fast)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))

    def field(key: str, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch_name = field("general.architecture")
    kind = _GGUF_ARCH.get(arch_name)
    if kind is None:
        raise ModelNotFoundError(
            f"{path}: the exact caption engine has no reader for GGUF architecture {arch_name!r}"
        )
    config = _config_from_gguf(field, arch_name, kind)
    names = {**_GGUF_NAMES, **_GGUF_NAMES_BY_ARCH[kind]}
    tensors: dict[str, np.ndarray] = {}
    h = hashlib.blake2b(digest_size=16)
    for t in reader.tensors:
        h.update(f"{t.name}|{t.tensor_type.name}|{list(t.shape)}".encode())
        h.update(np.ascontiguousarray(t.data).tobytes())
        if not dequantize_tensors:
            continue
        array = dequantize(t.data, t.tensor_type).astype(np.float32)
        hf_name = _hf_tensor_name(t.name, names)
        if kind == "llama" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.heads if "q_proj" in hf_name else config.kv_heads
            array = _unpermute(array, heads)
        tensors[hf_name] = array
    config.tied = not any(t.name == "output.weight" for t in reader.tensors)
    return LMWeights(name, config, tensors, _gguf_tokenizer_json(field, path), content_digest=h.digest())


def _config_from_gguf(field, arch: str, kind: str) -> LMConfig:
    layers = int(field(f"{arch}.block_count"))
    heads = int(field(f"{arch}.attention.head_count"))
    hidden = int(field(f"{arch}.embedding_length"))
    head_dim = int(field(f"{arch}.attention.key_length") or hidden // heads)
    theta = float(field(f"{arch}.rope.freq_base", 10000.0))
    factor = float(field(f"{arch}.rope.scaling.factor", 1.0) or 1.0)
    if field(f"{arch}.rope.scaling.type", "none") not in ("none", "linear"):
        raise ModelNotFoundError("the exact caption engine implements only linear RoPE scaling")
    windows: list[int | None] = [None] * layers
    rope = [(theta, factor)] * layers
    if kind == "gemma3_text":
        window = int(field(f"{arch}.attention.sliding_window"))
        windows = [None if (i + 1) % 6 == 0 else window for i in range(layers)]
        rope = [(theta, factor) if w is None else (10000.0, 1.0) for w in windows]
    tokens = field("tokenizer.ggml.tokens")
    return LMConfig(
        model_type=kind,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=int(field(f"{arch}.attention.head_count_kv", heads)),
        head_dim=head_dim,
        vocab=int(field(f"{arch}.vocab_size", len(tokens))),
        rms_eps=float(field(f"{arch}.attention.layer_norm_rms_epsilon")),
        rope=rope,
        windows=windows,
        tied=True,  # read_gguf checks: no output.weight means tied
        query_pre_attn_scalar=float(head_dim) if kind == "gemma3_text" else None,
        bos_id=field("tokenizer.ggml.bos_token_id"),
        eos_id=field("tokenizer.ggml.eos_token_id"),
    )


def _hf_tensor_name(name: str, names: dict[str, str]) -> str:
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    _, layer, base, suffix = name.split(".", 3)
    return f"model.layers.{layer}.{names[base]}.{suffix}"


def _unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (rotary pairs interleaved -> split halves)."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


#: GGUF pre-tokenizer names and the split rules they stand for (llama.cpp's names)
_GPT2_SPLIT = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
)


def _converted_tokenizer_json(path: Path) -> str:
    """Other GGUF tokenizers (SentencePiece, other split rules) through transformers' GGUF
    converter: run once, when the model is first converted (the result is cached)."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ModelNotFoundError(f"{path}: reading this GGUF tokenizer needs transformers") from exc
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return tokenizer.backend_tokenizer.to_str()


def _gguf_tokenizer_json(field, path: Path) -> str:
    """A byte-level BPE tokenizer.json from a GGUF's vocabulary and merges (GPT-2 family)."""
    model = field("tokenizer.ggml.model")
    pre = field("tokenizer.ggml.pre", "default")
    if model != "gpt2" or pre not in ("smollm", "gpt-2", "default"):
        return _converted_tokenizer_json(path)
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = field("tokenizer.ggml.merges")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    pre_tokenizer = byte_level
    if pre == "smollm":  # SmolLM's tokenizer.json: single digits, then GPT-2's byte-level split
        pre_tokenizer = {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
        }
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, (t, kind) in enumerate(zip(tokens, types, strict=True)) if kind == 3
        ],  # fmt: skip
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": list(merges),
        },  # fmt: skip
    }
    return json.dumps(spec)
