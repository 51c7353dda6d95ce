"""End to end through the `stic` command: encode, info, decode, rate control and clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stic.cli import main
from stic.image.registry import shipped_models


@pytest.fixture
def photo(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path / "coffee.png"
    Image.fromarray(skimage_data.coffee()[:200, :300]).save(path)
    return path


def _encode(photo, tmp_path, *extra, refiner="none"):
    out = tmp_path / "c.stic"
    args = ["encode", str(photo), "-o", str(out), "--force", "--text-coder", "zlib", "--refiner", refiner, *extra]
    assert main(args) == 0
    return out


def test_encode_info_decode_round_trip(photo, tmp_path, capsys):
    out = _encode(photo, tmp_path, "--quality", "1", "--caption", "A cup of coffee on a table", refiner="realesrgan-compact")
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"]) == (300, 200)
    assert info["file_bytes"] == out.stat().st_size
    assert info["bpp"] == pytest.approx(8 * out.stat().st_size / (300 * 200))
    kinds = {s["kind"]: s for s in info["sections"]}
    assert set(kinds) == {"image", "caption", "refine", "colour"} and kinds["caption"]["codec"] == "zlib"
    assert kinds["colour"]["codec"] == "lab-affine" and kinds["colour"]["bytes"] == 12
    assert kinds["image"]["model"] == "stic-q1"  # named as encode named it, not by fingerprint
    assert info["header_overhead_bytes"] == info["file_bytes"] - sum(s["bytes"] for s in info["sections"])
    png = tmp_path / "d.png"
    assert main(["decode", str(out), "-o", str(png)]) == 0
    assert "caption: A cup of coffee on a table" in capsys.readouterr().out
    assert Image.open(png).size == (300, 200)


def test_outputs_are_never_overwritten_unasked_and_decoding_keeps_the_original(photo, tmp_path, capsys):
    out = _encode(photo, tmp_path, "--quality", "1")
    original = photo.read_bytes()
    png = photo.parent / "photo.png"
    png.write_bytes(original)  # the photo the .stic was made from, beside it
    stic_file = out.rename(photo.parent / "photo.stic")
    assert main(["decode", str(stic_file)]) == 0
    assert png.read_bytes() == original and (photo.parent / "photo.decoded.png").is_file()
    capsys.readouterr()
    assert main(["decode", str(stic_file)]) == 1  # the decoded file exists now
    assert "already exists (give --force" in capsys.readouterr().err
    assert main(["decode", str(stic_file), "--force"]) == 0
    before = stic_file.read_bytes()
    assert main(["encode", str(photo), "-o", str(stic_file), "--quality", "1"]) == 1
    assert stic_file.read_bytes() == before


def test_search_steps_change_the_image_payload_not_the_decoder(photo, tmp_path):
    plain = _encode(photo, tmp_path, "--quality", "1").read_bytes()
    searched_path = _encode(photo, tmp_path, "--quality", "1", "--search-steps", "3")
    assert searched_path.read_bytes() != plain
    png = tmp_path / "s.png"
    assert main(["decode", str(searched_path), "-o", str(png)]) == 0
    assert Image.open(png).size == (300, 200)


def test_bpp_picks_the_largest_model_that_fits(photo, tmp_path, capsys):
    rates = {}
    for quality in range(1, len(shipped_models()) + 1):
        out = _encode(photo, tmp_path, "--quality", str(quality))
        rates[quality] = 8 * out.stat().st_size / (300 * 200)
    assert list(rates.values()) == sorted(rates.values())
    # a target just above the middle model's real rate must choose exactly that model
    middle = (len(rates) + 1) // 2
    capsys.readouterr()
    out = _encode(photo, tmp_path, "--bpp", str(rates[middle] + 1e-6), "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["image_model"] == shipped_models()[middle - 1]
    assert result["bpp"] <= rates[middle] + 1e-6
    assert main(["encode", str(photo), "-o", str(tmp_path / "x.stic"), "--bpp", "0.0001"]) == 1
    assert "no model reaches 0.0001 bpp" in capsys.readouterr().err
    assert not (tmp_path / "x.stic").exists()


def test_decoding_is_identical_in_two_processes(photo, tmp_path):
    out = _encode(photo, tmp_path, "--quality", "1")
    pngs = []
    for run, threads in enumerate(["1", "2"]):
        png = tmp_path / f"p{run}.png"
        env = {"OMP_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1", "PATH": ""}
        subprocess.run([sys.executable, "-m", "stic.cli", "decode", str(out), "-o", str(png)], check=True, env=env)
        pngs.append(np.asarray(Image.open(png)))
    assert np.array_equal(pngs[0], pngs[1])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:-3] + bytes([b[-3] ^ 0x10]) + b[-2:], "CRC"),
        (lambda b: b[:3] + b"\x07" + b[4:], "unsupported .stic format version 7"),
        (lambda b: b"", "truncated"),
    ],
)
def test_damaged_files_fail_with_one_line(photo, tmp_path, capsys, damage, message):
    out = _encode(photo, tmp_path, "--quality", "1")
    out.write_bytes(damage(out.read_bytes()))
    capsys.readouterr()
    assert main(["decode", str(out), "-o", str(tmp_path / "d.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stic: error:") and message in err[0]
    assert not (tmp_path / "d.png").exists()


def test_file_from_unknown_weights_is_refused_naming_the_model(photo, tmp_path, capsys):
    from stic import container

    out = _encode(photo, tmp_path, "--quality", "1")
    parsed = container.read_file(out)
    image = parsed.section(container.SECTION_IMAGE)
    forged = container.Section(image.kind, image.codec_id, image.payload, b"\xde\xad\xbe\xef")
    container.write_file(out, parsed.width, parsed.height, [forged])
    assert main(["decode", str(out)]) == 1
    assert "deadbeef" in capsys.readouterr().err


def test_bad_inputs(tmp_path, capsys, photo):
    assert main(["encode", str(tmp_path / "missing.png")]) == 1
    assert "no such image file" in capsys.readouterr().err
    (tmp_path / "notes.png").write_text("not a picture")
    assert main(["encode", str(tmp_path / "notes.png")]) == 1
    assert "not an image file" in capsys.readouterr().err
    assert main(["encode", str(photo), "-o", str(tmp_path / "no" / "dir.stic"), "--text-coder", "zlib"]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert main(["encode", str(photo), "--caption-file", str(tmp_path / "latin1.txt"), "--text-coder", "zlib"]) == 1
    assert "not UTF-8" in capsys.readouterr().err


def test_building_the_parser_imports_no_torch():
    """`stic --help` and argument errors answer at once: torch (~2 s to import) loads only in the
    commands that need it."""
    code = "import sys, stic.cli; stic.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["encode", "x.png", "--bpp", "abc"], "--bpp: 'abc' is not a number"),
        (["encode", "x.png", "--bpp", "-1"], "--bpp: -1 is below"),
        (["encode", "x.png", "--quality", "0"], "--quality: 0 is below 1"),
        (["encode", "x.png", "--quality", "9"], "--quality must be 1..3"),
        (["encode", "x.png", "--search-steps", "-5"], "--search-steps: -5 is below 0"),
        (["encode", "x.png", "--max-side", "8"], "--max-side: 8 is below 16"),
        (["decode"], "required: input"),
    ],
)
def test_usage_errors_are_one_line_with_status_1(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stic: error: ") and "\n" not in err and needle in err


def test_decode_json_and_info_on_a_caption_only_file(photo, tmp_path, capsys):
    out = _encode(photo, tmp_path, "--quality", "1", "--caption", "A cup of coffee")
    png = tmp_path / "j.png"
    capsys.readouterr()
    assert main(["decode", str(out), "-o", str(png), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"output": str(png), "width": 300, "height": 200, "grey": False, "refiner": None,
                      "caption": "A cup of coffee"}
    caption_only = tmp_path / "t.stic"
    assert main(["text", "encode", "Two dogs.", "-o", str(caption_only), "--coder", "zlib"]) == 0
    capsys.readouterr()
    assert main(["info", str(caption_only)]) == 0
    assert "caption only" in capsys.readouterr().out


def test_the_readme_snippet_makes_the_same_file_as_the_readme_command(photo, tmp_path):
    """One set of defaults: `stic encode photo --bpp 0.03 --caption ...` and the README's Python
    snippet write identical bytes (refiner, caption coder and model choice included)."""
    import stic.pipeline as sp
    from stic.image.io import load_image

    caption = "A red barn in a green field"
    out = tmp_path / "cli.stic"
    assert main(["encode", str(photo), "-o", str(out), "--bpp", "0.2", "--caption", caption]) == 0
    encoded = sp.encode(load_image(photo), bpp=0.2, caption=caption)
    assert encoded.data == out.read_bytes()
    refines = sp.default_refiner(encoded.image_model) != "identity"
    assert (encoded.file.section(3) is not None) == refines  # the model's own refiner, as in the CLI
    assert sp.encode(load_image(photo), quality=1).file.section(3) is not None  # stic-q1's is realesrgan-stic


def test_bpp_far_above_or_below_the_ladder_says_so(photo, tmp_path, capsys):
    out = tmp_path / "x.stic"
    assert main(["encode", str(photo), "-o", str(out), "--bpp", "5", "--refiner", "none"]) == 0
    assert "far below the 5 bpp target" in capsys.readouterr().err
    assert main(["encode", str(photo), "-o", str(out), "--force", "--bpp", "0.0001"]) == 1
    err = capsys.readouterr().err
    assert "raise the target" in err and "caption" not in err  # there is none to drop


def test_step_codes_finer_with_a_quality_and_not_with_bpp(photo, tmp_path, capsys):
    from stic.container import read_file
    from stic.fileinfo import describe

    plain, finer = tmp_path / "plain.stic", tmp_path / "finer.stic"
    assert main(["encode", str(photo), "-o", str(plain), "--quality", "1", "--refiner", "none"]) == 0
    assert main(["encode", str(photo), "-o", str(finer), "--quality", "1", "--step", "16", "--refiner", "none"]) == 0
    assert describe(read_file(finer))["sections"][0]["step"] == 16
    assert finer.stat().st_size > plain.stat().st_size
    capsys.readouterr()
    assert main(["encode", str(photo), "-o", str(tmp_path / "x.stic"), "--bpp", "0.05", "--step", "3"]) == 1
    assert "--bpp picks the quantisation step itself" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["encode", str(photo), "--quality", "1", "--step", "-1"])
