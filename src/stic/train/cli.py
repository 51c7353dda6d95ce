"""`stic train run` trains (or resumes, or fine-tunes) a learned image codec on image folders;
`stic train export` turns a run into a shipped model (fp16 safetensors + JSON); `stic train
context` adds a checkerboard spatial context to a trained mbt2018-mean model."""

import argparse
import json
from pathlib import Path

from stic.train.config import ContextConfig, RefinerConfig, TrainConfig

_DEFAULTS = TrainConfig(out="")


def _add_common(p, defaults) -> None:
    """The options every `stic train` command shares."""
    p.add_argument("--batch", type=int, default=defaults.batch, help=f"crops per step (default: {defaults.batch})")
    p.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam learning rate (default: {defaults.lr:g})")
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed of initialisation and crops")
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--checkpoint-minutes", type=float, default=defaults.checkpoint_minutes,
                   help="minutes between checkpoints (default: %(default)s)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    group = subparsers.add_parser("train", help="train or export a learned image codec")
    commands = group.add_subparsers(dest="train_command", required=True)
    _add_run(commands)
    _add_export(commands)
    _add_context(commands)
    _add_refiner(commands)
    return group


def _add_refiner(commands) -> None:
    defaults = RefinerConfig(out="")
    p = commands.add_parser(
        "refiner", help="fit a compact x4 refiner to the images stic's decoders make (docs/refiners.md)",
        description="Fine-tune Real-ESRGAN's compact network on (x_hat, x) pairs made by shipped image models from "
        "the training sets, with LPIPS-Alex + DISTS + colour + adversarial losses. Rerunning with the same OUT "
        "resumes; `--export FILE` writes the weights as fp16 safetensors, e.g. into the package's weights folder.",
    )
    p.add_argument("out", help="run folder (coded pairs, checkpoints, train.log)")
    p.add_argument("--models", nargs="+", default=list(defaults.models), help="shipped image models making x_hat")
    p.add_argument("--init-from", default=None,
                   help="starting weights: .safetensors, a Real-ESRGAN .pth (e.g. realesr-general-x4v3's "
                   "RealESR_Gx4.pth; read tensors-only) or a run folder; default random")
    p.add_argument("--num-conv", type=int, default=defaults.num_conv, help="network depth (general-x4v3: 32)")
    p.add_argument("--crop", type=int, default=defaults.crop, help="output crop side, a multiple of 4")
    _add_common(p, defaults)
    p.add_argument("--minutes", type=float, default=defaults.minutes, help="wall-clock budget over all resumes")
    p.add_argument("--max-steps", type=int, default=defaults.max_steps, help="stop after this many steps")
    p.add_argument("--losses", default=json.dumps(defaults.losses),
                   help="loss weights as JSON {term: weight}: colour, spectrum and metrics from stic.metrics")
    p.add_argument("--adversarial", type=float, default=defaults.adversarial, help="generator's adversarial weight (0: off)")
    p.add_argument("--adversarial-warmup", type=int, default=defaults.adversarial_warmup,
                   help="steps before the adversarial term reaches the refiner (the discriminator learns from step 0)")
    p.add_argument("--datasets", nargs="+", default=list(defaults.datasets), help="folders under $STIC_DATA (never kodak)")
    p.add_argument("--val-crop", type=int, default=defaults.val_crop, help="side of the validation centre crops")
    p.add_argument("--device", default=defaults.device, help="'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=defaults.precision,
                   help="'auto': bf16 autocast on cuda, fp32 on cpu")
    p.add_argument("--export", default=None, help="after training, write the weights here (fp16 .safetensors)")
    p.set_defaults(func=run_refiner)


