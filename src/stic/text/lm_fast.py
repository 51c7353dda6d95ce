"""A lean incremental forward pass for the Llama and Gemma 3 architectures (static KV cache).

Why: arithmetic decoding runs the LM one token at a time, and a transformers forward call costs
~50 ms per token on one core for SmolLM2-135M, mostly Python and dispatch overhead plus reading
0.5 GB of float32 weights. Here each token is a handful of fused matrix products on preallocated
caches. With `weights="lowbit"` the linear layers (and the output head) use torch's CPU integer
kernels with bfloat16 activations: int4 where the weights already sit on a 4-bit grid (a Q4_1 GGUF
such as SmolLM2's: exact), int8 elsewhere (e.g. Gemma's 5/6-bit tensors) — reading 4-8x fewer
bytes per token than float32. The head's top logits are then recomputed in float32.

The numbers differ slightly from transformers' (fused products, other kernels): that is fine
because encoder and decoder both run *this* code. `supports()` says which models it can run;
others use transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WEIGHT_FORMATS = ("float32", "int8", "int4", "lowbit")
#: Relative error below which int4 re-quantisation counts as exact (bf16 scales: ~0.3%).
_INT4_EXACT = 0.01
_INT4_GROUP = 32
#: With integer weights the output head runs in bfloat16; this many top logits are redone in float32.
HEAD_REFINE_TOP = 128


def supports(model: torch.nn.Module) -> bool:
    """True for the (text-only) Llama and Gemma 3 configurations this module implements."""
    config = model.config
    kind = config.model_type
    if kind not in ("llama", "gemma3_text"):
        return False
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return False
    for params in _rope_parameters(config).values():
        if params.get("rope_type", "default") not in ("default", "linear"):
            return False
    return not (
        kind == "gemma3_text"
        and (
            getattr(config, "attn_logit_softcapping", None)
            or getattr(config, "final_logit_softcapping", None)
        )
    )


def _rope_parameters(config) -> dict[str, dict]:
    """Rope parameters per layer type ('all' when every layer shares them)."""
    params = getattr(config, "rope_parameters", None)
    if params is None:  # older transformers
        scaling = getattr(config, "rope_scaling", None) or {}
        params = {"rope_type": scaling.get("rope_type", "default"), "rope_theta": config.rope_theta}
        if "factor" in scaling:
            params["factor"] = scaling["factor"]
    if "rope_theta" in params:
        return {"all": params}
    return params


class _Linear:
    """y = x W^T with float32, int8 (per row) or int4 (per 32-group) weights.

    The integer kernels take bfloat16 activations. "lowbit" picks int4 for weights that already sit
    on a 4-bit grid (e.g. from a Q4_1 GGUF: re-quantising them is exact) and int8 for the rest.
    """

    def __init__(self, weight: torch.Tensor, fmt: str):
        weight = weight.detach().to(torch.float32).contiguous()
        self.out_features, self.in_features = weight.shape
        self.fmt = fmt
        if fmt == "float32" or self.in_features % _INT4_GROUP:
            self.fmt, self.weight = "float32", weight
            return
        weight = F.pad(weight, (0, 0, 0, -self.out_features % 16))  # kernels want rows % 16 == 0
        if fmt in ("int4", "lowbit"):
            packed, scales_zeros, error = _int4(weight)
            if fmt == "int4" or error < _INT4_EXACT:
                self.fmt, self.packed, self.scales_zeros = "int4", packed, scales_zeros
                return
        scale = (weight.abs().amax(1) / 127).clamp(min=1e-12)
        self.fmt = "int8"
        self.int8 = (
            torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        )
        self.scales = scale.to(torch.bfloat16)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fmt == "float32":
            return F.linear(x, self.weight)
        if self.fmt == "int4":
            out = torch._weight_int4pack_mm_for_cpu(
                x.to(torch.bfloat16), self.packed, _INT4_GROUP, self.scales_zeros
            )
        else:
            out = torch._weight_int8pack_mm(x.to(torch.bfloat16), self.int8, self.scales)
        return out[..., : self.out_features].to(torch.float32)


def _int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Pack for the int4 kernel ((q - 8) * scale + zero per 32-group); relative error of doing so."""
    n, k = weight.shape
    groups = weight.view(n, k // _INT4_GROUP, _INT4_GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-12)
    q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15)
    zero = low + 8 * scale
    scales_zeros = torch.stack([scale.T, zero.T], -1).to(torch.bfloat16).contiguous()
    kept_scale, kept_zero = (scales_zeros[..., i].T.float()[..., None] for i in (0, 1))
    restored = (q - 8) * kept_scale + kept_zero
    error = float((restored.view(n, k) - weight).norm() / weight.norm().clamp(min=1e-30))
    packed = torch._convert_weight_to_int4pack_for_cpu(q.view(n, k).to(torch.int32), 1)
    return packed, scales_zeros, error


