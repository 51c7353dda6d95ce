"""One configuration of the cross-machine test (tests/test_cross_machine.py), run in a subprocess
so that ATEN_CPU_CAPABILITY, the thread count and oneDNN take effect from the start.

    python cross_machine_child.py JOB.json OUT.json

JOB: {"threads": n, "onednn": bool, "models": [...], "encode": {model: [texts]},
      "decode": {model: [hex]}, "files": [hex of .stic files], "images": [[seed, model, step]]}
OUT: {"capability": str, "encoded": {model: [hex]}, "decoded": {model: [texts]},
      "files": [[caption, symbols digest]], "made": [[hex, caption, symbols digest]]}
"""

import json
import sys

import torch
from child_helpers import symbols_digest


def main() -> None:
    job = json.loads(open(sys.argv[1], encoding="utf-8").read())
    torch.set_num_threads(job["threads"])
    torch.backends.mkldnn.enabled = job["onednn"]
    from stic import pipeline
    from stic.text.registry import get_text_coder

    out = {"capability": torch.backends.cpu.get_cpu_capability(), "encoded": {}, "decoded": {}}
    for model in job["models"]:
        coder = get_text_coder(f"lm:{model}")
        out["encoded"][model] = [coder.encode(text).hex() for text in job["encode"][model]]
        out["decoded"][model] = [coder.decode(bytes.fromhex(h)) for h in job["decode"].get(model, [])]
    out["files"] = []
    for h in job.get("files", []):
        data = bytes.fromhex(h)
        out["files"].append([pipeline.decode(data).caption, symbols_digest(data)])
    out["made"] = []
    if job.get("images"):
        import fuzz_cases as fc

        for seed, model, step in job["images"]:
            image = fc.sample_image(96, 128, seed)
            data = pipeline.encode(image, model=model, caption=f"Test card {seed}.", refiner=None, step=step).data
            out["made"].append([data.hex(), pipeline.decode(data).caption, symbols_digest(data)])
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
