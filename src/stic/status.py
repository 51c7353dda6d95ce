"""One status line per slow step (loading a model, coding, refining) on an interactive terminal.

Loading stic's models takes seconds; a command that prints nothing meanwhile looks hung. The CLI
turns these lines on when stderr is a terminal; the library stays silent by default, and so does
the CLI when its output goes to a file or a pipe.
"""

from __future__ import annotations

import contextlib
import sys
import time

_enabled = False
_depth = 0


def enable(on: bool) -> None:
    global _enabled
    _enabled = on


@contextlib.contextmanager
def step(label: str):
    """`stic: LABEL… 1.2 s` on stderr (outermost step only, so nested steps print one line)."""
    global _depth
    show = _enabled and _depth == 0
    if show:
        print(f"stic: {label}…", end="", file=sys.stderr, flush=True)
    started = time.perf_counter()
    _depth += 1
    try:
        yield
    except BaseException:
        if show:
            print(file=sys.stderr)
        raise
    finally:
        _depth -= 1
    if show:
        print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
