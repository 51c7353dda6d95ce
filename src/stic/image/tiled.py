"""The synthesis transform g_s over a large latent in overlapping tiles, so memory stays bounded.

g_s's activations at full resolution cost channels x pixels x 4 bytes: a 12 MP photo needs
gigabytes at once. g_s is convolutional with a small receptive field (about two latent positions
each way), so each tile of TILE latents is synthesised with MARGIN extra latents on every inner
side and only its centre is kept: the stitched picture equals the whole-image result up to float
rounding (a level at most, as between machines). A picture of at most TILE x TILE latents (1024
pixels a side) is one tile: exactly the untiled computation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TILE = 64  #: latent positions per tile side (x16 pixels)
MARGIN = 4  #: extra latent positions synthesised on each inner side of a tile


def synthesize(g_s: Callable[[np.ndarray], np.ndarray], y_hat: np.ndarray, tile: int = TILE, margin: int = MARGIN) -> np.ndarray:
    """g_s(y_hat) for a C x h x w latent (g_s: [C, h, w] -> [3, H, W] arrays), in tiles of `tile`
    latents when larger."""
    _, h, w = y_hat.shape
    if h <= tile and w <= tile:
        return g_s(y_hat)
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            t0, l0 = max(0, top - margin), max(0, left - margin)
            t1, l1 = min(h, top + tile + margin), min(w, left + tile + margin)
            piece = g_s(y_hat[:, t0:t1, l0:l1])
            scale = piece.shape[-1] // (l1 - l0)
            if out is None:
                out = np.empty((piece.shape[0], h * scale, w * scale), piece.dtype)
            rows, cols = min(tile, h - top), min(tile, w - left)
            out[:, top * scale : (top + rows) * scale, left * scale : (left + cols) * scale] = piece[
                :, (top - t0) * scale : (top - t0 + rows) * scale, (left - l0) * scale : (left - l0 + cols) * scale
            ]
            del piece
    return out
