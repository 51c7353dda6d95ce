"""Baseline curves of the project: every classic codec on all 24 Kodak images at 0.02-0.3 bpp.

    python bench/kodak_baselines.py [--metrics psnr,msssim,lpips-alex] [--out results/kodak_baselines]

Resumable (re-run to continue, or with more --metrics to add them). Writes per_image.csv, means.csv,
bd_rate.csv, rd_*.png/svg and report.md, with the published Kodak peers drawn dashed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stic.eval.harness import EvalConfig, run_eval
from stic.eval.report import write_report
from stic.paths import data_dir

CODECS = ["jpeg", "webp", "avif", "avif-psnr", "heic", "jp2", "jxl", "x265", "vvc"]
# 0.02-0.15 is the range of interest; 0.2 and 0.3 extend it so that codecs that cannot go lower
# (JPEG, WebP, JPEG XL, x265 on detailed images) still get curves.
TARGETS = [0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", default="psnr,msssim,lpips-alex")
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument(
        "--out",
        default=str(
            Path(__file__).resolve().parents[1] / "results" / "kodak_baselines"
        ),
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (one core each)")
    args = parser.parse_args()
    out = Path(args.out)
    config = EvalConfig(
        data=data_dir() / "kodak",
        codecs=args.codecs.split(","),
        targets=TARGETS,
        out=out,
        metrics=args.metrics.split(","),
        workers=args.workers,
    )
    run_eval(config)
    reference = data_dir() / "published" / "kodak_peers.csv"
    report = write_report(
        out,
        anchor="vvc",
        bd_metric="lpips-alex",
        reference=reference if reference.exists() else None,
        title="Classic codecs on Kodak, 0.02-0.3 bpp",
    )
    print(f"report: {report}")


if __name__ == "__main__":
    main()
