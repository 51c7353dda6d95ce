"""What the per-image Kodak benches (refine_kodak, target_kodak) share: their inputs, the
machine's load while they ran, and resuming: an interrupted run keeps what it measured, and
`--resume` measures only the rows it lacks, under the same settings, instead of starting over."""

from __future__ import annotations

import json
from pathlib import Path

from stic.caption.fixed import PrecomputedCaptioner
from stic.paths import data_dir

#: meta keys that may differ between the run that wrote a report and the one resuming it
VOLATILE = ("command", "load_average", "image_names")


def kodak_inputs(images: list[str] | None) -> tuple[Path, list[str], PrecomputedCaptioner]:
    """The Kodak folder, the images asked for (default: all 24), and their published LLaVA-1.5 captions."""
    names = images or [f"kodim{i:02d}" for i in range(1, 25)]
    return data_dir() / "kodak", names, PrecomputedCaptioner(data_dir() / "captions" / "kodak_llava15.csv")


def load_range(loads: list[float]) -> str:
    """The 1-minute load averages sampled during a run, as the reports print them."""
    return f"{min(loads):.1f}-{max(loads):.1f} (1-min, on 2 cores)"


def report_path(out: Path, suffix: str) -> Path:
    """`out` + suffix; unlike Path.with_suffix, keeps a dotted stem such as target_kodak_0.04."""
    return out.parent / (out.name + suffix)


def previous_rows(out: Path, meta: dict) -> list[dict]:
    """The rows of the report at `out`, refusing one measured with other settings than `meta`."""
    path = report_path(out, ".json")
    if not path.exists():
        raise SystemExit(f"--resume: no report at {path}")
    report = json.loads(path.read_text())
    for key, value in meta.items():
        if key not in VOLATILE and report.get(key) != value:
            raise SystemExit(f"--resume: {path} was measured with {key}={report.get(key)!r}, this run has {value!r}")
    return report["images"]
