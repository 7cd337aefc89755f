"""What ``edgetrack tune`` gave: each tuned bundle against its source on the sequences it was not tuned on, with a
paired bootstrap interval over those sequences.

For every ``WORK`` folder of a finished ``edgetrack tune`` run, it reads ``WORK/tune.json`` (the source bundle, the
tuned one, the values before and after, the tune set), then tracks the report set (``report_on``) with both bundles
as ``edgetrack eval`` does and writes a JSON and a markdown table:

    .venv/bin/python benchmarks/tune_report.py runs/tune/nanotrack-v2 runs/tune/edgetrack-nano-m \\
        runs/tune/edgetrack-nano-s --out benchmarks/tune_report
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.evaluate import track_sequence
from edgetrack.runtime.files import write_atomic
from edgetrack.runtime.metrics import Interval, LostScores, paired_bootstrap
from edgetrack.runtime.open_tracker import open_tracker
from edgetrack.runtime.tune import REPORT_FILE, lost_f1


@dataclass(frozen=True)
class TuneRow:
    """One tuned bundle against its source on the report set."""

    name: str
    before: dict
    after: dict
    tune_auc_before: float
    tune_auc_after: float
    auc_before: float
    auc_after: float
    difference: Interval
    lost_f1_before: float | None
    lost_f1_after: float | None
    per_sequence_before: dict
    per_sequence_after: dict


def score(bundle: str, dataset: Path, threads: int) -> tuple[dict[str, float], LostScores]:
    """Per-sequence AUC and the pooled lost record of ``bundle`` on ``dataset``, as ``edgetrack eval`` scores them."""
    sequences = load_dataset(dataset).sequences
    with open_tracker(bundle, threads=threads) as tracker:
        results = [track_sequence(tracker, s) for s in sequences]
    return {r.name: r.scores.auc for r in results}, sum((r.lost for r in results), LostScores(0, 0, 0, 0))


def row(work: Path, threads: int) -> TuneRow:
    report = json.loads((work / REPORT_FILE).read_text())
    before, lost_before = score(report["bundle"], Path(report["report_on"]), threads)
    after, lost_after = score(report["written"], Path(report["report_on"]), threads)
    names = sorted(before)
    return TuneRow(
        name=work.name,
        before=report["before"],
        after=report["best"],
        tune_auc_before=report["tune_before"]["auc"],
        tune_auc_after=report["tune_after"]["auc"],
        auc_before=float(np.mean([before[n] for n in names])),
        auc_after=float(np.mean([after[n] for n in names])),
        difference=paired_bootstrap([after[n] - before[n] for n in names]),
        lost_f1_before=lost_f1(lost_before),
        lost_f1_after=lost_f1(lost_after),
        per_sequence_before=before,
        per_sequence_after=after,
    )


def render(rows: list[TuneRow]) -> str:
    def f1(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| model | penalty_k | window_influence | lr | lost_threshold | AUC on train/ before → after | AUC on benchmark/ before → after | difference [95% CI] | lost F1 on benchmark/ before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        values = " | ".join(f"{r.before[k]:.3f} → {r.after[k]:.3f}" for k in ("penalty_k", "window_influence", "lr", "lost_threshold"))
        lines.append(
            f"| {r.name} | {values} | {r.tune_auc_before:.3f} → {r.tune_auc_after:.3f} | {r.auc_before:.3f} → {r.auc_after:.3f} | "
            f"{r.difference} | {f1(r.lost_f1_before)} → {f1(r.lost_f1_after)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", nargs="+", type=Path, help="WORK folders of finished edgetrack tune runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/tune_report"))
    args = parser.parse_args()
    rows = [row(work, args.threads) for work in args.work]
    write_atomic(args.out.with_suffix(".json"), json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    write_atomic(args.out.with_suffix(".md"), render(rows))
    print(render(rows))


if __name__ == "__main__":
    main()
