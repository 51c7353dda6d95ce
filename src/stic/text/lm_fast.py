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
#: Rotary tables are built in blocks of this many positions (see LeanDecoder._rope).
_ROPE_BLOCK = 1024
#: Bumped whenever this module's arithmetic changes (part of the model fingerprint): files coded
#: by another version would decode to garbage, so they are refused instead.
NUMERICS_VERSION = 2


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
        """Float32 output."""
        return self.raw(x).to(torch.float32)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Output in the kernel's dtype (bfloat16 for the integer kernels): saves two copies
        where the next product takes bfloat16 anyway."""
        if self.fmt == "float32":
            return F.linear(x, self.weight)
        if self.fmt == "int4":
            out = torch._weight_int4pack_mm_for_cpu(
                x.to(torch.bfloat16), self.packed, _INT4_GROUP, self.scales_zeros
            )
        else:
            out = torch._weight_int8pack_mm(x.to(torch.bfloat16), self.int8, self.scales)
        return out if out.shape[-1] == self.out_features else out[..., : self.out_features]


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
    def __init__(self, layer, fmt: str, gemma: bool, eps: float):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _Linear(
            _cat_rows(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight), fmt
        )
        self.q_size = attn.q_proj.weight.shape[0]
        self.kv_size = attn.k_proj.weight.shape[0]
        self.qk_v = (self.q_size + self.kv_size, self.kv_size)  # split sizes of qkv's output
        self.o = _Linear(attn.o_proj.weight, fmt)
        self.gate_up = _Linear(_cat_rows(mlp.gate_proj.weight, mlp.up_proj.weight), fmt)
        self.down = _Linear(mlp.down_proj.weight, fmt)
        self.input_norm = _Norm(layer.input_layernorm.weight, gemma, eps)
        if gemma:
            self.post_attn_norm = _Norm(layer.post_attention_layernorm.weight, gemma, eps)
            self.pre_mlp_norm = _Norm(layer.pre_feedforward_layernorm.weight, gemma, eps)
            self.post_mlp_norm = _Norm(layer.post_feedforward_layernorm.weight, gemma, eps)
            self.q_norm = _Norm(attn.q_norm.weight, gemma, eps)
            self.k_norm = _Norm(attn.k_norm.weight, gemma, eps)
        else:
            self.pre_mlp_norm = _Norm(layer.post_attention_layernorm.weight, gemma, eps)


class _Norm:
    """RMSNorm (Gemma's with 1 + weight) as x * (sqrt(d) w / hypot(|x|, sqrt(d eps))): the same
    function in 4 small ops instead of ~8 — it runs 61 times per SmolLM2 token."""

    def __init__(self, weight: torch.Tensor, gemma: bool, eps: float):
        w = weight.detach().to(torch.float32)
        width = w.shape[-1]
        self.weight = (1.0 + w if gemma else w) * width**0.5
        self.floor = torch.tensor((width * eps) ** 0.5)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x * (self.weight / torch.hypot(norm, self.floor))


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
        self.layers = [_Layer(layer, weights, self.gemma, self.eps) for layer in body.layers]
        self._no_bias = torch.zeros(())
        self.final_norm = _Norm(body.norm.weight, self.gemma, self.eps)
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
        self._rope_tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def start(self, prefix_ids: list[int], capacity: int = 256, learned=None) -> LeanState:
        """State after `prefix_ids`, which follow a learned prefix's key/value states if given
        (a stic.text.prefix.LearnedPrefix: its keys are already rotated, so they are copied)."""
        skip = 0 if learned is None else learned.length
        state = LeanState(self, skip + len(prefix_ids) + capacity)
        if learned is not None:
            for i, (keys, values) in enumerate(zip(learned.keys, learned.values, strict=True)):
                state.keys[i][:, :, :skip] = torch.from_numpy(keys).transpose(1, 2)
                state.values[i][:, :skip] = torch.from_numpy(values)
            state.length = skip
        state.logits = self.forward(state, prefix_ids)
        return state

    def _rope(self, end: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per layer type, (cos, signed sin) rows for positions [0, end), each [end, head_dim].

        Rotating x is then `x * cos + x.roll(head_dim / 2) * sin`: the same numbers as
        `x * cos + rotate_half(x) * sin`, in fewer ops. Rows are made in fixed blocks of
        _ROPE_BLOCK positions, so a row never depends on how far the table has grown.
        """
        tables = self._rope_tables
        have = next(iter(tables.values()))[0].shape[0] if tables else 0
        if have < end:
            blocks = range(have, end + _ROPE_BLOCK - 1, _ROPE_BLOCK)
            half = self.head_dim // 2
            for layer_type, inv_freq in self.inv_freq.items():
                cos, sin = [], []
                for first in blocks:
                    positions = torch.arange(first, first + _ROPE_BLOCK, dtype=torch.float)
                    freqs = positions[:, None] * inv_freq[None, :]
                    emb = torch.cat((freqs, freqs), dim=-1)
                    cos.append(emb.cos())
                    block_sin = emb.sin()
                    block_sin[:, :half] = -block_sin[:, :half]
                    sin.append(block_sin)
                old = tables.get(layer_type)
                if old is not None:
                    cos, sin = [old[0], *cos], [old[1], *sin]
                tables[layer_type] = (torch.cat(cos), torch.cat(sin))
        return tables

    def _rotate(self, qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(qk * cos, qk.roll(self.head_dim // 2, -1), sin)

    @torch.inference_mode()
    def forward(self, state: LeanState, ids: list[int]) -> torch.Tensor:
        """Append `ids` to the state's caches; return float32 logits after the last one."""
        if len(ids) == 1:
            return self._step(state, ids[0])
        t = len(ids)
        start = state.length
        state.reserve(start + t)
        end = start + t
        positions = torch.arange(start, end)
        rope = self._rope(end)
        x = self.embed[torch.tensor(ids, dtype=torch.long)]  # [t, hidden]
        if self.gemma:
            x = x * self.embed_scale
        hd, n_kv, groups = self.head_dim, self.n_kv, self.n_heads // self.n_kv
        key_pos = torch.arange(end)
        for i, layer in enumerate(self.layers):
            h = layer.input_norm(x)
            qkv = layer.qkv(h)
            qk = qkv[:, : layer.q_size + layer.kv_size].view(t, self.n_heads + n_kv, hd)
            v = qkv[:, layer.q_size + layer.kv_size :].view(t, n_kv, hd)
            if self.gemma:
                qk = self._qk_norm(qk, layer)
            cos, sin = rope[self.layer_rope[i]]
            qk = self._rotate(qk, cos[start:end, None], sin[start:end, None])
            q, k = qk[:, : self.n_heads], qk[:, self.n_heads :]
            state.keys[i][:, :, start:end] = k.permute(1, 2, 0)
            state.values[i][:, start:end] = v.transpose(0, 1)
            window = self.windows[i]
            first = 0 if window is None else max(0, start - window + 1)
            keys = state.keys[i][:, :, first:end]  # [n_kv, hd, s]
            values = state.values[i][:, first:end]  # [n_kv, s, hd]
            # rows of each kv head's query block are ordered (position, head in group)
            qg = q.reshape(t, n_kv, groups, hd).transpose(0, 1).reshape(n_kv, t * groups, hd)
            scores = torch.baddbmm(
                self._no_bias, qg, keys, beta=0.0, alpha=self.scaling
            )  # [n_kv, t*groups, s]
            allowed = key_pos[None, first:end] <= positions[:, None]
            if window is not None:
                allowed &= key_pos[None, first:end] > positions[:, None] - window
            mask = allowed.repeat_interleave(groups, dim=0)
            scores = scores.masked_fill(~mask[None], float("-inf"))
            attn = torch.bmm(torch.softmax(scores, dim=-1), values)  # [n_kv, t*groups, hd]
            attn = attn.view(n_kv, t, groups * hd).transpose(0, 1).reshape(t, self.n_heads * hd)
            x = self._finish_layer(layer, x, attn)
        state.length = end
        return self._logits(x[-1:])

    def _step(self, state: LeanState, token: int) -> torch.Tensor:
        """`forward` for one token: the decoder's inner loop, so every op counts here."""
        pos = state.length
        end = pos + 1
        state.reserve(end)
        rope = {kind: (cos[pos], sin[pos]) for kind, (cos, sin) in self._rope(end).items()}
        x = self.embed[token : token + 1]  # [1, hidden]
        if self.gemma:
            x = x * self.embed_scale
        heads, n_kv = self.n_heads, self.n_kv
        q_shape, kv_shape = (n_kv, heads // n_kv, self.head_dim), (n_kv, self.head_dim)
        for i, layer in enumerate(self.layers):
            # bfloat16 (integer kernels) until rotated and cached: promotion to float32 is exact
            qk, v = layer.qkv.raw(layer.input_norm(x)).split_with_sizes(layer.qk_v, -1)
            qk = qk.view(heads + n_kv, self.head_dim)
            if self.gemma:
                qk = self._qk_norm(qk.float(), layer)
            qk = self._rotate(qk, *rope[self.layer_rope[i]])
            q, k = qk.split_with_sizes((heads, n_kv))
            keys, values = state.keys[i], state.values[i]
            keys.select(2, pos).copy_(k)  # select/narrow: same as indexing, less overhead
            values.select(1, pos).copy_(v.view(kv_shape))
            window = self.windows[i]
            first = 0 if window is None or pos < window else pos - window + 1
            scores = torch.baddbmm(
                self._no_bias,
                q.view(q_shape),
                keys.narrow(2, first, end - first),
                beta=0.0,
                alpha=self.scaling,
            )  # [n_kv, groups, s]: a single new token may see every cached key in its window
            attn = torch.bmm(torch.softmax(scores, dim=-1), values.narrow(1, first, end - first))
            x = self._finish_layer(layer, x, attn.view(1, -1))
        state.length = end
        return self._logits(x)

    def _qk_norm(self, qk: torch.Tensor, layer: _Layer) -> torch.Tensor:
        heads = self.n_heads
        return torch.cat(
            (
                layer.q_norm(qk[..., :heads, :]),
                layer.k_norm(qk[..., heads:, :]),
            ),
            dim=-2,
        )

    def _finish_layer(self, layer: _Layer, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Output projection, residual, MLP, residual.

        Products stay in the kernel's dtype where the next op promotes them exactly anyway
        (float32 + bfloat16 adds in float32), and gate * up stays bfloat16 because the down
        projection takes bfloat16: fewer copies, same numbers except for that one rounding.
        """
        if self.gemma:
            x = x + layer.post_attn_norm(layer.o(attn))
        else:
            x = x + layer.o.raw(attn)
        gate, up = layer.gate_up.raw(layer.pre_mlp_norm(x)).chunk(2, -1)
        if self.gemma:
            return x + layer.post_mlp_norm(layer.down(self.act(gate) * up))
        return x + layer.down.raw(self.act(gate) * up)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the one row of `x` ([1, hidden])."""
        last = self.final_norm(x)
        logits = self.head(last)[0]
        if self.head_exact is not None:
            # bf16 logits are rounded to ~0.4%: redo the likeliest tokens in float32
            top = torch.topk(logits, HEAD_REFINE_TOP).indices
            logits[top] = F.linear(last, self.head_exact.index_select(0, top))[0]
        return logits


class LeanState:
    """Static KV caches (grown by doubling when full) and the current position.

    Keys are stored transposed, [kv heads, head_dim, positions]: the score product then reads
    them as a plain matrix (about 1.4x faster than a transposed view on one core).
    """

    def __init__(self, decoder: LeanDecoder, capacity: int):
        self.length = 0
        self.logits: torch.Tensor | None = None
        n_kv, hd, capacity = decoder.n_kv, decoder.head_dim, max(1, capacity)
        self.keys = [torch.zeros((n_kv, hd, capacity)) for _ in decoder.layers]
        self.values = [torch.zeros((n_kv, capacity, hd)) for _ in decoder.layers]

    @property
    def capacity(self) -> int:
        return self.values[0].shape[1]

    def reserve(self, length: int) -> None:
        capacity = self.capacity
        if length <= capacity:
            return
        new_capacity = max(length, 2 * capacity)
        for i, (keys, values) in enumerate(zip(self.keys, self.values, strict=True)):
            grown = torch.zeros((keys.shape[0], keys.shape[1], new_capacity))
            grown[:, :, :capacity] = keys
            self.keys[i] = grown
            grown = torch.zeros((values.shape[0], new_capacity, values.shape[2]))
            grown[:, :capacity] = values
            self.values[i] = grown

    def clone(self) -> LeanState:
        copy = object.__new__(LeanState)
        copy.length = self.length
        copy.logits = None if self.logits is None else self.logits.clone()
        copy.keys = [k.clone() for k in self.keys]
        copy.values = [v.clone() for v in self.values]
        return copy
