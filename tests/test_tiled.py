"""Tiled synthesis: the stitched picture is the whole-image one up to float rounding."""

import torch

from stic.image.registry import load_image_codec
from stic.image.tiled import synthesize


def test_tiles_stitch_into_the_whole_image_result():
    model = load_image_codec("stic-q2").model
    torch.manual_seed(0)
    y_hat = torch.round(torch.randn(1, model.M, 20, 27) * 2)
    with torch.no_grad():
        whole = model.g_s(y_hat)
        tiled = synthesize(model.g_s, y_hat, tile=8, margin=4)
        assert torch.equal(synthesize(model.g_s, y_hat, tile=32), whole)  # one tile: the same computation
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() * 255 < 0.5  # below half a level: the same pixels after rounding, or one off
    with torch.no_grad():
        no_margin = synthesize(model.g_s, y_hat, tile=8, margin=0)
    assert (no_margin - whole).abs().max() * 255 > 1  # without the margin the seams show: the margin matters
