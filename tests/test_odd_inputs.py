"""Odd inputs end to end through `stic encode` / `stic decode` / `stic eval`: each either works or
fails with one clear line, and no failure leaves an output file (or a temporary one) behind."""

import csv
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stic.cli import main
from stic.image.io import load_image
from stic.picture import is_grey


def _gradient(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 7 % 256, y * 5 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


def _exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: 40x24 stored, 24x40 displayed
    return Image.fromarray(_gradient(24, 40)), {"exif": exif, "quality": 95}


#: name -> (image, save options, size after loading (width, height), a warning stic prints)
WORKS = {
    "grey.png": (Image.fromarray(_gradient(30, 50)[:, :, 0]), {}, (50, 30), None),
    "grey-alpha.png": (Image.merge("LA", [Image.fromarray(_gradient(30, 50)[:, :, 0])] * 2), {}, (50, 30), "alpha channel dropped"),
    "rgba.png": (Image.fromarray(np.dstack([_gradient(30, 50), np.full((30, 50), 128, np.uint8)])), {}, (50, 30), "alpha channel dropped"),
    "palette.png": (Image.fromarray(_gradient(30, 50)).convert("P"), {}, (50, 30), None),
    "16bit.png": (Image.fromarray(_gradient(30, 50)[:, :, 0].astype(np.uint16) * 257), {}, (50, 30), None),
    "cmyk.jpg": (Image.fromarray(_gradient(30, 50)).convert("CMYK"), {"quality": 95}, (50, 30), None),
    "progressive.jpg": (Image.fromarray(_gradient(30, 50)), {"progressive": True, "quality": 90}, (50, 30), None),
    "exif-rotated.jpg": (*_exif_rotated(), (24, 40), None),
    "1x1.png": (Image.new("RGB", (1, 1), (200, 10, 30)), {}, (1, 1), None),
    "1x4000.png": (Image.fromarray(_gradient(4000, 1)), {}, (1, 4000), None),
    "65x37.png": (Image.fromarray(_gradient(37, 65)), {}, (65, 37), None),
    "129x100.webp": (Image.fromarray(_gradient(100, 129)), {"lossless": True}, (129, 100), None),
}  # fmt: skip


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with no pixel data at all: if stic refuses it
    with a size message, it did so from the header, without allocating or decoding anything."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # does not compress
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


#: name -> (file bytes, what the one error line says)
FAILS = {
    "8000x8000.png": (_png_header_only(8000, 8000), "stic codes at most 16,777,216 pixels"),
    "1x16385.png": (_png_header_only(1, 16385), "sides of at most 16384 pixels"),
    "empty.png": (b"", "is not an image file stic can read"),
    "notes.png": (b"these are my notes, not a picture\n", "is not an image file stic can read"),
    "cut.png": (_truncated_png(), "truncated or corrupt"),
}


def _one_error_line(capsys, expected: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("stic: error:")]
    assert len(errors) == 1 and expected in errors[0], err
    assert all(line.startswith("stic: warning:") for line in err if line not in errors), err


def _no_leftovers(folder, *allowed):
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(allowed), left


@pytest.mark.parametrize("name", list(WORKS))
def test_odd_image_encodes_and_decodes(tmp_path, capsys, name):
    image, options, size, warning = WORKS[name]
    source = tmp_path / name
    image.save(source, **options)
    out, png = tmp_path / "x.stic", tmp_path / "x.png"
    code = main(["encode", str(source), "-o", str(out), "--quality", "1", "--caption", "odd", "--text-coder", "zlib", "--refiner", "none"])
    err = capsys.readouterr().err
    assert code == 0, err
    if warning:
        assert f"stic: warning: {source}: {warning}" in err
    assert main(["decode", str(out), "-o", str(png)]) == 0
    decoded = Image.open(png)
    grey = is_grey(load_image(source))  # grey in, grey out
    assert decoded.size == size and decoded.mode == ("L" if grey else "RGB")
    _no_leftovers(tmp_path, name, "x.stic", "x.png")


@pytest.mark.parametrize("name", list(FAILS))
def test_unusable_input_fails_clearly_and_writes_nothing(tmp_path, capsys, name):
    data, message = FAILS[name]
    (tmp_path / name).write_bytes(data)
    assert main(["encode", str(tmp_path / name), "-o", str(tmp_path / "x.stic")]) == 1
    _one_error_line(capsys, message)
    _no_leftovers(tmp_path, name)


@pytest.fixture
def small_stic(tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray(_gradient(40, 70)).save(source)
    out = tmp_path / "in.stic"
    assert main(["encode", str(source), "-o", str(out), "--quality", "1", "--text-coder", "zlib", "--refiner", "none"]) == 0
    return out


def test_output_in_a_missing_folder(tmp_path, capsys, small_stic):
    assert main(["decode", str(small_stic), "-o", str(tmp_path / "missing" / "x.png")]) == 1
    _one_error_line(capsys, "output folder does not exist")
    assert main(["encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "missing" / "x.stic")]) == 1
    _one_error_line(capsys, "output folder does not exist")
    _no_leftovers(tmp_path, "in.png", "in.stic")


def test_output_in_a_read_only_folder(tmp_path, capsys, small_stic):
    # /sys refuses new files even to root (this suite may run as root, which ignores chmod)
    assert main(["decode", str(small_stic), "-o", "/sys/x.png"]) == 1
    _one_error_line(capsys, "cannot write to /sys")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            return  # root: the chmod case cannot be shown here
        assert main(["decode", str(small_stic), "-o", str(locked / "x.png")]) == 1
        _one_error_line(capsys, f"cannot write to {locked}")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_output_path_is_a_folder(tmp_path, capsys, small_stic):
    (tmp_path / "taken").mkdir()
    assert main(["decode", str(small_stic), "-o", str(tmp_path / "taken")]) == 1
    _one_error_line(capsys, f"cannot write {tmp_path / 'taken'}")
    _no_leftovers(tmp_path, "in.png", "in.stic", "taken")


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path, capsys, small_stic, monkeypatch):
    import stic.container

    target = tmp_path / "out.png"
    target.write_bytes(b"the previous output")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stic.container.os, "replace", disk_full)
    assert main(["decode", str(small_stic), "-o", str(target)]) == 1
    _one_error_line(capsys, "already exists (give --force")  # nothing is overwritten unasked
    assert main(["decode", str(small_stic), "-o", str(target), "--force"]) == 1
    _one_error_line(capsys, "No space left on device")
    assert target.read_bytes() == b"the previous output"
    _no_leftovers(tmp_path, "in.png", "in.stic", "out.png")


def test_input_stic_that_is_missing_empty_or_a_folder(tmp_path, capsys):
    assert main(["decode", str(tmp_path / "gone.stic")]) == 1
    _one_error_line(capsys, "no such file")
    (tmp_path / "empty.stic").write_bytes(b"")
    assert main(["decode", str(tmp_path / "empty.stic")]) == 1
    _one_error_line(capsys, "truncated file: magic needs 3 bytes at offset 0")
    assert main(["info", str(tmp_path)]) == 1
    _one_error_line(capsys, "is a directory")
    _no_leftovers(tmp_path, "empty.stic")


def test_eval_over_a_folder_of_odd_files_including_one_that_vanishes(tmp_path, capsys, monkeypatch):
    """Every image gets a row: measured, unreachable at the target, or failed with a stic error
    (a text file named .png, an empty file, a file deleted after the run was planned)."""
    from stic.eval import harness

    data = tmp_path / "data"
    data.mkdir()
    for name in ("grey.png", "rgba.png", "1x1.png", "65x37.png", "cmyk.jpg"):
        image, options, _, _ = WORKS[name]
        image.save(data / name, **options)
    (data / "notes.png").write_bytes(FAILS["notes.png"][0])
    (data / "empty.png").write_bytes(b"")
    Image.fromarray(_gradient(20, 20)).save(data / "vanishing.png")
    real_run_task = harness.run_task

    def vanish_then_run(task, *args, **kwargs):
        (data / "vanishing.png").unlink(missing_ok=True)
        return real_run_task(task, *args, **kwargs)

    monkeypatch.setattr(harness, "run_task", vanish_then_run)
    out = tmp_path / "eval"
    args = ["eval", "--data", str(data), "--out", str(out), "--codecs", "stic", "--bpp", "2", "--metrics", "psnr", "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    with open(out / "per_image.csv", newline="") as handle:
        rows = {row["image"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {p.name for p in data.iterdir()} | {"vanishing.png"}
    expected_failures = {"notes.png": "not an image file", "empty.png": "not an image file", "vanishing.png": "no such image file"}
    for name, row in rows.items():
        if name in expected_failures:
            assert row["status"] == "failed" and row["note"].startswith("InputError:") and expected_failures[name] in row["note"]
        else:
            assert row["status"] in ("ok", "unreachable"), row
    assert rows["65x37.png"]["status"] == "ok" and float(rows["65x37.png"]["psnr"]) > 10
    assert (out / "report.md").is_file()
    assert not [p for p in out.rglob("*.tmp")]
