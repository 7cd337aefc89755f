"""`edgetrack bench` on NanoTrack v2 and v3: fp32, fp16 and int8 on ONNX Runtime, with cv2.TrackerNano as reference.

Each model is imported afresh from its published pair into build/bench_nanotrack/, so fp16 and int8 are built (and
gated) by this run rather than taken from an earlier one; int8 calibrates on the sequences it is scored on, as the
bench does without --calib. The reports go to benchmarks/bench_nanotrack_{v2,v3}.{json,md}. Run it from the
repository root on a quiet machine: fps is the median of 5 rounds in which the cells take turns.

    EDGETRACK_DATA=../shared/data .venv/bin/python benchmarks/bench_nanotrack.py
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's DNN warns once per TrackerNano it creates

from edgetrack.deploy.bench import OpenCVNanoCompare, plan_bench, render_text, run_bench, write_report  # noqa: E402
from edgetrack.deploy.import_nanotrack import import_nanotrack  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = Path("build") / "bench_nanotrack"
#: The published file names of each version's pair.
PAIRS = {
    "v2": ("nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "v3": ("nanotrack_backbone.onnx", "nanotrack_head.onnx"),
}


def main() -> None:
    # Relative paths, so the committed reports name ../shared/data rather than this machine's folders.
    os.chdir(HERE.parent)
    data = Path(os.environ.get("EDGETRACK_DATA", "../shared/data"))
    for version, (backbone, head) in PAIRS.items():
        folder = data / "models" / "nanotrack" / version
        bundle = import_nanotrack(folder / backbone, folder / head, WORK / f"nanotrack-{version}.etb", version=version, force=True)
        plan = plan_bench(data / "sequences", WORK / version, precisions=["fp32", "fp16", "int8"], compare=OpenCVNanoCompare(), rounds=5)
        report = run_bench(bundle.path, plan)
        print(render_text(report))
        for path in write_report(report, HERE, f"bench_nanotrack_{version}"):
            print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
