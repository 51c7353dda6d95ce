"""Resuming a per-image Kodak bench: an interrupted run keeps what it measured, and `--resume`
measures only the rows it lacks, under the same settings, instead of starting over."""

from __future__ import annotations

import json
from pathlib import Path

#: meta keys that may differ between the run that wrote a report and the one resuming it
VOLATILE = ("command", "load_average", "image_names")


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
