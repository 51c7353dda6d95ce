"""Encoder-side latent search: it lowers the real rate + λ·MSE (+ a perceptual model's LPIPS), the
unchanged decoder reads what it writes, it is deterministic, and it refuses what it cannot do."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from stic.errors import InputError
from stic.image.architectures import build_model
from stic.image.latent_search import (
    PERCEPTUAL_SEARCH_SCALE,
    Objective,
    coded_bpp,
    compress_latents,
    initial_latents,
    rd_cost,
    search_latents,
    search_objective,
)
from stic.image.learned import LearnedImageCodec, pack_strings, padded_tensor
from stic.image.registry import load_image_codec
from stic.metrics import compare
from stic.pipeline import decode, encode


def _photo(h=128, w=160):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100 : 100 + h, 150 : 150 + w])


def _real_cost(codec, image, payload):
    """rate from the payload's length + λ·MSE of what the decoder makes of it."""
    h, w = image.shape[:2]
    out = codec.decompress(payload, w, h).astype(np.float64)
    return 8 * len(payload) / (h * w) + codec.objective.lmbda * np.mean((out - image) ** 2)


@pytest.fixture(scope="module")
def q2():
    return load_image_codec("stic-q2")


def test_without_search_the_latents_code_exactly_as_compressai(q2):
    image = _photo()
    with torch.no_grad():
        strings = compress_latents(q2.model, initial_latents(q2.model, padded_tensor(image)))
    assert pack_strings(strings) == q2.compress(image)


def test_search_lowers_the_real_rate_distortion_cost(q2):
    image = _photo()
    plain, searched = q2.compress(image), q2.compress(image, search_steps=40)
    assert searched != plain
    assert _real_cost(q2, image, searched) < _real_cost(q2, image, plain)


def test_search_is_deterministic_and_leaves_the_model_as_it_was(q2):
    image = _photo(64, 64)
    before = {k: v.clone() for k, v in q2.model.state_dict().items()}
    assert q2.compress(image, search_steps=5) == q2.compress(image, search_steps=5)
    after = q2.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in q2.model.parameters())


def test_search_never_returns_latents_worse_than_the_start(q2):
    """A huge λ weights distortion only, a zero-ish one rate only: either way the kept latents cost
    no more (by the model's own measure) than g_a's."""
    image = _photo(64, 64)
    x = padded_tensor(image)
    with torch.no_grad():
        start = initial_latents(q2.model, x)
        for objective in (Objective(1e-9), Objective(10.0), Objective(1e-9, {"lpips-alex": 100.0})):
            found = search_latents(q2.model, x, objective, 3, 64, 64)
            assert rd_cost(q2.model, x, found, objective, 64, 64)[0] <= rd_cost(q2.model, x, start, objective, 64, 64)[0]


def test_a_rate_cap_holds_and_still_lowers_the_cost_within_it(q2):
    """Capped 3 % below the plain rate (what `--bpp` asks when the plain file just fits), the
    search returns latents that code within the cap (the coder's bits, not only the estimate) at a
    lower rate + λ·MSE than the plain file. A cap it cannot meet returns the start unchanged."""
    image = _photo(256, 256)
    x = padded_tensor(image)
    with torch.no_grad():
        start = initial_latents(q2.model, x)
    plain_rate = coded_bpp(q2.model, start, 256, 256)
    found = search_latents(q2.model, x, q2.objective, 50, 256, 256, max_bpp=0.97 * plain_rate)
    assert coded_bpp(q2.model, found, 256, 256) <= 0.97 * plain_rate
    payload = pack_strings(compress_latents(q2.model, found))
    assert 8 * len(payload) / 256**2 <= plain_rate
    assert _real_cost(q2, image, payload) < _real_cost(q2, image, q2.compress(image))
    unmet = search_latents(q2.model, x, q2.objective, 5, 256, 256, max_bpp=0.2 * plain_rate)
    assert torch.equal(unmet.y, start.y) and torch.equal(unmet.z, start.z)


