"""A causal LM forward pass in exact integer arithmetic: the same logits on every machine.

Why: a caption's code is only decodable where the decoder computes bit-identical next-token
frequencies. Float kernels differ between CPU kernel classes (AVX-512, AVX2, plain), thread
counts, batch shapes and devices, so this engine computes every number that reaches the range
coder with integers (stic.text.fixed_point):

* weights: int8 per output row, with a 15-bit row-scale mantissa and a power-of-two exponent;
* every linear layer: its input row quantised to int8 (symmetric, per row), an int8 x int8
  product with int32 accumulation (stic.text.int8_product, in a form no CPU's kernel can
  saturate), then an exact integer rescale;
* RMSNorm with an exact integer square root; RoPE, softmax, SiLU and GELU from tables made with
  exact decimal arithmetic; attention products in float64 over small integers (exact);
* logits to probabilities with the integer exp table (stic.text.fixed_point.exp_neg).

Exactness makes batching free: a whole caption in one pass gives exactly the logits of the
token-by-token pass the decoder runs, so the encoder does one pass. Llama (SmolLM2), Qwen2/2.5
and Gemma 3 text models are implemented; docs/caption_coding.md gives the number formats.
"""

from __future__ import annotations

import numpy as np

from stic.text import fixed_point as fp
from stic.text.int8_product import Int8Matrix
from stic.text.lm_weights import LMConfig, LMWeights

#: Bumped whenever any number this engine computes can change: part of the fingerprint.
NUMERICS_VERSION = 1

RESIDUAL_BITS = 16  #: the residual stream
ACT_BITS = 12  #: linear layer inputs/outputs, logits
CACHE_BITS = 8  #: queries, keys and values in attention (clamped to 16-bit integers)
NORM_BITS = 16  #: RMSNorm weights
_CACHE_LIMIT = (1 << 15) - 1
_ATTN_PROB_SHIFT = fp.EXP_OUT_BITS - 16  #: attention weights keep 16 bits


def fixed_vector(values: np.ndarray, bits: int) -> np.ndarray:
    """round(values * 2^bits) as int64 (a power-of-two product: exact)."""
    return np.rint(np.asarray(values, dtype=np.float64) * (1 << bits)).astype(np.int64)


def convert(weights: LMWeights) -> dict[str, np.ndarray]:
    """The integer tensors ExactDecoder runs on, from a model's float tensors."""
    c, t = weights.config, weights.tensors
    out: dict[str, np.ndarray] = {}

    def linear(name: str, *parts: str, bias: bool = False) -> None:
        matrix = np.concatenate([t[f"{p}.weight"] for p in parts], axis=0)
        for key, value in fp.quantise_weight(matrix).items():
            out[f"{name}.{key}"] = value
        if bias and all(f"{p}.bias" in t for p in parts):
            out[f"{name}.bias"] = fixed_vector(np.concatenate([t[f"{p}.bias"] for p in parts]), ACT_BITS)

    linear("embed", "model.embed_tokens")
    if not c.tied:
        linear("head", "lm_head")
    out["norm"] = fixed_vector(t["model.norm.weight"], NORM_BITS)
    norms = ["input_layernorm", "post_attention_layernorm"]
    if c.model_type == "gemma3_text":
        norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm",
                  "self_attn.q_norm", "self_attn.k_norm"]  # fmt: skip
    for i in range(c.layers):
        p = f"model.layers.{i}"
        attn = [f"{p}.self_attn.{x}_proj" for x in "qkv"]
        linear(f"{i}.qkv", *attn, bias=c.model_type == "qwen2")
        linear(f"{i}.o", f"{p}.self_attn.o_proj")
        linear(f"{i}.gate_up", f"{p}.mlp.gate_proj", f"{p}.mlp.up_proj")
        linear(f"{i}.down", f"{p}.mlp.down_proj")
        for norm in norms:
            out[f"{i}.{norm}"] = fixed_vector(t[f"{p}.{norm}.weight"], NORM_BITS)
    return out


