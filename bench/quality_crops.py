"""Side-by-side crops for judging by eye (docs/quality.md): per rate point or per target bpp.

Numbers can be gamed, eyes less so. Two kinds of rows, each the same 256x256 crop at 1:1, labelled,
one WebP per row (quality 92: far finer than the differences judged, at a fifth of lossless's size):

* per model (`--models`): x̂ of an image-only file, then x̂ through each refiner;
* per target (`--bpp`): stic's default file for `--bpp T`, the same with `--search-steps N`, then
  VVC and AVIF at stic's byte count (their largest file that is not bigger), decoded; labelled with
  the model picked, bytes and bpp.

The original's crop is left out (the evaluation data stays out of the repository):
`--with-original` adds it for local viewing.

    python bench/quality_crops.py --images kodim05 kodim14 kodim23 --models stic-q1 stic-q2 \\
        --refiners realesrgan-compact realesrgan-stic       # writes docs/quality/*.webp
    python bench/quality_crops.py --images kodim05 kodim14 kodim23 --bpp 0.01 0.02 0.04
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from stic import pipeline
from stic.baselines import CodecUnavailableError, TargetUnreachableError, encode_within_bytes, get_classic_codec
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
    parser.add_argument(
        "--bpp",
        nargs="+",
        type=float,
        help="rows per target bpp instead of per model (--models, --refiners, --step unused)",
    )
    parser.add_argument("--search-steps", type=int, default=100, help="search steps of the --bpp rows' second panel")
    parser.add_argument("--classic", nargs="+", default=["vvc", "avif"], help="classic codecs of the --bpp rows")
    parser.add_argument("--refiners", nargs="+", default=["realesrgan-compact", "realesrgan-stic"])
    parser.add_argument("--at", nargs=2, type=int, metavar=("TOP", "LEFT"), help="crop corner (default: centre)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "quality")
    parser.add_argument("--with-original", action="store_true", help="also the original's crop (not for committing)")
    parser.add_argument("--step", type=int, default=0, help="finer quantisation step (0: the model's own)")
    parser.add_argument("--no-colour-map", action="store_true", help="files without the colour map (stic.colour)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        image = load_image(data_dir() / "kodak" / f"{name}.png")
        h, w = image.shape[:2]
        top, left = args.at or ((h - CROP) // 2, (w - CROP) // 2)
        box = (slice(top, top + CROP), slice(left, left + CROP))
        rows = _target_rows(image, box, args) if args.bpp else _model_rows(image, box, args)
        for suffix, panels in rows:
            if args.with_original:
                panels.insert(0, _labelled(image[box], "original"))
            row = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
            for i, panel in enumerate(panels):
                row.paste(panel, (i * panel.width, 0))
            path = args.out / f"{name}_{suffix}.webp"
            row.save(path, quality=92, method=6)
            print(path, path.stat().st_size, flush=True)


def _model_rows(image: np.ndarray, box, args):
    """(file suffix, panels) per model: x̂, then x̂ through each refiner."""
    refiners = {name: get_refiner(name) for name in args.refiners}
    for model in args.models:
        encoded = pipeline.encode(image, model=model, refiner=None, step=args.step, colour=not args.no_colour_map)
        x_hat = pipeline.decode(encoded.data).image
        bpp = f"{encoded.bpp:.4f} bpp" + (f", step {args.step}" if args.step else "")
        colour = "" if args.no_colour_map else " + colour map"
        panels = [_labelled(x_hat[box], f"{model} x_hat{colour} {bpp}")]
        panels += [_labelled(refiner.refine(x_hat)[box], refiner_name) for refiner_name, refiner in refiners.items()]
        yield model + (f"_step{args.step}" if args.step else ""), panels


def _target_rows(image: np.ndarray, box, args):
    """(file suffix, panels) per target: stic default, stic with search, classic codecs at stic's
    byte count."""
    pixels = image.shape[0] * image.shape[1]
    colour = not args.no_colour_map
    blank = np.full((CROP, CROP, 3), 255, dtype=np.uint8)
    for target in args.bpp:
        default = pipeline.encode(image, bpp=target, colour=colour)
        searched = pipeline.encode(image, bpp=target, search_steps=args.search_steps, colour=colour)
        panels = [
            _labelled(
                pipeline.decode(encoded.data).image[box],
                f"stic{label} {encoded.image_model} {len(encoded.data)} B = {encoded.bpp:.4f} bpp"
                + ("" if colour else ", no colour map"),
            )
            for label, encoded in (("", default), (f" search {args.search_steps}", searched))
        ]
        for codec_name in args.classic:
            codec = get_classic_codec(codec_name)
            try:
                coded = encode_within_bytes(codec, image, len(default.data)).coded
            except TargetUnreachableError:
                panels.append(_labelled(blank, f"{codec_name}: cannot go this low"))
                continue
            except CodecUnavailableError as err:
                panels.append(_labelled(blank, f"{codec_name}: not available ({err})"[:40]))
                continue
            decoded = codec.decode(coded.data, image.shape[1], image.shape[0])
            panels.append(
                _labelled(decoded[box], f"{codec_name} {coded.file_bytes} B = {8 * coded.file_bytes / pixels:.4f} bpp")
            )
        yield f"{target:g}bpp", panels


if __name__ == "__main__":
    main()
