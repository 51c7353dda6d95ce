"""VLM caption coding: exact round trips text-only and conditioned on x̂, with a tiny random LLaVA."""

import numpy as np
import pytest
from tiny_vlm import save_tiny_llava

from stic import codecs
from stic.errors import FormatError
from stic.models.vlm import load_vlm
from stic.text.protocol import TextCoder
from stic.text.vlm_coder import VLMArithmeticCoder

CAPTIONS = [
    "The image features a red barn with a white roof, surrounded by a lush green field.",
    "",
    "emoji 🌍 and 中文, <image> spelled out",
]


def _image(seed: int, shape=(40, 72, 3)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return load_vlm(str(save_tiny_llava(tmp_path_factory.mktemp("llava"))))


@pytest.mark.parametrize("text", CAPTIONS)
def test_round_trip_text_only(vlm, text):
    coder = VLMArithmeticCoder(vlm)
    assert isinstance(coder, TextCoder) and coder.codec_id == codecs.TEXT_VLM_ARITHMETIC
    assert VLMArithmeticCoder(vlm).decode(coder.encode(text)) == text


@pytest.mark.parametrize("text", CAPTIONS)
def test_round_trip_conditioned_on_xhat(vlm, text):
    xhat = _image(1)
    coder = VLMArithmeticCoder(vlm, xhat)
    assert coder.codec_id == codecs.TEXT_VLM_XHAT_ARITHMETIC
    data = coder.encode(text)
    assert VLMArithmeticCoder(vlm, xhat.copy()).decode(data) == text  # a fresh decoder, same x̂


def test_xhat_changes_the_model_and_the_bits(vlm):
    text = CAPTIONS[0]
    plain = VLMArithmeticCoder(vlm).encode_measured(text)
    seen = VLMArithmeticCoder(vlm, _image(1)).encode_measured(text)
    other = VLMArithmeticCoder(vlm, _image(2)).encode_measured(text)
    assert len({plain.ideal_bits, seen.ideal_bits, other.ideal_bits}) == 3
    # decoding with another x̂ than the encoder's cannot give back the caption
    try:
        wrong = VLMArithmeticCoder(vlm, _image(2)).decode(seen.data)
    except FormatError:
        wrong = None
    assert wrong != text


def test_fingerprint_names_mode_and_model_not_xhat(vlm, tmp_path):
    plain = VLMArithmeticCoder(vlm).fingerprint()
    conditioned = VLMArithmeticCoder(vlm, _image(1)).fingerprint()
    assert len(plain) == len(conditioned) == 4 and plain != conditioned
    assert VLMArithmeticCoder(vlm, _image(2, (30, 30, 3))).fingerprint() == conditioned
    assert VLMArithmeticCoder(vlm, prompt="Caption:").fingerprint() != plain
    other = load_vlm(str(save_tiny_llava(tmp_path / "other", seed=1)))
    assert VLMArithmeticCoder(other).fingerprint() != plain


@pytest.mark.parametrize("method", ["vlm", "vlm-xhat"])
def test_eval_rows_with_a_vlm_caption_coder_decode(tmp_path, method):
    """`stic eval --text-coder vlm:M`: the decoder is told the VLM (a file cannot name it)."""
    from stic.eval.codecs import SticRunner

    folder = save_tiny_llava(tmp_path / "llava")
    runner = SticRunner(_image(3, (64, 96, 3)), "A red barn.", {"text_coder": f"{method}:{folder}", "refiner": None})
    outcome = runner(2.0)
    assert outcome.status == "ok", outcome.note
    assert outcome.caption_bytes > 0


#: every VLM family the docs name, with an image size its tiny processor takes
FAMILIES = {"llava": (40, 72, 3), "llava_next": (40, 72, 3), "qwen2_vl": (56, 56, 3), "qwen2_5_vl": (56, 56, 3),
            "idefics3": (32, 32, 3)}  # fmt: skip


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_caption_then_code_then_a_fresh_decoder_reads_it(tmp_path, family):
    """The paper's "one LMM" flow for each family: the VLM captions the image (an image prefill in
    the same model object: Qwen2-VL/2.5-VL keep M-RoPE offsets on the model), then codes the caption
    text-only and seeing x̂; a freshly loaded decoder must read both streams."""
    import tiny_vlm

    from stic.caption.vlm import VLMCaptioner

    folder = str(getattr(tiny_vlm, f"save_tiny_{family}")(tmp_path / family))
    vlm, image, text = load_vlm(folder), _image(5, FAMILIES[family]), CAPTIONS[0]
    before = VLMArithmeticCoder(vlm).encode(text)
    caption = VLMCaptioner(vlm, max_new_tokens=3).caption(image).text  # an image prefill in the same model
    conditioned = VLMArithmeticCoder(vlm, image).encode(text)
    after = VLMArithmeticCoder(vlm).encode(text)
    assert after == before
    fresh = load_vlm(folder)
    assert VLMArithmeticCoder(fresh).decode(after) == text
    assert VLMArithmeticCoder(fresh, image).decode(conditioned) == text
    assert VLMArithmeticCoder(fresh).decode(VLMArithmeticCoder(vlm).encode(caption)) == caption


def test_the_fingerprint_covers_the_image_processor(tmp_path):
    folder = save_tiny_llava(tmp_path / "llava")
    first = load_vlm(str(folder)).fingerprint()
    import json

    config = folder / "preprocessor_config.json"  # transformers 4; 5 nests it in processor_config.json
    if config.is_file():
        settings = json.loads(config.read_text())
        settings["image_mean"] = [0.5, 0.5, 0.5]
    else:
        config = folder / "processor_config.json"
        settings = json.loads(config.read_text())
        settings["image_processor"]["image_mean"] = [0.5, 0.5, 0.5]
    config.write_text(json.dumps(settings))
    assert load_vlm(str(folder)).fingerprint() != first  # a mismatch, not "corrupt", at decode


def test_registry_names_and_sections_resolve_vlm_coders_and_a_caption_only_xhat_section_is_refused(tmp_path, capsys):
    """`vlm:`/`vlm-xhat:` names and sections go through the text registry like every coder; the
    x̂-conditioned one waits for x̂ (`needs_image`), which a caption-only file cannot give."""
    from stic.cli import main
    from stic.container import SECTION_CAPTION, Section, write_file
    from stic.text.registry import get_text_coder, text_coder_for_section

    folder = str(save_tiny_llava(tmp_path / "llava"))
    plain, pending = get_text_coder(f"vlm:{folder}"), get_text_coder(f"vlm-xhat:{folder}")
    assert not getattr(plain, "needs_image", False) and pending.needs_image
    image = _image(3)
    data = pending.given_image(image).encode(CAPTIONS[0])
    found = text_coder_for_section(pending.codec_id, pending.fingerprint(), model=folder)
    assert found.needs_image and found.given_image(image).decode(data) == CAPTIONS[0]
    path = tmp_path / "caption.stic"
    write_file(path, 0, 0, [Section(SECTION_CAPTION, pending.codec_id, data, pending.fingerprint())])
    assert main(["text", "decode", str(path), "--model", folder]) == 1
    assert "coded seeing the decoded image" in capsys.readouterr().err