class IntLinear:
    """y = x W^T + b on int64 rows: int8 codes on both sides, int32 accumulation, exact rescale."""

    def __init__(self, tensors: dict[str, np.ndarray], name: str, in_bits: int, out_bits: int):
        self.product = Int8Matrix(tensors[f"{name}.codes"])
        self.mantissa = tensors[f"{name}.mantissa_127"]
        # y = acc * m_x 2^e_x * mantissa_127 2^-(shift + 7), in units of 2^-out_bits
        self.base = out_bits - in_bits - int(tensors[f"{name}.shift"]) - 7
        self.bias = tensors.get(f"{name}.bias")
        self.out_features = self.mantissa.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        q, scales = fp.quantise_rows(x)
        product = self.product(q) * self.mantissa  # |acc| < 127^2 K < 2^31
        product *= fp.per_row([m for m, _ in scales])  # < 2^27 * 2^15.1 * 2^15
        y = fp.row_shift_round(product, [e + self.base for _, e in scales])
        return y if self.bias is None else y + self.bias


class ExactDecoder:
    """Runs the integer model over tokens, appending to an `ExactState`."""

    def __init__(self, config: LMConfig, tensors: dict[str, np.ndarray]):
        self.config = c = config
        self.gemma = c.model_type == "gemma3_text"
        self.eps = fp.fixed_constant(c.rms_eps, 60)
        self.embed_codes = tensors["embed.codes"]
        self.embed_mantissa = tensors["embed.mantissa"]
        self.embed_shift = int(tensors["embed.shift"])
        self.embed_scale = fp.fixed_sqrt(c.hidden, 16) if self.gemma else 1 << 16
        self.head = IntLinear(tensors, "embed" if c.tied else "head", ACT_BITS, ACT_BITS)
        self.final_norm = tensors["norm"]
        sub_out = ACT_BITS if self.gemma else RESIDUAL_BITS  # Gemma normalises before adding
        self.layers = []
        for i in range(c.layers):
            layer = {
                "qkv": IntLinear(tensors, f"{i}.qkv", ACT_BITS, ACT_BITS),
                "o": IntLinear(tensors, f"{i}.o", ACT_BITS, sub_out),
                "gate_up": IntLinear(tensors, f"{i}.gate_up", ACT_BITS, ACT_BITS),
                "down": IntLinear(tensors, f"{i}.down", ACT_BITS, sub_out),
            }
            for norm in _NORMS:
                if f"{i}.{norm}" in tensors:
                    layer[norm] = tensors[f"{i}.{norm}"]
            self.layers.append(layer)
        self.mlp_norm = "pre_feedforward_layernorm" if self.gemma else "post_attention_layernorm"
        self.score_scale = fp.fixed_sqrt(1.0 / (c.query_pre_attn_scalar or c.head_dim), 16)
        self.act = fp.gelu_tanh if self.gemma else fp.silu
        self.inv_freq = [fp.rope_inverse_frequencies(th, c.head_dim, f) for th, f in c.rope]
        self._rope: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def vocab_size(self) -> int:
        return self.head.out_features

    def _rope_rows(self, inv_freq: tuple[str, ...], start: int, end: int):
        """cos and sin rows [T, 1, head_dim] for positions [start, end), each repeated for both halves."""
        table = self._rope.get(inv_freq)
        if table is None or table[0].shape[0] < end:
            cos, sin = fp.rope_table(inv_freq, max(256, 1 << (end - 1).bit_length()))
            table = np.concatenate((cos, cos), -1), np.concatenate((sin, sin), -1)
            self._rope[inv_freq] = table
        return table[0][start:end, None], table[1][start:end, None]

    @staticmethod
    def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """RoPE on [T, heads, head_dim] (transformers' split-halves layout), units kept: halves
        (a, b) -> (a cos - b sin, b cos + a sin), as one product with (-b, a)."""
        half = x.shape[-1] // 2
        turned = np.concatenate((-x[..., half:], x[..., :half]), -1)
        return fp.shift_round(x * cos + turned * sin, -fp.ROPE_BITS)

    def _norm(self, x: np.ndarray, in_bits: int, weight: np.ndarray) -> np.ndarray:
        return fp.rms_norm(x, in_bits, weight, self.eps, ACT_BITS)

    def embed(self, ids: list[int]) -> np.ndarray:
        rows = self.embed_codes[ids].astype(np.int64) * self.embed_mantissa[ids, None]
        return fp.shift_round(rows * self.embed_scale, RESIDUAL_BITS - 16 - self.embed_shift)

    def forward(self, state: ExactState, ids: list[int]) -> np.ndarray:
        """Append `ids`; int64 logits [len(ids), vocab] in units of 2^-12, one row per token."""
        c = self.config
        t, start = len(ids), state.length
        end = start + t
        state.reserve(end)
        qk_heads, hd = c.heads + c.kv_heads, c.head_dim
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            qkv = layer["qkv"](self._norm(x, RESIDUAL_BITS, layer["input_layernorm"]))
            qk = qkv[:, : qk_heads * hd].reshape(t, qk_heads, hd)
            if self.gemma:
                qk = np.concatenate(
                    (
                        self._norm(qk[:, : c.heads], ACT_BITS, layer["self_attn.q_norm"]),
                        self._norm(qk[:, c.heads :], ACT_BITS, layer["self_attn.k_norm"]),
                    ),
                    1,
                )
            qk = self._to_cache_units(self._rotate(qk, *self._rope_rows(self.inv_freq[i], start, end)))
            state.keys[i][:, :, start:end] = qk[:, c.heads :].transpose(1, 2, 0)
            v = self._to_cache_units(qkv[:, qk_heads * hd :].reshape(t, c.kv_heads, hd))
            state.values[i][:, start:end] = v.transpose(1, 0, 2)
            attn = self._attention(state, i, qk[:, : c.heads], start, end)
            x = x + self._sublayer(layer, "o", attn, "post_attention_layernorm")
            gate_up = layer["gate_up"](self._norm(x, RESIDUAL_BITS, layer[self.mlp_norm]))
            half = gate_up.shape[1] // 2
            gate, up = gate_up[:, :half], gate_up[:, half:]  # (np.split takes ~20 µs a call)
            hidden = fp.shift_round(self.act(gate, ACT_BITS) * up, -ACT_BITS)
            x = x + self._sublayer(layer, "down", hidden, "post_feedforward_layernorm")
        state.length = end
        return self.head(self._norm(x, RESIDUAL_BITS, self.final_norm))

    @staticmethod
    def _to_cache_units(x: np.ndarray) -> np.ndarray:
        """Units of 2^-12 -> float64 integers in units of 2^-8, clamped to 16 bits."""
        return np.clip(fp.shift_round(x, CACHE_BITS - ACT_BITS), -_CACHE_LIMIT, _CACHE_LIMIT).astype(np.float64)

    def _attention(self, state: ExactState, i: int, q: np.ndarray, start: int, end: int) -> np.ndarray:
        """Causal (windowed) attention of the queries [t, heads, head_dim] at positions
        [start, end) over the layer's cache; output [t, heads * head_dim] in units of 2^-12."""
        c = self.config
        t, n_kv, hd = q.shape[0], c.kv_heads, c.head_dim
        groups = c.heads // n_kv
        window = c.windows[i]
        first = 0 if window is None else max(0, start - window + 1)
        # rows of each kv head's query block: (position, head in group); float64 products of
        # integers < 2^15 over <= 256 dims stay below 2^53: exact in any order
        qg = q.reshape(t, n_kv, groups, hd).transpose(1, 0, 2, 3).reshape(n_kv, t * groups, hd)
        raw = _integers(np.matmul(qg, state.keys[i][:, :, first:end]))  # units 2^-16
        scores = fp.shift_round(raw * self.score_scale, ACT_BITS - 2 * CACHE_BITS - 16)
        if t > 1:  # a single new token sees every cached key of its window
            positions, key_pos = np.arange(start, end)[:, None], np.arange(first, end)[None]
            allowed = key_pos <= positions
            if window is not None:
                allowed &= key_pos > positions - window
            allowed = np.repeat(allowed, groups, axis=0)[None]
            scores = np.where(allowed, scores, np.iinfo(np.int64).min // 4)  # exp_neg gives 0
        weights = fp.exp_neg(scores.max(-1, keepdims=True) - scores) >> _ATTN_PROB_SHIFT
        total = weights.sum(-1, keepdims=True)  # >= 2^16: the peak's own weight
        # weights < 2^17 times values < 2^15, summed over < 2^21 positions: exact in float64
        attn = np.matmul(weights.astype(np.float64), state.values[i][:, first:end])
        attn = fp.round_div(_integers(attn) << (ACT_BITS - CACHE_BITS), total)
        return attn.reshape(n_kv, t, groups * hd).transpose(1, 0, 2).reshape(t, c.heads * hd)

    def _sublayer(self, layer: dict, name: str, x: np.ndarray, gemma_norm: str) -> np.ndarray:
        """A projection back to the residual stream (Gemma normalises it first)."""
        y = layer[name](x)
        if self.gemma:
            y = fp.shift_round(self._norm(y, ACT_BITS, layer[gemma_norm]), RESIDUAL_BITS - ACT_BITS)
        return y


def _integers(x: np.ndarray) -> np.ndarray:
    """A float64 product of integers, back to int64: rounded, not truncated, so a result off by
    an ulp (another BLAS, a GPU) still gives the exact integer."""
    return np.rint(x).astype(np.int64)


_NORMS = (
    "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
    "post_feedforward_layernorm", "self_attn.q_norm", "self_attn.k_norm",
)  # fmt: skip


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Unnormalised integer probabilities (units 2^-30 of the top token's) of int64 logit rows."""
    return fp.exp_neg(logits.max(-1, keepdims=True) - logits)


class ExactState:
    """Key/value caches (float64 holding integers < 2^15) and the current position."""

    def __init__(self, decoder: ExactDecoder, capacity: int):
        c = decoder.config
        self.length = 0
        capacity = max(1, capacity)
        self.keys = [np.zeros((c.kv_heads, c.head_dim, capacity)) for _ in range(c.layers)]
        self.values = [np.zeros((c.kv_heads, capacity, c.head_dim)) for _ in range(c.layers)]

    def reserve(self, length: int) -> None:
        capacity = self.values[0].shape[1]
        if length <= capacity:
            return
        extra = max(length, 2 * capacity) - capacity
        for i, (keys, values) in enumerate(zip(self.keys, self.values, strict=True)):
            self.keys[i] = np.concatenate([keys, np.zeros((*keys.shape[:2], extra))], 2)
            self.values[i] = np.concatenate([values, np.zeros((values.shape[0], extra, values.shape[2]))], 1)

    def load_prefix(self, keys: np.ndarray, values: np.ndarray) -> None:
        """A learned prefix's float keys (already rotated) and values [layers, kv heads,
        positions, head dim], rounded to the cache's fixed point (a power-of-two product and a
        rounding: the same everywhere)."""
        length = keys.shape[2]
        self.reserve(length)
        for i in range(len(self.keys)):
            k = np.clip(np.rint(keys[i].astype(np.float64) * (1 << CACHE_BITS)), -_CACHE_LIMIT, _CACHE_LIMIT)
            v = np.clip(np.rint(values[i].astype(np.float64) * (1 << CACHE_BITS)), -_CACHE_LIMIT, _CACHE_LIMIT)
            self.keys[i][:, :, :length] = k.transpose(0, 2, 1)
            self.values[i][:, :length] = v
        self.length = length

    def clone(self) -> ExactState:
        copy = object.__new__(ExactState)
        copy.length = self.length
        copy.keys = [k.copy() for k in self.keys]
        copy.values = [v.copy() for v in self.values]
        return copy
