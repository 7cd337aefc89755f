"""edgetrack-nano-m's recipe on a lent GPU (CUDA, AMP, a larger batch): training pairs per second, and the
student's benchmark AUC beside the CPU-trained one. Issue 14, point 5.

The GPU machine sees only this repository and what ``run`` carries (64 MiB in all), and it cannot score: the
benchmark (121 MB) does not fit, and it has no ONNX Runtime to spare. So the work is split in three steps.

1. Here: gather what the device needs into ``build/gpu-carry`` (ignored by git): edgetrack as its wheel installs it
   (``site/``, put on ``PYTHONPATH`` there: nothing is installed on the device), the teacher's weights, the recipe's
   videos and the smallest ``train/`` sequences that fit under ``--max-mib``::

       .venv/bin/python benchmarks/gpu_distill.py stage

2. On the device, in one call (``run`` with ``carry=["build/gpu-carry"]``, ``timeout_s`` 540): it checks CUDA and
   the imports training needs, trains until ``--budget-s``, and leaves the run folder, the student and
   ``gpu_distill.json`` (device, torch, pairs/s per stage) in ``$OUT``::

       PYTHONPATH=build/gpu-carry/site EDGETRACK_DATA=build/gpu-carry/data python3 benchmarks/gpu_distill.py train --out $OUT

   A run the budget stops keeps its checkpoints: copy ``$OUT/work`` back to ``build/gpu-carry/work`` and make the
   same call again, and it resumes exactly.

3. Here: score the returned student on the 15-sequence benchmark beside NanoTrack v2 and the shipped nano-m, and
   write ``benchmarks/gpu_distill.json`` and ``.md``::

       .venv/bin/python benchmarks/gpu_distill.py score FILES_AT
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from student_recipes import DATA, VIDEOS, Recipe, recipes, stage_folder, train  # noqa: E402

from edgetrack.runtime.files import write_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / "build" / "gpu-carry"
STUDENT = "edgetrack-nano-m"
TEACHER_WEIGHTS = Path("models") / "nanotrack" / "v2" / "nanotrackv2.pth"
#: what training imports on the device; a missing one is named before any time is spent
NEEDED = ("torch", "numpy", "cv2", "yaml", "tqdm", "click", "edgetrack.distill.trainer")
REPORT = ROOT / "benchmarks" / "gpu_distill"


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def stage(carry: Path, max_mib: float) -> list[str]:
    """Fill ``carry`` (replaced whole, only once complete) with the wheel and the data; return what was left out."""
    building = carry.with_name(carry.name + ".partial")
    shutil.rmtree(building, ignore_errors=True)
    data = building / "data"
    (data / TEACHER_WEIGHTS.parent).mkdir(parents=True)
    shutil.copy(DATA / TEACHER_WEIGHTS, data / TEACHER_WEIGHTS)
    (data / "videos").mkdir()
    for video in VIDEOS:
        shutil.copy(DATA / "videos" / video, data / "videos" / video)
    with tempfile.TemporaryDirectory() as wheels:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, str(ROOT)], check=True)
        (wheel,) = Path(wheels).glob("edgetrack-*.whl")
        zipfile.ZipFile(wheel).extractall(building / "site")
    left_out = []
    for sequence in sorted((p for p in (DATA / "train").iterdir() if p.is_dir()), key=folder_mib):
        if folder_mib(building) + folder_mib(sequence) > max_mib:
            left_out.append(sequence.name)
            continue
        shutil.copytree(sequence, data / "train" / sequence.name)
    shutil.rmtree(carry, ignore_errors=True)
    building.rename(carry)
    return left_out


def gpu_recipe(batch_size: int, steps_scale: float = 1.0) -> Recipe:
    """The shipped nano-m recipe on what was carried, at ``batch_size`` pairs a step, its stages' steps times
    ``steps_scale``."""
    shipped = recipes()[STUDENT]
    stages = tuple(dataclasses.replace(s, steps=max(1, round(s.steps * steps_scale))) for s in shipped.stages)
    videos = [f"unlabeled:{DATA / 'videos' / v}@0.5" for v in VIDEOS if (DATA / "videos" / v).is_file()]
    real = [f"sequences:{DATA / 'train'}@3"] if (DATA / "train").is_dir() else []
    return dataclasses.replace(shipped, name=f"{STUDENT}-gpu", data=(*real, *videos, "synthetic@1"), batch_size=batch_size, stages=stages)


def preflight(allow_cpu: bool) -> dict[str, str]:
    """The versions of what training needs; SystemExit with one line when something is missing."""
    missing = []
    for module in NEEDED:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{module} ({exc})")
    if missing:
        raise SystemExit(f"gpu_distill: cannot train here, missing: {'; '.join(missing)}")
    import torch

    if not torch.cuda.is_available() and not allow_cpu:
        raise SystemExit("gpu_distill: no CUDA device is visible to torch; run it on the lent GPU, or pass --allow-cpu to try it here")
    return {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def stage_rates(recipe: Recipe, work: Path) -> list[dict]:
    """Steps done and the median pairs per second of each stage, from its ``log.csv``."""
    rates = []
    for index in range(len(recipe.stages)):
        log = stage_folder(work, recipe, index) / "log.csv"
        rows = list(csv.DictReader(log.read_text().splitlines())) if log.is_file() else []
        speeds = [float(r["pairs_per_s"]) for r in rows if r.get("pairs_per_s")]
        rates.append({"stage": index + 1, "steps_logged": int(rows[-1]["step"]) if rows else 0, "pairs_per_s": statistics.median(speeds) if speeds else None})
    return rates


def stop_after(budget_s: float, done: threading.Event) -> None:
    """SIGTERM this process after ``budget_s`` unless ``done``, once the trainer's handler is installed (a stage's
    setup ignores nothing: SIGTERM there would end the process without a checkpoint or a report)."""
    if done.wait(budget_s):
        return
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        if done.wait(0.02):
            return
    os.kill(os.getpid(), signal.SIGTERM)


def train_on_device(out: Path, work: Path, batch_size: int, steps_scale: float, workers: int, budget_s: float, allow_cpu: bool) -> dict:
    """Train until done or ``budget_s``; copy the run folder (and the student, when finished) into ``out``."""
    from edgetrack.distill.trainer import TrainingInterrupted

    environment = preflight(allow_cpu)
    recipe = gpu_recipe(batch_size, steps_scale)
    done = threading.Event()
    threading.Thread(target=stop_after, args=(budget_s, done), daemon=True).start()
    started = time.perf_counter()
    try:
        weights = train(recipe, work, {"data.workers": workers})
        finished = True
    except TrainingInterrupted as exc:
        print(f"gpu_distill: {exc}", flush=True)
        weights, finished = None, False
    finally:
        done.set()
    report = {
        **environment,
        "recipe": STUDENT,
        "batch_size": batch_size,
        "steps_scale": steps_scale,
        "workers": workers,
        "steps": recipe.steps,
        "pairs": recipe.steps * batch_size,
        "finished": finished,
        "seconds": round(time.perf_counter() - started, 1),
        "data": [d.replace(str(DATA), "$EDGETRACK_DATA") for d in recipe.data],
        "stages": stage_rates(recipe, work),
    }
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(work, out / "work", dirs_exist_ok=True, ignore=shutil.ignore_patterns("tensorboard"))
    if weights is not None:
        shutil.copy(weights, out / f"{recipe.name}.pt")
    write_atomic(out / "gpu_distill.json", json.dumps(report, indent=2) + "\n")
    return report


def score(returned: Path, work: Path, rounds: int) -> dict:
    """Benchmark the GPU-trained student beside NanoTrack v2 and the shipped nano-m; write the report."""
    from student_benchmark import compare, open_entry, run_benchmark, write_report
    from train_pretrained import export_student

    report = json.loads((returned / "gpu_distill.json").read_text())
    recipe = gpu_recipe(report["batch_size"], report["steps_scale"])
    weights = returned / f"{recipe.name}.pt"
    if not weights.is_file():
        raise SystemExit(f"gpu_distill: {weights} is missing: the device run did not finish ({returned / 'gpu_distill.json'})")
    work.mkdir(parents=True, exist_ok=True)
    bundle, _, _ = export_student(recipe, weights, work)
    with tempfile.TemporaryDirectory() as tmp:
        entries = [open_entry("nanotrack-v2", Path(tmp)), open_entry(STUDENT, Path(tmp)), open_entry(f"{recipe.name}={bundle.path}", Path(tmp))]
        run_benchmark(entries, DATA / "benchmark", rounds)
        rows = compare([e.row() for e in entries])
    write_report(rows, DATA / "benchmark", rounds, work / "benchmark")
    report["benchmark"] = {r.name: {"auc": r.auc, "vs_v2": dataclasses.asdict(r.vs_reference) if r.vs_reference else None} for r in rows}
    write_atomic(REPORT.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_atomic(REPORT.with_suffix(".md"), render(report))
    return report


def render(report: dict) -> str:
    lines = [
        "# nano-m's recipe on a GPU (`gpu_distill.py`)",
        "",
        f"{report['device']}, torch {report['torch']}: {report['steps']:,} steps of {report['batch_size']} pairs "
        f"({report['pairs']:,} pairs), {report['seconds']:.0f} s.",
        "",
        "| stage | pairs/s |",
        "|---|---|",
        *(f"| {s['stage']} | {s['pairs_per_s']:.0f} |" for s in report["stages"] if s["pairs_per_s"]),
        "",
        "| model | mean AUC | AUC - v2 [95% CI] |",
        "|---|---|---|",
    ]
    for name, row in report["benchmark"].items():
        diff = row["vs_v2"]
        shown = f"{diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else "reference"
        lines.append(f"| {name} | {row['auc']:.3f} | {shown} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    verbs = parser.add_subparsers(dest="verb", required=True)
    staging = verbs.add_parser("stage", help="gather edgetrack and the data the device needs into --carry")
    staging.add_argument("--carry", type=Path, default=CARRY)
    staging.add_argument("--max-mib", type=float, default=48.0, help="size cap of the carried folder (run carries 64 MiB in all)")
    training = verbs.add_parser("train", help="on the device: train until done or --budget-s, results in --out")
    training.add_argument("--out", type=Path, required=True)
    training.add_argument("--work", type=Path, default=CARRY / "work", help="run folders; an existing one is resumed")
    training.add_argument("--batch-size", type=int, default=64)
    training.add_argument("--steps-scale", type=float, default=1.0, help="the recipe's steps per stage times this")
    training.add_argument("--workers", type=int, default=12, help="DataLoader processes making pairs")
    training.add_argument("--budget-s", type=float, default=450.0, help="stop (checkpoint saved) after this many seconds")
    training.add_argument("--allow-cpu", action="store_true", help="train without CUDA (to try the script here)")
    scoring = verbs.add_parser("score", help="here: benchmark what a device run returned")
    scoring.add_argument("returned", type=Path, help="the folder the device run's $OUT came back to")
    scoring.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu-distill")
    scoring.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.verb == "stage":
        left_out = stage(args.carry, args.max_mib)
        print(f"staged {args.carry} ({folder_mib(args.carry):.1f} MiB); train/ sequences left out: {', '.join(left_out) or 'none'}")
    elif args.verb == "train":
        print(json.dumps(train_on_device(args.out, args.work, args.batch_size, args.steps_scale, args.workers, args.budget_s, args.allow_cpu), indent=2))
    else:
        print(render(score(args.returned, args.work, args.rounds)))


if __name__ == "__main__":
    main()
