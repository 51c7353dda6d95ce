"""One run of tests/test_emulated_cpu.py under `qemu-x86_64 -cpu MODEL`, where numpy's OpenBLAS,
ONNX Runtime's MLAS and torch all pick that CPU's kernels.

    python emulated_cpu_child.py OUT.json FIXTURE...

OUT: {"split": mismatches of Int8Matrix on extreme values, "zero_point": mismatches of the
      same products in zero-point form (shows which kernel ran), "captions": {name: text},
      "latents": {name: digest}}
"""

import json
import sys
from pathlib import Path

import numpy as np
from child_helpers import symbols_digest

FIXTURES = Path(__file__).with_name("fixtures")


def extreme_products() -> tuple[int, int]:
    """Mismatches against int64 products, for Int8Matrix and for the unsigned zero-point form
    (q + 128) a byte-pair kernel can saturate on."""
    import onnxruntime

    from stic.text.int8_product import Int8Matrix

    rng = np.random.default_rng(0)
    split = zero_point = 0
    for rows, k, n in ((1, 576, 64), (2, 64, 96), (17, 128, 64)):
        q = rng.choice([-127, 127, 126, 0, 3], size=(rows, k)).astype(np.int8)
        w = rng.choice([-127, 127, 1], size=(n, k)).astype(np.int8)
        exact = q.astype(np.int64) @ w.T.astype(np.int64)
        matrix = Int8Matrix(w)
        split += int((matrix(q) != exact).sum())
        shifted = (q.astype(np.int16) + 128).astype(np.uint8)
        acc = matrix._session.run(None, {"q": shifted})[0].astype(np.int64)
        zero_point += int((acc - 128 * w.astype(np.int64).sum(1) != exact).sum())
    assert onnxruntime.get_device() == "CPU"
    return split, zero_point


def main() -> None:
    from stic import pipeline
    from stic.container import SECTION_CAPTION, read_file
    from stic.text.registry import text_coder_for_section

    split, zero_point = extreme_products()
    out = {"split": split, "zero_point": zero_point, "captions": {}, "latents": {}}
    for name in sys.argv[2:]:
        data = (FIXTURES / name).read_bytes()
        if name.startswith("caption"):
            section = read_file(FIXTURES / name).section(SECTION_CAPTION)
            coder = text_coder_for_section(section.codec_id, section.fingerprint)
            out["captions"][name] = coder.decode(section.payload)
        else:
            out["captions"][name] = pipeline.decode(data, refine=False).caption
            out["latents"][name] = symbols_digest(data)
    Path(sys.argv[1]).write_text(json.dumps(out), encoding="utf-8")


if __name__ == "__main__":
    main()
