"""What a user who asks for a rate gets: `stic encode --bpp T [--search-steps N]` on every Kodak
image, through the library's own rate control (the largest model of the family whose real file
fits, then, with search, that model's latents searched under the cap). No file may exceed T; the
table reports the mean and the largest bpp, which models were picked, and the metrics of the
picture `stic decode` gives (refined where the file names a refiner: the MSE family's default).

    python bench/target_kodak.py --bpp 0.04 --family perceptual --search-steps 100 --threads 1

Captions are the published LLaVA-1.5 Kodak captions (../shared/data/captions), fitted to CLIP's
window and LM-coded, as in bench/refine_kodak.py; their bits count. Each family's default refiner
and colour map are written, as `stic encode` writes them. Writes
results/target_kodak_<T>_<family>[_searchN].{json,md} after each image, so an interrupted run keeps
what it measured; `--resume` measures only the images it lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from kodak_bench import kodak_inputs, load_range, previous_rows, report_path
from tqdm import tqdm

from stic import pipeline
from stic.image.io import load_image
from stic.metrics import compare

REPO = Path(__file__).resolve().parents[1]
METRICS = ("lpips-alex", "dists", "psnr")


def _write(out: Path, meta: dict, rows: list[dict]) -> None:
    summary = {"images": len(rows), "models": dict(Counter(r["model"] for r in rows))}
    for key in ("bpp", *METRICS, "encode_s"):
        summary[key] = float(np.mean([r[key] for r in rows]))
    summary["max_bpp"] = max(r["bpp"] for r in rows)
    report_path(out, ".json").write_text(json.dumps({**meta, "summary": summary, "images": rows}, indent=1))
    picked = ", ".join(f"{name} × {count}" for name, count in summary["models"].items())
    lines = [
        f"# `--bpp {meta['bpp']}` on Kodak, {meta['family']} family, {meta['search_steps']} search steps",
        "",
        f"Command: `{meta['command']}`  ",
        f"Threads: {meta['threads']}; load average during the run: {meta['load_average']}. bpp = real file "
        f"bytes (image + CLIP-fitted LLaVA caption coded with `{meta['text_coder']}` + colour map and refine "
        "sections as `stic encode` writes them); metrics of the decoded picture.",
        "",
        "| images | mean bpp | max bpp | LPIPS-Alex | DISTS | PSNR | encode s | models picked |",
        "|---|---|---|---|---|---|---|---|",
        f"| {summary['images']} | {summary['bpp']:.4f} | {summary['max_bpp']:.4f} | {summary['lpips-alex']:.4f} "
        f"| {summary['dists']:.4f} | {summary['psnr']:.2f} | {summary['encode_s']:.1f} | {picked} |",
        "",
        "| image | model | bpp | LPIPS-Alex | DISTS | PSNR |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['image']} | {r['model']} | {r['bpp']:.4f} | {r['lpips-alex']:.4f} | {r['dists']:.4f} | {r['psnr']:.2f} |"
            for r in rows
        ),
    ]
    report_path(out, ".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bpp", type=float, required=True, help="target bits per pixel of the whole file")
    parser.add_argument("--family", default="perceptual", choices=("mse", "perceptual"))
    parser.add_argument("--search-steps", type=int, default=0)
    parser.add_argument("--images", nargs="+", help="Kodak names (default: all 24)")
    parser.add_argument("--text-coder", default="lm:smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="output path without suffix (default: results/target_kodak_...)")
    parser.add_argument("--resume", action="store_true", help="keep the report's rows, measure only missing images")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    kodak, names, captioner = kodak_inputs(args.images)
    suffix = f"_search{args.search_steps}" if args.search_steps else ""
    out = Path(args.out or REPO / "results" / f"target_kodak_{args.bpp:g}_{args.family}{suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]),
        "bpp": args.bpp, "family": args.family, "search_steps": args.search_steps,
        "text_coder": args.text_coder, "threads": args.threads, "load_average": None,
        "scored": "decoded picture",  # reports before 2026-12-07 scored x̂: --resume keeps them apart
    }  # fmt: skip
    rows = previous_rows(out, meta) if args.resume else []
    loads = []
    done = {r["image"] for r in rows}
    for name in tqdm([n for n in names if n not in done], desc=f"--bpp {args.bpp} {args.family}"):
        image = load_image(kodak / f"{name}.png")
        caption = captioner.caption(image, name).text
        start = time.perf_counter()
        encoded = pipeline.encode(
            image, bpp=args.bpp, family=args.family, caption=caption, text_coder=args.text_coder,
            search_steps=args.search_steps,
        )  # fmt: skip
        row = {"image": name, "model": encoded.image_model, "bpp": encoded.bpp, "encode_s": time.perf_counter() - start}
        if encoded.bpp > args.bpp:
            raise SystemExit(f"{name}: the file is {encoded.bpp:.5f} bpp, above the {args.bpp} target")
        row |= compare(image, pipeline.decode(encoded.data).image, METRICS)
        rows.append(row)
        loads.append(os.getloadavg()[0])
        meta["load_average"] = load_range(loads)
        _write(out, meta, rows)
    print(report_path(out, ".md").read_text())


if __name__ == "__main__":
    main()
