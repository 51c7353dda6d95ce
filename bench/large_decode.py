"""Memory and time of a cold `stic decode` of a 12 MP photo (4000x3000), in a fresh process.

The photo is a Kodak image enlarged (Lanczos) and cropped: real photo content at phone size.
Each decode is a fresh `stic decode` process that reports its own peak resident memory
(getrusage), with and without the file's refiner.

    python bench/large_decode.py            # writes results/large_decode.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from stic.paths import data_dir

REPO = Path(__file__).resolve().parents[1]
SIZE = (4000, 3000)


#: `stic decode` in a process that then reports its own peak resident memory (KiB on Linux)
_DECODE = (
    "import resource, sys\n"
    "from stic.cli import main\n"
    "code = main(['decode', *sys.argv[1:]])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _decode(stic_file: Path, out: Path, *extra: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _DECODE, str(stic_file), "-o", str(out), "--force", *extra],
                          check=True, capture_output=True, text=True)
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_rss_gb": round(peak_kib / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="kodim23")
    parser.add_argument("--quality", default="2")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "large_decode.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = Image.open(data_dir() / "kodak" / f"{args.image}.png").convert("RGB")
        scale = max(SIZE[0] / source.width, SIZE[1] / source.height)
        big = source.resize((round(source.width * scale), round(source.height * scale)), Image.Resampling.LANCZOS)
        big.crop((0, 0, *SIZE)).save(tmp / "big.png")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stic.cli", "encode", str(tmp / "big.png"), "-o", str(tmp / "big.stic"),
                        "--quality", args.quality], check=True, capture_output=True)
        encode_s = time.perf_counter() - started
        plain = _decode(tmp / "big.stic", tmp / "plain.png", "--no-refine")
        refined = _decode(tmp / "big.stic", tmp / "refined.png")
        report = {
            "image": f"{args.image} enlarged to {SIZE[0]}x{SIZE[1]}", "quality": args.quality,
            "file_bytes": (tmp / "big.stic").stat().st_size, "encode_s": round(encode_s, 1),
            "decode_no_refine": plain, "decode_with_refiner": refined,
            "load_average_1min": round(os.getloadavg()[0], 1),
        }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
