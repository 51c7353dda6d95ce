"""Exact (integer) against float entropy parameters on Kodak, for every shipped image model.

For each model and Kodak image the same latents are coded twice: with stic 0.1's float entropy
parameters (CompressAI's checkerboard coder) and with the exact integer ones (stic.image.
exact_entropy); both are decoded, and the real payload bytes and the PSNR of each decode are
recorded. Writes results/exact_entropy_kodak.json.

    python bench/exact_entropy_kodak.py [--models stic-q1 ...] [--limit N]
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main() -> None:
    from stic.codecs import IMAGE_LEARNED
    from stic.image.io import load_image
    from stic.image.learned import pack_strings, padded_tensor
    from stic.image.registry import all_shipped_models, load_image_codec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    kodak = Path(os.environ.get("STIC_DATA") or ROOT.parent / "shared" / "data") / "kodak"
    paths = sorted(kodak.glob("kodim*.png"))[: args.limit]
    if not paths:
        sys.exit(f"no Kodak images under {kodak} (set STIC_DATA)")
    report = {"images": len(paths), "models": {}}
    for name in args.models or all_shipped_models():
        codec = load_image_codec(name)
        model = codec.model
        rows = []
        for path in paths:
            image = load_image(path)
            h, w = image.shape[:2]
            with torch.no_grad():
                x = padded_tensor(image)
                y = model.g_a(x)
                z = model.h_a(y)
                exact = pack_strings([s[0] for s in model.compress_latents(y, z)])
                z_strings = model.entropy_bottleneck.compress(z)
                z_hat = model.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
                old = [s[0] for s in model.context.compress(y, model.h_s(z_hat))["strings"]]
                legacy = pack_strings([*old, z_strings[0]])
            decoded = {
                "exact": codec.decompress(exact, w, h),
                "float": codec.decompress(legacy, w, h, IMAGE_LEARNED),
            }
            rows.append({
                "image": path.name,
                "bits_float": 8 * len(legacy), "bits_exact": 8 * len(exact),
                "psnr_float": psnr(decoded["float"], image), "psnr_exact": psnr(decoded["exact"], image),
                "pixels": h * w,
            })  # fmt: skip
        pixels = sum(r["pixels"] for r in rows)
        summary = {
            "bpp_float": sum(r["bits_float"] for r in rows) / pixels,
            "bpp_exact": sum(r["bits_exact"] for r in rows) / pixels,
            "psnr_float": statistics.mean(r["psnr_float"] for r in rows),
            "psnr_exact": statistics.mean(r["psnr_exact"] for r in rows),
        }
        summary["bpp_change"] = summary["bpp_exact"] / summary["bpp_float"] - 1
        summary["psnr_change_db"] = summary["psnr_exact"] - summary["psnr_float"]
        report["models"][name] = {**{k: round(v, 5) for k, v in summary.items()}, "per_image": rows}
        print(name, {k: round(v, 5) for k, v in summary.items()})
        (ROOT / "results" / "exact_entropy_kodak.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
