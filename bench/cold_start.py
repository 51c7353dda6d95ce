"""Cold-start time of `stic decode`: a fresh process decoding a 768x512 Kodak file, with and without
a caption, next to a bare `python -c "import torch"` in the same run (best and median of N).

    python bench/cold_start.py [--repeats 3]       # writes results/cold_start.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = Path(os.environ.get("STIC_DATA") or ROOT.parent / "shared" / "data") / "kodak" / "kodim05.png"
CAPTION = ("The image features a motorcycle race with several riders leaning into a curve on a track, "
           "wearing colorful racing suits and helmets.")


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not KODAK.is_file():
        sys.exit(f"{KODAK} not found (set STIC_DATA)")
    stic = [sys.executable, "-m", "stic.cli"]
    report = {"load_average_start": [round(x, 2) for x in os.getloadavg()], "image": str(KODAK.name)}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"captioned": Path(tmp) / "cap.stic", "image_only": Path(tmp) / "img.stic"}
        subprocess.run([*stic, "encode", str(KODAK), "-o", str(files["captioned"]), "--quality", "2",
                        "--caption", CAPTION], check=True, capture_output=True)
        subprocess.run([*stic, "encode", str(KODAK), "-o", str(files["image_only"]), "--quality", "2"],
                       check=True, capture_output=True)
        runs: dict[str, list[float]] = {"import_torch": [], "captioned": [], "image_only": []}
        for _ in range(args.repeats):
            runs["import_torch"].append(wall([sys.executable, "-c", "import torch"]))
            for kind, path in files.items():
                out = Path(tmp) / f"{kind}.png"
                out.unlink(missing_ok=True)
                runs[kind].append(wall([*stic, "decode", str(path), "-o", str(out)]))
    for kind, times in runs.items():
        report[kind] = {"best_s": round(min(times), 2), "median_s": round(statistics.median(times), 2)}
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = ROOT / "results" / "cold_start.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
