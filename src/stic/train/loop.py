"""The training loop: random crops -> CompressAI model -> composable loss (+ the adversarial
term's two-player step), with resumable checkpoints every few minutes, a tqdm bar (loss / bpp /
PSNR), a log file, a loss curve (losses.jsonl) and validation on a held-out slice. Budgeted in
wall-clock minutes because CPU time is what is scarce here. The same loop runs on one CPU, one GPU
(bf16 autocast) or several processes under torchrun (stic.train.distributed).
"""

import json
import logging
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stic.errors import InputError
from stic.image.architectures import build_model
from stic.image.losses import CompositeLoss, psnr_from_mse255, rate_distortion
from stic.paths import data_dir
from stic.train import distributed
from stic.train.adversarial import Adversarial, latent_channels
from stic.train.checkpoint import (
    has_checkpoint,
    load_checkpoint,
    load_synthesis,
    load_weights,
    save_checkpoint,
)
from stic.train.config import TrainConfig
from stic.train.data import (
    CropSampler,
    captions_per_image,
    center_crops,
    list_images,
    load_all,
    load_captions,
    split,
)
from stic.train.precision import autocast_factory, keep_entropy_models_fp32

EXTRA_SCALES = (0.6,)  # load_all's default: each training image also at 0.6x
#: the gradient-norm clip covers only the main optimizer's parameters (saved in state.json)
CLIP_SCOPE = "main"


def _logger(out: Path, main: bool = True) -> logging.Logger:
    if not main:  # only rank 0 writes the log
        log = logging.getLogger("stic.train.worker")
        log.propagate = False
        if not log.handlers:
            log.addHandler(logging.NullHandler())
        return log
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


def _loss(cfg: TrainConfig) -> CompositeLoss:
    """Rate + lambda*MSE + perceptual metrics + semantic CLIP terms; with `refiner` set, every
    term but rate and MSE judges the refined x_hat."""
    from stic.train.semantic import semantic_terms

    loss = rate_distortion(cfg.lmbda, cfg.perceptual)
    loss.terms += semantic_terms(cfg.semantic, cfg.clip_model)
    if cfg.refiner:
        from stic.train.refined import DifferentiableRefiner, OnRefined

        refiner = DifferentiableRefiner(cfg.refiner)
        for t in loss.terms[2:]:
            t.term = OnRefined(t.term, refiner)
    return loss


class LatentTap:
    """Records the latent the synthesis transform decodes (the discriminator's condition)."""

    def __init__(self, model):
        self.latent = None
        model.g_s.register_forward_pre_hook(self._record)

    def _record(self, module, args):
        self.latent = args[0]


def _captions(cfg: TrainConfig, train_files, val_files):
    """Per-image caption lists for the sampler (aligned with load_all) and one caption per
    validation image, or (None, None) when no semantic term needs them."""
    if not cfg.semantic:
        return None, None
    table = load_captions(Path(cfg.captions) if cfg.captions else data_dir() / "coco_mini" / "pairs.jsonl")
    val = [(table.get(p.name) or [""])[0] for p in val_files]
    return captions_per_image(train_files, table, 1 + len(EXTRA_SCALES)), val


@torch.no_grad()
def validate(model, batch: torch.Tensor, loss_fn, captions: list[str] | None = None) -> dict:
    """Forward-estimate bpp, PSNR and every other loss term on the held-out crops, one at a time."""
    model.eval()
    device = next(model.parameters()).device
    needs_caption = {t.term.name for t in loss_fn.terms if t.term.needs_caption}
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for i, x in enumerate(batch.split(1)):
        x = x.to(device)
        out = model(x)
        out["x_hat"] = out["x_hat"].clamp(0, 1)
        out["captions"] = [captions[i]] if captions else None
        _, values = loss_fn(out, x)
        for name, value in values.items():
            if name in needs_caption and not (captions and captions[i]):
                continue  # averaged over the captioned images only
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
    means = {name: total / counts[name] for name, total in sums.items()}
    result = {"val_bpp": means.pop("bpp"), "val_psnr": psnr_from_mse255(means.pop("mse"))}
    return result | {f"val_{name}": value for name, value in means.items()}


def _restore_sampler(sampler: CropSampler, state: dict, ctx: distributed.Context, seed: int) -> None:
    """Each rank continues its own crop stream; a rank the checkpoint has no stream for (more
    ranks than when it was saved) starts a fresh one keyed by (seed, rank, step)."""
    streams = state.get("samplers") or [state["sampler"]]
    if ctx.rank < len(streams):
        sampler.set_state(streams[ctx.rank])
    else:
        sampler.rng = np.random.default_rng([seed, ctx.rank, state["step"]])


