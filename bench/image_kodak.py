"""Kodak rate-distortion and speed of the shipped learned image models (issue 3 targets).

For each model (each in its own process, so peak memory is its own): real .stic file bytes and
image-payload bytes per image, PSNR, MS-SSIM, encode/decode seconds on the 768x512 images with
2 threads (model loading timed separately, after one warm-up image), peak RSS. Timings on a
shared machine depend on its load: the JSON records the load average.
Writes results/image_kodak.{json,csv,png} (rewritten after each model, so a long run keeps what
it has done); the plot adds published VTM/BPG points and the project's classic-codec baselines
where they exist. `--search-steps N` codes with encoder-side latent search (N steps per image)
and writes results/image_kodak_search<N>.* instead.

    python bench/image_kodak.py [--models stic-q1 stic-q2 ...] [--limit N] [--search-steps N]
"""

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def bench_one(name: str, limit: int | None, search_steps: int = 0) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from stic.container import SECTION_IMAGE, Section, pack
    from stic.metrics.pixel import MSSSIM, PSNR
    from stic.paths import data_dir

    torch.set_num_threads(2)
    from stic.image.registry import load_image_codec

    t = time.perf_counter()
    codec = load_image_codec(name)
    load_s = time.perf_counter() - t
    files = sorted((data_dir() / "kodak").glob("kodim*.png"))[:limit]
    if not files:
        raise SystemExit(f"no Kodak images under {data_dir() / 'kodak'}")
    psnr, msssim = PSNR(), MSSSIM()
    warm = np.asarray(Image.open(files[0]).convert("RGB"))  # first calls set up kernels: keep them out of the timings
    codec.decompress(codec.compress(warm), warm.shape[1], warm.shape[0])
    rows = []
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        t = time.perf_counter()
        payload = codec.compress(image, search_steps)
        enc_s = time.perf_counter() - t
        file_bytes = len(pack(w, h, [Section(SECTION_IMAGE, codec.codec_id, payload, codec.fingerprint())]))
        t = time.perf_counter()
        out = codec.decompress(payload, w, h)
        dec_s = time.perf_counter() - t
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        y = torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255
        rows.append({
            "image": path.name, "width": w, "height": h,
            "image_bpp": 8 * len(payload) / (w * h), "file_bpp": 8 * file_bytes / (w * h),
            "psnr": float(psnr(x, y)), "msssim": float(msssim(x, y)),
            "encode_s": enc_s, "decode_s": dec_s,
        })
    wide = [r for r in rows if (r["width"], r["height"]) == (768, 512)]
    mean = lambda key, rs=rows: sum(r[key] for r in rs) / len(rs)  # noqa: E731
    return {
        "model": name,
        "search_steps": search_steps,
        "fingerprint": codec.fingerprint().hex(),
        "images": len(rows),
        "image_bpp": mean("image_bpp"), "file_bpp": mean("file_bpp"),
        "psnr": mean("psnr"), "msssim": mean("msssim"),
        "encode_s_768x512": mean("encode_s", wide) if wide else None,
        "decode_s_768x512": mean("decode_s", wide) if wide else None,
        "load_s": load_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "per_image": rows,
    }


def reference_curves() -> dict[str, list[tuple[float, float, float]]]:
    """(bpp, PSNR, MS-SSIM) points to draw beside ours: published VTM/BPG on Kodak, and the
    project's own classic-codec baselines (results/kodak_baselines) where all 24 images reached a target."""
    from stic.paths import data_dir

    curves: dict[str, list] = {}
    published = data_dir() / "published" / "kodak_peers.csv"
    if published.exists():
        for row in csv.DictReader(open(published)):
            if row["method"] in ("VTM", "BPG"):
                curves.setdefault(f"{row['method']} (published)", []).append(
                    (float(row["bpp"]), float(row["psnr"]), float(row["ms_ssim"])))
    ours = RESULTS / "kodak_baselines" / "per_image.csv"
    if ours.exists():
        groups: dict[tuple, list] = {}
        for row in csv.DictReader(open(ours)):
            if row["codec"] in ("x265", "avif", "vvc"):
                groups.setdefault((row["codec"], row["target_bpp"]), []).append(row)
        for (codec, _), rows in sorted(groups.items()):
            if len(rows) == 24 and all(r["status"] == "ok" for r in rows):
                mean = lambda k: sum(float(r[k]) for r in rows) / len(rows)  # noqa: E731
                curves.setdefault(f"{codec} (bench/kodak baselines)", []).append((mean("bpp"), mean("psnr"), mean("msssim")))
    return {k: sorted(v) for k, v in curves.items()}


def plot(results: list[dict], path: Path, plain: list[dict] | None = None) -> None:
    """The results' rate-distortion curves over the reference ones (and, for a latent-search run,
    the plain encoder's curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "msssim", "MS-SSIM")):
        steps = results[0].get("search_steps", 0)
        curves = [(results, f"stic, latent search {steps} steps" if steps else "stic learned (file bpp)")]
        curves += [(plain, "stic, plain encoder")] if plain else []
        for rows, curve_label in curves:
            rows = sorted(rows, key=lambda r: r["file_bpp"])
            ax.plot([r["file_bpp"] for r in rows], [r[key] for r in rows], "o-", label=curve_label)
        for r in results:
            ax.annotate(r["model"], (r["file_bpp"], r[key]), fontsize=8)
        for ref_label, points in reference_curves().items():
            column = 1 if key == "psnr" else 2
            ax.plot([p[0] for p in points], [p[column] for p in points], ".--", alpha=0.7, label=ref_label)
        ax.set_xlim(0, 0.16)
        ax.set_xlabel("bits per pixel (whole .stic file)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Kodak (24 images): stic learned image codec")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_results(results: list[dict], stem: str, command: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": 2,
            "load_average_at_end": os.getloadavg(), "command": command}
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "models": results}, indent=2) + "\n")
    keys = [k for k in results[0] if k != "per_image"]
    with open(RESULTS / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: r[k] for k in keys} for r in results)
    plain_json = RESULTS / "image_kodak.json"
    plain = json.loads(plain_json.read_text())["models"] if stem != "image_kodak" and plain_json.is_file() else None
    plot(results, RESULTS / f"{stem}.png", plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="default: every shipped model")
    parser.add_argument("--limit", type=int, default=None, help="only the first N Kodak images")
    parser.add_argument("--search-steps", type=int, default=0, help="encoder-side latent search steps (default: 0)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: bench one model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(bench_one(args.one, args.limit, args.search_steps)))
        return
    from stic.image.registry import shipped_models

    options = (["--limit", str(args.limit)] if args.limit else []) + (
        ["--search-steps", str(args.search_steps)] if args.search_steps else [])
    stem = f"image_kodak_search{args.search_steps}" if args.search_steps else "image_kodak"
    command = " ".join(["python bench/image_kodak.py", *(["--models", *args.models] if args.models else []), *options])
    results = []
    for name in args.models or shipped_models():
        child = subprocess.run([sys.executable, __file__, "--one", name, *options], capture_output=True, text=True, check=True)
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{name}: {r['image_bpp']:.4f} bpp image ({r['file_bpp']:.4f} file), PSNR {r['psnr']:.2f} dB, "
              f"MS-SSIM {r['msssim']:.4f}, enc {r['encode_s_768x512']:.2f} s, dec {r['decode_s_768x512']:.2f} s, "
              f"load {r['load_s']:.2f} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
        write_results(results, stem, command)


if __name__ == "__main__":
    main()
