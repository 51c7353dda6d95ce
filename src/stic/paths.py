"""Where stic finds data and keeps caches: configurable by environment, sensible defaults."""

import os
from collections.abc import Callable
from pathlib import Path

from stic.errors import InputError

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The evaluation/training data folder: $STIC_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("STIC_DATA", _REPO_ROOT.parent / "shared" / "data"))


def model_key(name: str) -> str:
    """How the per-process model caches key a model: a local file or folder by its resolved path
    (`./m`, `m/` and `/abs/m` are one model), anything else (an id, a shipped name) as given."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def cache_dir() -> Path:
    """Converted model weights and other derived files: $STIC_CACHE, else ~/.cache/stic."""
    base = os.environ.get("STIC_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
    ) / "stic"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_output(path: Path, force: bool) -> Path:
    """Refuse, before any work, an output that would overwrite a file (unless `force`) or that
    lands in a folder that does not exist."""
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    if path.exists() and not force:
        raise InputError(f"output {path} already exists (give --force to overwrite it)")
    if not path.parent.is_dir():
        raise InputError(f"output folder does not exist: {path.parent}")
    return path


def replace_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Make `path` by `write(temporary path beside it)`, then rename: readers (a concurrent process
    too) see the old file or the whole new one, and a failure leaves no temporary file behind. For
    caches and checkpoints; user outputs go through stic.container.write_bytes_atomic, which also
    applies the umask and turns OS errors into one-line messages."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