class Step:
    """One optimisation step of every optimizer, in lockstep on all ranks: the codec on the
    weighted loss (+ the adversarial generator term after its warm-up), CompressAI's aux loss on
    the quantiles, then the discriminator on real crops vs this step's reconstructions."""

    def __init__(self, model, tap: LatentTap, loss_fn: CompositeLoss, optimizers: dict, gan, autocast, clip: float):
        self.model, self.tap, self.loss_fn, self.optimizers, self.gan = model, tap, loss_fn, optimizers, gan
        self.autocast, self.clip = autocast, clip
        # clip and average only what the main optimizer steps: the quantiles keep the aux loss's
        # gradient from the previous step, which must not enter the main gradient's norm
        self.params = [p for group in optimizers["main"].param_groups for p in group["params"]]
        self.quantiles = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]

    def __call__(self, x: torch.Tensor, captions: list[str] | None, step: int) -> dict | None:
        """The loss and each term's value, or None when a non-finite loss on any rank skipped the batch."""
        with self.autocast():
            output = self.model(x)
            output["captions"] = captions
            loss, values = self.loss_fn(output, x)
            if self.gan:
                weight = self.gan.weight_at(step)
                with torch.set_grad_enabled(weight > 0):  # during the warm-up: logged only
                    values["adv_g"] = self.gan.generator_term(output["x_hat"], self.tap.latent)
                loss = loss + weight * values["adv_g"]
        if distributed.any_rank(not bool(torch.isfinite(loss))):
            return None
        main = self.optimizers["main"]
        main.zero_grad()
        loss.backward()
        distributed.average_gradients(self.params)
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        main.step()
        if "aux" in self.optimizers:
            self.optimizers["aux"].zero_grad()
            self.model.aux_loss().backward()
            distributed.average_gradients(self.quantiles)
            self.optimizers["aux"].step()
        if self.gan:
            values["adv_d"] = self.gan.discriminator_step(x, output["x_hat"], self.tap.latent)
        return {"loss": loss.item(), **{name: value.item() for name, value in values.items()}}


