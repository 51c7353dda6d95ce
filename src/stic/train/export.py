"""Turn a training run into a shipped model: fp16 weights plus the int32 entropy tables built
from exactly those fp16 weights, and a JSON config with the training summary and the model's
family (perceptual when any perceptual, adversarial or semantic term was on, else mse)."""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from stic.image.architectures import CONSTRUCTED_BUFFERS, build_model, scale_table
from stic.train.checkpoint import load_weights


def export_weights(run: Path, name: str, dest: Path) -> Path:
    run, dest = Path(run), Path(dest)
    model_cfg = json.loads((run / "config.json").read_text())
    train_cfg = json.loads((run / "train_config.json").read_text())
    progress = json.loads((run / "state.json").read_text())
    model = build_model(model_cfg)
    load_weights(model, run)
    perceptual = bool(train_cfg.get("perceptual") or train_cfg.get("adversarial") or train_cfg.get("semantic"))
    summary = {
        "model": model_cfg,
        "lmbda": train_cfg["lmbda"],
        "family": "perceptual" if perceptual else "mse",
        "training": {
            "steps": progress["step"],
            "train_minutes": round(progress["elapsed_s"] / 60, 1),
            "crop": train_cfg["crop"],
            "batch": train_cfg["batch"],
            "lr": train_cfg["lr"],
            "datasets": train_cfg["datasets"],
            "init_from": train_cfg["init_from"],
            **({"decoder_from": train_cfg["decoder_from"]} if train_cfg.get("decoder_from") else {}),
            "trainable": train_cfg.get("trainable", "all"),
            **{key: train_cfg[key] for key in ("perceptual", "adversarial", "semantic") if train_cfg.get(key)},
            "last_validation": progress["history"][-1] if progress["history"] else None,
        },
    }
    return write_model(model, summary, dest / f"{name}.safetensors", dest / f"{name}.json")


def write_model(model, summary: dict, weights: Path, config: Path) -> Path:
    """Save `model` as shipped weights (fp16 parameters + the entropy tables built from exactly
    them) and `summary` as its JSON config."""
    # the aux loss converges slowly: set the entropy bottleneck's quantiles by CompressAI's bisection
    model.update(scale_table(), force=True, update_quantiles=True)
    with torch.no_grad():  # round to fp16, then build the tables from exactly the weights users load
        for param in model.parameters():
            param.copy_(param.half().float())
    model.update(scale_table(), force=True)
    # parameters go fp16; buffers (GDN pedestals, bounds, scale table, entropy tables) stay exact
    params = {k for k, _ in model.named_parameters()}
    state = {k: (v.half() if k in params else v).contiguous() for k, v in model.state_dict().items()
             if not k.endswith(CONSTRUCTED_BUFFERS)}
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(weights))
    config.write_text(json.dumps(summary, indent=2) + "\n")
    return weights
