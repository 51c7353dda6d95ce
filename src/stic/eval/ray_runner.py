"""Scale-out: run the harness's per-image work on a Ray cluster (a local one by default).

The harness hands its worker function in (`work`), so this module does not import the harness.

Tasks carry the image file's bytes, so workers need no shared file system; decoded PNGs come
back with the rows and the driver writes them, so the CSV (and folder) equal a local run's.
Ray is an optional extra: `pip install 'stic[ray]'`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from stic.errors import InputError


def run_on_ray(tasks, config, work: Callable) -> Iterator[tuple[list[dict], dict[str, bytes]]]:
    """`work(task, metrics, keep_decoded)` for every task, on Ray workers, as results come in."""
    try:
        import ray
    except ImportError as err:
        raise InputError(
            "--ray needs Ray: pip install 'stic[ray]' (or pip install ray)"
        ) from err
    started_here = not ray.is_initialized()
    if started_here:
        if config.ray_address in (None, "local"):
            ray.init(
                num_cpus=config.workers, include_dashboard=False, log_to_driver=False
            )
        else:
            ray.init(address=config.ray_address, log_to_driver=False)
    remote_task = ray.remote(num_cpus=1)(_run_with_one_thread)
    pending = [
        remote_task.remote(
            work,
            replace(task, data=Path(task.path).read_bytes()),
            config.metrics,
            config.keep_decoded,
        )
        for task in tasks
    ]
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if started_here:
            ray.shutdown()


def _run_with_one_thread(work: Callable, task, metrics, keep_decoded):
    import torch

    torch.set_num_threads(1)
    return work(task, metrics, keep_decoded)
