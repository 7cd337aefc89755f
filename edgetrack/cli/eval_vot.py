"""``edgetrack eval --protocol vot``: VOT's supervised protocol, with its own files and table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

#: the summary an evaluation by the VOT protocol writes beside one ``NAME.txt`` of boxes per sequence
VOT_SUMMARY = "vot.json"


def evaluate_vot(tracker, data, out: Path, groundtruth: Path | None = None) -> None:
    """Run every sequence of ``data`` by the supervised protocol into ``out``, then print the table."""
    from edgetrack.runtime.evaluate import EVAL_TOOL, format_boxes
    from edgetrack.runtime.files import write_atomic
    from edgetrack.runtime.output_folder import claim_output
    from edgetrack.runtime.vot_protocol import BURNIN, SKIP_INITIALIZE, run_sequence, summarise

    names = [f"{s.name}.txt" for s in data.sequences] + [VOT_SUMMARY]
    folder = claim_output(out, EVAL_TOOL, "--out", names)
    with folder:
        runs = []
        total = sum(len(s) for s in data.sequences)
        with click.progressbar(length=total, label=f"eval {tracker.meta.name} (vot)", file=sys.stderr) as bar:
            for sequence in data.sequences:
                runs.append(run_sequence(tracker, sequence, groundtruth, on_frame=lambda: bar.update(1)))
        summary = summarise(runs)
        for run in runs:
            write_atomic(folder.path / f"{run.sequence}.txt", format_boxes(run.boxes))
        write_atomic(folder.path / VOT_SUMMARY, json.dumps(summary.to_json(), indent=2) + "\n")
        folder.commit(names)
    click.echo(f"{'sequence':<24}{'frames':>8}{'accuracy':>10}{'failures':>10}")
    for s in summary.sequences:
        click.echo(f"{s.sequence:<24}{s.frames:>8}{s.accuracy:>10.3f}{s.failures:>10}")
    click.echo(
        f"accuracy {summary.accuracy:.3f}  failures {summary.failures_total} ({summary.failures:.2f} per sequence, "
        f"robustness {summary.robustness:.3f})  EAO {summary.eao:.3f} (lengths {summary.eao_low}-{summary.eao_high})"
    )
    click.echo(
        f"VOT supervised: re-initialised {SKIP_INITIALIZE} frames after each failure (overlap 0; a frame without ground truth "
        f"fails too, as vot-toolkit scores it); accuracy leaves out {BURNIN} frames from each initialisation"
    )
    click.echo(f"results in {folder.path}")
