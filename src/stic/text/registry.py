"""Caption coders by name, and the coder that can decode a given caption section.

Names: "raw", "zlib", "bz2", "lzma", "brotli", "zstd", "zstd-dict", "rank-zlib[:MODEL]",
"lm[:MODEL]" (the exact engine: decodes on every machine) and "lm-float[:MODEL]" (a float engine,
for models the exact engine cannot run: decodes only on the machine class that wrote it), where MODEL is an offline default ("smollm2-135m", "gemma3-270m"), a .gguf file, a
local transformers directory or a model id, and defaults to the LM backend's default model.

A section records only a codec id and a 4-byte fingerprint, so finding the model it needs is a
lookup: every LM coder built here records its fingerprint -> model name in a small table in the
cache directory (computed from the models themselves, never typed in). A section from an unknown
model makes the registry try the offline models, then refuse with a message naming what it needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from stic import __version__, codecs
from stic.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError
from stic.models.cache import ModelCache
from stic.paths import cache_dir, model_key, replace_atomically
from stic.text import baselines
from stic.text.protocol import TextCoder

BASELINES = {
    "raw": baselines.RawCoder,
    "zlib": baselines.ZlibCoder,
    "bz2": baselines.Bz2Coder,
    "lzma": baselines.LzmaCoder,
    "brotli": baselines.BrotliCoder,
    "zstd": baselines.ZstdCoder,
    "zstd-dict": baselines.ZstdDictCoder.from_corpus,
}
#: LM-driven methods and the codec id each writes
LM_METHODS = {
    "rank-zlib": codecs.TEXT_RANK_ZLIB,
    "lm": codecs.TEXT_LM_EXACT,
    "lm-float": codecs.TEXT_LM_FLOAT,
}
#: Which engine each LM method runs (stic.text.lm.load_lm's `engine`)
_ENGINE = {"rank-zlib": "exact", "lm": "exact", "lm-float": "auto"}
_METHOD_OF_CODEC = {
    **{codec_id: name for codec_id, name in codecs.TEXT_CODEC_NAMES.items() if name in BASELINES},
    **{codec_id: name for name, codec_id in LM_METHODS.items()},
}
_TABLE_NAME = "text-fingerprints.json"


def list_text_coders() -> list[str]:
    return [*BASELINES, *(f"{method}[:MODEL]" for method in LM_METHODS), "vlm:MODEL", "vlm-xhat:MODEL"]


def default_model() -> str:
    """The caption LM chosen by benchmark (`stic.text.lm_coder.DEFAULT_MODEL`)."""
    from stic.text.lm_coder import DEFAULT_MODEL

    return DEFAULT_MODEL


def get_text_coder(name: str, **opts) -> TextCoder:
    """Build the coder `name` names; options go to its constructor (e.g. window= for rank-zlib)."""
    method, _, model = name.partition(":")
    if method in BASELINES:
        if model:
            raise InputError(f"text coder {method!r} takes no model (got {name!r})")
        return BASELINES[method](**opts)
    if method in LM_METHODS:
        return _lm_coder(method, model or default_model(), **opts)
    if method in ("vlm", "vlm-xhat"):
        from stic.text.vlm_coder import vlm_coder

        return vlm_coder(name)
    raise InputError(f"unknown text coder {name!r}; known: {', '.join(list_text_coders())}")


LOADED_LMS = ModelCache("caption language models", maxsize=4)


def _load_lm(model: str, engine: str = "exact"):
    """Models are loaded once per process (the bench runs several methods on the same LM), keyed by
    resolved path for local files and folders. The exact engine's models load without torch."""
    key = model_key(model)
    if engine == "exact":
        from stic.text.exact_model import load_exact

        return LOADED_LMS.get((key, engine), lambda: load_exact(key))
    from stic.text.lm import load_lm

    return LOADED_LMS.get((key, engine), lambda: load_lm(key, engine=engine))


