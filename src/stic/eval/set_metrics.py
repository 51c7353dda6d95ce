"""FID and KID per codec and target rate, over the whole image set (`stic eval --fid`).

Per-image metrics cannot say whether a codec's output looks like real photos as a population;
FID/KID on HiFiC-style patches (stic.metrics.distribution) can. They need every decoded image of a
(codec, target) group, so they run after the per-image jobs, from the decoded PNGs the run kept.
The originals' features are computed once. Groups where some image did not reach the target are
left out, like the curves; images smaller than a patch are skipped (counted in `images`).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stic.eval.harness import CSV_NAME, decoded_name, read_rows

SET_CSV = "set_metrics.csv"
FIELDS = ["codec", "target_bpp", "images", "bpp", "fid", "kid", "kid_std", "patches"]
PATCH = 256


def write_set_metrics(out: Path, data: Path, progress: bool = True) -> Path:
    """Compute FID/KID for every complete (codec, target) group of OUT's run; write set_metrics.csv."""
    from stic.image.io import load_image
    from stic.metrics import to_tensor
    from stic.metrics.distribution import PatchFIDKID, load_inception

    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    rows = read_rows(out / CSV_NAME)
    for row in rows:
        groups[(row["codec"], float(row["target_bpp"]))].append(row)
    complete = {key: group for key, group in groups.items() if all(r["status"] == "ok" for r in group)}
    extractor = load_inception()
    originals = {}
    results = []
    bar = tqdm(sorted(complete.items()), desc="FID/KID", disable=not progress)
    for (codec, target), group in bar:
        missing = [r["image"] for r in group if not (out / "decoded" / decoded_name(codec, target, r["image"])).is_file()]
        if missing:
            bar.write(f"{codec} @ {target:g}: no FID/KID, decoded images not kept for {', '.join(missing[:3])}"
                      + (" ..." if len(missing) > 3 else "") + " (rerun those with --fid from a fresh --out)")
            continue
        scorer = PatchFIDKID(extractor, PATCH)
        used = 0
        for row in group:
            if row["image"] not in originals:
                originals[row["image"]] = to_tensor(load_image(data / row["image"]))
            reference = originals[row["image"]]
            if min(reference.shape[-2:]) < PATCH:
                continue
            decoded = to_tensor(load_image(out / "decoded" / decoded_name(codec, target, row["image"])))
            scorer.update(reference, decoded)
            used += 1
        if not used:
            continue
        values = scorer.compute()
        results.append({"codec": codec, "target_bpp": target, "images": used,
                        "bpp": float(np.mean([float(r["bpp"]) for r in group])), **values})
    path = out / SET_CSV
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in results)
    return path


def read_set_metrics(out: Path) -> list[dict]:
    path = out / SET_CSV
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
