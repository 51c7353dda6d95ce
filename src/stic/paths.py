"""Where stic finds data and keeps caches: configurable by environment, sensible defaults."""

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The evaluation/training data folder: $STIC_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("STIC_DATA", _REPO_ROOT.parent / "shared" / "data"))


def cache_dir() -> Path:
    """Converted model weights and other derived files: $STIC_CACHE, else ~/.cache/stic."""
    base = os.environ.get("STIC_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
    ) / "stic"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path
