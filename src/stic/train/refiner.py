"""`stic train refiner`: fit a compact ×4 refiner to the pictures stic's own decoders make.

The off-the-shelf refiners learned to undo bicubic or anime-style degradations; x̂ at 0.01–0.05
bpp is degraded in a learned codec's own way (texture smoothed away, colours pulled to the mean).
This trains Real-ESRGAN's compact network (start from the photo-trained general-x4v3) on (x̂, x)
pairs that the shipped image models make from the training sets, never Kodak, with LPIPS-Alex +
DISTS + a colour term (L1 of 8x8 block means) + a patch discriminator conditioned on the
network's input. The input is x̂ downscaled exactly as decoding does it
(stic.refine.esrgan.downscale4), so training sees what decoding sees.

Pairs are coded once through the real compress/decompress path and cached as PNGs in the run
folder. Checkpoints are safetensors (no pickles) every few minutes; rerunning with the same run
folder resumes; the budget is wall-clock minutes; CUDA with bf16 autocast when available.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from stic.errors import InputError, ModelNotFoundError
from stic.paths import data_dir, replace_atomically
from stic.refine.esrgan import SCALE, downscale4
from stic.refine.rrdbnet import SRVGGNetCompact
from stic.train.adversarial import Adversarial
from stic.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from stic.train.config import RefinerConfig
from stic.train.data import batch_tensor, list_images, load_rgb, split
from stic.train.distributed import resolve_device
from stic.train.precision import autocast_factory

COLOUR_BLOCK = 8  #: the colour term compares means over blocks of this many pixels a side


def build_network(num_conv: int) -> SRVGGNetCompact:
    return SRVGGNetCompact(num_conv=num_conv)


def read_weights(source) -> dict[str, torch.Tensor]:
    """Float32 weights from a run folder, a .safetensors file or a Real-ESRGAN .pth (loaded
    tensors-only: `torch.load(weights_only=True)` refuses anything but tensors and containers)."""
    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ModelNotFoundError(f"refiner weights {source} not found")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelNotFoundError(f"refusing {path}: it holds more than tensors, and stic never unpickles objects") from exc
        state = state.get("params_ema", state.get("params", state))
    return {k: v.float() for k, v in state.items()}


def even(rgb: np.ndarray) -> np.ndarray:
    """Crop to multiples of the scale, so x̂ downscales to exactly a quarter."""
    h, w = rgb.shape[:2]
    return rgb[: h - h % SCALE, : w - w % SCALE]


def make_pairs(files: list[Path], models: tuple, folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x̂ downscaled by 4, x) for every file and model; each x̂ is coded once and kept as a PNG,
    with its colour map applied, as the decoder gives it to the refiner (stic.colour)."""
    from stic.colour import ColourMap
    from stic.image.registry import load_image_codec

    targets = [even(load_rgb(path)) for path in tqdm(files, desc="reading", unit="img", leave=False)]
    pairs = []
    for name in models:
        codec = None
        cache = folder / f"{name}-colour-mapped"  # PNGs of stic < 0.4 (no colour map) lie beside it, unused
        cache.mkdir(parents=True, exist_ok=True)
        for path, x in zip(tqdm(files, desc=f"decoded by {name}", unit="img", leave=False), targets, strict=True):
            cached = cache / f"{path.stem}.png"
            if cached.is_file():
                x_hat = load_rgb(cached)
            else:
                codec = codec or load_image_codec(name)
                x_hat = codec.decompress(codec.compress(x), x.shape[1], x.shape[0])
                fitted = ColourMap.fit(x_hat, x)
                x_hat = fitted.apply(x_hat) if fitted is not None else x_hat
                replace_atomically(cached, lambda tmp, x_hat=x_hat: Image.fromarray(x_hat).save(tmp, format="PNG"))
            pairs.append((downscale4(x_hat), x))
    return pairs


