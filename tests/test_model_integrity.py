"""A file made with one caption LM or one set of codec weights, decoded with another, is refused
before anything is decoded, and the error names the model the file needs."""

import json

import fuzz_cases as fc
import pytest
from safetensors.torch import save_file

from stic import pipeline
from stic.errors import ModelMismatchError
from stic.image.decoder import ExactImageDecoder
from stic.image.learned import LearnedImageCodec
from stic.image.registry import shipped_fingerprint, shipped_models


@pytest.fixture
def nothing_decoded(monkeypatch):
    """Fails the test if the image decoder runs at all."""

    def forbidden(self, *args, **kwargs):
        raise AssertionError("decoding started before the models were checked")

    monkeypatch.setattr(LearnedImageCodec, "decompress", forbidden)
    monkeypatch.setattr(ExactImageDecoder, "decompress", forbidden)


@pytest.fixture
def local_image_model(tmp_path):
    """A model folder as `stic train` exports it (untrained tiny weights: only its identity matters)."""
    from stic.image.architectures import build_model
    from stic.train.checkpoint import trainable_state

    folder = tmp_path / "my-codec"
    folder.mkdir()
    config = {"architecture": "bmshj2018-hyperprior", "N": 8, "M": 8}
    save_file(trainable_state(build_model(config)), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model": config}))
    return folder


def test_image_from_unavailable_weights_is_refused_naming_them(local_image_model, nothing_decoded):
    from stic.image.registry import load_image_codec

    needed = load_image_codec(str(local_image_model)).fingerprint().hex()
    data = pipeline.encode(fc.sample_image(40, 50), model=str(local_image_model), caption="x", text_coder="zlib", colour=False).data  # no x̂ decode (fixture)
    with pytest.raises(ModelMismatchError) as err:
        pipeline.decode(data)
    message = str(err.value)
    assert needed in message
    for name in shipped_models():  # and says which models it has instead
        assert f"{name} ({shipped_fingerprint(name).hex()})" in message


@pytest.fixture
def two_lm_dirs(tmp_path, monkeypatch):
    from tiny_lm import tiny_folder

    monkeypatch.setenv("STIC_CACHE", str(tmp_path / "cache"))  # the fingerprint table lives there
    return [tiny_folder(seed=seed) for seed in (0, 1)]


def test_caption_from_another_lm_is_refused_naming_the_lm_it_needs(two_lm_dirs, monkeypatch):
    made_with, other = two_lm_dirs
    caption = "A red barn in a green field."
    data = pipeline.encode(fc.sample_image(40, 50), quality=1, caption=caption, text_coder=f"lm:{made_with}").data
    assert pipeline.decode(data).caption == caption  # the right LM is found by its fingerprint

    def forbidden(self, *args, **kwargs):
        raise AssertionError("decoding started before the models were checked")

    monkeypatch.setattr(LearnedImageCodec, "decompress", forbidden)
    monkeypatch.setattr(ExactImageDecoder, "decompress", forbidden)
    with pytest.raises(ModelMismatchError, match=rf"coded with lm:{made_with} \(fingerprint [0-9a-f]{{8}}\), not with '{other}'"):
        pipeline.decode(data, text_model=str(other))


def test_caption_from_another_vlm_is_refused_before_xhat_is_decoded(tmp_path, monkeypatch):
    """vlm-xhat captions are decoded after x̂, but the VLM is checked before x̂ is decoded."""
    from tiny_vlm import save_tiny_llava

    made_with, other = (save_tiny_llava(tmp_path / f"vlm-{seed}", seed=seed) for seed in (0, 1))
    caption = "A red barn."
    data = pipeline.encode(fc.sample_image(40, 50), quality=1, caption=caption, text_coder=f"vlm-xhat:{made_with}").data
    assert pipeline.decode(data, text_model=str(made_with), refine=False).caption == caption

    def forbidden(self, *args, **kwargs):
        raise AssertionError("decoding started before the models were checked")

    monkeypatch.setattr(LearnedImageCodec, "decompress", forbidden)
    monkeypatch.setattr(ExactImageDecoder, "decompress", forbidden)
    with pytest.raises(ModelMismatchError, match=rf"coded with vlm-xhat and a model of fingerprint [0-9a-f]{{8}}, not with '{other}'"):
        pipeline.decode(data, text_model=str(other))
