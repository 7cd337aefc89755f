"""What shrinking carries over before any training: nanotrack-v3 shrunk to half width vs random initialisations.

The teacher is the real NanoTrack v3 checkpoint. The shrunk student keeps, in every width group, the teacher's
channels with the largest L1-norm filters (`edgetrack.distill.shrink`). Each model is exported to a bundle and
tracked on Crossing through the runtime, like any bundle.

A sweep over uniform width fractions shows how much of the teacher survives each cut.

    .venv/bin/python benchmarks/shrink_report.py [--seeds 3] [--fractions 0.9,0.75,0.6] [--out benchmarks/shrink_report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from edgetrack.deploy.export import export_model, load_model
from edgetrack.distill.models import PRESETS, build_model
from edgetrack.distill.shrink import shrink
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.tracker import SiameseTracker

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
STUDENT = "nanotrack-v3-s50"


def crossing_auc(model, folder: Path) -> float:
    bundle = export_model(model, folder / f"{model.config.name}.etb", parity_data=DATA / "sequences")
    sequence = load_dataset(DATA / "sequences" / "Crossing").sequences[0]
    return track_sequence(SiameseTracker(bundle.meta, OnnxRuntimeBackend(bundle)), sequence).scores.auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fractions", default="0.95,0.9,0.75,0.6")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()

    teacher = load_model("nanotrack-v3", DATA / "models" / "nanotrack" / "v3" / "nanotrackv3.pth")
    student = shrink(teacher, PRESETS[STUDENT].widths, name=STUDENT)
    params = {m: sum(p.numel() for p in m.parameters()) for m in (teacher, student)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report = {
            "sequence": "Crossing",
            "teacher": {"name": "nanotrack-v3", "params": params[teacher], "auc": crossing_auc(teacher, folder)},
            "shrunk": {"name": STUDENT, "params": params[student], "auc": crossing_auc(student, folder / "shrunk")},
            "random": [],
            "sweep": [],
        }
        for fraction in (float(f) for f in args.fractions.split(",")):
            widths = {g: max(1, round(w * fraction)) for g, w in teacher.config.widths.items()}
            cut = shrink(teacher, widths, name=f"nanotrack-v3-x{fraction:g}")
            report["sweep"].append(
                {
                    "fraction": fraction,
                    "params": sum(p.numel() for p in cut.parameters()),
                    "auc": crossing_auc(cut, folder / f"sweep{fraction:g}"),
                }
            )
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            random = build_model(STUDENT)
            report["random"].append({"seed": seed, "auc": crossing_auc(random, folder / f"random{seed}")})
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
