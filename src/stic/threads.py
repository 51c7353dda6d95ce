"""Torch's intra-op thread count, pinned for a block of work.

Coding must not depend on the host's default thread count (a different count can change float
reduction order, hence bits), and benchmarks and tests want a known one. torch is imported only
by work that uses it: decoding an image-only file needs none (stic.image.decoder)."""

import contextlib
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar

_busy_elsewhere: ContextVar[int] = ContextVar("stic_cores_busy_elsewhere", default=0)


@contextlib.contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Run torch with exactly `n` intra-op threads, then restore the caller's setting."""
    import torch

    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if previous != n:
            torch.set_num_threads(previous)


@contextlib.contextmanager
def cores_busy_elsewhere(n: int) -> Iterator[None]:
    """Mark `n` cores as taken by work on other threads (the caption decoding beside the image,
    stic.pipeline) for helpers that size their own thread pools (`helper_threads`)."""
    token = _busy_elsewhere.set(_busy_elsewhere.get() + n)
    try:
        yield
    finally:
        _busy_elsewhere.reset(token)


def helper_threads() -> int:
    """Threads a helper pool (e.g. the grid filter's medians) may use: torch's count (the cores
    this process may run on, where torch is not loaded), less the cores marked busy elsewhere; at
    least one."""
    torch = sys.modules.get("torch")
    cores = torch.get_num_threads() if torch is not None else available_cores()
    return max(1, cores - _busy_elsewhere.get())


def available_cores() -> int:
    """The cores this process may run on (torch's default thread count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