def run_refiner(args) -> int:
    from stic.train.refiner import export_refiner, train_refiner

    cfg = RefinerConfig(
        out=args.out, models=tuple(args.models), init_from=args.init_from, num_conv=args.num_conv, crop=args.crop,
        batch=args.batch, lr=args.lr, minutes=args.minutes, max_steps=args.max_steps, losses=json.loads(args.losses),
        adversarial=args.adversarial, adversarial_warmup=args.adversarial_warmup, datasets=tuple(args.datasets),
        seed=args.seed, threads=args.threads, checkpoint_minutes=args.checkpoint_minutes, val_crop=args.val_crop,
        device=args.device, precision=args.precision,
    )
    run = train_refiner(cfg)
    if args.export:
        path = export_refiner(run, Path(args.export))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def _add_context(commands) -> None:
    defaults = ContextConfig(base="", out="")
    p = commands.add_parser(
        "context", help="train a checkerboard spatial context on a model's frozen transforms (stic-mean-checkerboard)",
        description="Fit a checkerboard context to an mbt2018-mean model (shipped name or model folder) with its "
        "transforms frozen; OUT then holds model.safetensors + config.json, loadable as `stic encode --model OUT`, and "
        "`--name NAME --dest DIR` also writes DIR/NAME.safetensors + .json. Rerunning with the same OUT resumes.",
    )
    p.add_argument("base", help="the model whose transforms are kept, e.g. stic-q2")
    p.add_argument("--out", required=True, help="run folder (checkpoints, then the model)")
    p.add_argument("--steps", type=int, default=defaults.steps, help="training steps (default: %(default)s)")
    p.add_argument("--kernel", type=int, default=defaults.kernel, help="context convolution size (odd)")
    p.add_argument("--hidden", type=int, default=defaults.hidden, help="width of the entropy-parameter MLP")
    _add_common(p, defaults)
    p.add_argument("--datasets", nargs="+", default=list(defaults.datasets),
                   help="folders under the data root ($STIC_DATA, default ../shared/data); never Kodak")
    p.add_argument("--context-from", default=None,
                   help="start from this checkerboard model's context (e.g. the MSE twin of a decoder-only perceptual "
                   "model, whose latents are the same); with --steps 0 it is copied as is")
    p.add_argument("--name", default=None, help="also write the model as NAME.safetensors + NAME.json")
    p.add_argument("--dest", default=None, help="folder for --name (default: the package's weights folder)")
    p.set_defaults(func=run_context)


def run_context(args) -> int:
    import shutil

    from stic.errors import InputError
    from stic.image.registry import weights_dir
    from stic.train.context import train_context

    if args.kernel < 1 or args.kernel % 2 == 0:
        raise InputError(f"--kernel must be odd and positive, got {args.kernel}")
    cfg = ContextConfig(base=args.base, out=args.out, steps=args.steps, kernel=args.kernel, hidden=args.hidden,
                        lr=args.lr, batch=args.batch, seed=args.seed, threads=args.threads,
                        datasets=tuple(args.datasets), context_from=args.context_from)
    path = train_context(cfg)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.name:
        dest = Path(args.dest) if args.dest else weights_dir()
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / f"{args.name}.safetensors")
        shutil.copyfile(path.with_name("config.json"), dest / f"{args.name}.json")
        print(f"wrote {dest / args.name}.safetensors")
    return 0


