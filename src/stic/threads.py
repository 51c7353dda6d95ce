"""Torch's intra-op thread count, pinned for a block of work.

Coding must not depend on the host's default thread count (a different count can change float
reduction order, hence bits), and benchmarks and tests want a known one."""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch

_busy_elsewhere: ContextVar[int] = ContextVar("stic_cores_busy_elsewhere", default=0)


@contextlib.contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Run torch with exactly `n` intra-op threads, then restore the caller's setting."""
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
    """Threads a helper pool (e.g. the grid filter's medians) may use: torch's count, less the
    cores marked busy elsewhere; at least one."""
    return max(1, torch.get_num_threads() - _busy_elsewhere.get())
