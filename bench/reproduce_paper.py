"""The paper's Kodak experiment end to end (Murai, Sun, Katto, VCIP 2024), with real files:
caption each image with a VLM (or take the published LLaVA-1.5 captions), code the caption with
the same VLM (the "one LMM") or stic's exact LM, code the image with a learned codec (the paper's
cheng2020-attn quality 1 from CompressAI's zoo, or stic's models), decode, refine with a diffusion
model conditioned on the caption, and score x̂ and the refined picture (PSNR, LPIPS-Alex, DISTS).
Every bit counted is a real .stic file's section. Writes OUT/per_image.csv and OUT/report.md (means
per image model, and an LPIPS BD-rate of the refined pictures against x̂ when three or more image
models give curves). docs/reproduce_paper.md gives the GPU recipe.

    python bench/reproduce_paper.py --out results/paper_kodak --captioner llava-hf/llava-v1.6-mistral-7b-hf \\
        --image-models compressai:cheng2020-attn:1 --refiner-model stabilityai/sd-turbo --steps 2 --strength 0.5 \\
        --guidance 0
    python bench/reproduce_paper.py --tiny --out /tmp/paper_tiny   # tiny random models: checks the flow
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stic import pipeline
from stic.caption.registry import make_captioner
from stic.eval.bdrate import bd_rate
from stic.eval.dataset import caption_for, list_images, read_captions
from stic.fileinfo import describe
from stic.image.io import load_image, save_png
from stic.metrics import compare
from stic.paths import data_dir
from stic.refine.diffusion import DiffusionSettings
from stic.refine.registry import get_refiner

METRICS = ("psnr", "lpips-alex", "dists")
REPO = Path(__file__).resolve().parents[1]


def _tiny_models(folder: Path) -> tuple[str, str]:
    """A tiny random LLaVA and SD img2img pipeline (the tests' builders), saved to `folder`."""
    sys.path.insert(0, str(REPO / "tests"))
    from refine_helpers import tiny_img2img_pipeline
    from tiny_vlm import save_tiny_llava

    vlm = save_tiny_llava(folder / "llava")
    tiny_img2img_pipeline().save_pretrained(folder / "sd")
    return str(vlm), str(folder / "sd")


def _mean(rows: list[dict], key: str) -> float:
    return statistics.mean(float(r[key]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="image folder (default: $STIC_DATA/kodak)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--captioner", help="VLM id or folder; also codes the caption (vlm:MODEL) unless --text-coder")
    parser.add_argument("--captions", type=Path, help="precomputed captions CSV (default without --captioner: "
                        "the published LLaVA-1.5 Kodak captions in $STIC_DATA/captions)")
    parser.add_argument("--text-coder", help="caption coder (default: vlm:CAPTIONER with --captioner, else lm)")
    parser.add_argument("--image-models", nargs="+", default=["stic-q1", "stic-q2", "stic-q3"],
                        help="image models, each a rate point: shipped names, folders or compressai:ARCH:QUALITY")
    parser.add_argument("--refiner-model", help="diffusion model id or folder (img2img conditioned on the caption)")
    parser.add_argument("--strength", type=float, default=0.35)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", help="for the captioner and the diffusion model (default: cuda if visible)")
    parser.add_argument("--dtype", help="float32, bfloat16 or float16 (default: bfloat16 on a GPU)")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--tiny", action="store_true", help="tiny random VLM and diffusion model, 2 images: checks the flow")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        args.captioner, args.refiner_model = _tiny_models(Path(tempfile.mkdtemp(prefix="stic-tiny-")))
        args.image_models, args.steps, args.strength, args.limit = ["stic-q1"], 2, 0.5, args.limit or 2
    images = list_images(args.data or data_dir() / "kodak")[: args.limit]
    captioner = make_captioner(model=args.captioner, device=args.device, dtype=args.dtype) if args.captioner else None
    published = None
    if captioner is None:
        published = read_captions(args.captions or data_dir() / "captions" / "kodak_llava15.csv")
    text_coder = args.text_coder or (f"vlm:{args.captioner}" if args.captioner else "lm")
    settings = DiffusionSettings(args.strength, args.guidance, args.steps)
    refiner = get_refiner("diffusion", model=args.refiner_model, settings=settings, device=args.device, dtype=args.dtype)
    text_model = args.captioner if text_coder.startswith("vlm") else None

    rows = []
    for path in images:
        image = load_image(path)
        pixels = image.shape[0] * image.shape[1]
        caption = captioner.caption(image, str(path)).text if captioner else caption_for(path, published)
        for model in args.image_models:
            started = time.perf_counter()
            encoded = pipeline.encode(
                image, model=model, caption=caption, text_coder=text_coder, refiner=refiner, colour=False
            )  # the paper's system has no colour map
            encode_s = time.perf_counter() - started
            stem = f"{path.stem}_{model.replace('/', '_').replace(':', '_')}"
            (args.out / f"{stem}.stic").write_bytes(encoded.data)
            options = {"text_model": text_model, "refiner_model": args.refiner_model, "image_model": model,
                       "device": args.device, "dtype": args.dtype}  # fmt: skip
            started = time.perf_counter()
            refined = pipeline.decode(encoded.data, **options)
            decode_s = time.perf_counter() - started
            x_hat = pipeline.decode(encoded.data, refine=False, **options).image
            assert refined.caption == caption, "the caption must come back exactly"
            save_png(args.out / f"{stem}.png", refined.image)
            sections = {s["kind"]: s["bytes"] for s in describe(encoded.file)["sections"]}
            row = {"image": path.name, "model": model, "bpp": 8 * len(encoded.data) / pixels,
                   "image_bpp": 8 * sections["image"] / pixels, "caption_bytes": sections.get("caption", 0),
                   "caption_chars": len(caption or ""), "encode_s": round(encode_s, 2), "decode_s": round(decode_s, 2),
                   "caption": caption}  # fmt: skip
            row.update({f"xhat_{k}": v for k, v in compare(image, x_hat, METRICS).items()})
            row.update({f"refined_{k}": v for k, v in compare(image, refined.image, METRICS).items()})
            rows.append(row)
            print(f"{path.name} {model}: {row['bpp']:.4f} bpp, LPIPS {row['xhat_lpips-alex']:.3f} -> "
                  f"{row['refined_lpips-alex']:.3f}", flush=True)  # fmt: skip

    with (args.out / "per_image.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# The paper's experiment: {len(images)} images, caption coder {text_coder}, refiner "
             f"{args.refiner_model} ({settings.steps} steps, strength {settings.strength}, guidance "
             f"{settings.guidance_scale})", "",
             "| image model | bpp | caption bytes | " + " | ".join(f"x̂ {m} | refined {m}" for m in METRICS) + " |",
             "|---|---|---|" + "---|---|" * len(METRICS)]  # fmt: skip
    curves = {"xhat": [], "refined": []}
    for model in args.image_models:
        group = [r for r in rows if r["model"] == model]
        cells = " | ".join(f"{_mean(group, 'xhat_' + m):.4f} | {_mean(group, 'refined_' + m):.4f}" for m in METRICS)
        lines.append(f"| {model} | {_mean(group, 'bpp'):.4f} | {_mean(group, 'caption_bytes'):.1f} | {cells} |")
        for kind in curves:
            curves[kind].append((_mean(group, "bpp"), _mean(group, f"{kind}_lpips-alex")))
    result = bd_rate("x̂", sorted(curves["xhat"]), "refined", sorted(curves["refined"]), higher_is_better=False)
    lines += ["", "LPIPS-Alex BD-rate of the refined pictures against x̂: "
              + (f"{result.bd_rate:+.1f} %" if result.bd_rate is not None else f"none ({result.note})")]  # fmt: skip
    (args.out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
