"""Remove the fixed 4-pixel dot grid a ×4 GAN draws over smooth areas.

`realesrgan-stic` on stic-q1's x̂ paints a regular pattern of dots over smooth regions (the parrot's
blurred background in kodim23): a component that repeats every 4 output pixels, the network's
pixel-shuffle period, locked to the output grid. Real texture is not locked to that grid, so over a
28-pixel window its typical value at each of the 16 phases of the grid is near zero, while the
pattern's is the pattern itself. The filter takes the image's high-pass part (image minus a
Gaussian blur), takes its median per phase over that window and subtracts it. A median, not a mean:
a mean also answers to a single edge in the window and draws a 4-pixel ripple beside it (up to 15
levels on a hard step); the median ignores an edge, and moves by at most 2 levels where three
edges share the window. On 4 Kodak images at stic-q1 it left LPIPS-Alex about as it was (0.458 ->
0.460) and lowered DISTS (0.240 -> 0.237), and the dots are gone by eye.

Two versions, named by the refine section's parameter byte. `FLOAT_MEDIAN` (stic 0.4.0) takes the
median of the float high-pass. `QUARTER_LEVEL_MEDIAN` (stic >= 0.5 writes it) first rounds the
high-pass to quarter grey levels, clipped to [-32, 31.75] levels, and takes the median of those
bytes with a sliding histogram (skimage's rank filter): ~3x less time for the same pattern.
Rounding and clipping are monotone, so that median is the float median rounded and clipped: the
subtracted pattern moves by at most 1/8 of a level where the median lies within those bounds.
"""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PERIOD = 4  #: the ×4 networks' pixel-shuffle period
_SIGMA = 2.0  #: the Gaussian that splits off the high-pass part, in pixels
_CELLS = 7  #: the median's window, in grid cells of PERIOD pixels (28 pixels, centred)
FLOAT_MEDIAN, QUARTER_LEVEL_MEDIAN = 1, 2  #: the versions (the refine section's parameter byte)
VERSIONS = (FLOAT_MEDIAN, QUARTER_LEVEL_MEDIAN)
_QUARTERS = 4  #: QUARTER_LEVEL_MEDIAN's steps per grey level
#: what each version imports: ~0.2 s for scipy.ndimage, ~0.25 s more for skimage's rank filters
#: (they pull in skimage.morphology and scipy.spatial) in a fresh process
_MODULES = {FLOAT_MEDIAN: ("scipy.ndimage",), QUARTER_LEVEL_MEDIAN: ("scipy.ndimage", "skimage.filters.rank")}
_importing: threading.Thread | None = None


def import_beside(version: int) -> None:
    """Start importing the filter's modules on a daemon thread, so that a fresh decoder pays for
    them while its image decodes (torch's convolutions leave the interpreter free), not after.
    `remove_grid` waits for that thread before importing anything itself; a failed import there
    is left for `remove_grid` to raise."""
    global _importing
    if _importing is not None or version not in _MODULES:
        return

    def run() -> None:
        for name in _MODULES[version]:
            try:
                importlib.import_module(name)
            except ImportError:
                return

    _importing = threading.Thread(target=run, name="stic-grid-filter-import", daemon=True)
    _importing.start()


def remove_grid(image: np.ndarray, version: int = QUARTER_LEVEL_MEDIAN, workers: int | None = None) -> np.ndarray:
    """The HxWx3 uint8 network output (before any resize) without its PERIOD-pixel grid.

    The 16 phases' medians (most of the time) run on `workers` threads (default:
    stic.threads.helper_threads(), torch's thread count less the cores the caption decoding beside
    the image takes): SciPy and skimage release the GIL, and each phase's result is the same on any
    number of threads (a median selects, it does no arithmetic)."""
    if _importing is not None:
        _importing.join()
    from scipy.ndimage import gaussian_filter

    from stic.threads import helper_threads

    if version not in VERSIONS:
        raise ValueError(f"grid filter version {version} (known: {VERSIONS})")
    pixels = image.astype(np.float32)
    high = pixels - gaussian_filter(pixels, (_SIGMA, _SIGMA, 0))
    median = _float_median if version == FLOAT_MEDIAN else _quarter_level_median
    phases = [(row, col) for row in range(PERIOD) for col in range(PERIOD)]

    def grid(phase: tuple[int, int]) -> np.ndarray:
        row, col = phase
        return median(high[row::PERIOD, col::PERIOD])

    with ThreadPoolExecutor(max_workers=max(1, min(len(phases), workers or helper_threads()))) as pool:
        for (row, col), pattern in zip(phases, pool.map(grid, phases), strict=True):
            pixels[row::PERIOD, col::PERIOD] -= pattern
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _float_median(plane: np.ndarray) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(plane, (_CELLS, _CELLS, 1), mode="reflect")


def _quarter_level_median(plane: np.ndarray) -> np.ndarray:
    """The median of `plane` (HxWx3 float32) rounded to quarter levels, clipped to a byte, over
    the same windows as `_float_median` (its "reflect" border is numpy's "symmetric")."""
    from skimage.filters.rank import median

    if not plane.size:  # a phase of an image narrower or shorter than PERIOD
        return np.zeros_like(plane)
    codes = (np.clip(np.rint(plane * _QUARTERS), -128, 127) + 128).astype(np.uint8)
    border = _CELLS // 2
    padded = np.pad(codes, ((border, border), (border, border), (0, 0)), mode="symmetric")
    footprint = np.ones((_CELLS, _CELLS), dtype=bool)
    inner = (slice(border, -border), slice(border, -border))
    medians = np.stack([median(padded[..., c], footprint)[inner] for c in range(plane.shape[2])], -1)
    return (medians.astype(np.float32) - 128) / _QUARTERS
