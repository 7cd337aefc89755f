"""Train the students shipped in ``runtime/pretrained/``, score them on the benchmark and write their model cards.

Each student is distilled from its teacher in stages (progressive shrinking): every stage shrinks the previous
stage's student to narrower widths (``shrink_from`` in its model record) and distils it for a fixed number of
steps. Every stage is an ordinary ``edgetrack distill`` run folder under ``--work``: a run that is stopped (SIGTERM,
Ctrl-C, the end of a session) continues exactly where it stopped when this script is started again, and a finished
stage is skipped (the recipes and their training: ``student_recipes.py``). So the script can run in the background for as long as it needs, over several sessions:

    nohup .venv/bin/python benchmarks/train_pretrained.py --work runs/pretrained > runs/pretrained.log 2>&1 &

When every stage of a student is done, its last stage is exported to ``WORK/NAME.etb``, scored on
``$EDGETRACK_DATA/benchmark`` beside NanoTrack v2 (``student_benchmark.py``: paired AUC interval, interleaved
fps), and its card is written to ``WORK/NAME.md``. ``--ship`` copies both into ``runtime/pretrained/``. A recipe
with ``tune_trials`` first tunes the exported bundle's tracking hyper-parameters in place with ``edgetrack tune``
on ``$EDGETRACK_DATA/train`` (seeded, one thread, so the values repeat).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

from student_benchmark import compare, open_entry, run_benchmark, write_report  # noqa: E402
from student_recipes import ALIGNMENTS, DATA, Recipe, recipes, train  # noqa: E402

from edgetrack.deploy.export import export_model, load_model  # noqa: E402
from edgetrack.distill.config import TrainConfig  # noqa: E402
from edgetrack.distill.shrink import widen  # noqa: E402
from edgetrack.runtime.environment import cpu_model  # noqa: E402
from edgetrack.runtime.bundle import Bundle, Hyper, load_bundle  # noqa: E402
from edgetrack.runtime.files import write_atomic  # noqa: E402
from edgetrack.runtime.metrics import Interval  # noqa: E402
from edgetrack.runtime.tune import tune  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "runtime" / "pretrained"


def hyper_line(recipe: Recipe, hyper: Hyper) -> str:
    values = f"penalty_k {hyper.penalty_k:.4f}, window_influence {hyper.window_influence:.4f}, lr {hyper.lr:.4f}, lost_threshold {hyper.lost_threshold:.4f}"
    if not recipe.tune_trials:
        return f"NanoTrack v2's ({values})"
    return f"tuned by `edgetrack tune` on `$EDGETRACK_DATA/train`, {recipe.tune_trials} trials, seed 0 ({values})"


def batchnorm_line(recipe: Recipe) -> str:
    if recipe.batchnorm != "frozen":
        return "batch statistics while training"
    if recipe.shrink_refit:
        return "frozen while training, with its source's running statistics"
    return f"frozen while training, its running statistics re-estimated on {TrainConfig().batchnorm_calibration * recipe.batch_size} pairs after each shrink"


def template_line(recipe: Recipe, front_params: int) -> list[str]:
    if not recipe.template_front:
        return []
    return [
        f"- template: `{recipe.base}`'s stem and blocks 1-{recipe.template_front - 1} ({front_params:,} parameters, frozen, at its "
        "widths) in front of the student's later blocks; it runs once per target, so the search path, the student's "
        "alone, sets the frame rate"
    ]


def card(recipe: Recipe, row: dict, reference: dict, torch_params: int, front_params: int, hyper: Hyper) -> str:
    """The model card: what the student is, how it was made and what it scores."""
    diff = row["vs_reference"]
    cores = len(os.sched_getaffinity(0))
    stages = "; ".join(
        f"{s.widths.expand:g}/{s.widths.stage:g}/{s.widths.tower:g}/{s.widths.corr:g} for {s.steps} steps" for s in recipe.stages
    )
    lines = [
        f"# {recipe.name}",
        "",
        f"A NanoTrack student distilled by edgetrack from `{recipe.base}` ({recipe.teacher_weights.name}).",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {torch_params:,} in torch{f' ({front_params:,} of them the frozen template front)' if front_params else ''}; "
        f"{row['params']:,} in the bundle (BatchNorm folded) |",
        f"| search GFLOPs | {row['search_gflops']:.3f} |",
        f"| fp32 size | {row['size_mb']:.2f} MB |",
        f"| mean AUC, 15-sequence benchmark | {row['auc']:.3f} (NanoTrack v2 {reference['auc']:.3f}) |",
        f"| AUC - v2, 95% bootstrap interval | {Interval(diff['mean'], diff['low'], diff['high'])} |",
        f"| fps (update calls, {cpu_model()}, {cores} core{'s' if cores > 1 else ''}) | {row['fps']:.0f} (v2 {reference['fps']:.0f}: {row['fps'] / reference['fps']:.2f}x) |",
        "",
        "## Recipe",
        "",
        f"- teacher: `{recipe.base}`; losses: {recipe.losses}"
        + "".join(f", {term} {weight:g}" for term, weight in recipe.loss_weights)
        + f"; SGD lr {recipe.lr}, {recipe.batch_size} pairs a step, seed {recipe.seed}",
        *template_line(recipe, front_params),
        f"- BatchNorm: {batchnorm_line(recipe)}",
        *([f"- after each shrink, every layer that lost input channels refitted by least squares to its source's outputs on {recipe.shrink_refit * recipe.batch_size} pairs (`shrink_refit {recipe.shrink_refit}`)"] if recipe.shrink_refit else []),
        f"- progressive shrinking, width factors expand/stage/tower/corr: {stages} ({recipe.steps} steps, "
        f"{recipe.steps * recipe.batch_size:,} pairs)",
        "- widths: " + ALIGNMENTS[recipe.alignment]
        + (f", except {', '.join(f'`{k}`' for k in recipe.keep_widths)}" if recipe.keep_widths else ""),
        "- data: " + ", ".join(f"`{d.replace(str(DATA), '$EDGETRACK_DATA')}`" for d in recipe.data),
        f"- tracking hyper-parameters: {hyper_line(recipe, hyper)}",
        "",
        "## AUC per sequence",
        "",
        "| sequence | this | v2 |",
        "|---|---|---|",
        *(f"| {n} | {s['auc']:.3f} | {reference['sequences'][n]['auc']:.3f} |" for n, s in sorted(row["sequences"].items())),
        "",
        "## Reproduce",
        "",
        f"    .venv/bin/python benchmarks/train_pretrained.py --students {recipe.name} --work runs/pretrained --ship",
    ]
    return "\n".join(lines) + "\n"


def export_student(recipe: Recipe, weights: Path, work: Path) -> tuple[Bundle, int, int]:
    """The trained student widened to multiples of 8 (but ``recipe.keep_widths``), exported to ``WORK/NAME.etb``; the
    bundle, the widened model's parameter count and how many of them are frozen (the template front)."""
    model = load_model(None, weights)
    model = widen(model, recipe.exported_widths(model.config.widths))
    bundle = export_model(model, work / f"{recipe.name}.etb", force=True, parity_data=DATA / "sequences", weights=weights)
    return bundle, sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if not p.requires_grad)


