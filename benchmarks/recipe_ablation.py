"""The ablation of the shipped recipe, at the shipped budget, on the 15-sequence benchmark with paired intervals.

Every arm is the recipe ``edgetrack-nano-m`` first shipped with (``train_pretrained.py``, with the teacher-student
losses and BatchNorm batch statistics: arm ``shipped``) with one thing changed (``CHANGES`` says what), trained for
the same number of steps on the same pairs. The later arms stack the changes that were kept; the last two,
``trained-alignment`` and its seed 1, are the recipe shipped now.

Each arm is exported and tracked on ``$EDGETRACK_DATA/benchmark`` through the runtime; the report gives each arm's
mean AUC and its mean paired AUC difference against ``shipped`` with a 95% bootstrap interval over sequences (and
against NanoTrack v2), in ``--out`` (JSON) and a markdown table beside it (the same name, ``.md``). ``--budget 0.3``
trains every arm for 30% of the shipped steps (each stage scaled). Arms are trained one after the other in
``--work``; a stopped run continues exactly when the script is started again, and finished arms are only scored.

    nohup .venv/bin/python benchmarks/recipe_ablation.py --work runs/ablation-nano-m > runs/ablation-nano-m.log 2>&1 &

On two cores, two processes can train different arms in the same ``--work``, the second with its own ``--out``;
``--arms '' --merge SECOND.json`` then adds its arms to the report and rewrites the tables:

    taskset -c 0 .venv/bin/python benchmarks/recipe_ablation.py --arms refit,full-stage-width &
    taskset -c 1 .venv/bin/python benchmarks/recipe_ablation.py --arms refit-seed-1 --out runs/ablation-b.json &
    .venv/bin/python benchmarks/recipe_ablation.py --arms '' --merge runs/ablation-b.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from student_recipes import DATA, Stage, Widths, recipes, train  # noqa: E402

from edgetrack.deploy.export import export_model, load_model  # noqa: E402
from edgetrack.runtime.backends import open_backend  # noqa: E402
from edgetrack.runtime.datasets import load_dataset  # noqa: E402
from edgetrack.runtime.evaluate import track_sequence  # noqa: E402
from edgetrack.runtime.files import write_atomic  # noqa: E402
from edgetrack.runtime.metrics import Interval, paired_bootstrap  # noqa: E402
from edgetrack.runtime.tracker import SiameseTracker  # noqa: E402

STUDENT = "edgetrack-nano-m"
REFERENCE = "shipped"
#: what each arm changes in the recipe edgetrack-nano-m first shipped with (the `shipped` arm)
CHANGES = {
    "shipped": "the recipe first shipped: teacher-student losses, BatchNorm batch statistics, progressive shrinking from NanoTrack v2",
    "alone": "ground-truth losses only (the teacher still labels the unlabeled video)",
    "tsskd": "teacher-student plus student-student sharing with a second student (the first is scored)",
    "one-shot": "shrunk to the final widths at once, all steps at those widths",
    "random": "one stage at the final widths from random weights instead of the shrunk teacher",
    "lr-0.003": "lr 0.003, the recipe's learning rate before 0.01 was kept",
    "aligned": "trained at widths rounded to multiples of 8, instead of widened with zero channels after training",
    "no-real": "without the real labelled sequences of train/ (videos and synthetic world only)",
    "seed-1": "nothing but the seed (1 instead of 0): the run-to-run spread any other difference must exceed",
    "dense-box": "plus dense box distillation: the student's boxes regressed onto the teacher's, weighted by its foreground probability",
    "teacher-only": "the teacher's outputs only (soft labels, dense boxes, responses): no ground-truth loss at all",
    "frozen-bn": "BatchNorm frozen while training (running statistics, re-estimated after each shrink)",
    "teacher-only-frozen-bn": "the teacher's outputs only, with BatchNorm frozen",
    "teacher-only-frozen-bn-seed-1": "teacher-only-frozen-bn with seed 1: the run-to-run spread of that recipe",
    "teacher-only-frozen-bn-log": "teacher-only-frozen-bn plus the log-size box term (dense_box_log 1): the recipe shipped until the next arms",
    "teacher-only-frozen-bn-log-seed-1": "teacher-only-frozen-bn-log with seed 1",
    "refit": "teacher-only-frozen-bn-log with the pruned layers refitted by least squares after each shrink (shrink_refit 16) and lr 0.003",
    "refit-seed-1": "refit with seed 1",
    "full-stage-width": "refit with the stem and stage outputs kept at v2's width (expansions 0.9/0.8/0.75, towers 0.75/0.6/0.5)",
    "full-stage-width-seed-1": "full-stage-width with seed 1",
    "template-front": "full-stage-width with v2's stem and blocks 1-5, frozen, as the front of the template path (template_front 6)",
    "template-front-seed-1": "template-front with seed 1",
    "trained-alignment": "template-front trained at the widths it is exported at (each stage's rounded up to multiples of 8), instead of widened with zero channels after training: the same bundle shapes, every channel trained; the recipe shipped now",
    "trained-alignment-seed-1": "trained-alignment with seed 1",
}
#: the progressive shrinking edgetrack-nano-m first shipped with (expand/stage/tower factors, steps)
FIRST_STAGES = (Stage(Widths(0.9, 0.9, 0.75), 1000), Stage(Widths(0.8, 0.8, 0.6), 1000), Stage(Widths(0.75, 0.75, 0.5), 3000))


def arms(budget: float = 1.0) -> dict:
    # The arms change the recipe edgetrack-nano-m first shipped with; the shipped one now is `trained-alignment`.
    first = {"stages": FIRST_STAGES, "lr": 0.01, "shrink_refit": 0, "losses": "teacher-student", "batchnorm": "batch", "loss_weights": (), "template_front": 0, "alignment": "widen"}
    shipped = dataclasses.replace(recipes()[STUDENT], **first)
    shipped = dataclasses.replace(shipped, stages=tuple(dataclasses.replace(s, steps=round(s.steps * budget)) for s in shipped.stages))
    one_stage = (dataclasses.replace(shipped.stages[-1], steps=shipped.steps),)
    log_size = (("dense_box_log", 1.0),)
    refit = dataclasses.replace(shipped, losses="teacher-only", batchnorm="frozen", loss_weights=log_size, lr=0.003, shrink_refit=16)
    full_stage_width = dataclasses.replace(refit, stages=tuple(dataclasses.replace(s, widths=dataclasses.replace(s.widths, stage=1.0)) for s in shipped.stages))
    template_front = dataclasses.replace(full_stage_width, template_front=6)
    return {
        "shipped": shipped,
        "alone": dataclasses.replace(shipped, losses="alone"),
        "tsskd": dataclasses.replace(shipped, losses="tsskd", students=2),
        "one-shot": dataclasses.replace(shipped, stages=one_stage),
        "random": dataclasses.replace(shipped, stages=one_stage, init="random"),
        "lr-0.003": dataclasses.replace(shipped, lr=0.003),
        "aligned": dataclasses.replace(shipped, alignment="nearest"),
        "no-real": dataclasses.replace(shipped, data=tuple(d for d in shipped.data if not d.startswith("sequences:"))),
        "seed-1": dataclasses.replace(shipped, seed=1),
        "dense-box": dataclasses.replace(shipped, loss_weights=(("dense_box", 1.0),)),
        "teacher-only": dataclasses.replace(shipped, losses="teacher-only"),
        "frozen-bn": dataclasses.replace(shipped, batchnorm="frozen"),
        "teacher-only-frozen-bn": dataclasses.replace(shipped, losses="teacher-only", batchnorm="frozen"),
        "teacher-only-frozen-bn-seed-1": dataclasses.replace(shipped, losses="teacher-only", batchnorm="frozen", seed=1),
        "teacher-only-frozen-bn-log": dataclasses.replace(shipped, losses="teacher-only", batchnorm="frozen", loss_weights=log_size),
        "teacher-only-frozen-bn-log-seed-1": dataclasses.replace(shipped, losses="teacher-only", batchnorm="frozen", loss_weights=log_size, seed=1),
        "refit": refit,
        "refit-seed-1": dataclasses.replace(refit, seed=1),
        "full-stage-width": full_stage_width,
        "full-stage-width-seed-1": dataclasses.replace(full_stage_width, seed=1),
        "template-front": template_front,
        "template-front-seed-1": dataclasses.replace(template_front, seed=1),
        "trained-alignment": dataclasses.replace(template_front, alignment="up"),
        "trained-alignment-seed-1": dataclasses.replace(template_front, alignment="up", seed=1),
    }


def benchmark_aucs(bundle) -> dict[str, float]:
    tracker = SiameseTracker(bundle.meta, open_backend(bundle))
    return {s.name: track_sequence(tracker, s).scores.auc for s in load_dataset(DATA / "benchmark").sequences}


def interval(aucs: dict[str, float], reference: dict[str, float]) -> Interval:
    return paired_bootstrap([aucs[n] - reference[n] for n in sorted(reference)])


def as_record(diff: Interval) -> dict:
    return {**dataclasses.asdict(diff), "excludes_zero": diff.excludes_zero}


def render_markdown(report: dict) -> str:
    """The table of arms: mean AUC, and the paired differences against the shipped arm and NanoTrack v2 that
    ``main`` recorded."""
    v2 = report["nanotrack-v2"]["aucs"]

    def shown(record: dict) -> str:
        diff = Interval(record["mean"], record["low"], record["high"])
        return str(diff) + (" *" if diff.excludes_zero else "")

    lines = [
        f"| arm | change | steps | mean AUC | AUC - `{REFERENCE}` [95% CI] | AUC - v2 [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for arm, change in CHANGES.items():
        if arm not in report:
            continue
        entry = report[arm]
        vs_reference = shown(entry[f"vs_{REFERENCE}"]) if f"vs_{REFERENCE}" in entry else "reference"
        lines.append(f"| `{arm}` | {change} | {entry['steps']:,} | {entry['auc']:.3f} | {vs_reference} | {shown(entry['vs_v2'])} |")
    lines += ["", f"\\* the interval excludes 0. NanoTrack v2 scores {sum(v2.values()) / len(v2):.3f} on the same frames.", ""]
    arms_shown = [a for a in CHANGES if a in report]
    lines += ["AUC per sequence:", "", "| sequence | v2 | " + " | ".join(arms_shown) + " |", "|---|---|" + "---|" * len(arms_shown)]
    for name in sorted(v2):
        lines.append(f"| {name} | {v2[name]:.3f} | " + " | ".join(f"{report[a]['aucs'][name]:.3f}" for a in arms_shown) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/ablation-nano-m"))
    parser.add_argument("--arms", default=",".join(arms()))
    parser.add_argument("--budget", type=float, default=1.0, help="fraction of the shipped recipe's steps each arm trains for")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="reports of arms trained in other processes (each with its own --out), added to --out")
    args = parser.parse_args()
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    for path in args.merge:
        merged = json.loads(path.read_text())
        if "nanotrack-v2" in report and merged.get("nanotrack-v2") != report["nanotrack-v2"]:
            sys.exit(f"error: {path} scored NanoTrack v2 differently from {args.out}: merge only reports of the same benchmark")
        report.update(merged)
    if "nanotrack-v2" not in report:
        from edgetrack.deploy.import_nanotrack import import_nanotrack

        folder = DATA / "models" / "nanotrack" / "v2"
        v2 = import_nanotrack(folder / "nanotrack_backbone_sim.onnx", folder / "nanotrack_head_sim.onnx", args.work / "nanotrack-v2.etb", version="v2", force=True)
        report["nanotrack-v2"] = {"aucs": benchmark_aucs(v2)}
    chosen = arms(args.budget)
    for arm in filter(None, args.arms.split(",")):
        recipe = dataclasses.replace(chosen[arm], name=f"{STUDENT}-{arm}")
        weights = train(recipe, args.work)
        bundle = export_model(load_model(recipe.name, weights), args.work / f"{recipe.name}.etb", force=True, parity_data=DATA / "sequences", weights=weights)
        aucs = benchmark_aucs(bundle)
        report[arm] = {"recipe": repr(chosen[arm]).replace(str(DATA), "$EDGETRACK_DATA"), "steps": recipe.steps, "budget": args.budget, "aucs": aucs, "auc": sum(aucs.values()) / len(aucs)}
        print(f"{arm}: mean AUC {report[arm]['auc']:.3f}", flush=True)
        write_atomic(args.out, json.dumps(report, indent=2) + "\n")
    for arm, entry in report.items():
        if arm != "nanotrack-v2":
            entry["vs_v2"] = as_record(interval(entry["aucs"], report["nanotrack-v2"]["aucs"]))
            if REFERENCE in report and arm != REFERENCE:
                entry[f"vs_{REFERENCE}"] = as_record(interval(entry["aucs"], report[REFERENCE]["aucs"]))
    write_atomic(args.out, json.dumps(report, indent=2) + "\n")
    write_atomic(args.out.with_suffix(".md"), render_markdown(report))


if __name__ == "__main__":
    main()
