"""`stic text encode|decode|bench` and the text coder registry: round trips, model checks, bad input."""

import io
import json
import sys
from pathlib import Path

import pytest

from stic import codecs
from stic.cli import main
from stic.container import SECTION_CAPTION, read_file
from stic.errors import FormatError, InputError, ModelMismatchError
from stic.text import registry

CAPTION = " The image features a red barn with a white roof, surrounded by a lush green field. 🐄"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own cache: the fingerprint table starts empty."""
    monkeypatch.setenv("STIC_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two different tiny LMs saved as local model directories (what --model accepts)."""
    from tiny_lm import tiny_folder

    return [str(tiny_folder(seed=seed)) for seed in (0, 1)]


def _stic(capsys, *argv):
    code = main(["text", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *needles):
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("stic: error: ")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]) and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0]


@pytest.mark.parametrize("coder", ["raw", "zlib", "bz2", "lzma", "brotli", "zstd"])
def test_encode_decode_round_trip(tmp_path, capsys, coder):
    path = tmp_path / "caption.stic"
    code, out, _ = _stic(capsys, "encode", CAPTION, "-o", str(path), "--coder", coder)
    assert code == 0 and "bits/char" in out
    parsed = read_file(path)
    assert (parsed.width, parsed.height) == (0, 0)
    assert [s.kind for s in parsed.sections] == [SECTION_CAPTION]
    assert codecs.TEXT_CODEC_NAMES[parsed.sections[0].codec_id] == coder
    target = tmp_path / "caption.txt"
    assert _stic(capsys, "decode", str(path), "-o", str(target))[0] == 0
    assert target.read_bytes() == CAPTION.encode()
    code, out, _ = _stic(capsys, "decode", str(path))
    assert code == 0 and out == CAPTION


def test_stdin_is_coded_byte_exactly(tmp_path, capsys, monkeypatch):
    text = "line one\r\nline two 🌍\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    path = tmp_path / "stdin.stic"
    assert _stic(capsys, "encode", "-", "-o", str(path), "--coder", "zlib")[0] == 0
    assert _stic(capsys, "decode", str(path))[1] == text


def test_non_utf8_stdin_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9 latin-1")))
    path = tmp_path / "bad.stic"
    code, _, err = _stic(capsys, "encode", "-", "-o", str(path), "--coder", "zlib")
    _one_line_error(code, err, "standard input is not UTF-8")
    assert not path.exists()


def test_truncated_and_bit_flipped_files_are_refused(tmp_path, capsys):
    path = tmp_path / "c.stic"
    _stic(capsys, "encode", CAPTION, "-o", str(path), "--coder", "brotli")
    data = path.read_bytes()
    for name, bad in {
        "truncated": data[:-5],
        "flipped": data[:-4] + bytes([data[-4] ^ 0x10]) + data[-3:],
        "empty": b"",
    }.items():
        broken = tmp_path / f"{name}.stic"
        broken.write_bytes(bad)
        code, out, err = _stic(capsys, "decode", str(broken))
        _one_line_error(code, err, str(broken))
        assert out == ""


def test_missing_file_and_unknown_coder_are_one_line_errors(tmp_path, capsys):
    code, _, err = _stic(capsys, "decode", str(tmp_path / "nope.stic"))
    _one_line_error(code, err, "no such file")
    code, _, err = _stic(capsys, "encode", "x", "-o", str(tmp_path / "x.stic"), "--coder", "gzip")
    _one_line_error(code, err, "unknown text coder 'gzip'", "zstd-dict")


def test_image_file_without_caption_is_refused(tmp_path, capsys):
    from stic.container import SECTION_IMAGE, Section, write_file

    path = tmp_path / "image-only.stic"
    write_file(path, 4, 4, [Section(SECTION_IMAGE, 1, b"bits")])
    _one_line_error(*_stic(capsys, "decode", str(path))[::2], "no caption section")


