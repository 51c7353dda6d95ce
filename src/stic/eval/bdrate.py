"""BD-rate against an anchor codec with `bjontegaard` (Akima interpolation), on a quality axis
where higher is better (−LPIPS by default).

The integration interval is the overlap of the two curves' quality ranges; it is reported with
the result. Overlap (intersection / union of the ranges) under 75 % gives a warning; no overlap
gives no number: nothing is extrapolated.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import bjontegaard

MIN_OVERLAP = 0.75
MIN_POINTS = 3


@dataclass
class BDResult:
    codec: str
    anchor: str
    bd_rate: (
        float | None
    )  # percent; negative = fewer bits than the anchor at equal quality
    interval: tuple[float, float] | None
    overlap: float | None
    note: str = ""


def _quality(points, higher_is_better: bool):
    rates = [bpp for bpp, _ in points]
    quality = [value if higher_is_better else -value for _, value in points]
    return rates, quality


def _no_result(test_name: str, anchor_name: str, note: str) -> BDResult:
    """A BD-rate that cannot be computed: no number, only the reason."""
    return BDResult(test_name, anchor_name, None, None, None, note)


def bd_rate(
    anchor_name, anchor_points, test_name, test_points, higher_is_better: bool
) -> BDResult:
    if len(anchor_points) < MIN_POINTS or len(test_points) < MIN_POINTS:
        short = anchor_name if len(anchor_points) < MIN_POINTS else test_name
        return _no_result(test_name, anchor_name, f"{short} has fewer than {MIN_POINTS} complete points")
    rate_a, qual_a = _quality(anchor_points, higher_is_better)
    rate_t, qual_t = _quality(test_points, higher_is_better)
    if any(b <= a for a, b in itertools.pairwise(qual_a)) or any(
        b <= a for a, b in itertools.pairwise(qual_t)
    ):
        return _no_result(test_name, anchor_name, "quality does not rise with rate on a curve")
    low, high = max(min(qual_a), min(qual_t)), min(max(qual_a), max(qual_t))
    union = max(max(qual_a), max(qual_t)) - min(min(qual_a), min(qual_t))
    overlap = max(high - low, 0.0) / union if union > 0 else 0.0
    if overlap == 0:
        return BDResult(
            test_name, anchor_name, None, None, 0.0, "curves do not overlap: no BD-rate"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = bjontegaard.bd_rate(
            rate_a,
            qual_a,
            rate_t,
            qual_t,
            method="akima",
            require_matching_points=False,
            min_overlap=0,
        )
    note = (
        f"overlap {overlap:.1%} < {MIN_OVERLAP:.0%}: treat with care"
        if overlap < MIN_OVERLAP
        else ""
    )
    return BDResult(test_name, anchor_name, float(value), (low, high), overlap, note)
