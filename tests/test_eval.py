"""`stic eval`: CSV rows under the one bit-accounting rule, resume, recorded failures, reports,
BD-rate rules, captions, the CLI, and (when Ray is installed) the same CSV from a local Ray."""

import argparse
import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stic.errors import InputError
from stic.eval import harness
from stic.eval.bdrate import bd_rate
from stic.eval.dataset import caption_for, read_captions
from stic.eval.harness import EvalConfig, run_eval
from stic.eval.report import write_report

TIMING = {"encode_s", "decode_s"}


def _folder(tmp_path, count=2):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:96]
    for index in range(count):
        base = np.stack([x * 2 + 40 * index, y * 3, (x + y) + 20], axis=2) + rng.normal(
            0, 6, (64, 96, 3)
        )
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(
            folder / f"img{index}.png"
        )
    return folder


def _config(tmp_path, folder, **changes):
    options = {
        "data": folder,
        "codecs": ["jpeg", "jp2"],
        "targets": [1.0, 4.0],
        "out": tmp_path / "out",
        "metrics": ["psnr"],
    }
    options.update(changes)
    return EvalConfig(**options)


def _rows(out):
    with open(out / "per_image.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_writes_one_row_per_image_codec_target_with_real_sizes(tmp_path):
    folder = _folder(tmp_path)
    run_eval(
        _config(tmp_path, folder, targets=[0.05, 1.0, 4.0], keep_decoded=True),
        progress=False,
    )
    rows = _rows(tmp_path / "out")
    assert len(rows) == 2 * 2 * 3
    by_key = {(r["image"], r["codec"], float(r["target_bpp"])): r for r in rows}
    assert by_key[("img0.png", "jpeg", 0.05)]["status"] == "unreachable"
    assert "jpeg cannot reach 0.05 bpp" in by_key[("img0.png", "jpeg", 0.05)]["note"]
    for row in rows:
        if row["status"] == "ok":
            assert float(row["bpp"]) == pytest.approx(
                8 * int(row["file_bytes"]) / (64 * 96), rel=1e-5
            )
            assert float(row["bpp"]) <= float(row["target_bpp"])
            assert float(row["psnr"]) > 15
    decoded = tmp_path / "out" / "decoded" / "jp2" / "4" / "img1.png"
    assert np.asarray(Image.open(decoded)).shape == (64, 96, 3)


def test_resume_skips_finished_results_and_redoes_missing_ones(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    config = _config(tmp_path, folder)
    run_eval(config, progress=False)
    first = _rows(config.out)
    assert not harness.plan(config)[0]  # nothing left to do
    # drop one row, ask for one more metric on jpeg only: exactly those results are redone
    with open(config.out / "per_image.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, first[0].keys())
        writer.writeheader()
        writer.writerows(first[1:])
    calls = []
    original = harness.run_task
    monkeypatch.setattr(
        harness,
        "run_task",
        lambda task, *a: (
            calls.append((task.image, task.codec, task.targets)) or original(task, *a)
        ),
    )
    run_eval(config, progress=False)
    assert calls == [
        (first[0]["image"], first[0]["codec"], [float(first[0]["target_bpp"])])
    ]
    strip = lambda rows: sorted(
        tuple((k, v) for k, v in r.items() if k not in TIMING) for r in rows
    )
    assert strip(_rows(config.out)) == strip(first)


def test_a_bad_image_is_recorded_and_the_run_continues(tmp_path):
    folder = _folder(tmp_path)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    run_eval(_config(tmp_path, folder), progress=False)
    rows = _rows(tmp_path / "out")
    broken = [r for r in rows if r["image"] == "broken.png"]
    assert len(broken) == 4 and all(
        r["status"] == "failed" and r["note"] for r in broken
    )
    assert sum(r["status"] == "ok" for r in rows) == 8
    report = write_report(tmp_path / "out").read_text()
    assert (
        "## Failures" in report and "2 images," in report
    )  # the unreadable file is not counted
    assert "![PSNR (dB, RGB) ↑](rd_psnr.png)" in report


def test_bad_setups_fail_before_running(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        run_eval(_config(tmp_path, empty), progress=False)
    folder = _folder(tmp_path)
    with pytest.raises(InputError, match="unknown codec"):
        run_eval(_config(tmp_path, folder, codecs=["jpeg", "bpg"]), progress=False)
    with pytest.raises(InputError, match="unknown metric"):
        run_eval(_config(tmp_path, folder, metrics=["ssim"]), progress=False)
    from stic.baselines import CodecUnavailableError, ffmpeg_codecs

    ffmpeg_codecs.ffmpeg_executable.cache_clear()
    monkeypatch.setenv("STIC_FFMPEG", "/nonexistent/ffmpeg")
    try:
        with pytest.raises(CodecUnavailableError, match="STIC_FFMPEG"):
            run_eval(_config(tmp_path, folder, codecs=["x265"]), progress=False)
    finally:
        ffmpeg_codecs.ffmpeg_executable.cache_clear()
        ffmpeg_codecs.ffmpeg_encoders.cache_clear()


def test_report_has_plots_means_and_bd_rates(tmp_path):
    folder = _folder(tmp_path)
    run_eval(
        _config(
            tmp_path,
            folder,
            codecs=["jpeg", "webp", "jp2"],
            targets=[1.0, 1.5, 2.0, 3.0],
        ),
        progress=False,
    )
    report = write_report(tmp_path / "out", anchor="jp2", bd_metric="psnr").read_text()
    for name in ("rd_psnr.png", "rd_psnr.svg", "means.csv", "bd_rate.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "![PSNR (dB, RGB) ↑](rd_psnr.png)" in report
    assert "## BD-rate vs jp2 on psnr (Akima)" in report
    with open(tmp_path / "out" / "means.csv", newline="") as handle:
        means = list(csv.DictReader(handle))
    assert {m["codec"] for m in means} == {"jpeg", "webp", "jp2"} and all(
        m["images"] == "2" for m in means
    )


def test_bd_rate_on_known_curves():
    anchor = [(0.1, 0.40), (0.2, 0.30), (0.4, 0.20), (0.8, 0.10)]  # (bpp, LPIPS)
    half = [(b / 2, v) for b, v in anchor]
    result = bd_rate("a", anchor, "t", half, higher_is_better=False)
    assert result.bd_rate == pytest.approx(-50, abs=0.01)
    assert (
        result.interval == pytest.approx((-0.40, -0.10))
        and result.overlap == 1
        and result.note == ""
    )
    shifted = [
        (b, v - 0.2) for b, v in anchor
    ]  # quality [-0.2, 0.1] vs [-0.4, -0.1]: overlap 0.1 of 0.5
    partial = bd_rate("a", anchor, "t", shifted, higher_is_better=False)
    assert (
        partial.overlap == pytest.approx(0.1 / 0.5)
        and "treat with care" in partial.note
    )
    apart = bd_rate(
        "a", anchor, "t", [(b, v - 0.5) for b, v in anchor], higher_is_better=False
    )
    assert apart.bd_rate is None and "do not overlap" in apart.note
    assert (
        "fewer than 3"
        in bd_rate("a", anchor, "t", anchor[:2], higher_is_better=False).note
    )


def test_captions_csv_columns_are_found(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text("image_name,item1,overall_description\nkodim01.png,,A red door.\n")
    captions = read_captions(path)
    assert caption_for(Path("data/kodim01.png"), captions) == captions["kodim01"] == "A red door."
    path.write_text("file,words\na.png,x\n")
    with pytest.raises(InputError, match="caption column"):
        read_captions(path)


def test_cli_runs_and_rebuilds_the_report(tmp_path, capsys):
    from stic.eval.cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    folder = _folder(tmp_path)
    out = tmp_path / "cli"
    args = parser.parse_args(
        [
            "eval",
            "--data",
            str(folder),
            "--out",
            str(out),
            "--codecs",
            "jp2",
            "--bpp",
            "1,2",
            "--metrics",
            "psnr",
            "--quiet",
        ]
    )
    args.func(args)
    assert len(_rows(out)) == 4 and (out / "report.md").exists()
    (out / "report.md").unlink()
    args = parser.parse_args(["eval", "--out", str(out), "--report-only"])
    args.func(args)
    assert (out / "report.md").exists() and "report:" in capsys.readouterr().out
    with pytest.raises(InputError, match="--bpp takes numbers"):
        parser.parse_args(
            ["eval", "--data", str(folder), "--out", str(out), "--bpp", "low"]
        ).func(
            parser.parse_args(
                ["eval", "--data", str(folder), "--out", str(out), "--bpp", "low"]
            )
        )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray not installed (optional extra: pip install 'stic[ray]')",
)
def test_local_ray_gives_the_same_csv_as_a_local_run(tmp_path):
    folder = _folder(tmp_path)
    local = _config(tmp_path, folder, out=tmp_path / "local")
    on_ray = _config(
        tmp_path, folder, out=tmp_path / "ray", ray_address="local", workers=1
    )
    run_eval(local, progress=False)
    run_eval(on_ray, progress=False)
    strip = lambda rows: sorted(
        tuple((k, v) for k, v in r.items() if k not in TIMING) for r in rows
    )
    assert strip(_rows(tmp_path / "ray")) == strip(_rows(tmp_path / "local"))


def test_stic_codec_rows_come_from_the_pipeline_file(tmp_path, monkeypatch):
    """The stic codec's bits are the .stic file's length; unreachable targets are recorded as such."""
    from types import SimpleNamespace

    import stic.image.registry
    import stic.pipeline
    from stic.container import SECTION_CAPTION, SECTION_IMAGE, Section, pack, unpack

    calls = []

    def fake_encode(image, *, bpp, caption, **options):
        calls.append((bpp, caption))
        if bpp < 0.5:
            raise InputError(f"no model reaches {bpp} bpp on this image")
        sections = [
            Section(SECTION_IMAGE, 1, bytes(300), b"\x00\x01\x02\x03"),
            Section(SECTION_CAPTION, 1, bytes(20), b""),
        ]
        data = pack(image.shape[1], image.shape[0], sections)
        return SimpleNamespace(
            data=data,
            file=unpack(data),
            image_model="fake-q1",
            bpp=8 * len(data) / (image.shape[0] * image.shape[1]),
        )

    monkeypatch.setattr(stic.pipeline, "encode", fake_encode)
    monkeypatch.setattr(
        stic.pipeline,
        "decode",
        lambda data, **options: SimpleNamespace(image=np.full((64, 96, 3), 128, np.uint8)),
    )
    monkeypatch.setattr(stic.image.registry, "shipped_models", lambda: ["fake-q1"])
    folder = _folder(tmp_path, count=1)
    run_eval(
        _config(
            tmp_path,
            folder,
            codecs=["stic"],
            targets=[0.1, 1.0],
            captions={"img0": "a test"},
        ),
        progress=False,
    )
    rows = {float(r["target_bpp"]): r for r in _rows(tmp_path / "out")}
    assert rows[0.1]["status"] == "unreachable"
    ok = rows[1.0]
    assert ok["status"] == "ok" and ok["setting"] == "model=fake-q1"
    assert (
        int(ok["stream_bytes"]) == 300
        and int(ok["caption_bytes"]) == 20
        and int(ok["file_bytes"]) > 320
    )
    assert float(ok["bpp"]) == pytest.approx(
        8 * int(ok["file_bytes"]) / (64 * 96), rel=1e-5
    )
    assert calls == [(0.1, "a test"), (1.0, "a test")]


def test_stic_codec_without_models_fails_before_running(tmp_path, monkeypatch):
    import stic.image.registry
    from stic.errors import ModelNotFoundError

    monkeypatch.setattr(stic.image.registry, "shipped_models", list)
    with pytest.raises(ModelNotFoundError, match="no shipped image models"):
        run_eval(_config(tmp_path, _folder(tmp_path), codecs=["stic"]), progress=False)


def test_an_interrupted_rerun_keeps_old_values_and_a_cut_row_is_ignored(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    config = _config(tmp_path, folder)
    run_eval(config, progress=False)
    first = _rows(config.out)

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "run_local", lambda tasks, cfg: map(killed, tasks))
    with pytest.raises(KeyboardInterrupt):
        run_eval(_config(tmp_path, folder, metrics=["psnr", "lpips-alex"]), progress=False)
    kept = harness.read_rows(config.out / "per_image.csv")
    assert sorted(map(harness.row_key, kept)) == sorted(map(harness.row_key, first))  # nothing lost
    with open(config.out / "per_image.csv", "a", encoding="utf-8") as handle:
        handle.write(f"{first[0]['image']},{first[0]['codec']},0.0")  # a row cut by a kill
    again = harness.read_rows(config.out / "per_image.csv")
    assert len(again) == len(first) and all(r["status"] for r in again)


def test_fid_kid_per_codec_and_rate_from_the_kept_decoded_images(tmp_path, monkeypatch, capsys):
    """`stic eval --fid`: one set_metrics.csv row per complete (codec, target), in the report too."""
    import stic.metrics.distribution as distribution
    from stic.cli import main

    torch.manual_seed(0)
    stub = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, 8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())
    monkeypatch.setattr(distribution, "load_inception", lambda: stub)
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (256, 384, 3), dtype=np.uint8)).save(folder / f"big{index}.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "small.png")
    out = tmp_path / "out"
    args = ["eval", "--data", str(folder), "--out", str(out), "--codecs", "jpeg", "--bpp", "0.3,8",
            "--metrics", "psnr", "--fid", "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    from stic.eval.set_metrics import read_set_metrics

    rows = {float(r["target_bpp"]): r for r in read_set_metrics(out)}
    assert set(rows) == {8.0} or set(rows) == {0.3, 8.0}  # a target some image cannot reach has no row
    best = rows[8.0]
    assert best["images"] == "2" and int(best["patches"]) == 2  # one patch per 256x384 image; the small one is skipped
    assert float(best["fid"]) >= 0
    assert "## FID and KID" in (out / "report.md").read_text()
    assert (out / "decoded" / "jpeg" / "8" / "big0.png").is_file()  # --fid keeps the decoded images