class PairSampler:
    """Random aligned crops (+ horizontal flips) of (input, target) pairs; the RNG state is saved."""

    def __init__(self, pairs, crop: int, seed: int):
        if crop % SCALE:
            raise InputError(f"the crop must be a multiple of {SCALE}, got {crop}")
        self.pairs, self.crop = [p for p in pairs if min(p[1].shape[:2]) >= crop], crop
        if not self.pairs:
            raise InputError(f"no training image is at least {crop} pixels a side")
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, s = self.crop, self.crop // SCALE
        smalls, targets = [], []
        for i in self.rng.integers(0, len(self.pairs), size):
            small, target = self.pairs[i]
            top = int(self.rng.integers(0, small.shape[0] - s + 1))
            left = int(self.rng.integers(0, small.shape[1] - s + 1))
            a, b = small[top : top + s, left : left + s], target[SCALE * top : SCALE * top + c, SCALE * left : SCALE * left + c]
            if self.rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            smalls.append(a)
            targets.append(b)
        return batch_tensor(smalls), batch_tensor(targets)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def centre_pairs(pairs, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation batch: the centre crop of every pair (those large enough)."""
    s, smalls, targets = crop // SCALE, [], []
    for small, target in pairs:
        if min(target.shape[:2]) < crop:
            continue
        top, left = (small.shape[0] - s) // 2, (small.shape[1] - s) // 2
        smalls.append(small[top : top + s, left : left + s])
        targets.append(target[SCALE * top : SCALE * top + crop, SCALE * left : SCALE * left + crop])
    if not smalls:
        raise InputError(f"no validation image is at least {crop} pixels a side")
    return batch_tensor(smalls), batch_tensor(targets)


def colour_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of 8x8 block means: colour and tone, blind to texture."""
    return (F.avg_pool2d(out, COLOUR_BLOCK) - F.avg_pool2d(target, COLOUR_BLOCK)).abs().mean()


def spectrum_excess(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean excess of log(1 + |FFT|) per channel over the photo's: energy at frequencies where the
    photo has less, e.g. a regular weave the refiner paints over water and foliage. LPIPS and DISTS
    can reward that as texture; this term only ever costs it (docs/refiners.md)."""
    def log_magnitude(x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.fft.rfft2(x, norm="ortho").abs())

    return torch.relu(log_magnitude(out) - log_magnitude(target)).mean()


_OWN_TERMS = {"colour": colour_error, "spectrum": spectrum_excess}


class RefinerLoss:
    """Weighted LPIPS/DISTS/colour/spectrum terms on the refined crop; returns (total, {term: value})."""

    def __init__(self, weights: dict[str, float], device):
        from stic.metrics import METRICS, create_loss

        unknown = set(weights) - set(METRICS) - set(_OWN_TERMS)
        if unknown:
            raise InputError(
                f"unknown refiner loss {sorted(unknown)}; choose from {', '.join(_OWN_TERMS)}, {', '.join(METRICS)}"
            )
        self.weights = weights
        self.metrics = {name: create_loss(name).to(device) for name in weights if name not in _OWN_TERMS}

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        values = {name: metric(out, target).mean() for name, metric in self.metrics.items()}
        for name, term in _OWN_TERMS.items():
            if name in self.weights:
                values[name] = term(out.float(), target)
        return sum(self.weights[k] * v for k, v in values.items()), values


@torch.no_grad()
def validate(net, batch, loss_fn: RefinerLoss) -> dict:
    net.eval()
    small, target = batch
    values, rows = {}, 0
    for i in range(0, len(small), 4):  # small chunks keep the metrics' memory low
        out = net(small[i : i + 4]).clamp(0, 1)
        _, part = loss_fn(out, target[i : i + 4])
        n = len(out)
        values = {k: values.get(k, 0.0) + float(v) * n for k, v in part.items()}
        rows += n
    net.train()
    return {k: round(v / rows, 5) for k, v in values.items()}


def train_refiner(cfg: RefinerConfig) -> Path:
    """Train (or resume) in cfg.out; returns the run folder (weights in model.safetensors)."""
    out = Path(cfg.out)
    if cfg.crop % SCALE or cfg.val_crop % SCALE:
        raise InputError(f"--crop and --val-crop must be multiples of {SCALE}")
    device = resolve_device(cfg.device)
    folders = [data_dir() / d for d in cfg.datasets]
    train_files, val_files = split(list_images(folders))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    net = build_network(cfg.num_conv).to(device)
    if cfg.init_from and not has_checkpoint(out):  # read before the pairs are coded: a bad path fails at once
        net.load_state_dict(read_weights(cfg.init_from))
    optimizers = {"main": torch.optim.Adam(net.parameters(), lr=cfg.lr)}
    autocast = autocast_factory(cfg.precision, device)
    modules, gan = {}, None
    if cfg.adversarial > 0:
        gan = Adversarial(3, cfg.adversarial, cfg.adversarial_warmup, lr=cfg.disc_lr, device=device, autocast=autocast)
        optimizers["discriminator"], modules["discriminator"] = gan.optimizer, gan.discriminator
    loss_fn = RefinerLoss(dict(cfg.losses), device)

    sampler = PairSampler(make_pairs(train_files, cfg.models, out / "pairs"), cfg.crop, cfg.seed)
    val_batch = centre_pairs(make_pairs(val_files, cfg.models, out / "pairs"), cfg.val_crop)
    state = {"step": 0, "elapsed_s": 0.0, "history": []}
    if has_checkpoint(out):
        state = load_checkpoint(out, net, optimizers, modules)
        sampler.set_state(state["sampler"])
    config = {"num_conv": cfg.num_conv, "models": list(cfg.models)}
    log = (out / "train.log").open("a")

    def checkpoint():
        state["sampler"] = sampler.state()
        state["history"].append({"step": state["step"], "elapsed_s": round(state["elapsed_s"], 1),
                                 **validate(net, val_batch, loss_fn)})
        save_checkpoint(out, net, optimizers, state, config, modules)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        log.write(f"checkpoint {json.dumps(state['history'][-1])}\n")
        log.flush()

    if not state["history"]:
        checkpoint()  # step 0: the starting weights' validation scores, the baseline to beat
    budget, last = cfg.minutes * 60, time.monotonic()
    bar = tqdm(total=int(budget), initial=int(state["elapsed_s"]), unit="s", desc=out.name, mininterval=5)
    net.train()
    while state["elapsed_s"] < budget and state["step"] < cfg.max_steps:
        t0 = time.monotonic()
        lr = cfg.lr * (0.1 if state["elapsed_s"] > cfg.lr_drop_at * budget else 1.0)
        for group in optimizers["main"].param_groups:
            group["lr"] = lr
        small, target = (t.to(device) for t in sampler.batch(cfg.batch))
        with autocast():
            refined = net(small).clamp(0, 1)
            loss, values = loss_fn(refined, target)
            if gan is not None and gan.weight_at(state["step"]):
                values["adv"] = gan.generator_term(refined, small)
                loss = loss + gan.weight * values["adv"]
        optimizers["main"].zero_grad()
        loss.float().backward()
        optimizers["main"].step()
        if gan is not None:
            values["disc"] = gan.discriminator_step(target, refined, small)
        state["step"] += 1
        state["elapsed_s"] += time.monotonic() - t0
        bar.update(min(int(state["elapsed_s"]) - bar.n, int(budget) - bar.n))
        shown = {k: f"{v.item():.4f}" for k, v in values.items()}
        bar.set_postfix(step=state["step"], **shown)
        if state["step"] % cfg.log_every == 0:
            log.write(f"step {state['step']} loss {float(loss):.4f} {json.dumps(shown)}\n")
            log.flush()
        if time.monotonic() - last > cfg.checkpoint_minutes * 60:
            checkpoint()
            last = time.monotonic()
    bar.close()
    checkpoint()
    log.close()
    return out


def export_refiner(run: Path, dest: Path) -> Path:
    """The run's network as fp16 safetensors, its depth and training summary in the metadata."""
    run = Path(run)
    config = json.loads((run / "config.json").read_text())
    progress = json.loads((run / "state.json").read_text())
    net = build_network(config["num_conv"])
    net.load_state_dict(read_weights(run))
    state = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    history = progress["history"]
    summary = {"models": config["models"], "steps": progress["step"], "first": history[0], "last": history[-1]}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dest), metadata={"num_conv": str(config["num_conv"]), "training": json.dumps(summary)})
    return dest