def test_lm_coders_round_trip_and_need_their_model(tmp_path, capsys, tiny_models):
    model_a, model_b = tiny_models
    for coder in ("rank-zlib", "lm"):
        path = tmp_path / f"{coder}.stic"
        code, out, _ = _stic(capsys, "encode", CAPTION, "-o", str(path), "--coder", coder, "--model", model_a)
        assert code == 0, out
        # the fingerprint table now knows model_a: no --model needed to decode
        assert _stic(capsys, "decode", str(path))[1] == CAPTION
        code, _, err = _stic(capsys, "decode", str(path), "--model", model_b)
        _one_line_error(code, err, "coded with", str(Path(model_a).resolve()), "not with")


def test_adapt_trains_a_prefix_that_encode_and_decode_use(tmp_path, capsys, tiny_models):
    from tiny_lm import CORPUS

    corpus = tmp_path / "captions.txt"
    corpus.write_text("\n".join(CORPUS) + "\n\n")
    prefix = tmp_path / "prefix.safetensors"
    code, out, err = _stic(
        capsys, "adapt", str(corpus), "-o", str(prefix), "--model", tiny_models[0],
        "--length", "4", "--steps", "3",
    )  # fmt: skip
    assert code == 0, err
    assert "prefix of 4 positions" in out and "trained on 18 captions; held-out 2" in out
    path = tmp_path / "tuned.stic"
    args = ("--model", tiny_models[0], "--prefix", str(prefix))
    assert _stic(capsys, "encode", CAPTION, "-o", str(path), *args)[0] == 0
    assert _stic(capsys, "decode", str(path), *args)[1] == CAPTION
    code, _, err = _stic(capsys, "decode", str(path), "--model", tiny_models[0])
    _one_line_error(code, err, "coded with")  # without the prefix it cannot be decoded
    code, _, err = _stic(capsys, "decode", str(path), "--model", tiny_models[1], "--prefix", str(prefix))
    _one_line_error(code, err, "another language model")
    code, _, err = _stic(capsys, "adapt", str(tmp_path / "c.csv"), "-o", str(prefix))
    _one_line_error(code, err, "--column")

    # the image pipeline takes the same prefix
    import numpy as np
    from PIL import Image

    photo, coded, png = tmp_path / "p.png", tmp_path / "p.stic", tmp_path / "d.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(photo)
    lm_coder = ("--text-coder", f"lm:{tiny_models[0]}")
    assert main(["encode", str(photo), "-o", str(coded), "--caption", CAPTION, "--refiner", "none",
                 *lm_coder, "--text-prefix", str(prefix)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["decode", str(coded), "-o", str(png), "--text-model", tiny_models[0], "--text-prefix", str(prefix)]) == 0
    assert CAPTION in capsys.readouterr().out
    assert main(["decode", str(coded), "-o", str(png), "--text-model", tiny_models[0]]) == 1
    assert main(["encode", str(photo), "-o", str(coded), "--text-coder", "zlib", "--text-prefix", str(prefix)]) == 1


def test_a_caption_coded_with_another_named_preamble_still_decodes(tmp_path, capsys, tiny_models):
    from stic.container import Section, write_file
    from stic.text.lm import load_lm
    from stic.text.lm_coder import LMArithmeticCoder

    coder = LMArithmeticCoder(load_lm(tiny_models[0]), preamble="plain")  # not the default
    path = tmp_path / "plain.stic"
    write_file(path, 0, 0, [Section(SECTION_CAPTION, coder.codec_id, coder.encode(CAPTION), coder.fingerprint())])
    assert _stic(capsys, "decode", str(path), "--model", tiny_models[0])[1] == CAPTION


def test_registry_names_and_errors():
    assert registry.list_text_coders()[:7] == ["raw", "zlib", "bz2", "lzma", "brotli", "zstd", "zstd-dict"]
    assert registry.get_text_coder("brotli").codec_id == codecs.TEXT_BROTLI
    with pytest.raises(InputError, match="takes no model"):
        registry.get_text_coder("zlib:smollm2-135m")
    with pytest.raises(FormatError, match="unknown codec id 99"):
        registry.text_coder_for_section(99, b"")
    with pytest.raises(FormatError, match="fingerprint"):
        registry.text_coder_for_section(codecs.TEXT_ZLIB, b"abcd")
    with pytest.raises(FormatError, match="without a model fingerprint"):
        registry.text_coder_for_section(codecs.TEXT_RANK_ZLIB, b"")
    assert registry.text_coder_for_section(codecs.TEXT_LZMA, b"").name == "lzma"
    assert registry.text_coder_for_section(codecs.TEXT_LZMA, b"", model="smollm2-135m").name == "lzma"


def test_registry_refuses_a_zstd_dictionary_it_does_not_have(shared_data):
    if not (shared_data / "coco_mini" / "captions_val2017.json").is_file():
        pytest.skip("COCO caption corpus not found: zstd-dict cannot be built")
    coder = registry.text_coder_for_section(codecs.TEXT_ZSTD_DICT, registry.get_text_coder("zstd-dict").fingerprint())
    assert coder.decode(coder.encode(CAPTION)) == CAPTION
    with pytest.raises(ModelMismatchError, match="zstd dictionary of fingerprint 00000000"):
        registry.text_coder_for_section(codecs.TEXT_ZSTD_DICT, b"\0\0\0\0")


def test_registry_names_an_unknown_model_by_fingerprint(monkeypatch, tiny_models):
    import stic.text.lm as lm

    monkeypatch.setattr(registry, "default_model", lambda: tiny_models[1])
    monkeypatch.setattr(lm, "OFFLINE_MODELS", {})
    with pytest.raises(ModelMismatchError, match=r"unknown language model \(fingerprint 01020304\)"):
        registry.text_coder_for_section(codecs.TEXT_LM_EXACT, b"\x01\x02\x03\x04")


def test_float_engine_files_say_which_machine_class_reads_them(monkeypatch, tiny_models):
    import stic.text.lm as lm

    monkeypatch.setattr(registry, "default_model", lambda: tiny_models[0])
    monkeypatch.setattr(lm, "OFFLINE_MODELS", {})
    coder = registry.get_text_coder(f"lm-float:{tiny_models[0]}")
    assert coder.codec_id == codecs.TEXT_LM_FLOAT and coder.name.startswith("lm-float:")
    data = coder.encode(CAPTION)
    assert registry.text_coder_for_section(coder.codec_id, coder.fingerprint()).decode(data) == CAPTION
    here = lm.machine_class()
    other = next(m for m in lm.MACHINE_CLASSES if m != here)
    from_elsewhere = registry._coder_fingerprint(coder.lm, other)
    with pytest.raises(ModelMismatchError, match=f"kernel class '{other}'.*this machine: '{here}'"):
        registry.text_coder_for_section(codecs.TEXT_LM_FLOAT, from_elsewhere)


def test_stic_0_1_float_captions_are_refused_with_the_version_that_reads_them():
    with pytest.raises(FormatError, match="stic 0.1.0"):
        registry.text_coder_for_section(codecs.TEXT_LM_ARITHMETIC, b"\x01\x02\x03\x04")


def test_bench_reports_every_method(tmp_path, capsys, tiny_models):
    csv_path = tmp_path / "captions.csv"
    csv_path.write_text('name,text\na,"A red barn, a field."\nb,\nc,"Two dogs 🐕 on a porch."\n', encoding="utf-8")
    out_json = tmp_path / "bench.json"
    methods = ["raw", "zlib", "brotli", f"rank-zlib:{tiny_models[0]}", "lm:/no/such/model"]
    code, out, _ = _stic(capsys, "bench", str(csv_path), "--column", "text", "--json", str(out_json), "--no-progress", "--methods", *methods)
    assert code == 0
    report = json.loads(out_json.read_text())
    results = {r["method"]: r for r in report["results"]}
    assert results["raw"]["bits_per_char"] == pytest.approx(8 * len("A red barn, a field.Two dogs 🐕 on a porch.".encode()) / 42)
    assert results["raw"]["saving_vs_raw"] == 0
    for method in methods[:4]:
        assert results[method]["texts"] == 2 and results[method]["round_trip_ok"]
        assert results[method]["total_bits"] == sum(r["bits"] for r in results[method]["per_text"])
    assert "skipped" in results["lm:/no/such/model"]
    assert "zlib" in out and "skipped" in out


def test_bench_unknown_column_is_an_error(tmp_path, capsys):
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("a,b\n1,2\n")
    _one_line_error(*_stic(capsys, "bench", str(csv_path), "--column", "text")[::2], "no column 'text'", "a, b")