def _add_export(commands) -> None:
    p = commands.add_parser("export", help="write a run's weights as a shippable model (fp16 safetensors + JSON)")
    p.add_argument("run", help="run folder made by `stic train run`")
    p.add_argument("name", help="model name, e.g. stic-q2")
    p.add_argument("--dest", default=None, help="output folder (default: the package's weights folder)")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    from stic.image.registry import weights_dir
    from stic.train.export import export_weights

    path = export_weights(Path(args.run), args.name, Path(args.dest) if args.dest else weights_dir())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def _add_run(commands) -> None:
    p = commands.add_parser(
        "run",
        help="train a learned image codec (resumes if OUT holds a checkpoint)",
        description="Train a CompressAI-architecture codec with rate + lambda*MSE (+ perceptual, adversarial, semantic "
        "terms) on image folders under $STIC_DATA. Re-running with the same OUT resumes from its last checkpoint. "
        "The same command runs on one CPU, one GPU, or K processes under torchrun (rank 0 logs and checkpoints). "
        "See docs/training.md.",
    )
    p.add_argument("out", help="run folder (checkpoints, train.log)")
    p.add_argument("--model", default=json.dumps(_DEFAULTS.model),
                   help='architecture config as JSON, e.g. \'{"architecture": "mbt2018-mean", "N": 64, "M": 96}\'')
    p.add_argument("--lmbda", type=float, default=_DEFAULTS.lmbda, help="weight of 255^2*MSE against bpp")
    p.add_argument("--crop", type=int, default=_DEFAULTS.crop, help="training crop side in pixels (default: %(default)s)")
    _add_common(p, _DEFAULTS)
    p.add_argument("--minutes", type=float, default=_DEFAULTS.minutes, help="wall-clock budget over all resumes")
    p.add_argument("--max-steps", type=int, default=_DEFAULTS.max_steps, help="stop after this many steps")
    p.add_argument("--lr-drop-at", type=float, default=_DEFAULTS.lr_drop_at,
                   help="fraction of the budget after which the learning rate drops tenfold")
    p.add_argument("--datasets", nargs="+", default=list(_DEFAULTS.datasets),
                   help="folders under $STIC_DATA (never kodak)")
    p.add_argument("--val-crop", type=int, default=_DEFAULTS.val_crop, help="side of the validation centre crops")
    p.add_argument("--init-from", default=None, help="run folder or shipped model (e.g. stic-p2) whose weights start this run (fine-tuning)")
    p.add_argument("--decoder-from", default=None,
                   help="with --init-from: take the synthesis transform (decoder) from this run or shipped model instead, e.g. "
                   "to re-fit a perceptual decoder to its MSE twin's newer encoder")
    p.add_argument("--perceptual", default="{}",
                   help='extra loss terms as JSON {metric: weight}, metrics from stic.metrics, e.g. \'{"lpips-alex": 1.0}\'')
    p.add_argument("--trainable", choices=("all", "decoder"), default=_DEFAULTS.trainable,
                   help="'decoder' trains only the synthesis transform: bitstreams stay identical to --init-from's")
    adv = p.add_argument_group("adversarial term (conditional patch discriminator, HiFiC-style)")
    adv.add_argument("--adversarial", type=float, default=_DEFAULTS.adversarial,
                     help="weight of the generator's adversarial loss (0: no discriminator); ~0.1-0.2 next to "
                     "lpips-alex 1.0")
    adv.add_argument("--adversarial-warmup", type=int, default=_DEFAULTS.adversarial_warmup,
                     help="the first N steps of this run folder, during which the discriminator learns but the "
                     "codec gets no adversarial gradient")
    adv.add_argument("--adversarial-loss", choices=("nonsaturating", "hinge"), default=_DEFAULTS.adversarial_loss,
                     help="GAN objective: non-saturating (HiFiC's) or hinge")
    adv.add_argument("--disc-lr", type=float, default=_DEFAULTS.disc_lr, help="discriminator learning rate (Adam)")
    adv.add_argument("--disc-channels", type=int, default=_DEFAULTS.disc_channels,
                     help="discriminator width (its convs have 1, 2, 4, 8 x this many channels)")
    sem = p.add_argument_group("semantic terms (need CLIP weights and captions)")
    sem.add_argument("--semantic", default="{}",
                     help='CLIP terms as JSON {term: weight}: "clip-text" (1 - cosine to the crop\'s caption), '
                     '"clip-iqa" (-p("a good photo.") vs "a bad photo."), e.g. \'{"clip-iqa": 0.1}\'')
    sem.add_argument("--clip-model", default=_DEFAULTS.clip_model,
                     help="transformers CLIP model id (already in the HF cache) or local folder")
    sem.add_argument("--captions", default=None,
                     help="captions by image file name: .jsonl like coco_mini/pairs.jsonl, .json {name: [captions]} "
                     "or .csv (image,caption); default $STIC_DATA/coco_mini/pairs.jsonl")
    p.add_argument("--refiner", default=None, choices=("realesrgan-compact", "realesrgan"),
                   help="perceptual and semantic terms judge x_hat after this frozen offline refiner "
                   "(rate and MSE stay on x_hat)")
    scale = p.add_argument_group("hardware (multi-process: torchrun --nproc_per_node=K -m stic.cli train run ...)")
    scale.add_argument("--device", default=_DEFAULTS.device,
                       help="'auto' (cuda if available, else cpu), 'cpu', 'cuda' or 'cuda:N'; under torchrun each "
                       "rank takes GPU LOCAL_RANK")
    scale.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=_DEFAULTS.precision,
                       help="'auto': bf16 autocast on cuda, fp32 on cpu (entropy models always run in fp32)")
    scale.add_argument("--log-every", type=int, default=_DEFAULTS.log_every,
                       help="steps between train.log lines and losses.jsonl points (loss curve)")
    p.set_defaults(func=run)


def run(args) -> int:
    from stic.train.loop import train

    cfg = TrainConfig(
        out=args.out, model=json.loads(args.model), lmbda=args.lmbda, crop=args.crop, batch=args.batch,
        lr=args.lr, minutes=args.minutes, max_steps=args.max_steps, lr_drop_at=args.lr_drop_at,
        datasets=tuple(args.datasets), seed=args.seed, threads=args.threads,
        checkpoint_minutes=args.checkpoint_minutes, val_crop=args.val_crop, init_from=args.init_from,
        decoder_from=args.decoder_from,
        perceptual=json.loads(args.perceptual), trainable=args.trainable,
        adversarial=args.adversarial, adversarial_warmup=args.adversarial_warmup,
        adversarial_loss=args.adversarial_loss, disc_lr=args.disc_lr, disc_channels=args.disc_channels,
        semantic=json.loads(args.semantic), clip_model=args.clip_model, captions=args.captions, refiner=args.refiner,
        device=args.device, precision=args.precision, log_every=args.log_every,
    )
    train(cfg)
    return 0


def main(argv=None) -> int:
    """Entry point for `python -m stic.train.cli` while the main CLI is being wired."""
    parser = argparse.ArgumentParser(prog="stic")
    add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
