"""`stic train run` trains (or resumes, or fine-tunes) a learned image codec on image folders;
`stic train export` turns a run into a shipped model (fp16 safetensors + JSON)."""

import argparse
import json
from pathlib import Path

from stic.train.config import TrainConfig

_DEFAULTS = TrainConfig(out="")


def add_parser(subparsers) -> argparse.ArgumentParser:
    group = subparsers.add_parser("train", help="train or export a learned image codec")
    commands = group.add_subparsers(dest="train_command", required=True)
    _add_run(commands)
    _add_export(commands)
    return group


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
        description="Train a CompressAI-architecture codec with rate + lambda*MSE (+ perceptual terms) on image folders "
        "under $STIC_DATA. Re-running with the same OUT resumes from its last checkpoint.",
    )
    p.add_argument("out", help="run folder (checkpoints, train.log)")
    p.add_argument("--model", default=json.dumps(_DEFAULTS.model),
                   help='architecture config as JSON, e.g. \'{"architecture": "mbt2018-mean", "N": 64, "M": 96}\'')
    p.add_argument("--lmbda", type=float, default=_DEFAULTS.lmbda, help="weight of 255^2*MSE against bpp")
    p.add_argument("--crop", type=int, default=_DEFAULTS.crop)
    p.add_argument("--batch", type=int, default=_DEFAULTS.batch)
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr)
    p.add_argument("--minutes", type=float, default=_DEFAULTS.minutes, help="wall-clock budget over all resumes")
    p.add_argument("--max-steps", type=int, default=_DEFAULTS.max_steps)
    p.add_argument("--lr-drop-at", type=float, default=_DEFAULTS.lr_drop_at)
    p.add_argument("--datasets", nargs="+", default=list(_DEFAULTS.datasets),
                   help="folders under $STIC_DATA (never kodak)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--threads", type=int, default=_DEFAULTS.threads)
    p.add_argument("--checkpoint-minutes", type=float, default=_DEFAULTS.checkpoint_minutes)
    p.add_argument("--val-crop", type=int, default=_DEFAULTS.val_crop)
    p.add_argument("--init-from", default=None, help="run folder whose weights start this run (fine-tuning)")
    p.add_argument("--perceptual", default="{}",
                   help='extra loss terms as JSON {metric: weight}, metrics from stic.metrics, e.g. \'{"lpips-alex": 1.0}\'')
    p.add_argument("--trainable", choices=("all", "decoder"), default=_DEFAULTS.trainable,
                   help="'decoder' trains only the synthesis transform: bitstreams stay identical to --init-from's")
    p.set_defaults(func=run)


def run(args) -> int:
    from stic.train.loop import train

    cfg = TrainConfig(
        out=args.out, model=json.loads(args.model), lmbda=args.lmbda, crop=args.crop, batch=args.batch,
        lr=args.lr, minutes=args.minutes, max_steps=args.max_steps, lr_drop_at=args.lr_drop_at,
        datasets=tuple(args.datasets), seed=args.seed, threads=args.threads,
        checkpoint_minutes=args.checkpoint_minutes, val_crop=args.val_crop, init_from=args.init_from,
        perceptual=json.loads(args.perceptual), trainable=args.trainable,
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
