"""Rate–distortion/perception plots (bpp vs each metric), PNG and SVG, with optional published
reference curves drawn dashed (their bits are theirs to vouch for)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from stic.container import write_bytes_atomic
from stic.eval.summary import curves

LABELS = {
    "psnr": "PSNR (dB, RGB) ↑",
    "msssim": "MS-SSIM ↑",
    "lpips-alex": "LPIPS-Alex ↓",
    "lpips-vgg": "LPIPS-VGG ↓",
    "dists": "DISTS ↓",
    "ciede2000": "mean CIEDE2000 (ΔE00) ↓",
}
#: column names in published tables (shared/data/published/kodak_peers.csv); LPIPS-VGG is never
#: read from a column of LPIPS-Alex values
REFERENCE_COLUMNS = {
    "psnr": "psnr",
    "msssim": "ms_ssim",
    "lpips-alex": "lpips_alex",
    "dists": "dists",
}


def read_reference(path: str | Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """metric -> method -> [(bpp, value)] from a CSV with columns method, bpp and metric columns."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for metric, column in REFERENCE_COLUMNS.items():
                if row.get(column):
                    out[metric][row["method"]].append(
                        (float(row["bpp"]), float(row[column]))
                    )
    return {m: {k: sorted(v) for k, v in methods.items()} for m, methods in out.items()}


def plot_rd(
    means: list[dict],
    metric: str,
    out_dir: Path,
    reference=None,
    max_bpp: float | None = None,
) -> list[Path]:
    """Write rd_<metric>.png/.svg; returns the paths (none if no codec has a complete point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = curves(means, metric)
    if not ours:
        return []
    figure, axes = plt.subplots(figsize=(7, 4.8))
    for codec, points in ours.items():
        axes.plot(*zip(*points), marker="o", markersize=4, label=codec)
    limit = max_bpp or max(b for points in ours.values() for b, _ in points) * 1.15
    for method, points in (reference or {}).get(metric, {}).items():
        shown = [(b, v) for b, v in points if b <= limit]
        if shown:
            axes.plot(
                *zip(*shown),
                linestyle="--",
                marker="x",
                markersize=4,
                alpha=0.6,
                label=f"{method} (published)",
            )
    axes.set_xlabel("bits per pixel (real file size)")
    axes.set_ylabel(LABELS.get(metric, metric))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"rd_{metric}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=path.suffix[1:], dpi=120)
        write_bytes_atomic(path, buffer.getvalue())
    plt.close(figure)
    return paths