def _cat_rows(*weights: torch.Tensor) -> torch.Tensor:
    return torch.cat([w.detach().to(torch.float32) for w in weights], 0)


class _Layer:
    def __init__(self, layer, fmt: str, gemma: bool):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _Linear(
            _cat_rows(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight), fmt
        )
        self.q_size = attn.q_proj.weight.shape[0]
        self.kv_size = attn.k_proj.weight.shape[0]
        self.o = _Linear(attn.o_proj.weight, fmt)
        self.gate_up = _Linear(_cat_rows(mlp.gate_proj.weight, mlp.up_proj.weight), fmt)
        self.intermediate = mlp.gate_proj.weight.shape[0]
        self.down = _Linear(mlp.down_proj.weight, fmt)
        self.input_norm = _norm_weight(layer.input_layernorm.weight, gemma)
        if gemma:
            self.post_attn_norm = _norm_weight(layer.post_attention_layernorm.weight, gemma)
            self.pre_mlp_norm = _norm_weight(layer.pre_feedforward_layernorm.weight, gemma)
            self.post_mlp_norm = _norm_weight(layer.post_feedforward_layernorm.weight, gemma)
            self.q_norm = _norm_weight(attn.q_norm.weight, gemma)
            self.k_norm = _norm_weight(attn.k_norm.weight, gemma)
        else:
            self.pre_mlp_norm = _norm_weight(layer.post_attention_layernorm.weight, gemma)


