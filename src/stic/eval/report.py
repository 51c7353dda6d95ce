"""From `per_image.csv` to `means.csv`, `bd_rate.csv`, RD plots and a `report.md` that embeds them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from stic.container import write_bytes_atomic
from stic.errors import InputError
from stic.eval.bdrate import MIN_OVERLAP, bd_rate
from stic.eval.harness import CSV_NAME, read_rows
from stic.eval.plots import LABELS, plot_rd, read_reference
from stic.eval.summary import MEAN_FIELDS, codec_means, curves, evaluated_images
from stic.metrics import METRICS

HIGHER_IS_BETTER = {
    "psnr": True,
    "msssim": True,
    "lpips-alex": False,
    "lpips-vgg": False,
    "dists": False,
    "ciede2000": False,
}


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        )
    write_bytes_atomic(path, handle.getvalue().encode("utf-8"))


def bd_table(means: list[dict], anchor: str, metric: str) -> list:
    lines = curves(means, metric)
    if anchor not in lines:
        return []
    return [
        bd_rate(anchor, lines[anchor], codec, points, HIGHER_IS_BETTER[metric])
        for codec, points in lines.items()
        if codec != anchor
    ]


def default_anchor(means: list[dict], metric: str | None, codecs: list[str]) -> str:
    """The codec with the most complete points (the widest curve to compare against); first wins ties."""
    lines = curves(means, metric) if metric else {}
    return max(codecs, key=lambda codec: len(lines.get(codec, [])))


def _fmt(value, digits=4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def write_report(
    out: Path,
    anchor: str | None = None,
    bd_metric: str | None = None,
    reference: str | Path | None = None,
    title: str = "stic evaluation",
) -> Path:
    rows = read_rows(out / CSV_NAME)
    if not rows:
        raise InputError(f"no results in {out / CSV_NAME}: run the evaluation first")
    means = codec_means(rows)
    _write_csv(
        out / "means.csv",
        means,
        [
            "codec",
            "target_bpp",
            "images",
            "ok",
            "unreachable",
            "failed",
            "complete",
            *MEAN_FIELDS,
        ],
    )
    metrics = [m for m in METRICS if any(e.get(m) is not None for e in means)]
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    bd_metric = bd_metric or next(
        (m for m in ("lpips-alex", "lpips-vgg", "dists", "psnr") if m in metrics), None
    )
    anchor = anchor or default_anchor(means, bd_metric, codecs)
    refs = read_reference(reference) if reference else None
    plots = {m: plot_rd(means, m, out, refs) for m in metrics}
    table = bd_table(means, anchor, bd_metric) if bd_metric else []
    _write_csv(
        out / "bd_rate.csv",
        [
            {
                "codec": r.codec,
                "anchor": r.anchor,
                "metric": bd_metric,
                "bd_rate_percent": r.bd_rate,
                "quality_low": r.interval[0] if r.interval else None,
                "quality_high": r.interval[1] if r.interval else None,
                "overlap": r.overlap,
                "note": r.note,
            }
            for r in table
        ],
        [
            "codec",
            "anchor",
            "metric",
            "bd_rate_percent",
            "quality_low",
            "quality_high",
            "overlap",
            "note",
        ],
    )

    images = evaluated_images(rows)
    lines = [
        f"# {title}",
        "",
        f"{len(images)} images, codecs: {', '.join(codecs)}; metrics: {', '.join(metrics)}.",
        (
            "Bits are real file sizes (bytes × 8 / pixels), containers and headers included; "
            "`stream bpp` is the coded data alone where a container wraps it (AVIF/HEIC `mdat`; "
            "stic image section). A point enters a curve only when every image reached its target."
        ),
        "",
    ]
    lines += ["## Rate–quality curves", ""]
    for metric in metrics:
        if plots[metric]:
            lines += [f"![{LABELS[metric]}]({plots[metric][0].name})", ""]
    lines += [
        "## Mean results per target",
        "",
        "| codec | target bpp | ok/images | bpp | stream bpp | "
        + " | ".join(metrics)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(metrics),
    ]
    for e in means:
        lines.append(
            f"| {e['codec']} | {e['target_bpp']:g} | {e['ok']}/{e['images']} | {_fmt(e['bpp'])} | "
            f"{_fmt(e['stream_bpp'])} | "
            + " | ".join(_fmt(e.get(m)) for m in metrics)
            + " |"
        )
    if table:
        direction = "−" if not HIGHER_IS_BETTER[bd_metric] else ""
        lines += [
            "",
            f"## BD-rate vs {anchor} on {direction}{bd_metric} (Akima)",
            "",
            (
                "Negative = fewer bits than the anchor for the same quality. Integrated over the overlap "
                f"of the two curves' quality ranges (shown); overlap below {MIN_OVERLAP:.0%} is flagged, "
                "no overlap gives no number (nothing is extrapolated)."
            ),
            "",
            f"| codec | BD-rate | quality interval ({direction}{bd_metric}) | overlap | note |",
            "|---|---|---|---|---|",
        ]
        for r in table:
            interval = (
                f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}]" if r.interval else "–"
            )
            value = f"{r.bd_rate:+.1f} %" if r.bd_rate is not None else "n/a"
            lines.append(
                f"| {r.codec} | {value} | {interval} | {_fmt(r.overlap, 2)} | {r.note} |"
            )
    from stic.eval.set_metrics import read_set_metrics

    distribution = read_set_metrics(out)
    if distribution:
        lines += [
            "",
            "## FID and KID (whole set, 256-px HiFiC patches; lower is better)",
            "",
            "| codec | target bpp | images | bpp | FID | KID ×1000 | patches |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {d['codec']} | {float(d['target_bpp']):g} | {d['images']} | {float(d['bpp']):.4f} | "
            f"{float(d['fid']):.2f} | {1000 * float(d['kid']):.2f} ± {1000 * float(d['kid_std']):.2f} | {d['patches']} |"
            for d in distribution
        ]
    unreachable = [r for r in rows if r["status"] == "unreachable"]
    if unreachable:
        lines += [
            "",
            "## Targets a codec could not reach",
            "",
            "| codec | target bpp | images that could not reach it |",
            "|---|---|---|",
        ]
        counts: dict = {}
        for r in unreachable:
            counts[(r["codec"], float(r["target_bpp"]))] = (
                counts.get((r["codec"], float(r["target_bpp"])), 0) + 1
            )
        ordered = sorted(
            counts.items(), key=lambda item: (codecs.index(item[0][0]), item[0][1])
        )
        lines += [f"| {c} | {t:g} | {n} |" for (c, t), n in ordered]
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failures", ""] + [
            f"- {r['image']} {r['codec']} @ {r['target_bpp']}: {r['note']}"
            for r in failed
        ]
    if refs:
        lines += [
            "",
            f"Dashed curves: published numbers from `{Path(reference).name}` (their bit counts are theirs).",
        ]
    path = out / "report.md"
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path
