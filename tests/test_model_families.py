"""Model families: `--quality` / `--bpp` choose within one ladder (perceptual by default where it is
shipped, MSE otherwise); every shipped model of any family still decodes its own files."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from stic.errors import ModelNotFoundError
from stic.image import registry
from stic.image.architectures import build_model
from stic.pipeline import decode, encode

TINY = {"architecture": "mbt2018-mean", "N": 8, "M": 8}


def _ship(folder, name, lmbda, family=None, seed=0, refiner=None):
    torch.manual_seed(seed)
    state = {k: v for k, v in build_model(TINY).state_dict().items() if v.numel() > 0}
    save_file(state, str(folder / f"{name}.safetensors"))
    config = {"model": TINY, "lmbda": lmbda} | ({"family": family} if family else {})
    config |= {"refiner": refiner} if refiner else {}
    (folder / f"{name}.json").write_text(json.dumps(config))


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "weights_dir", lambda: tmp_path)
    _ship(tmp_path, "m-hi", 0.01)  # no family recorded: MSE, as models shipped before families
    _ship(tmp_path, "m-lo", 0.001)
    return tmp_path


def test_mse_is_the_ladder_until_a_perceptual_family_ships(weights):
    assert registry.default_family() == "mse"
    assert registry.shipped_models() == ["m-lo", "m-hi"]
    assert registry.shipped_models("perceptual") == []
    _ship(weights, "p-lo", 0.001, "perceptual", seed=1)
    _ship(weights, "p-hi", 0.01, "perceptual", seed=2)
    assert registry.default_family() == registry.DEFAULT_FAMILY
    assert registry.shipped_models("perceptual") == ["p-lo", "p-hi"]
    assert registry.shipped_models("mse") == ["m-lo", "m-hi"]
    assert registry.all_shipped_models() == ["m-hi", "m-lo", "p-hi", "p-lo"]
    assert registry.model_family("p-lo") == "perceptual" and registry.model_family("m-lo") == "mse"


def test_quality_picks_within_the_family_and_every_model_decodes(weights):
    _ship(weights, "p-lo", 0.001, "perceptual", seed=1)
    _ship(weights, "p-hi", 0.01, "perceptual", seed=2)
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    for family, expected in (("mse", "m-lo"), ("perceptual", "p-lo")):
        encoded = encode(image, quality=1, family=family)
        assert encoded.image_model == expected
        assert decode(encoded.data).image.shape == image.shape
    assert encode(image, quality=2).image_model == ("p-hi" if registry.DEFAULT_FAMILY == "perceptual" else "m-hi")


def test_unknown_family_is_refused(weights):
    with pytest.raises(ModelNotFoundError, match="unknown model family 'fancy'"):
        registry.shipped_models("fancy")
    from stic.pipeline import default_refiner

    with pytest.raises(ModelNotFoundError, match="unknown model family 'fancy'"):
        default_refiner(family="fancy")
    with pytest.raises(ModelNotFoundError, match="no shipped image model 'nope'"):
        registry.model_family("nope")


def _decoder_only(name: str) -> bool:
    config = json.loads((registry.weights_dir() / f"{name}.json").read_text())
    return registry.transforms_training(config).get("trainable") == "decoder"


def test_shipped_decoder_only_perceptual_models_share_the_mse_bitstreams():
    """A perceptual model fine-tuned decoder-only codes its MSE twin's bitstream; a jointly tuned one
    (encoder trained too) codes its own, and must still differ from the twin."""
    from skimage import data

    mse, perceptual = registry.shipped_models("mse"), registry.shipped_models("perceptual")
    if not perceptual:
        pytest.skip("no perceptual models shipped")
    assert len(mse) == len(perceptual)
    image = np.ascontiguousarray(data.astronaut()[:192, :256])
    for plain, tuned in zip(mse, perceptual):
        a, b = registry.load_image_codec(plain), registry.load_image_codec(tuned)
        if not _decoder_only(tuned):
            assert b.compress(image) != a.compress(image), (plain, tuned)
            continue
        payload = a.compress(image)
        assert b.compress(image) == payload, (plain, tuned)
        assert a.fingerprint() != b.fingerprint()
        assert not np.array_equal(a.decompress(payload, 256, 192), b.decompress(payload, 256, 192))


def test_default_refiner_follows_the_family():
    from stic.pipeline import DEFAULT_REFINERS, default_refiner

    assert default_refiner(family="mse") == DEFAULT_REFINERS["mse"] == "realesrgan-stic"
    assert default_refiner(family="perceptual") == DEFAULT_REFINERS["perceptual"] == "identity"
    for name in registry.all_shipped_models():
        family_default = DEFAULT_REFINERS[registry.model_family(name)]
        assert default_refiner(model=name) == (registry.recommended_refiner(name) or family_default)
    assert default_refiner(model="some/local/folder") == DEFAULT_REFINERS["mse"]
    assert default_refiner(model="stic-q2") == "realesrgan-stic-q2"  # tuned on its x̂ (docs/refiners.md)


def test_auto_refiner_is_the_default_of_the_model_that_codes_the_image(tmp_path, monkeypatch):
    from stic.container import SECTION_REFINE
    from stic.pipeline import AUTO

    monkeypatch.setattr(registry, "weights_dir", lambda: tmp_path)
    _ship(tmp_path, "m-lo", 0.001)
    _ship(tmp_path, "m-hi", 0.01, refiner="identity")  # where the family's refiner did not help
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    for options, model, refined in (({"quality": 1}, "m-lo", True), ({"quality": 2}, "m-hi", False),
                                    ({"bpp": 100.0}, "m-hi", False)):  # fmt: skip
        encoded = encode(image, refiner=AUTO, **options)
        assert encoded.image_model == model
        assert (encoded.file.section(SECTION_REFINE) is not None) == refined, options
    assert encode(image, quality=2, refiner="realesrgan-compact").file.section(SECTION_REFINE) is not None


def test_shipped_weights_fit_the_package_budget():
    """Issue 3's limit: all shipped weights together at most 30 MB."""
    total = sum(registry.shipped_weights(name).stat().st_size for name in registry.all_shipped_models())
    assert registry.all_shipped_models() and total <= 30e6, f"{total / 1e6:.1f} MB of shipped weights"
