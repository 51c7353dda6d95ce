"""The checkerboard-context codec (stic-mean-checkerboard) and `stic train context`: an untrained
context codes as the hyperprior does, a trained one's real bitstream matches its estimate and
decodes to what forward() predicts, latent search drives it, and training resumes and writes a
model that loads."""

import json

import numpy as np
import pytest
import torch
from train_helpers import make_images, one_thread  # noqa: F401 (autouse fixture)

from stic.errors import InputError
from stic.image.architectures import build_model, scale_table, string_count
from stic.image.checkerboard import MeanScaleCheckerboard
from stic.image.latent_search import (
    Latents,
    compress_latents,
    initial_latents,
    rd_cost,
    search_latents,
    search_objective,
)
from stic.image.learned import LearnedImageCodec, pack_strings, padded_tensor
from stic.image.registry import load_image_codec, load_model_weights
from stic.train.config import ContextConfig
from stic.train.context import checkerboard_from, train_context
from stic.train.export import write_model


def _photo(h=128, w=192):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[60 : 60 + h, 140 : 140 + w])


@pytest.fixture(scope="module")
def shipped():
    return load_image_codec("stic-q2").model


@pytest.fixture(scope="module")
def base(shipped):
    """stic-q2 without its context: the mbt2018-mean model it was trained on."""
    model = build_model({"architecture": "mbt2018-mean", "N": 64, "M": 96})
    state = {k.removeprefix("context.y."): v for k, v in shipped.state_dict().items()
             if not k.startswith("context.") or k.startswith("context.y.")}
    model.load_state_dict(state)
    return model.eval()


def test_the_shipped_context_saves_bits_on_a_photo(shipped, base):
    image = _photo(256, 384)
    with_context = LearnedImageCodec("q2", shipped, bytes(32)).compress(image)
    without = LearnedImageCodec("base", base, bytes(32)).compress(image)
    assert len(with_context) < 0.97 * len(without)


def _with_random_context(base, seed=0):
    """q2's transforms + a context whose output layer is small random (not the zero start)."""
    model = checkerboard_from(base, kernel=3, hidden=16)
    torch.manual_seed(seed)
    with torch.no_grad():
        last = model.context.entropy_parameters.net[-1]
        last.weight.normal_(0, 0.05)
        last.bias.normal_(0, 0.05)
    return model


def test_an_untrained_context_gives_the_hyperprior_likelihoods(base):
    x = padded_tensor(_photo())
    with torch.no_grad():
        plain = base(x)["likelihoods"]
        checker = checkerboard_from(base, kernel=3, hidden=16)(x)["likelihoods"]
    torch.testing.assert_close(checker["y"], plain["y"])
    torch.testing.assert_close(checker["z"], plain["z"])


def test_real_bitstream_matches_the_estimate_and_decodes_to_the_forward_output(base):
    model = _with_random_context(base)
    codec = LearnedImageCodec("cb", model, bytes(32))
    image = _photo()
    payload = codec.compress(image)
    estimate = codec.estimate_bits(image)
    # + a fixed cost per string (rANS flushes its 32-bit state; byte padding; varint lengths): about
    # 200 bits for three strings, measured 2026-12-06 at 128x192 to 512x512 (q2's two: about 120)
    assert abs(8 * len(payload) - estimate) <= 0.02 * estimate + 256
    decoded = codec.decompress(payload, image.shape[1], image.shape[0])
    with torch.no_grad():
        predicted = model(padded_tensor(image))["x_hat"][0, :, : image.shape[0], : image.shape[1]]
    predicted = predicted.clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy()
    # forward() rounds each latent about float means, the coder about the exact integer ones: a
    # latent now and then rounds the other way (under 1 % of them), so compare on average
    difference = np.abs(decoded.astype(int) - predicted.astype(int))
    assert difference.mean() < 1.0 and np.mean(difference > 1) < 0.1
    assert np.array_equal(decoded, codec.decompress(payload, image.shape[1], image.shape[0]))
    assert string_count(model) == 3


def test_the_context_changes_the_rate(base):
    image = _photo()
    plain = LearnedImageCodec("q2", base, bytes(32)).compress(image)
    checker = LearnedImageCodec("cb", _with_random_context(base), bytes(32)).compress(image)
    assert len(plain) != len(checker)