def score(recipe: Recipe, weights: Path, work: Path, rounds: int) -> tuple[Path, str]:
    """Export the student, benchmark it beside NanoTrack v2 (``WORK/NAME.benchmark.json`` and ``.md``) and write its card."""
    bundle, torch_params, front_params = export_student(recipe, weights, work)
    if recipe.tune_trials:
        shutil.rmtree(work / f"{recipe.name}.tune", ignore_errors=True)
        tuned = tune(bundle.path, DATA / "train", work / f"{recipe.name}.tune", trials=recipe.tune_trials, in_place=True, threads=1)
        print(f"{recipe.name}: tuned on train/, AUC {tuned.tune_before.auc:.4f} -> {tuned.tune_after.auc:.4f}", flush=True)
        bundle = load_bundle(bundle.path)
    with tempfile.TemporaryDirectory() as tmp:
        entries = [open_entry("nanotrack-v2", Path(tmp)), open_entry(f"{recipe.name}={bundle.path}", Path(tmp))]
        run_benchmark(entries, DATA / "benchmark", rounds)
        rows = compare([e.row() for e in entries])
    write_report(rows, DATA / "benchmark", rounds, work / f"{recipe.name}.benchmark")
    reference, student = (dataclasses.asdict(r) for r in rows)
    text = card(recipe, student, reference, torch_params, front_params, bundle.meta.hyper)
    write_atomic(work / f"{recipe.name}.md", text)
    return bundle.path, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default=",".join(recipes()), help="comma-separated names of the students to make")
    parser.add_argument("--work", type=Path, default=Path("runs/pretrained"))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds of the benchmark")
    parser.add_argument("--ship", action="store_true", help="copy the bundles and cards into runtime/pretrained/")
    args = parser.parse_args()
    chosen = recipes()
    for name in args.students.split(","):
        recipe = chosen[name]
        weights = train(recipe, args.work)
        bundle, text = score(recipe, weights, args.work, args.rounds)
        print(text, flush=True)
        if args.ship:
            target = SHIPPED / bundle.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(bundle, target)
            shutil.copy(args.work / f"{recipe.name}.md", SHIPPED / f"{recipe.name}.md")
            print(f"shipped {target}", flush=True)


if __name__ == "__main__":
    main()
