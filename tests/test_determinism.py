"""The same .stic decodes to byte-identical PNGs in separate processes, whatever the host's thread
settings, and after a cold start with an empty cache: stic pins the thread counts that change
results (image codec: CODEC_THREADS, caption LM: CODING_THREADS) inside itself."""

import os
import subprocess
import sys

import fuzz_cases as fc
import pytest

from stic import pipeline

#: runs `stic` after setting torch's intra-op threads, as a user's program embedding stic might
_DRIVER = "import sys, torch; torch.set_num_threads(int(sys.argv[1])); from stic.cli import main; sys.exit(main(sys.argv[2:]))"


def _decode_in_process(stic_file, png, threads: int, cache=None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    if cache is not None:
        env["STIC_CACHE"] = str(cache)
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(threads), "decode", str(stic_file), "-o", str(png)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _decode_here(stic_file, png, threads: int) -> None:
    """Decode in this process with `threads` torch threads, writing the PNG as `stic decode` does."""
    import torch

    from stic.image.io import save_png

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        save_png(png, pipeline.decode(stic_file.read_bytes()).image)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("refiner", ["realesrgan-compact", "realesrgan-stic"])  # the latter with its grid filter
def test_refined_decode_is_identical_across_thread_settings(tmp_path, refiner):
    encoded = pipeline.encode(fc.sample_image(70, 110, 9), quality=2, caption="a test card",
                              text_coder="zlib", refiner=refiner)  # fmt: skip
    stic_file = tmp_path / "a.stic"
    stic_file.write_bytes(encoded.data)
    _decode_here(stic_file, tmp_path / "here.png", 1)
    output = _decode_in_process(stic_file, tmp_path / "other.png", 3)
    assert f"refined by {refiner}" in output
    assert (tmp_path / "here.png").read_bytes() == (tmp_path / "other.png").read_bytes()


@pytest.mark.slow
def test_lm_caption_file_is_identical_after_a_cold_start(tmp_path):
    """Default pipeline (SmolLM2 caption, GAN refiner): this warm process on 1 thread and a new
    process with an empty STIC_CACHE (the LM is converted again) on 3 threads agree byte for byte."""
    caption = "A gradient test card with red, green and blue ramps and a little noise."
    encoded = pipeline.encode(fc.sample_image(64, 96, 11), quality=1, caption=caption, refiner="realesrgan-compact")
    stic_file = tmp_path / "lm.stic"
    stic_file.write_bytes(encoded.data)
    cold = tmp_path / "empty-cache"
    _decode_here(stic_file, tmp_path / "warm.png", 1)
    cold_out = _decode_in_process(stic_file, tmp_path / "cold.png", 3, cache=cold)
    assert f"caption: {caption}" in cold_out
    assert any((cold / "lm-exact").iterdir())  # the cold process really rebuilt its model cache
    assert (tmp_path / "warm.png").read_bytes() == (tmp_path / "cold.png").read_bytes()