def test_hard_rounded_quantise_is_what_the_coder_writes(base):
    """Latent search's rate (quantise with torch.round) equals forward()'s eval likelihoods."""
    model = _with_random_context(base)
    x = padded_tensor(_photo())
    with torch.no_grad():
        latents = initial_latents(model, x)
        z_hat, _ = model.entropy_bottleneck(latents.z, training=False)
        _, likelihoods = model.quantise(latents.y, model.h_s(z_hat), torch.round)
        torch.testing.assert_close(likelihoods, model(x)["likelihoods"]["y"])
        assert pack_strings(compress_latents(model, latents)) == LearnedImageCodec("cb", model, bytes(32)).compress(_photo())


def test_latent_search_lowers_the_cost_of_a_checkerboard_model(base):
    model = _with_random_context(base)
    objective = search_objective(0.00032)
    image = _photo()
    x = padded_tensor(image)
    h, w = image.shape[:2]
    found = search_latents(model, x, objective, 30, h, w)
    with torch.no_grad():
        start = initial_latents(model, x)
        assert rd_cost(model, x, found, objective, h, w)[0] < rd_cost(model, x, start, objective, h, w)[0]
    payload = pack_strings(compress_latents(model, Latents(found.y, found.z)))
    assert LearnedImageCodec("cb", model, bytes(32)).decompress(payload, w, h).shape == image.shape


def test_shipped_files_leave_out_the_masks_and_load_back(tmp_path, base):
    model = _with_random_context(base)
    weights = write_model(model, {"model": {}}, tmp_path / "m.safetensors", tmp_path / "m.json")
    from safetensors.torch import load_file

    assert not any(k.endswith(".mask") for k in load_file(str(weights)))
    loaded = load_model_weights(build_model({"architecture": "stic-mean-checkerboard", "N": 64, "M": 96,
                                             "context_kernel": 3, "context_hidden": 16}), weights)
    image = _photo()
    assert LearnedImageCodec("a", loaded, bytes(32)).compress(image) == LearnedImageCodec("b", model, bytes(32)).compress(image)


def test_context_needs_a_mean_scale_base():
    with pytest.raises(InputError, match="mbt2018-mean"):
        checkerboard_from(build_model({"architecture": "bmshj2018-hyperprior", "N": 8, "M": 8}), 3, 8)


def test_train_context_resumes_and_writes_a_loadable_model(tmp_path, monkeypatch):
    make_images(tmp_path / "data", (("set_a", 14),))
    monkeypatch.setenv("STIC_DATA", str(tmp_path / "data"))
    base = tmp_path / "base"
    base.mkdir()
    tiny = build_model({"architecture": "mbt2018-mean", "N": 8, "M": 8})
    tiny.update(scale_table(), force=True)
    write_model(tiny, {"model": {"architecture": "mbt2018-mean", "N": 8, "M": 8}, "lmbda": 0.01,
                       "training": {"trainable": "all"}}, base / "model.safetensors", base / "config.json")
    run = tmp_path / "run"
    cfg = dict(base=str(base), out=str(run), kernel=3, hidden=8, crop=4, batch=4, threads=1,
               datasets=("set_a",), val_every=10)
    train_context(ContextConfig(steps=10, **cfg))
    assert json.loads((run / "state.json").read_text())["step"] == 10
    train_context(ContextConfig(steps=20, **cfg))
    state = json.loads((run / "state.json").read_text())
    assert state["step"] == 20 and [h["step"] for h in state["history"]] == [10, 20]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["architecture"] == "stic-mean-checkerboard"
    assert config["training"]["trainable"] == "context" and config["training"]["base"] == {"trainable": "all"}
    codec = load_image_codec(str(run))
    assert isinstance(codec.model, MeanScaleCheckerboard)
    assert codec.objective.lmbda == 0.01 and codec.objective.metrics == {}
    image = _photo(64, 64)
    assert codec.decompress(codec.compress(image), 64, 64).shape == image.shape

    twin = tmp_path / "twin"  # a model with the same latents takes the context as is
    train_context(ContextConfig(**{**cfg, "out": str(twin), "steps": 0, "context_from": str(run)}))
    copied = load_image_codec(str(twin))
    assert copied.compress(image) == codec.compress(image)
    assert json.loads((twin / "config.json").read_text())["training"]["context_from"] == str(run)
    with pytest.raises(InputError, match="not a checkerboard"):
        train_context(ContextConfig(**{**cfg, "out": str(tmp_path / "bad"), "steps": 0, "context_from": str(base)}))
