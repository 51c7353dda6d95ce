"""stic against a classic codec on the images both reached, per target (colour error and PSNR).

`stic eval` averages a codec only over targets every image reached; a classic codec's lowest
rates are reached on some images only (VVC: 0.01 bpp on 22 of 24 Kodak images, 0.0075 on 6), so
this compares the two codecs image by image where both have a result, from an eval's
per_image.csv:

    python bench/colour_same_images.py results/colour_kodak --against vvc   # -> same_images.md
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path
from statistics import mean

METRICS = ("bpp", "ciede2000", "psnr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a `stic eval --out` folder")
    parser.add_argument("--against", default="vvc")
    args = parser.parse_args()
    results: dict[tuple[float, str], dict[str, dict]] = defaultdict(dict)
    with open(args.folder / "per_image.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] == "ok":
                results[(float(row["target_bpp"]), row["image"])][row["codec"]] = row
    codecs = ("stic", args.against)
    lines = [
        f"# stic against {args.against} on the images both reached",
        "",
        f"From `{args.folder / 'per_image.csv'}`; means over the images where both codecs have a file.",
        "",
        "| target bpp | images | "
        + " | ".join(f"{c} {m}" for m in METRICS for c in codecs)
        + " | stic lower ΔE00 on |",
        "|---" * (3 + 2 * len(METRICS)) + "|",
    ]
    for target in sorted({t for t, _ in results}):
        shared = [r for (t, _), r in results.items() if t == target and all(c in r for c in codecs)]
        if not shared:
            continue
        cells = [f"{mean(float(r[c][m]) for r in shared):.4g}" for m in METRICS for c in codecs]
        wins = sum(float(r["stic"]["ciede2000"]) < float(r[args.against]["ciede2000"]) for r in shared)
        lines.append(f"| {target:g} | {len(shared)} | " + " | ".join(cells) + f" | {wins} |")
    out = args.folder / "same_images.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
