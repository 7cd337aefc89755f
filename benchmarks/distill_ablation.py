"""The TSsKD ablation: one student trained three ways on the same pairs, for the same number of steps.

Teacher: the real NanoTrack v3 checkpoint. Student: ``nanotrack-v3-s50`` shrunk from it (every arm starts from the
same shrunk weights). Data: the synthetic world plus the shared unlabeled video (teacher-labelled pairs); the
evaluation sequences (Crossing, bag, dat) are never trained on. Arms:

- ``alone``: ground-truth losses only;
- ``teacher-student``: plus soft classification, adaptive hard regression and the Siamese target response;
- ``tsskd``: plus student-student sharing with a second student of the same shape; the first student is scored.

Each trained student is exported to a bundle and evaluated through the runtime (ONNX Runtime) on the shared
sequences. Arms whose run folder already holds a finished run are not trained again; an interrupted arm resumes.

    .venv/bin/python benchmarks/distill_ablation.py                   # about 15 min on 2 cores
    .venv/bin/python benchmarks/distill_ablation.py --seed 1 \
        --work runs/ablation-seed1 --out benchmarks/distill_ablation_seed1.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from edgetrack.deploy.export import export_model, load_model
from edgetrack.distill.config import load_config
from edgetrack.distill.losses import LOSS_PRESETS
from edgetrack.distill.trainer import RunSpec, run
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.tracker import SiameseTracker

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
TEACHER = f"nanotrack-v3:{DATA / 'models/nanotrack/v3/nanotrackv3.pth'}"
STUDENT = "nanotrack-v3-s50"
ARMS = {"alone": (STUDENT,), "teacher-student": (STUDENT,), "tsskd": (STUDENT, STUDENT)}


def evaluate(model, folder: Path) -> dict:
    bundle = export_model(model, folder, parity_data=DATA / "sequences", force=True)
    tracker = SiameseTracker(bundle.meta, OnnxRuntimeBackend(bundle))
    aucs = {s.name: track_sequence(tracker, s).scores.auc for s in load_dataset(DATA / "sequences").sequences}
    return {"auc": sum(aucs.values()) / len(aucs), "per_sequence": aucs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--synthetic", type=int, default=300, help="synthetic training sequences")
    parser.add_argument("--work", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the pairs and of the second student's perturbation")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    videos = DATA / "videos"
    sources = [
        f"synthetic:{args.synthetic}",
        f"unlabeled:{videos / 'oneperson.mp4'}@0.3",
        f"unlabeled:{videos / 'fear_test.mp4'}@0.3",
        f"unlabeled:{DATA / 'sequences/tennis_unlabeled'}@0.2",
    ]
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    teacher = load_model("nanotrack-v3", Path(TEACHER.split(":", 1)[1]))
    if "teacher" not in report:
        report["teacher"] = {"name": "nanotrack-v3", "params": sum(p.numel() for p in teacher.parameters()), **evaluate(teacher, args.work / "teacher.etb")}
    for arm in args.arms.split(","):
        loss = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS[arm]).items()}
        config = load_config(
            None,
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            **{"data.sources": sources, "validation.synthetic": 4, **loss},
        )
        folder = args.work / arm
        start = time.perf_counter()
        finished = (folder / "history.json").exists() and len(json.loads((folder / "history.json").read_text())) == args.epochs
        if not finished:
            run(RunSpec(out=folder, config=config, students=ARMS[arm], teacher=TEACHER, resume=(folder / "last.pt").exists()))
        model = load_model(STUDENT, folder / f"{STUDENT}.pt")
        params = sum(p.numel() for p in model.parameters())
        # The arm is scored by its first student, fixed in advance; the others are reported beside it.
        others = {}
        for name in list(json.loads((folder / "history.json").read_text())[-1])[3:]:
            if name != STUDENT:
                others[name] = evaluate(load_model(name, folder / f"{name}.pt"), args.work / f"{arm}-{name}.etb")
        report[arm] = {
            "students": list(ARMS[arm]),
            "params": params,
            "compression": report["teacher"]["params"] / params,
            "train_seconds": round(time.perf_counter() - start, 1) if not finished else report.get(arm, {}).get("train_seconds"),
            "validation_history": json.loads((folder / "history.json").read_text()),
            **evaluate(model, args.work / f"{arm}.etb"),
            "other_students": others,
        }
        print(f"{arm}: mean AUC {report[arm]['auc']:.3f} {report[arm]['per_sequence']}", flush=True)
        report["budget"] = {"epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": args.batch_size, "seed": args.seed, "data": sources, "device": "cpu"}
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