def test_a_rate_cap_must_be_positive(q2):
    with pytest.raises(InputError, match="rate cap must be positive"):
        q2.compress(_photo(64, 64), search_steps=2, max_bpp=0)


def test_bpp_target_with_search_keeps_the_plain_choice_of_model_and_the_target():
    """--bpp with search: the model is the one whose plain file fits, and the searched file
    (whole file: header and caption too) never exceeds the target."""
    image = _photo(256, 256)
    pixels = image.shape[0] * image.shape[1]
    caption = "an astronaut in a white suit"
    plain = encode(image, model="stic-q2", caption=caption)
    target = 8 * len(plain.data) / pixels + 1e-6
    searched = encode(image, bpp=target, caption=caption, search_steps=50)
    assert searched.image_model == "stic-q2"
    assert searched.data != plain.data
    assert 8 * len(searched.data) <= target * pixels
    assert decode(searched.data, refine=False).image.shape == image.shape


def test_pipeline_files_with_search_decode_with_the_plain_decoder():
    image = _photo()
    encoded = encode(image, model="stic-q1", search_steps=10)
    assert encoded.image_model == "stic-q1"
    decoded = decode(encoded.data, refine=False)
    assert decoded.image.shape == image.shape


def test_a_perceptual_model_searches_its_own_training_terms():
    p1 = load_image_codec("stic-p1")
    assert p1.objective.metrics == {"lpips-alex": PERCEPTUAL_SEARCH_SCALE * 1.0}
    assert load_image_codec("stic-q1").objective.metrics == {}
    assert search_objective(0.01, {"lpips-alex": 0.5}, encoder_trained=True).metrics == {"lpips-alex": 0.5}


def test_perceptual_search_lowers_lpips_where_the_mse_search_does_not():
    """stic-p2, 30 steps on a 128x160 crop: its own objective (with LPIPS-Alex) gives a decoded
    image clearly closer by LPIPS than the plain file and than a search for rate + λ·MSE alone."""
    p2 = load_image_codec("stic-p2")
    mse_only = LearnedImageCodec("p2-mse", p2.model, b"0000", Objective(p2.objective.lmbda))
    image = _photo()
    h, w = image.shape[:2]

    def lpips(payload):
        return compare(image, p2.decompress(payload, w, h), ("lpips-alex",))["lpips-alex"]

    searched = lpips(p2.compress(image, search_steps=30))
    assert searched < lpips(p2.compress(image)) - 0.02
    assert searched < lpips(mse_only.compress(image, search_steps=30)) - 0.02


def test_scale_only_hyperprior_is_searchable(tmp_path):
    torch.manual_seed(0)
    config = {"architecture": "bmshj2018-hyperprior", "N": 8, "M": 8}
    model = build_model(config)
    save_file({k: v for k, v in model.state_dict().items() if v.numel() > 0}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "train_config.json").write_text(json.dumps({"lmbda": 0.01}))
    codec = load_image_codec(str(tmp_path))
    assert codec.objective == Objective(0.01)
    image = _photo(64, 64)
    payload = codec.compress(image, search_steps=3)
    assert codec.decompress(payload, 64, 64).shape == (64, 64, 3)


def test_search_refuses_what_it_cannot_do(q2):
    image = _photo(64, 64)
    context_model = LearnedImageCodec("ctx", build_model({"architecture": "mbt2018", "N": 8, "M": 8}), b"0000", Objective(0.01))
    with pytest.raises(InputError, match="hyperprior architectures"):
        context_model.compress(image, search_steps=2)
    no_lambda = LearnedImageCodec("nolambda", q2.model, b"0000")
    with pytest.raises(InputError, match="training λ"):
        no_lambda.compress(image, search_steps=2)
    with pytest.raises(InputError, match="search_steps"):
        encode(image, model="stic-q1", search_steps=-1)
    with pytest.raises(InputError, match="λ > 0"):
        Objective(0.0)
