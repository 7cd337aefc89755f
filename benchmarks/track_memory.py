"""Peak resident memory of `edgetrack track` streaming a video, with what the libraries alone cost.

Each figure is the peak RSS (ru_maxrss) of a fresh child process, repeated to show the spread:
  - python: the bare interpreter;
  - imports: the interpreter after importing what the runtime floor needs (numpy, cv2, onnxruntime, click);
  - track, per backend: `edgetrack track BUNDLE --source oneperson.mp4 --no-show --backend B` from start to end.

    .venv/bin/python benchmarks/track_memory.py [--repeats 5] [--out benchmarks/track_memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
VIDEO = DATA / "videos" / "oneperson.mp4"
PAIR = DATA / "models" / "nanotrack" / "v2"


def peak_rss_mib(argv: list[str]) -> float:
    """Run ``argv`` in a fresh child and return its peak RSS.

    wait4 gives that one child's figure; RUSAGE_CHILDREN would give the maximum over every child so far.
    """
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {process.stderr.read().decode()}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "nanotrack-v2.etb"
        subprocess.run(
            [sys.executable, "-m", "edgetrack.cli", "import-nanotrack", str(PAIR / "nanotrack_backbone_sim.onnx"),
             str(PAIR / "nanotrack_head_sim.onnx"), "--version", "v2", "-o", str(bundle)],
            check=True, capture_output=True,
        )
        track = [sys.executable, "-m", "edgetrack.cli", "track", str(bundle), "--source", str(VIDEO),
                 "--init", "300,100,50,150", "--no-show", "--backend"]
        runs = {
            "python": [sys.executable, "-c", "pass"],
            "imports (numpy, cv2, click)": [sys.executable, "-c", "import numpy, cv2, click"],
            "imports (numpy, cv2, click, onnxruntime)": [sys.executable, "-c", "import numpy, cv2, click, onnxruntime"],
            "track --backend onnxruntime": [*track, "onnxruntime"],
            "track --backend opencv": [*track, "opencv"],
        }
        samples = {name: [peak_rss_mib(argv) for _ in range(args.repeats)] for name, argv in runs.items()}
    report = {
        "video": VIDEO.name,
        "repeats": args.repeats,
        "peak_rss_mib": {name: {"min": min(v), "median": sorted(v)[len(v) // 2], "max": max(v)} for name, v in samples.items()},
        "goal": "at most 100 MB = 95.4 MiB",
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
