"""Side-by-side crops for judging by eye (docs/quality.md): x̂ | each refiner, per rate point.

Numbers can be gamed, eyes less so. For a few Kodak images and shipped models this codes the
image (real file, no caption), decodes x̂, applies each refiner, and writes one WebP per
(image, model): a row of the same 256x256 crop from each, labelled, at 1:1. The original's crop
is left out (the evaluation data stays out of the repository): `--with-original` adds it for
local viewing (WebP quality 92: far
finer than the differences judged, at a fifth of lossless's size).

    python bench/quality_crops.py --images kodim05 kodim14 kodim23 --models stic-q1 stic-q2 \\
        --refiners realesrgan-compact realesrgan-stic       # writes docs/quality/*.webp
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from stic import pipeline
from stic.image.io import load_image
from stic.paths import data_dir
from stic.refine.registry import get_refiner

REPO = Path(__file__).resolve().parents[1]
CROP = 256
LABEL = 18  #: pixels of label strip above each crop


def _labelled(crop: np.ndarray, text: str) -> Image.Image:
    panel = Image.new("RGB", (crop.shape[1], crop.shape[0] + LABEL), "white")
    panel.paste(Image.fromarray(crop), (0, LABEL))
    ImageDraw.Draw(panel).text((4, 3), text, fill="black")
    return panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["kodim05", "kodim14", "kodim23"])
    parser.add_argument("--models", nargs="+", default=["stic-q1", "stic-q2"])
    parser.add_argument("--refiners", nargs="+", default=["realesrgan-compact", "realesrgan-stic"])
    parser.add_argument("--at", nargs=2, type=int, metavar=("TOP", "LEFT"), help="crop corner (default: centre)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "quality")
    parser.add_argument("--with-original", action="store_true", help="also the original's crop (not for committing)")
    parser.add_argument("--step", type=int, default=0, help="finer quantisation step (0: the model's own)")
    parser.add_argument("--no-colour-map", action="store_true", help="files without the colour map (stic.colour)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    refiners = {name: get_refiner(name) for name in args.refiners}
    for name in args.images:
        image = load_image(data_dir() / "kodak" / f"{name}.png")
        h, w = image.shape[:2]
        top, left = args.at or ((h - CROP) // 2, (w - CROP) // 2)
        box = (slice(top, top + CROP), slice(left, left + CROP))
        for model in args.models:
            encoded = pipeline.encode(image, model=model, refiner=None, step=args.step, colour=not args.no_colour_map)
            x_hat = pipeline.decode(encoded.data).image
            bpp = f"{encoded.bpp:.4f} bpp" + (f", step {args.step}" if args.step else "")
            panels = [_labelled(image[box], "original")] if args.with_original else []
            colour = "" if args.no_colour_map else " + colour map"
            panels.append(_labelled(x_hat[box], f"{model} x_hat{colour} {bpp}"))
            panels += [_labelled(refiner.refine(x_hat)[box], refiner_name) for refiner_name, refiner in refiners.items()]
            row = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
            for i, panel in enumerate(panels):
                row.paste(panel, (i * panel.width, 0))
            path = args.out / (f"{name}_{model}" + (f"_step{args.step}" if args.step else "") + ".webp")
            row.save(path, quality=92, method=6)
            print(path, path.stat().st_size)


if __name__ == "__main__":
    main()
