"""Run codecs x images x target rates, score every decoded image, and keep one CSV row per result.

The unit of work is a Task: one image and one codec with all its target rates, so a classic
codec's encodes are shared between targets. `run_task` is a plain function of its arguments: the
same code runs in-process, in a process pool, or on Ray (`stic.eval.ray_runner`).

Resumable: rows already in `per_image.csv` with status "unreachable", or "ok" with every requested
metric filled in, are skipped; other rows (failures, missing metrics) are redone. A redone row is
appended and supersedes the old one (the last row per image, codec and target wins), so an
interrupted run never loses a value it had; a row cut short by a kill is ignored.
A failure on one image is recorded as a row with status "failed" and the run goes on.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stic.container import write_bytes_atomic
from stic.errors import InputError
from stic.eval.codecs import check_codec, known_codecs, runner_for
from stic.eval.dataset import caption_for, list_images
from stic.metrics import METRICS

ROW_FIELDS = [
    "image",
    "codec",
    "target_bpp",
    "status",
    "bpp",
    "stream_bpp",
    "file_bytes",
    "stream_bytes",
    "caption_bytes",
    "setting",
    "encodes",
    "width",
    "height",
    "encode_s",
    "decode_s",
    *METRICS,
    "note",
]
CSV_NAME = "per_image.csv"


@dataclass
class Task:
    image: str  # file name, the row key
    codec: str
    targets: list[float]
    path: str = ""
    data: bytes | None = field(
        default=None, repr=False
    )  # the image file itself, for remote workers
    caption: str | None = None
    stic_options: dict = field(default_factory=dict)  # `stic.pipeline.encode` keywords for the stic codec


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded_name(codec: str, target: float, image: str) -> str:
    return f"{codec}/{target:g}/{Path(image).stem}.png"


def run_task(
    task: Task, metrics: list[str], keep_decoded: bool = False
) -> tuple[list[dict], dict[str, bytes]]:
    """Code one image with one codec at each target; return CSV rows and (optionally) decoded PNGs."""
    from stic.image.io import load_image
    from stic.metrics import compare

    base = {"image": task.image, "codec": task.codec}
    try:
        rgb = load_image(task.data if task.data is not None else task.path)
        runner = runner_for(task.codec, rgb, task.caption, task.stic_options)
    except Exception as err:  # noqa: BLE001 -- any failure is recorded and the run goes on
        note = f"{type(err).__name__}: {err}"
        return [
            {**base, "target_bpp": t, "status": "failed", "note": note}
            for t in task.targets
        ], {}
    rows, images = [], {}
    for target in task.targets:
        row = {
            **base,
            "target_bpp": target,
            "width": rgb.shape[1],
            "height": rgb.shape[0],
        }
        try:
            outcome = runner(target)
            row.update(
                {f.name: getattr(outcome, f.name) for f in fields(outcome) if f.name in ROW_FIELDS}
            )
            if outcome.status == "ok":
                row.update(compare(rgb, outcome.decoded, metrics))
                if keep_decoded:
                    images[decoded_name(task.codec, target, task.image)] = _png_bytes(
                        outcome.decoded
                    )
        except Exception as err:  # noqa: BLE001 -- any failure is recorded and the run goes on
            row.update(status="failed", note=f"{type(err).__name__}: {err}")
        rows.append(row)
    return rows, images


def row_key(row: dict) -> tuple[str, str, float]:
    return row["image"], row["codec"], float(row["target_bpp"])


def read_rows(path: Path) -> list[dict]:
    """The CSV's rows, the last one per (image, codec, target); a truncated row is dropped."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if None not in r.values() and None not in r]
    latest = {}
    for row in rows:
        try:
            latest[row_key(row)] = row
        except ValueError:  # a target cut mid-number
            continue
    return list(latest.values())


def _row_done(row: dict, metrics: list[str]) -> bool:
    if row.get("status") == "unreachable":
        return True
    return row.get("status") == "ok" and all(row.get(m, "") != "" for m in metrics)


class RowWriter:
    """Appends rows to the CSV as they arrive, so an interrupted run loses nothing finished."""

    def __init__(self, path: Path, kept: list[dict]):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ROW_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        tmp.replace(path)
        self.handle = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 -- closed by close()
        self.writer = csv.DictWriter(self.handle, ROW_FIELDS, extrasaction="ignore")

    def write(self, rows: Iterable[dict]) -> None:
        self.writer.writerows({k: _format(v) for k, v in row.items()} for row in rows)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


