"""MSE vs perceptual stic models on Kodak, with and without the offline refiner, against the
classic codecs: a table, an RD plot per metric and LPIPS-Alex BD-rates.

    python bench/refine_kodak.py --models stic-q1 stic-q2 stic-q3 --refiner realesrgan-compact \
        --threads 1 --out results/refine_kodak_compact
    python bench/refine_kodak.py --models stic-p1 stic-p2 stic-p3 --refiner realesrgan-compact \
        --threads 1 --out results/refine_kodak_compact_perceptual
    python bench/refine_kodak.py --models stic-p2 stic-p1 stic-p3 --refiner realesrgan-compact \
        --threads 2 --search-steps 100 --out results/refine_kodak_compact_perceptual_search100
    python bench/perceptual_kodak.py results/refine_kodak_compact.json results/refine_kodak_compact_perceptual.json \
        results/refine_kodak_compact_perceptual_search100.json

Reads the per-model means those runs wrote (real file sizes; x̂ and refined metrics on all 24
images) and the classic codecs' means from results/kodak_baselines (bench/kodak_baselines.py).
Each stic family gives two curves: x̂ as decoded, and refined (bpp of the file with its refine
section). The "hardest classic codec" for a curve is the one against which it saves least.
Writes results/perceptual_kodak/{report.md, summary.json, rd_*.png/svg}.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from stic.eval.bdrate import bd_rate
from stic.eval.plots import plot_rd
from stic.eval.summary import curves
from stic.image.registry import all_shipped_models, model_family

REPO = Path(__file__).resolve().parents[1]
METRICS = ("lpips-alex", "dists", "psnr")
HIGHER_IS_BETTER = {"lpips-alex": False, "dists": False, "psnr": True}


def family_of(model: str) -> str:
    return model_family(model) if model in all_shipped_models() else model


def stic_means(refine_json: Path) -> list[dict]:
    """Means-table entries (the harness's format) for the x̂ and refined curves of each family."""
    run = json.loads(refine_json.read_text())
    entries = []
    for row in run["summary"]:
        family = family_of(row["rate_point"])
        if run.get("search_steps"):
            family += f" search {run['search_steps']}"
        for label, suffix, bpp in (("x̂", "xhat", row["bpp"]), (f"+ {run['refiner']}", "refined", row["bpp_refined_file"])):
            entry = {"codec": f"stic {family} {label}", "model": row["rate_point"], "complete": row["images"] == 24,
                     "images": row["images"], "bpp": bpp}  # fmt: skip
            entry |= {metric: row[f"{metric}_{suffix}"] for metric in METRICS}
            entries.append(entry)
    return entries


def classic_means(path: Path) -> list[dict]:
    entries = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            entry = {"codec": row["codec"], "complete": row["complete"] == "True"}
            for key in ("bpp", *METRICS):
                entry[key] = float(row[key]) if row.get(key) else None
            entries.append(entry)
    return entries


def bd_rates(stic: list[dict], classic: list[dict], metric: str = "lpips-alex") -> list[dict]:
    ours, theirs = curves(stic, metric), curves(classic, metric)
    table = []
    for curve, points in ours.items():
        results = [bd_rate(codec, anchor, curve, points, HIGHER_IS_BETTER[metric]) for codec, anchor in theirs.items()]
        computed = [r for r in results if r.bd_rate is not None]
        hardest = max(computed, key=lambda r: r.bd_rate) if computed else None
        for r in results:
            table.append({"curve": curve, "anchor": r.anchor, "bd_rate_percent": r.bd_rate, "overlap": r.overlap,
                          "interval": r.interval, "note": r.note, "hardest": r is hardest})  # fmt: skip
    return table


def _fmt(value, digits=4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="JSON files written by bench/refine_kodak.py")
    parser.add_argument("--baselines", type=Path, default=REPO / "results" / "kodak_baselines" / "means.csv")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perceptual_kodak")
    args = parser.parse_args()

    stic = [entry for run in args.runs for entry in stic_means(run)]
    classic = [e for e in classic_means(args.baselines) if e["bpp"] is not None and e["bpp"] <= 0.16]
    table = bd_rates(stic, classic)
    args.out.mkdir(parents=True, exist_ok=True)
    plots = [p for metric in METRICS for p in plot_rd(stic + classic, metric, args.out, max_bpp=0.16)]
    summary = {"runs": [str(r) for r in args.runs], "stic": stic, "bd_rate_lpips_alex": table}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))

    lines = ["# stic MSE vs perceptual models on Kodak (24 images), with and without the refiner", "",
             "Inputs: " + ", ".join(f"`{r}`" for r in args.runs) + f", classic codecs from `{args.baselines.name}` "
             "(bench/kodak_baselines.py). bpp = real file bytes x 8 / pixels (image + LM-coded caption "
             "[+ refine section]).", "",
             "| curve | model | bpp | LPIPS-Alex | DISTS | PSNR |", "|---|---|---|---|---|---|"]  # fmt: skip
    for e in stic:
        lines.append(f"| {e['codec']} | {e['model']} | {_fmt(e['bpp'])} | {_fmt(e['lpips-alex'])} "
                     f"| {_fmt(e['dists'])} | {_fmt(e['psnr'], 2)} |")  # fmt: skip
    lines += ["", "LPIPS-Alex BD-rate (negative = fewer bits at equal LPIPS; Akima; integrated over the overlap "
              "of the two curves' LPIPS ranges, nothing extrapolated). **bold** = the hardest classic codec "
              "for that curve.", "",
              "| curve | vs | BD-rate % | LPIPS interval | overlap | note |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in table:
        interval = "—" if r["interval"] is None else f"{-r['interval'][1]:.3f}–{-r['interval'][0]:.3f}"
        anchor = f"**{r['anchor']}**" if r["hardest"] else r["anchor"]
        overlap = "—" if r["overlap"] is None else f"{r['overlap']:.0%}"
        lines.append(f"| {r['curve']} | {anchor} | {_fmt(r['bd_rate_percent'], 1)} | {interval} | {overlap} | {r['note']} |")
    lines += ["", *(f"![{p.stem}]({p.name})" for p in plots if p.suffix == ".png")]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
