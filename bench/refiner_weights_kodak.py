"""Two shipped-style refiner networks side by side on all 24 Kodak images: x̂ from a shipped model
(colour map applied, as the decoder gives it), shrunk by 4, the network, the grid filter (byte 2),
LPIPS-Alex and DISTS against the original. Files without caption; bpp from their real length.

    python bench/refiner_weights_kodak.py --model stic-q2 --a realesrgan-stic --b realesrgan-stic-q2
    python bench/refiner_weights_kodak.py --b runs/ref2/export.safetensors     # a candidate file

Writes results/refiner_weights_kodak_<model>.json (or --out).
"""

import argparse
import json
import statistics
from pathlib import Path

import torch

from stic.image.io import load_image
from stic.metrics import compare
from stic.paths import data_dir
from stic.pipeline import decode, encode
from stic.refine.esrgan import SHIPPED, RealESRGANRefiner

ROOT = Path(__file__).resolve().parents[1]


def refiner(spec: str) -> RealESRGANRefiner:
    """A shipped refiner by name, or the same decode path with the network of an exported
    .safetensors file."""
    return RealESRGANRefiner(spec) if spec in SHIPPED else RealESRGANRefiner.from_file(Path(spec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stic-q2")
    parser.add_argument("--a", default="realesrgan-stic", help="shipped refiner name or .safetensors file")
    parser.add_argument("--b", default="realesrgan-stic-q2", help="shipped refiner name or .safetensors file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="default: results/refiner_weights_kodak_<model>.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    refiners = {"a": refiner(args.a), "b": refiner(args.b)}
    rows = []
    for i in range(1, 25):
        name = f"kodim{i:02d}"
        image = load_image(data_dir() / "kodak" / f"{name}.png")
        data = encode(image, model=args.model).data
        xhat = decode(data, refine=False).image
        row = {"image": name, "bpp": round(8 * len(data) / (image.shape[0] * image.shape[1]), 5)}
        for label, chosen in refiners.items():
            for metric, value in compare(image, chosen.refine(xhat), ("lpips-alex", "dists")).items():
                row[f"{label}_{metric}"] = round(value, 4)
        rows.append(row)
        print(row, flush=True)
    mean = {k: round(statistics.mean(r[k] for r in rows), 4) for k in rows[0] if k != "image"}
    report = {"model": args.model, "a": args.a, "b": args.b, "mean": mean, "images": rows}
    out = args.out or ROOT / "results" / f"refiner_weights_kodak_{args.model}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(mean))


if __name__ == "__main__":
    main()