@dataclass
class EvalConfig:
    data: Path
    codecs: list[str]
    targets: list[float]
    out: Path
    metrics: list[str] = field(
        default_factory=lambda: ["psnr", "msssim", "lpips-alex", "dists"]
    )
    captions: dict[str, str] | None = None
    workers: int = 1
    keep_decoded: bool = False
    ray_address: str | None = None  # None: no Ray; "local": a local Ray instance
    limit: int | None = None
    stic_options: dict = field(default_factory=dict)  # text_coder, family, refiner for the stic codec


def validate(config: EvalConfig) -> None:
    unknown = [c for c in config.codecs if c not in known_codecs()]
    if unknown:
        raise InputError(
            f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(known_codecs())}"
        )
    bad_metrics = [m for m in config.metrics if m not in METRICS]
    if bad_metrics:
        raise InputError(
            f"unknown metric(s) {', '.join(bad_metrics)}; choose from {', '.join(METRICS)}"
        )
    if not config.targets or any(not (t > 0) for t in config.targets):
        raise InputError("target bpp values must be positive numbers")
    if config.workers < 1:
        raise InputError("workers must be at least 1")
    if config.ray_address is not None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise InputError(
                "--ray needs Ray: pip install 'stic[ray]' (or pip install ray)"
            )
    for codec in config.codecs:
        check_codec(codec)
    from stic.metrics import get_metric

    for (
        metric
    ) in config.metrics:  # loads (and converts, once) the weights up front: fail early
        get_metric(metric)


def plan(config: EvalConfig) -> tuple[list[Task], list[dict]]:
    """Tasks still to run, and the rows to keep (all existing ones: redone rows supersede them)."""
    images = list_images(config.data)[: config.limit]
    kept = read_rows(config.out / CSV_NAME)
    done = {row_key(r) for r in kept if _row_done(r, config.metrics)}
    tasks = []
    for path in images:
        for codec in config.codecs:
            todo = [
                t for t in config.targets if (path.name, codec, float(t)) not in done
            ]
            if todo:
                tasks.append(
                    Task(
                        path.name,
                        codec,
                        todo,
                        str(path),
                        caption=caption_for(path, config.captions),
                        stic_options=config.stic_options,
                    )
                )
    return tasks, kept


def _init_worker() -> None:
    """One torch thread per worker: on shared cores, more threads made the metrics ~10x slower."""
    import torch

    torch.set_num_threads(1)


def run_local(
    tasks: list[Task], config: EvalConfig
) -> Iterator[tuple[list[dict], dict[str, bytes]]]:
    if config.workers == 1:
        _init_worker()
        for task in tasks:
            yield run_task(task, config.metrics, config.keep_decoded)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        config.workers, mp_context=context, initializer=_init_worker
    ) as pool:
        futures = [
            pool.submit(run_task, task, config.metrics, config.keep_decoded)
            for task in tasks
        ]
        for future in as_completed(futures):
            yield future.result()


def run_eval(config: EvalConfig, progress: bool = True) -> Path:
    """Run (or resume) an evaluation; returns the CSV path. Reports are made by `stic.eval.report`."""
    validate(config)
    tasks, kept = plan(config)
    writer = RowWriter(config.out / CSV_NAME, kept)
    if config.ray_address is not None:
        from stic.eval.ray_runner import run_on_ray

        results = run_on_ray(tasks, config, run_task)
    else:
        results = run_local(tasks, config)
    total = sum(len(t.targets) for t in tasks)
    bar = tqdm(
        total=total, unit="result", desc="stic eval", disable=not progress or total == 0
    )
    started = time.perf_counter()
    try:
        for rows, images in results:
            writer.write(rows)
            for name, png in images.items():
                target = config.out / "decoded" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(target, png)
            failed = sum(r["status"] == "failed" for r in rows)
            bar.update(len(rows))
            if failed:
                bar.write(
                    f"{rows[0]['image']} {rows[0]['codec']}: {failed} failed ({rows[-1].get('note', '')})"
                )
    finally:
        bar.close()
        writer.close()
    if total:
        print(
            f"stic eval: {total} results in {time.perf_counter() - started:.0f} s -> {config.out / CSV_NAME}"
        )
    return config.out / CSV_NAME