def _norm_weight(weight: torch.Tensor, gemma: bool) -> torch.Tensor:
    w = weight.detach().to(torch.float32)
    return 1.0 + w if gemma else w.clone()


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return F.rms_norm(x, weight.shape, weight, eps)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LeanDecoder:
    """Runs a Llama / Gemma 3 text model token by token; state lives in `LeanState`."""

    def __init__(self, model: torch.nn.Module, weights: str = "float32"):
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, not {weights!r}")
        if not supports(model):
            raise ValueError(f"no lean forward for model type {model.config.model_type!r}")
        config = model.config
        self.weights = weights
        self.gemma = config.model_type == "gemma3_text"
        body = model.model
        self.eps = float(config.rms_norm_eps)
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.embed = body.embed_tokens.weight.detach().to(torch.float32)  # shared, not copied
        # Gemma scales embeddings by sqrt(hidden), applied to the looked-up rows
        self.embed_scale = torch.tensor(config.hidden_size**0.5 if self.gemma else 1.0)
        self.layers = [_Layer(layer, weights, self.gemma) for layer in body.layers]
        self._no_bias = torch.zeros(())
        self.final_norm = _norm_weight(body.norm.weight, self.gemma)
        head = model.get_output_embeddings().weight.detach().to(torch.float32)
        # the head only ranks candidates at low precision: its top logits are redone in float32
        self.head = _Linear(head, "float32" if weights == "float32" else "int4")
        self.head_exact = head if self.head.fmt != "float32" else None
        if self.gemma:
            self.scaling = float(config.query_pre_attn_scalar) ** -0.5
            self.act = lambda x: F.gelu(x, approximate="tanh")
            types = list(config.layer_types)
            self.windows = [
                config.sliding_window if t == "sliding_attention" else None for t in types
            ]
        else:
            self.scaling = self.head_dim**-0.5
            self.act = F.silu
            types = ["all"] * len(self.layers)
            self.windows = [None] * len(self.layers)
        rope = _rope_parameters(config)
        self.layer_rope = types
        self.inv_freq = {}
        for layer_type, params in rope.items():
            exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float) / self.head_dim
            inv_freq = 1.0 / (params["rope_theta"] ** exponent)
            if params.get("rope_type", "default") == "linear":
                inv_freq = inv_freq / params["factor"]
            self.inv_freq[layer_type] = inv_freq

    def start(self, prefix_ids: list[int], capacity: int = 256) -> LeanState:
        state = LeanState(self, len(prefix_ids) + capacity)
        state.logits = self.forward(state, prefix_ids)
        return state

    def _rope(self, positions: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for layer_type, inv_freq in self.inv_freq.items():
            freqs = positions[:, None].float() * inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
            out[layer_type] = (emb.cos(), emb.sin())
        return out

    @torch.inference_mode()
    def forward(self, state: LeanState, ids: list[int]) -> torch.Tensor:
        """Append `ids` to the state's caches; return float32 logits after the last one."""
        t = len(ids)
        start = state.length
        state.reserve(start + t)
        end = start + t
        positions = torch.arange(start, end)
        rope = self._rope(positions)
        x = self.embed[torch.tensor(ids, dtype=torch.long)]  # [t, hidden]
        if self.gemma:
            x = x * self.embed_scale
        hd, n_kv, groups = self.head_dim, self.n_kv, self.n_heads // self.n_kv
        key_pos = torch.arange(end)
        for i, layer in enumerate(self.layers):
            h = _rms_norm(x, layer.input_norm, self.eps)
            qkv = layer.qkv(h)
            qk = qkv[:, : layer.q_size + layer.kv_size].view(t, self.n_heads + n_kv, hd)
            v = qkv[:, layer.q_size + layer.kv_size :].view(t, n_kv, hd)
            if self.gemma:
                qk = torch.cat(
                    (
                        _rms_norm(qk[:, : self.n_heads], layer.q_norm, self.eps),
                        _rms_norm(qk[:, self.n_heads :], layer.k_norm, self.eps),
                    ),
                    dim=1,
                )
            cos, sin = rope[self.layer_rope[i]]
            qk = qk * cos + _rotate_half(qk) * sin
            q, k = qk[:, : self.n_heads], qk[:, self.n_heads :]
            state.keys[i][:, start:end] = k.transpose(0, 1)
            state.values[i][:, start:end] = v.transpose(0, 1)
            window = self.windows[i]
            first = 0 if window is None else max(0, start - window + 1)
            keys = state.keys[i][:, first:end]  # [n_kv, s, hd]
            values = state.values[i][:, first:end]
            # rows of each kv head's query block are ordered (position, head in group)
            qg = q.reshape(t, n_kv, groups, hd).transpose(0, 1).reshape(n_kv, t * groups, hd)
            scores = torch.baddbmm(
                self._no_bias, qg, keys.transpose(1, 2), beta=0.0, alpha=self.scaling
            )  # [n_kv, t*groups, s]
            if t > 1:  # a single new token may see every cached key in its window
                allowed = key_pos[None, first:end] <= positions[:, None]
                if window is not None:
                    allowed &= key_pos[None, first:end] > positions[:, None] - window
                mask = allowed.repeat_interleave(groups, dim=0)
                scores = scores.masked_fill(~mask[None], float("-inf"))
            attn = torch.bmm(torch.softmax(scores, dim=-1), values)  # [n_kv, t*groups, hd]
            attn = attn.view(n_kv, t, groups * hd).transpose(0, 1).reshape(t, self.n_heads * hd)
            out = layer.o(attn)
            if self.gemma:
                out = _rms_norm(out, layer.post_attn_norm, self.eps)
            x = x + out
            h = _rms_norm(x, layer.pre_mlp_norm, self.eps)
            gate_up = layer.gate_up(h)
            mlp = layer.down(
                self.act(gate_up[:, : layer.intermediate]) * gate_up[:, layer.intermediate :]
            )
            if self.gemma:
                mlp = _rms_norm(mlp, layer.post_mlp_norm, self.eps)
            x = x + mlp
        state.length = end
        last = _rms_norm(x[-1:], self.final_norm, self.eps)
        logits = self.head(last)[0]
        if self.head_exact is not None:
            # bf16 logits are rounded to ~0.4%: redo the likeliest tokens in float32
            top = torch.topk(logits, HEAD_REFINE_TOP).indices
            logits[top] = F.linear(last, self.head_exact[top])[0]
        return logits


class LeanState:
    """Static KV caches (grown by doubling when full) and the current position."""

    def __init__(self, decoder: LeanDecoder, capacity: int):
        self.length = 0
        self.logits: torch.Tensor | None = None
        shape = (decoder.n_kv, max(1, capacity), decoder.head_dim)
        self.keys = [torch.zeros(shape) for _ in decoder.layers]
        self.values = [torch.zeros(shape) for _ in decoder.layers]

    def reserve(self, length: int) -> None:
        capacity = self.keys[0].shape[1]
        if length <= capacity:
            return
        new_capacity = max(length, 2 * capacity)
        for cache in (self.keys, self.values):
            for i, old in enumerate(cache):
                grown = torch.zeros((old.shape[0], new_capacity, old.shape[2]))
                grown[:, :capacity] = old
                cache[i] = grown

    def clone(self) -> LeanState:
        copy = object.__new__(LeanState)
        copy.length = self.length
        copy.logits = None if self.logits is None else self.logits.clone()
        copy.keys = [k.clone() for k in self.keys]
        copy.values = [v.clone() for v in self.values]
        return copy
