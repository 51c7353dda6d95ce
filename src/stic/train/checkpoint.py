"""Training checkpoints without pickles: weights in safetensors, optimizer state via
torch.save of tensors-only state dicts (read back with weights_only=True), progress in JSON.

Files are written under a temporary name and renamed, so a run killed mid-write keeps the last
good checkpoint.
"""

import json
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stic.errors import ModelNotFoundError
from stic.image.architectures import CONSTRUCTED_BUFFERS, DERIVED_BUFFERS
from stic.paths import replace_atomically


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The model's state without the entropy coder tables (recomputed by update())."""
    return {
        k: v.detach().contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith(DERIVED_BUFFERS)
    }


def save_checkpoint(folder: Path, model, optimizers: dict, state: dict, config: dict, modules: dict | None = None) -> None:
    """`modules` (e.g. {"discriminator": net}) are auxiliary networks saved as NAME.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    replace_atomically(folder / "model.safetensors", lambda p: save_file(trainable_state(model), str(p)))
    for name, module in (modules or {}).items():
        weights = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        replace_atomically(folder / f"{name}.safetensors", lambda p, w=weights: save_file(w, str(p)))
    replace_atomically(folder / "optim.pt", lambda p: torch.save({k: o.state_dict() for k, o in optimizers.items()}, p))
    replace_atomically(folder / "config.json", lambda p: p.write_text(json.dumps(config, indent=2)))
    replace_atomically(folder / "state.json", lambda p: p.write_text(json.dumps(state, indent=2)))


def weights_file(source) -> Path:
    """What a run starts from (--init-from, --decoder-from, export): a run folder's weights, or a
    shipped model's (e.g. ``stic-p2``) so that fine-tuning a shipped model needs no run folder."""
    path = Path(source)
    if path.is_dir():
        return path / "model.safetensors"
    from stic.image.registry import all_shipped_models, shipped_weights

    if str(source) in all_shipped_models():
        return shipped_weights(str(source))
    raise ModelNotFoundError(f"{source} is neither a run folder nor a shipped model ({', '.join(all_shipped_models())})")


def _weights(source) -> dict[str, torch.Tensor]:
    """Trainable weights only: a shipped file's entropy tables are rebuilt by update() on export."""
    return {k: v for k, v in load_file(str(weights_file(source))).items() if not k.endswith(DERIVED_BUFFERS)}


def load_weights(model, source) -> None:
    """Load weights (fp16 shipped ones are widened) into a freshly built model; its derived tables stay empty."""
    weights = _weights(source)
    # CompressAI's load_state_dict resizes the derived tables and needs them present: keep the model's own
    derived = {k: v for k, v in model.state_dict().items() if k.endswith(DERIVED_BUFFERS)}
    try:
        missing, unexpected = model.load_state_dict({**derived, **weights}, strict=False)
    except RuntimeError as exc:
        raise RuntimeError(f"weights of {source} do not fit this model: {exc}") from exc
    bad_missing = [k for k in missing if not k.endswith(DERIVED_BUFFERS + CONSTRUCTED_BUFFERS)]
    if bad_missing or unexpected:
        raise RuntimeError(f"weights of {source} do not fit this model: missing {bad_missing}, unexpected {unexpected}")


def load_synthesis(model, source) -> None:
    """Replace the synthesis transform g_s with another run's or shipped model's (same architecture)."""
    synthesis = {k.removeprefix("g_s."): v for k, v in _weights(source).items() if k.startswith("g_s.")}
    try:
        model.g_s.load_state_dict(synthesis, strict=True)
    except RuntimeError as exc:
        raise RuntimeError(f"decoder of {source} does not fit this model: {exc}") from exc


def load_checkpoint(folder: Path, model, optimizers: dict, modules: dict | None = None) -> dict:
    """Restore weights and optimizer states; return the saved progress state.

    An auxiliary module (and its optimizer, same name) absent from an older checkpoint keeps its
    fresh initialisation, so a run saved before e.g. the adversarial term existed still resumes."""
    load_weights(model, folder)
    try:
        saved = torch.load(folder / "optim.pt", weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise ModelNotFoundError(
            f"refusing checkpoint {folder / 'optim.pt'}: it holds more than tensors (stic writes "
            "tensors-only optimizer states and never unpickles arbitrary objects)"
        ) from exc
    optional = set(modules or {})
    for name, module in (modules or {}).items():
        if (folder / f"{name}.safetensors").exists():
            module.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
        else:
            optional.add(name)
    for name, opt in optimizers.items():
        if name in saved:
            opt.load_state_dict(saved[name])
        elif name not in optional:
            raise KeyError(f"checkpoint {folder} has no state for optimizer {name!r}")
    return json.loads((folder / "state.json").read_text())


def has_checkpoint(folder: Path) -> bool:
    return all((Path(folder) / f).exists() for f in ("model.safetensors", "optim.pt", "state.json"))
