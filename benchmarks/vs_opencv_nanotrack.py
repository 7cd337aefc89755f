"""edgetrack vs OpenCV's cv2.TrackerNano: same NanoTrack v2 ONNX pair, same preloaded frames, one process.

edgetrack runs twice: on its default backend (ONNX Runtime) and on OpenCV's DNN, the engine TrackerNano uses,
which isolates what the tracking loop itself costs.

The trackers take turns sequence by sequence for several rounds, each round starting with a different one, so
machine noise hits them alike. Only the
update calls are timed (init and frame decoding are not), which is how ``edgetrack eval`` reports fps.

    .venv/bin/python benchmarks/vs_opencv_nanotrack.py [--rounds 5] [--out benchmarks/vs_opencv_nanotrack.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's DNN warns once per tracker it creates

import cv2  # noqa: E402
import numpy as np
import onnxruntime  # noqa: E402

from edgetrack.deploy.import_nanotrack import import_nanotrack
from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.environment import cpu_model
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.metrics import ope_scores
from edgetrack.runtime.tracker import SiameseTracker

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
PAIR = DATA / "models" / "nanotrack" / "v2"
BACKBONE, HEAD = PAIR / "nanotrack_backbone_sim.onnx", PAIR / "nanotrack_head_sim.onnx"


def opencv_tracker():
    params = cv2.TrackerNano_Params()
    params.backbone = str(BACKBONE)
    params.neckhead = str(HEAD)
    return cv2.TrackerNano_create(params)


class OpenCVRunner:
    name = "cv2.TrackerNano"

    def init(self, frame, box):
        self.tracker = opencv_tracker()
        self.tracker.init(frame, tuple(int(round(v)) for v in box))

    def update(self, frame):
        _, box = self.tracker.update(frame)
        return box


class EdgetrackRunner:
    def __init__(self, bundle, backend: str):
        self.name = "edgetrack" if backend == "onnxruntime" else f"edgetrack --backend {backend}"
        self.tracker = SiameseTracker(bundle.meta, open_backend(bundle, backend=backend))

    def init(self, frame, box):
        self.tracker.init(frame, box)

    def update(self, frame):
        return self.tracker.update(frame).box



def run(runner, frames, groundtruth):
    """Track one preloaded sequence; return (boxes, seconds spent in update calls)."""
    boxes = [groundtruth[0]]
    runner.init(frames[0], groundtruth[0])
    seconds = 0.0
    for frame in frames[1:]:
        start = time.perf_counter()
        box = runner.update(frame)
        seconds += time.perf_counter() - start
        boxes.append(box)
    return np.asarray(boxes, float), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()

    dataset = load_dataset(DATA / "sequences")
    sequences = [(s.name, list(s.frames()), s.groundtruth) for s in dataset.sequences]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = import_nanotrack(BACKBONE, HEAD, Path(tmp) / "nanotrack-v2.etb", version="v2")
        runners = [OpenCVRunner(), EdgetrackRunner(bundle, "onnxruntime"), EdgetrackRunner(bundle, "opencv")]
        for runner in runners:  # warm-up: first inferences allocate
            run(runner, *sequences[0][1:])
        seconds = {r.name: 0.0 for r in runners}
        auc = {r.name: {} for r in runners}
        frames = 0
        for round_index in range(args.rounds):
            for name, images, groundtruth in sequences:
                for runner in runners[round_index % len(runners):] + runners[: round_index % len(runners)]:
                    boxes, spent = run(runner, images, groundtruth)
                    seconds[runner.name] += spent
                    auc[runner.name][name] = ope_scores(boxes, groundtruth).auc
                frames += len(images) - 1
    fps = {name: frames / s for name, s in seconds.items()}
    report = {
        "frames_per_tracker": frames,
        "rounds": args.rounds,
        "fps": fps,
        "ms_per_frame": {name: 1000 / f for name, f in fps.items()},
        "ratio_edgetrack_over_opencv": fps["edgetrack"] / fps["cv2.TrackerNano"],
        "ratio_edgetrack_opencv_backend_over_opencv": fps["edgetrack --backend opencv"] / fps["cv2.TrackerNano"],
        "auc": auc,
        "environment": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "opencv": cv2.__version__,
            "onnxruntime": onnxruntime.__version__,
            "cv2_threads": cv2.getNumThreads(),
        },
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
