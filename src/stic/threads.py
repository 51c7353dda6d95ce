"""Torch's intra-op thread count, pinned for a block of work.

Coding must not depend on the host's default thread count (a different count can change float
reduction order, hence bits), and benchmarks and tests want a known one."""

import contextlib
from collections.abc import Iterator

import torch


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
