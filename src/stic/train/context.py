"""`stic train context`: fit a checkerboard spatial context (stic.image.checkerboard) to an
mbt2018-mean model whose transforms stay frozen, and write the result as a loadable model.

With g_a, h_a and h_s frozen, each training image's latent y and hyperprior output h_s(z_hat) are
fixed, so they are computed once and cached; a step then runs only the small context network on
latent crops (12x12 latents = 192x192 pixels), a few milliseconds on a CPU instead of the seconds a
step through the transforms costs. The loss is the rate of y alone (z's is unchanged); the decoder
is untouched, and what it is given differs only in where each latent is rounded (about its new mean).
"""

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from compressai.models import MeanScaleHyperprior
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from stic.errors import InputError
from stic.image.architectures import build_model
from stic.image.checkerboard import MeanScaleCheckerboard
from stic.image.learned import padded_tensor
from stic.paths import data_dir, replace_atomically
from stic.train.config import ContextConfig
from stic.train.data import list_images, load_all, split
from stic.train.export import write_model
from stic.train.loop import EXTRA_SCALES


def checkerboard_from(base: MeanScaleHyperprior, kernel: int, hidden: int):
    """A checkerboard model with `base`'s transforms and entropy models and a fresh (zero-output) context."""
    if type(base) is not MeanScaleHyperprior:
        raise InputError(f"a checkerboard context is trained on an mbt2018-mean model, not {type(base).__name__}")
    model = build_model({"architecture": "stic-mean-checkerboard", "N": base.N, "M": base.M,
                         "context_kernel": kernel, "context_hidden": hidden})
    state = {(f"context.y.{k}" if k.startswith("gaussian_conditional.") else k): v for k, v in base.state_dict().items()}
    state.update({k: v for k, v in model.state_dict().items() if k.startswith("context.") and k not in state})
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def latent_maps(model, images, desc: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(y, h_s(z_hat)) per image, fp16, z rounded as the coder rounds it."""
    maps = []
    for image in tqdm(images, desc=desc, unit="img", leave=False):
        y = model.g_a(padded_tensor(image))
        z_hat, _ = model.entropy_bottleneck(model.h_a(y), training=False)
        maps.append((y[0].half(), model.h_s(z_hat)[0].half()))
    return maps


def _crops(maps, size: int, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ys, hypers = [], []
    for _ in range(count):
        y, hyper = maps[int(torch.randint(len(maps), (1,), generator=generator))]
        i = int(torch.randint(y.shape[1] - size + 1, (1,), generator=generator))
        j = int(torch.randint(y.shape[2] - size + 1, (1,), generator=generator))
        ys.append(y[:, i:i + size, j:j + size])
        hypers.append(hyper[:, i:i + size, j:j + size])
    return torch.stack(ys).float(), torch.stack(hypers).float()


@torch.no_grad()
def rate_saving(model, maps) -> dict:
    """Exact (discrete Gaussian) bits of y under the hyperprior alone and with the context, summed
    over the maps; the relative saving is what the coder saves on y, to within its ~1 % overhead."""
    model.context.eval()
    gc = model.gaussian_conditional
    before = after = 0.0
    for y, hyper in maps:
        y, hyper = y[None].float(), hyper[None].float()
        scales, means = hyper.chunk(2, 1)
        before += float(-torch.log2(gc(y, scales, means=means, training=False)[1]).sum())
        after += float(-torch.log2(model.context(y, hyper)["likelihoods"]["y"]).sum())
    return {"y_bits_hyperprior": before, "y_bits_context": after, "saving": 1 - after / before}


def _copy_context(model, source, name: str) -> None:
    if not isinstance(source, MeanScaleCheckerboard):
        raise InputError(f"--context-from {name}: not a checkerboard model")
    try:
        model.context.load_state_dict(source.context.state_dict())
    except RuntimeError as exc:
        raise InputError(f"--context-from {name}: its context does not fit (kernel/hidden/channels differ): {exc}") from exc


def _save(out: Path, model, optimizer, state: dict) -> None:
    """Context weights (safetensors), Adam's tensors-only state, progress (JSON); each via a rename."""
    for name, write in (
        ("context.safetensors", lambda p: save_file({k: v.contiguous() for k, v in model.context.state_dict().items()}, str(p))),
        ("optim.pt", lambda p: torch.save(optimizer.state_dict(), p)),
        ("state.json", lambda p: p.write_text(json.dumps(state, indent=2))),
    ):
        replace_atomically(out / name, write)


def _resume(out: Path, model, optimizer) -> dict | None:
    if not all((out / f).exists() for f in ("context.safetensors", "optim.pt", "state.json")):
        return None
    model.context.load_state_dict(load_file(str(out / "context.safetensors")))
    optimizer.load_state_dict(torch.load(out / "optim.pt", weights_only=True))
    return json.loads((out / "state.json").read_text())


def train_context(cfg: ContextConfig) -> Path:
    """Train, checkpointing every few minutes (a rerun with the same `out` resumes), then write
    `out`/model.safetensors + config.json: a model folder any stic command loads."""
    from stic.image.registry import load_image_codec, model_config

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    base_config = model_config(cfg.base)
    model = checkerboard_from(load_image_codec(cfg.base).model, cfg.kernel, cfg.hidden)
    model.requires_grad_(False)
    model.context.requires_grad_(True)
    optimizer = torch.optim.Adam(model.context.parameters(), lr=cfg.lr)
    state = _resume(out, model, optimizer)
    if state is None:
        state = {"step": 0, "elapsed_s": 0.0, "history": []}
        if cfg.context_from:
            _copy_context(model, load_image_codec(cfg.context_from).model, cfg.context_from)
    (out / "train_context.json").write_text(json.dumps(asdict(cfg), indent=2))

    train_files, val_files = split(list_images([data_dir() / d for d in cfg.datasets]))
    train = []
    if state["step"] < cfg.steps:
        train = [m for m in latent_maps(model, load_all(train_files, EXTRA_SCALES), "latents (train)")
                 if min(m[0].shape[1:]) >= cfg.crop]
        if not train:
            raise InputError(f"no training image gives a latent map of at least {cfg.crop}x{cfg.crop} "
                             f"({16 * cfg.crop} pixels a side)")
    val = latent_maps(model, load_all(val_files, extra_scales=()), "latents (validation)")
    generator = torch.Generator().manual_seed(cfg.seed + state["step"])  # a resumed run draws new crops

    last_save = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="context", unit="step")
    while state["step"] < cfg.steps:
        t0 = time.monotonic()
        lr = cfg.lr * (0.1 if state["step"] >= cfg.lr_drop_at * cfg.steps else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.context.train()
        y, hyper = _crops(train, cfg.crop, cfg.batch, generator)
        loss = -torch.log2(model.context(y, hyper)["likelihoods"]["y"]).sum() / y.numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state["step"] += 1
        state["elapsed_s"] += time.monotonic() - t0
        bar.update()
        bar.set_postfix(bits_per_latent=f"{loss.detach().item():.4f}")
        if state["step"] % cfg.val_every == 0 or state["step"] == cfg.steps:
            state["history"].append({"step": state["step"], "elapsed_s": state["elapsed_s"], **rate_saving(model, val)})
            bar.write(f"step {state['step']}: validation y-rate saving {state['history'][-1]['saving']:.2%}")
        if time.monotonic() - last_save > cfg.checkpoint_minutes * 60 or state["step"] == cfg.steps:
            _save(out, model, optimizer, state)
            last_save = time.monotonic()
    bar.close()
    if not state["history"] or state["history"][-1]["step"] != state["step"]:
        state["history"].append({"step": state["step"], "elapsed_s": state["elapsed_s"], **rate_saving(model, val)})
    summary = {
        **{k: v for k, v in base_config.items() if k not in ("model", "training")},
        "model": {"architecture": "stic-mean-checkerboard", "N": model.N, "M": model.M,
                  "context_kernel": cfg.kernel, "context_hidden": cfg.hidden},
        "training": {
            "trainable": "context",
            "init_from": cfg.base,
            "steps": state["step"],
            "train_minutes": round(state["elapsed_s"] / 60, 1),
            "crop": cfg.crop * 16,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "datasets": list(cfg.datasets),
            **({"context_from": cfg.context_from} if cfg.context_from else {}),
            "last_validation": state["history"][-1] if state["history"] else None,
            "base": base_config.get("training", {}),
        },
    }
    return write_model(model.eval(), summary, out / "model.safetensors", out / "config.json")
