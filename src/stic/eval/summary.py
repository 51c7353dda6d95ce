"""Per-codec means over images at each target rate, from the per-image rows.

A (codec, target) point is *complete* when every image reached the target and was scored; only
complete points go into curves and BD-rates, since a mean over the images a codec happened to
reach would favour it. Incomplete points are listed in the report. Images that failed for every
codec (unreadable files) are left out of the count; the report lists them as failures.
"""

from __future__ import annotations

import math
from collections import defaultdict

from stic.metrics import METRICS

MEAN_FIELDS = ["bpp", "stream_bpp", *METRICS]


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def evaluated_images(rows: list[dict]) -> set[str]:
    """Images with at least one result that is not a failure."""
    return {r["image"] for r in rows if r["status"] != "failed"}


def codec_means(rows: list[dict]) -> list[dict]:
    """One dict per (codec, target): counts, completeness and the mean of each numeric column."""
    images = evaluated_images(rows)
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["codec"], float(row["target_bpp"]))].append(row)
    order = list(dict.fromkeys(r["codec"] for r in rows))
    means = []
    for (codec, target), group in sorted(
        groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])
    ):
        ok = [r for r in group if r["status"] == "ok"]
        entry = {
            "codec": codec,
            "target_bpp": target,
            "images": len(images),
            "ok": len(ok),
            "unreachable": sum(r["status"] == "unreachable" for r in group),
            "failed": sum(r["status"] == "failed" for r in group),
        }
        entry["complete"] = entry["ok"] == len(images)
        for name in MEAN_FIELDS:
            values = [v for v in (_number(r.get(name)) for r in ok) if v is not None]
            entry[name] = (
                sum(values) / len(values) if values and len(values) == len(ok) else None
            )
        means.append(entry)
    return means


def curves(means: list[dict], metric: str) -> dict[str, list[tuple[float, float]]]:
    """codec -> [(mean bpp, mean metric)] over complete points, sorted by bpp, duplicates dropped."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for entry in means:
        if (
            entry["complete"]
            and entry.get(metric) is not None
            and entry["bpp"] is not None
        ):
            out[entry["codec"]].append((entry["bpp"], entry[metric]))
    return {codec: sorted(set(points)) for codec, points in out.items()}
