"""SticPipeline: stic's parts as objects you hold. Its files are the module functions' (and so the
CLI's) files; decoding uses a held part wherever the file names it and the registries otherwise."""

import fuzz_cases as fc
import numpy as np
import pytest
import torch

from stic import pipeline
from stic.caption.registry import make_captioner
from stic.errors import ModelMismatchError
from stic.image.architectures import build_model
from stic.image.registry import load_image_codec
from stic.pipeline import SticPipeline
from stic.refine.registry import get_refiner
from stic.text.registry import get_text_coder

IMAGE = fc.sample_image(64, 96, 11)


def test_default_parts_write_the_module_functions_bytes():
    held = SticPipeline().encode(IMAGE, quality=1, caption="A test card.")
    assert held.data == pipeline.encode(IMAGE, quality=1, caption="A test card.").data
    assert np.array_equal(SticPipeline().decode(held.data).image, pipeline.decode(held.data).image)


def test_held_parts_are_used_where_the_file_names_them(monkeypatch):
    coder, refiner = get_text_coder("zlib"), get_refiner("realesrgan-stic")
    parts = SticPipeline(text_coder=coder, captioner=make_captioner(text="A held caption."), refiner=refiner)
    encoded = parts.encode(IMAGE, quality=1)  # the held captioner writes the caption
    assert encoded.caption == "A held caption."
    monkeypatch.setattr(pipeline, "text_coder_for_section", lambda *a, **k: pytest.fail("registry asked for the coder"))
    decoded = parts.decode(encoded.data)
    assert decoded.caption == "A held caption." and decoded.refiner == "realesrgan-stic"


def test_a_held_image_model_decodes_its_files(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build_model({"architecture": "mbt2018-mean", "N": 8, "M": 8})
    model.update(force=True)
    folder = tmp_path / "tiny"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model": {"architecture": "mbt2018-mean", "N": 8, "M": 8}}')
    parts = SticPipeline(image_codec=load_image_codec(str(folder)), refiner=None)
    encoded = parts.encode(IMAGE)
    with pytest.raises(ModelMismatchError):
        pipeline.decode(encoded.data)  # the registries know only the shipped models
    assert parts.decode(encoded.data).image.shape == IMAGE.shape
    assert SticPipeline.from_pretrained(str(folder), refiner="none").decode(encoded.data).image.shape == IMAGE.shape
