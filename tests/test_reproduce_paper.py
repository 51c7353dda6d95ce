"""bench/reproduce_paper.py's flow with tiny random models (a captioning VLM that also codes the
caption, a diffusion refiner): real files, the caption back exactly, a report."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("diffusers")
SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "reproduce_paper.py"


def test_the_tiny_run_writes_files_rows_and_a_report(tmp_path):
    from skimage import data

    from stic.container import unpack
    from stic.fileinfo import describe

    (tmp_path / "images").mkdir()
    Image.fromarray(data.astronaut()[::8, ::8]).save(tmp_path / "images" / "astronaut.png")  # 64x64
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--data", str(tmp_path / "images"), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = list(csv.DictReader((out / "per_image.csv").open(encoding="utf-8")))
    assert [r["image"] for r in rows] == ["astronaut.png"] and int(rows[0]["caption_bytes"]) > 0
    stic_file = (out / "astronaut_stic-q1.stic").read_bytes()
    assert float(rows[0]["bpp"]) == pytest.approx(8 * len(stic_file) / 64**2)
    kinds = [section["kind"] for section in describe(unpack(stic_file))["sections"]]
    assert kinds == ["image", "caption", "refine"]  # the VLM-coded caption and the diffusion refiner's section
    assert "| stic-q1 |" in (out / "report.md").read_text(encoding="utf-8")
