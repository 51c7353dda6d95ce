"""Tiled synthesis: the stitched picture is the whole-image one up to float rounding."""

import numpy as np
import torch

from stic.image.registry import load_image_codec
from stic.image.tiled import synthesize


def test_tiles_stitch_into_the_whole_image_result():
    codec = load_image_codec("stic-q2")
    g_s = codec.exact_decoder().synthesis  # the decoder's (ONNX Runtime)
    y_hat = np.round(np.random.default_rng(0).standard_normal((codec.model.M, 20, 27)) * 2).astype(np.float32)
    whole = g_s(y_hat)
    with torch.no_grad():
        reference = codec.model.g_s(torch.from_numpy(y_hat)[None])[0].numpy()
    assert np.abs(whole - reference).max() * 255 < 0.5  # torch's g_s: the same pixels, or one off
    tiled = synthesize(g_s, y_hat, tile=8, margin=4)
    assert np.array_equal(synthesize(g_s, y_hat, tile=32), whole)  # one tile: the same computation
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() * 255 < 0.5  # below half a level: the same pixels after rounding, or one off
    no_margin = synthesize(g_s, y_hat, tile=8, margin=0)
    assert np.abs(no_margin - whole).max() * 255 > 1  # without the margin the seams show: the margin matters