class Report:
    """Progress of rank 0: a tqdm bar and train.log lines with running averages (EMA), and the
    loss curve losses.jsonl (each term's mean over every `every` steps, on rank 0's crops)."""

    def __init__(self, out: Path, log, budget: float, elapsed: float, main: bool, every: int):
        self.out, self.log, self.budget, self.main, self.every = out, log, int(budget), main, every
        self.bar = tqdm(total=self.budget, initial=int(elapsed), unit="s", desc=out.name, mininterval=5,
                        disable=not main)
        self.ema, self.interval = None, []

    def __call__(self, step: int, elapsed: float, lr: float, now: dict) -> None:
        if not self.main:
            return
        self.interval.append(now)
        ema = self.ema = now if self.ema is None else {k: 0.98 * self.ema[k] + 0.02 * now[k] for k in now}
        shown = {"loss": f"{ema['loss']:.3f}", "bpp": f"{ema['bpp']:.4f}", "psnr": f"{psnr_from_mse255(ema['mse']):.2f}"}
        shown |= {name: f"{ema[name]:.3f}" for name in ema if name not in ("loss", "bpp", "mse")}
        self.bar.update(min(int(elapsed) - self.bar.n, self.budget - self.bar.n))
        self.bar.set_postfix(step=step, **shown, lr=f"{lr:.0e}")
        if step % self.every == 0:
            self.log.info("step %d %s lr %.0e", step, " ".join(f"{k} {v}" for k, v in shown.items()), lr)
            mean = {k: sum(v[k] for v in self.interval) / len(self.interval) for k in self.interval[0]}
            with (self.out / "losses.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, "elapsed_s": round(elapsed, 2), **mean}) + "\n")
            self.interval = []

    def close(self) -> None:
        self.bar.close()


def train(cfg: TrainConfig) -> Path:
    ctx = distributed.start(cfg.device)
    out = _train(cfg, ctx)
    distributed.finish()
    return out


def _train(cfg: TrainConfig, ctx: distributed.Context) -> Path:
    if cfg.decoder_from and not cfg.init_from:
        raise InputError("decoder_from needs init_from: the run whose encoder and entropy models start this one")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(out, ctx.is_main)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    model = build_model(cfg.model).to(ctx.device)
    tap = LatentTap(model)
    keep_entropy_models_fp32(model)
    optimizers = _optimizers(model, cfg)
    autocast = autocast_factory(cfg.precision, ctx.device)
    modules, gan = {}, None
    if cfg.adversarial > 0:
        gan = Adversarial(latent_channels(model), cfg.adversarial, cfg.adversarial_warmup, cfg.adversarial_loss,
                          cfg.disc_lr, cfg.disc_channels, ctx.device, autocast)
        optimizers["discriminator"], modules["discriminator"] = gan.optimizer, gan.discriminator
    loss_fn = _loss(cfg).to(ctx.device)

    folders = [data_dir() / d for d in cfg.datasets]
    train_files, val_files = split(list_images(folders))
    train_captions, val_captions = _captions(cfg, train_files, val_files)
    sampler = CropSampler(load_all(train_files, EXTRA_SCALES), cfg.crop, cfg.seed + ctx.rank, train_captions)
    val_batch = center_crops(load_all(val_files, extra_scales=(), desc="validation"), cfg.val_crop)

    state = {"step": 0, "elapsed_s": 0.0, "history": []}
    if has_checkpoint(out):
        state = load_checkpoint(out, model, optimizers, modules)
        _restore_sampler(sampler, state, ctx, cfg.seed)
        log.info("resumed at step %d (%.1f min)", state["step"], state["elapsed_s"] / 60)
        if cfg.trainable == "all" and state.get("clip_scope") != CLIP_SCOPE:
            # saved before clipping left the quantiles out: the stale aux gradient (norm ~100x the
            # codec's) had scaled the codec's gradient down, so Adam's moments are ~100x too small
            # for the gradient it now gets and its first steps would wreck the model
            optimizers["main"].state.clear()
            log.info("Adam moments restarted: checkpoint made before clipping excluded the quantiles")
    elif cfg.init_from:
        load_weights(model, cfg.init_from)
        log.info("initialised from %s", cfg.init_from)
        if cfg.decoder_from:
            load_synthesis(model, cfg.decoder_from)
            log.info("synthesis transform from %s", cfg.decoder_from)
    state["clip_scope"] = CLIP_SCOPE
    distributed.broadcast_parameters(model)
    log.info("config %s; %d train / %d val images; %d process(es) on %s", json.dumps(asdict(cfg)),
             len(train_files), len(val_files), ctx.world, ctx.device)

    def checkpoint():
        streams = distributed.gather(sampler.state())
        if ctx.is_main:
            state["sampler"], state["samplers"] = streams[0], streams
            val = validate(model, val_batch, loss_fn, val_captions)
            state["history"].append({"step": state["step"], "elapsed_s": state["elapsed_s"], **val})
            save_checkpoint(out, model, optimizers, state, cfg.model, modules)
            (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
            log.info("checkpoint %s", json.dumps(state["history"][-1]))
        _training_mode(model, cfg)
        return state["history"][-1] if state["history"] else None

    stop = []  # SIGTERM (plain `kill`) ends the run after the current step, with a checkpoint
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    except ValueError:  # not the main thread: no handler
        previous = None

    budget = cfg.minutes * 60
    _training_mode(model, cfg)
    report = Report(out, log, budget, state["elapsed_s"], ctx.is_main, cfg.log_every)
    last_ckpt = time.monotonic()
    step = Step(model, tap, loss_fn, optimizers, gan, autocast, cfg.clip)
    while not distributed.any_rank(
        ctx.is_main and (state["elapsed_s"] >= budget or state["step"] >= cfg.max_steps or bool(stop))
    ):
        t0 = time.monotonic()
        lr = cfg.lr * (0.1 if state["elapsed_s"] > cfg.lr_drop_at * budget else 1.0)
        for g in optimizers["main"].param_groups:
            g["lr"] = lr
        x, captions = sampler.batch_with_captions(cfg.batch) if train_captions else (sampler.batch(cfg.batch), None)
        values = step(x.to(ctx.device), captions, state["step"])
        if values is None:
            log.info("step %d: non-finite loss, batch skipped", state["step"])
            continue
        state["step"] += 1
        state["elapsed_s"] += time.monotonic() - t0
        report(state["step"], state["elapsed_s"], lr, values)
        if distributed.any_rank(ctx.is_main and time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60):
            checkpoint()
            last_ckpt = time.monotonic()
    report.close()
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
    final = checkpoint()
    log.info("done at step %d, %.1f min: %s", state["step"], state["elapsed_s"] / 60, json.dumps(final))
    return out
