"""The training loop: random crops -> CompressAI model -> composable loss, with resumable
checkpoints every few minutes, a tqdm bar (loss / bpp / PSNR), a log file and validation on a
held-out slice. Budgeted in wall-clock minutes because CPU time is what is scarce here.
"""

import json
import logging
import signal
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from stic.image.architectures import build_model
from stic.paths import data_dir
from stic.train.checkpoint import has_checkpoint, load_checkpoint, load_weights, save_checkpoint
from stic.train.config import TrainConfig
from stic.train.data import CropSampler, center_crops, list_images, load_all, split
from stic.train.losses import psnr_from_mse255, rate_distortion


def _logger(out: Path) -> logging.Logger:
    log = logging.getLogger(f"stic.train.{out}")
    log.setLevel(logging.INFO)
    if not log.handlers:
        handler = logging.FileHandler(out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    return log


TRAINABLE = ("all", "decoder")


def _optimizers(model, cfg: TrainConfig) -> dict:
    """Adam for the network and, when the entropy bottleneck learns, Adam for its quantiles.

    With trainable="decoder" everything but the synthesis transform g_s is frozen."""
    if cfg.trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {TRAINABLE}, got {cfg.trainable!r}")
    if cfg.trainable == "decoder":
        model.requires_grad_(False)
        model.g_s.requires_grad_(True)
        return {"main": torch.optim.Adam(model.g_s.parameters(), lr=cfg.lr)}
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return {"main": torch.optim.Adam(main, lr=cfg.lr), "aux": torch.optim.Adam(aux, lr=cfg.aux_lr)}


def _training_mode(model, cfg: TrainConfig) -> None:
    """Joint training uses CompressAI's additive-noise proxy; a decoder-only run keeps the whole
    model in eval mode so g_s learns from the rounded latents the real decoder will see."""
    model.train(cfg.trainable == "all")


@torch.no_grad()
def validate(model, batch: torch.Tensor, loss_fn) -> dict:
    """Forward-estimate bpp, PSNR and every other loss term on the held-out crops, one at a time."""
    model.eval()
    sums: dict[str, float] = {}
    for x in batch.split(1):
        out = model(x)
        out["x_hat"] = out["x_hat"].clamp(0, 1)
        _, values = loss_fn(out, x)
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + float(value)
    means = {name: total / len(batch) for name, total in sums.items()}
    result = {"val_bpp": means.pop("bpp"), "val_psnr": psnr_from_mse255(means.pop("mse"))}
    return result | {f"val_{name}": value for name, value in means.items()}


def train(cfg: TrainConfig) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(out)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    model = build_model(cfg.model)
    optimizers = _optimizers(model, cfg)
    loss_fn = rate_distortion(cfg.lmbda, cfg.perceptual)

    folders = [data_dir() / d for d in cfg.datasets]
    train_files, val_files = split(list_images(folders))
    sampler = CropSampler(load_all(train_files), cfg.crop, cfg.seed)
    val_batch = center_crops(load_all(val_files, extra_scales=(), desc="validation"), cfg.val_crop)

    state = {"step": 0, "elapsed_s": 0.0, "history": []}
    if has_checkpoint(out):
        state = load_checkpoint(out, model, optimizers)
        sampler.set_state(state["sampler"])
        log.info("resumed at step %d (%.1f min)", state["step"], state["elapsed_s"] / 60)
    elif cfg.init_from:
        load_weights(model, Path(cfg.init_from))
        log.info("initialised from %s", cfg.init_from)
    log.info("config %s; %d train / %d val images", json.dumps(asdict(cfg)), len(train_files), len(val_files))

    def checkpoint():
        state["sampler"] = sampler.state()
        state["history"].append({"step": state["step"], "elapsed_s": state["elapsed_s"], **validate(model, val_batch, loss_fn)})
        save_checkpoint(out, model, optimizers, state, cfg.model)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        log.info("checkpoint %s", json.dumps(state["history"][-1]))
        _training_mode(model, cfg)
        return state["history"][-1]

    stop = []  # SIGTERM (plain `kill`) ends the run after the current step, with a checkpoint
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    except ValueError:  # not the main thread: no handler
        previous = None

    budget = cfg.minutes * 60
    _training_mode(model, cfg)
    bar = tqdm(total=int(budget), initial=int(state["elapsed_s"]), unit="s", desc=out.name, mininterval=5)
    last_ckpt = time.monotonic()
    ema = None
    while state["elapsed_s"] < budget and state["step"] < cfg.max_steps and not stop:
        t0 = time.monotonic()
        lr = cfg.lr * (0.1 if state["elapsed_s"] > cfg.lr_drop_at * budget else 1.0)
        for g in optimizers["main"].param_groups:
            g["lr"] = lr
        x = sampler.batch(cfg.batch)
        output = model(x)
        loss, values = loss_fn(output, x)
        if not torch.isfinite(loss):
            log.info("step %d: non-finite loss, batch skipped", state["step"])
            continue
        optimizers["main"].zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimizers["main"].step()
        if "aux" in optimizers:
            optimizers["aux"].zero_grad()
            model.aux_loss().backward()
            optimizers["aux"].step()

        state["step"] += 1
        dt = time.monotonic() - t0
        state["elapsed_s"] += dt
        now = {"loss": loss.item(), **{name: value.item() for name, value in values.items()}}
        ema = now if ema is None else {k: 0.98 * ema[k] + 0.02 * now[k] for k in now}
        shown = {"loss": f"{ema['loss']:.3f}", "bpp": f"{ema['bpp']:.4f}", "psnr": f"{psnr_from_mse255(ema['mse']):.2f}"}
        shown |= {name: f"{ema[name]:.3f}" for name in cfg.perceptual}
        bar.update(min(int(state["elapsed_s"]) - bar.n, int(budget) - bar.n))
        bar.set_postfix(step=state["step"], **shown, lr=f"{lr:.0e}")
        if state["step"] % 200 == 0:
            log.info("step %d %s lr %.0e", state["step"], " ".join(f"{k} {v}" for k, v in shown.items()), lr)
        if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.monotonic()
    bar.close()
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    final = checkpoint()
    log.info("done at step %d, %.1f min: %s", state["step"], state["elapsed_s"] / 60, json.dumps(final))
    return out


