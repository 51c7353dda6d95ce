"""Does a refiner make x̂ look better? Per rate point on Kodak: LPIPS-Alex / DISTS / PSNR of x̂ and
of the refined image, the real file size (image + caption + colour map + refine section), and decode
time. x̂ is what the decoder refines: with the file's colour map, as `stic encode` writes it
(`--no-colour-map`: without).

    python bench/refine_kodak.py --models stic-q1 stic-q2 ...   # shipped names or run folders
    python bench/refine_kodak.py --proxy 8 16                   # no codec: x̂ = box-downscale by F, bicubic up
    python bench/refine_kodak.py --models stic-q1 --refiner diffusion:SD_DIR --prompt empty   # caption ablation
    python bench/refine_kodak.py --models stic-p2 --search-steps 100 --out results/refine_kodak_p_search100

Captions are the published LLaVA-1.5 Kodak captions (../shared/data/captions), fitted to CLIP's
window and LM-coded (`--text-coder`); the GAN refiner does not read them, but they are part of the
file whose bits are reported. Writes results/refine_kodak[_SUFFIX].json (every image) and .md (means)
after each image, so an interrupted run keeps what it measured (`--resume` measures only the rows
it lacks). Timings: wall and process CPU seconds with torch limited to --threads threads; the load
average is recorded beside them.
`--search-steps N` encodes with encoder-side latent search (the model's own objective, N steps).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from kodak_bench import kodak_inputs, load_range, previous_rows, report_path
from PIL import Image
from tqdm import tqdm

from stic.colour import ColourMap
from stic.container import SECTION_CAPTION, SECTION_IMAGE, Section, pack
from stic.image.io import load_image
from stic.metrics import compare
from stic.refine.registry import get_refiner, refine_section
from stic.text.registry import get_text_coder

REPO = Path(__file__).resolve().parents[1]
METRICS = ("lpips-alex", "dists", "psnr")
PROMPTS = {"caption": None, "empty": "", "na": "NA"}


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _proxy_xhat(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def _summary_rows(rows: list[dict]) -> list[dict]:
    out = []
    for point in dict.fromkeys(r["rate_point"] for r in rows):
        group = [r for r in rows if r["rate_point"] == point]
        row = {"rate_point": point, "images": len(group)}
        for key in ("bpp", "bpp_refined_file", *(f"{m}_{v}" for m in METRICS for v in ("xhat", "refined")),
                    "encode_s", "decode_xhat_s", "refine_wall_s", "refine_cpu_s"):  # fmt: skip
            values = [r.get(key) for r in group]
            row[key] = None if None in values else float(np.mean(values))
        row["helps"] = bool(row["lpips-alex_refined"] < row["lpips-alex_xhat"] and row["dists_refined"] < row["dists_xhat"])
        out.append(row)
    return out


def _fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}f}"


def _write(out: Path, meta: dict, rows: list[dict]) -> None:
    summary = _summary_rows(rows)
    report_path(out, ".json").write_text(json.dumps({**meta, "summary": summary, "images": rows}, indent=1))
    lines = [
        f"# Refiner `{meta['refiner']}` on Kodak, per rate point (refiner prompt: {meta['prompt']}"
        + (f"; latent search {meta['search_steps']} steps)" if meta.get("search_steps") else ")"),
        "",
        f"Command: `{meta['command']}`  ",
        (
            f"Images: {', '.join(meta['image_names'])}. Threads: {meta['threads']}; "
            f"load average during the run: {meta['load_average']}. Means over the images; bpp = real file "
            f"bytes (image + CLIP-fitted LLaVA caption coded with `{meta['text_coder']}`"
            + (" + colour map; x̂ is mapped" if meta.get("colour_map") else "")
            + "), and with the refine section added."
        ),
        "",
        (
            "| rate point | images | bpp | bpp with refine section | LPIPS-Alex x̂ | LPIPS-Alex refined | DISTS x̂ "
            "| DISTS refined | PSNR x̂ | PSNR refined | encode s | decode x̂ s | refine wall s | refine CPU s "
            "| refiner helps |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        lines.append(
            f"| {r['rate_point']} | {r['images']} | {_fmt(r['bpp'])} | {_fmt(r['bpp_refined_file'])} "
            f"| {_fmt(r['lpips-alex_xhat'])} | {_fmt(r['lpips-alex_refined'])} | {_fmt(r['dists_xhat'])} "
            f"| {_fmt(r['dists_refined'])} | {_fmt(r['psnr_xhat'], 2)} | {_fmt(r['psnr_refined'], 2)} "
            f"| {_fmt(r['encode_s'], 1)} | {_fmt(r['decode_xhat_s'], 2)} | {_fmt(r['refine_wall_s'], 1)} | {_fmt(r['refine_cpu_s'], 1)} "
            f"| {'yes' if r['helps'] else 'no'} |"
        )
    report_path(out, ".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--models", nargs="+", help="image models: shipped names or run folders")
    source.add_argument("--proxy", nargs="+", type=int, metavar="FACTOR", help="no codec: blur Kodak by these factors")
    parser.add_argument("--refiner", default="realesrgan")
    parser.add_argument("--images", nargs="+", help="Kodak names (default: all 24)")
    parser.add_argument("--text-coder", default="lm:smollm2-135m")
    parser.add_argument(
        "--prompt", choices=PROMPTS, default="caption",
        help="what the refiner reads: the caption, an empty string, or 'NA' (the published ablation)",
    )  # fmt: skip
    parser.add_argument("--no-colour-map", action="store_true", help="files without the colour map (stic.colour)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--search-steps", type=int, default=0, help="encoder-side latent search steps (default: 0)")
    parser.add_argument("--out", default=str(REPO / "results" / "refine_kodak"))
    parser.add_argument("--resume", action="store_true", help="keep the report's rows, measure only missing ones")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    kodak, names, captioner = kodak_inputs(args.images)
    text_coder = get_text_coder(args.text_coder)
    refiner = get_refiner(args.refiner)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python bench/" + Path(__file__).name + " " + " ".join(os.sys.argv[1:]),
        "refiner": refiner.name,
        "prompt": args.prompt,
        "text_coder": text_coder.name,
        "threads": args.threads,
        "search_steps": args.search_steps,
        "colour_map": bool(args.models) and not args.no_colour_map,  # a proxy x̂ is never mapped
        "image_names": names,
        "load_average": None,
    }
    points = args.models or [f"proxy-x{f}" for f in args.proxy]
    rows: list[dict] = previous_rows(out, meta) if args.resume else []
    done = {(r["rate_point"], r["image"]) for r in rows}
    loads = []
    caption_sections: dict[str, Section] = {}
    caption_texts: dict[str, str] = {}
    for point in points:
        codec = None
        if args.models:
            from stic.image.registry import load_image_codec

            codec = load_image_codec(point)
        for name in tqdm([n for n in names if (point, n) not in done], desc=f"{point} {args.refiner}"):
            image = load_image(kodak / f"{name}.png")
            h, w = image.shape[:2]
            row = {"rate_point": point, "image": name}
            if name not in caption_sections:
                fitted = captioner.caption(image, name)
                caption_sections[name] = Section(
                    SECTION_CAPTION, text_coder.codec_id, text_coder.encode(fitted.text), text_coder.fingerprint()
                )
                row["caption_clip_tokens"] = fitted.clip_tokens
                caption_texts[name] = fitted.text
            caption = caption_sections[name]
            prompt = PROMPTS[args.prompt]
            prompt = caption_texts[name] if prompt is None else prompt
            if codec is not None:
                payload, row["encode_s"], _ = _timed(codec.compress, image, args.search_steps)
                image_section = Section(SECTION_IMAGE, codec.codec_id, payload, codec.fingerprint())
                xhat, row["decode_xhat_s"], _ = _timed(codec.decompress, payload, w, h)
                fitted = None if args.no_colour_map else ColourMap.fit(xhat, image)  # as `stic encode` does
                colour = [fitted.section()] if fitted else []
                xhat = fitted.apply(xhat) if fitted else xhat
                refine = refine_section(refiner, 0)
                plain = pack(w, h, [image_section, caption, *colour])
                refined_file = pack(w, h, [image_section, caption, *colour, *([refine] if refine else [])])
                row["bpp"] = 8 * len(plain) / (w * h)
                row["bpp_refined_file"] = 8 * len(refined_file) / (w * h)
            else:
                xhat = _proxy_xhat(image, int(point.split("x")[-1]))
                row["encode_s"] = row["decode_xhat_s"] = row["bpp"] = row["bpp_refined_file"] = None
            refined, row["refine_wall_s"], row["refine_cpu_s"] = _timed(refiner.refine, xhat, prompt, 0)
            loads.append(os.getloadavg()[0])
            for label, picture in (("xhat", xhat), ("refined", refined)):
                for metric, value in compare(image, picture, METRICS).items():
                    row[f"{metric}_{label}"] = value
            rows.append(row)
            meta["load_average"] = load_range(loads)
            _write(out, meta, rows)
    print(report_path(out, ".md").read_text())


if __name__ == "__main__":
    main()