def _lm_coder(method: str, model: str, **opts) -> TextCoder:
    lm = _load_lm(model, _ENGINE[method])
    if method == "rank-zlib":
        from stic.text.rank_coder import RankZlibCoder

        coder = RankZlibCoder(lm, **opts)
    else:
        from stic.text.lm_coder import LMArithmeticCoder, default_preamble

        prefix = opts.pop("prefix", None)  # a learned-prefix file (`stic text adapt`)
        if prefix is not None:
            from stic.text.prefix import load_prefix

            opts = {"preamble": "tuned", "learned": load_prefix(prefix), **opts}
        coder = LMArithmeticCoder(lm, **{"preamble": default_preamble(lm.name), **opts})
    if not opts:  # only default coders are worth remembering: sections name no options
        _remember(coder.codec_id, coder.fingerprint(), _model_reference(model))
    return coder


def _model_reference(model: str) -> str:
    """How to load this model again from anywhere: an absolute path for files and folders."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


# -- fingerprint table ---------------------------------------------------------------------------
def _table_path() -> Path:
    return cache_dir() / _TABLE_NAME


def known_fingerprints() -> dict[str, str]:
    """"<codec id>:<fingerprint hex>" -> model, for every LM coder this machine has built."""
    try:
        table = json.loads(_table_path().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def _remember(codec_id: int, fingerprint: bytes, model: str) -> None:
    key = f"{codec_id}:{fingerprint.hex()}"
    table = known_fingerprints()
    if table.get(key) == model:
        return
    table[key] = model
    path = _table_path()
    try:
        replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(table, indent=1, sort_keys=True)))
    except OSError:
        pass  # a read-only cache only costs a slower lookup next time


def model_for_fingerprint(codec_id: int, fingerprint: bytes) -> str | None:
    return known_fingerprints().get(f"{codec_id}:{fingerprint.hex()}")


# -- decoding a section --------------------------------------------------------------------------
def deferred_coder_for_section(codec_id: int, fingerprint: bytes) -> TextCoder | None:
    """For an exact-LM caption whose model this machine has built a coder for (the fingerprint
    table names it): a coder that resolves and loads that model when it first decodes, so that a
    decoder can load the LM beside the image. Otherwise None: resolve it now with
    `text_coder_for_section`. A table entry that no longer holds fails there, on first decode."""
    if codec_id != codecs.TEXT_LM_EXACT or model_for_fingerprint(codec_id, fingerprint) is None:
        return None
    return _DeferredCoder(codec_id, fingerprint)


class _DeferredCoder:
    """A caption coder resolved when it first decodes (`deferred_coder_for_section`)."""

    thread_independent = True  # the exact engine: its text cannot depend on threads
    needs_image = False

    def __init__(self, codec_id: int, fingerprint: bytes):
        self.codec_id, self._fingerprint, self._coder = codec_id, fingerprint, None

    def fingerprint(self) -> bytes:
        return self._fingerprint

    def decode(self, data: bytes) -> str:
        if self._coder is None:
            self._coder = text_coder_for_section(self.codec_id, self._fingerprint)
        return self._coder.decode(data)


def text_coder_for_section(
    codec_id: int, fingerprint: bytes, model: str | None = None, prefix: str | None = None
) -> TextCoder:
    """The coder that decodes a caption section, or a clear error naming what is missing.
    `prefix`: the learned-prefix file the caption was coded with, if not the shipped one."""
    if codec_id == codecs.TEXT_LM_ARITHMETIC:
        raise FormatError(
            "the caption was coded by stic 0.1's float LM engine (codec 16), which decodes only with "
            "stic 0.1.0 on the machine class that wrote it; this stic codes captions exactly (codec 19)"
        )
    if codec_id in (codecs.TEXT_VLM_ARITHMETIC, codecs.TEXT_VLM_XHAT_ARITHMETIC):
        from stic.text.vlm_coder import vlm_coder_for_section

        return vlm_coder_for_section(codec_id, fingerprint, model)
    method = _METHOD_OF_CODEC.get(codec_id)
    if method is None:
        raise FormatError(f"caption section uses unknown codec id {codec_id} (written by a newer stic than {__version__}?)")
    if method in ("lm", "lm-float") and prefix is not None:
        model = model or model_for_fingerprint(codec_id, fingerprint) or default_model()
        coder = get_text_coder(f"{method}:{model}", prefix=prefix)
        if coder.fingerprint() != fingerprint:
            raise ModelMismatchError(
                f"the caption was not coded with learned prefix {prefix} and model {model!r} "
                f"(fingerprint {fingerprint.hex()}, theirs {coder.fingerprint().hex()})"
            )
        return coder
    if method in LM_METHODS:
        return _lm_coder_for_section(method, codec_id, fingerprint, model)
    coder = get_text_coder(method)  # a `model` is irrelevant here: these coders use no LM
    if coder.fingerprint() != fingerprint:
        if not fingerprint or not coder.fingerprint():
            raise FormatError(f"corrupt caption section: {method} with fingerprint {fingerprint.hex() or 'none'}")
        raise ModelMismatchError(
            f"the caption was coded with a zstd dictionary of fingerprint {fingerprint.hex()}; "
            f"this machine's dictionary is {coder.fingerprint().hex()} (trained from another corpus)"
        )
    return coder


def _lm_coder_for_section(method: str, codec_id: int, fingerprint: bytes, model: str | None) -> TextCoder:
    if not fingerprint:
        raise FormatError(f"corrupt caption section: {method} without a model fingerprint")
    needed = model_for_fingerprint(codec_id, fingerprint)
    if model is not None:
        coder = _coder_with_fingerprint(method, model, fingerprint)
        if coder is not None:
            return coder
        raise ModelMismatchError(
            f"the caption was coded with {_describe(method, needed, fingerprint)}, not with {model!r}"
        )
    from stic.text.offline_models import OFFLINE_MODELS

    if needed is not None:  # known: try exactly that model first; if it is gone, say how to get it
        coder = _coder_with_fingerprint(method, needed, fingerprint)
        if coder is not None:
            return coder
    tried = [] if needed is None else [needed]
    for candidate in dict.fromkeys([default_model(), *OFFLINE_MODELS]):
        if candidate in tried:
            continue
        try:
            coder = _coder_with_fingerprint(method, candidate, fingerprint)
        except ModelNotFoundError:
            continue
        tried.append(candidate)
        if coder is not None:
            return coder
    if method == "lm-float":
        _refuse_other_machine(fingerprint, tried)
    raise ModelMismatchError(
        f"the caption was coded with {_describe(method, None, fingerprint)}"
        f"{'; not ' + ', '.join(tried) if tried else ''}: give the model that made it (--model)"
    )


def _refuse_other_machine(fingerprint: bytes, models: list[str]) -> None:
    """A float-engine caption made by one of `models` on another machine class: say which."""
    from stic.text.lm import MACHINE_CLASSES, machine_class

    for model in models:
        lm = _load_lm(model, "auto")
        for machine in MACHINE_CLASSES:
            if machine == machine_class():
                continue
            if _coder_fingerprint(lm, machine) == fingerprint:
                raise ModelMismatchError(
                    f"the caption was coded by the float LM engine (lm-float:{model}) on a machine of "
                    f"CPU kernel class {machine!r}; it decodes only there (this machine: "
                    f"{machine_class()!r}). Re-encode with the exact engine (lm:MODEL) for portable files"
                )


def _coder_fingerprint(lm, machine: str) -> bytes:
    """The default coder's fingerprint that `lm` would have on another machine class."""
    from stic.text.lm_coder import LMArithmeticCoder, default_preamble

    coder = LMArithmeticCoder(lm, preamble=default_preamble(lm.name))
    coder.lm_fingerprint = lm.fingerprint(machine)
    return coder.fingerprint()


def _coder_with_fingerprint(method: str, model: str, fingerprint: bytes) -> TextCoder | None:
    """The model's default coder if it has this fingerprint, else the same model with another
    named preamble (files written with an earlier default preamble still decode), else None."""
    coder = get_text_coder(f"{method}:{model}")
    if coder.fingerprint() == fingerprint:
        return coder
    if method not in ("lm", "lm-float"):
        return None
    from stic.text.lm_coder import LMArithmeticCoder
    from stic.text.preamble import PREAMBLES
    from stic.text.prefix import has_shipped_prefix

    lm = _load_lm(model, _ENGINE[method])
    for name, preamble in PREAMBLES.items():
        if name == coder.preamble.name or (preamble.learned and not has_shipped_prefix(lm.name)):
            continue
        other = LMArithmeticCoder(lm, preamble=name)
        if other.fingerprint() == fingerprint:
            return other
    return None


def _describe(method: str, model: str | None, fingerprint: bytes) -> str:
    if model is None:
        return f"{method} and an unknown language model (fingerprint {fingerprint.hex()})"
    return f"{method}:{model} (fingerprint {fingerprint.hex()})"
