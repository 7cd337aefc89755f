"""``edgetrack models``: the table of the model zoo and the shipped students."""

from __future__ import annotations

import click

from .errors import requires


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@requires("train")
def models_command(as_json: bool) -> None:
    """List the model zoo and the students shipped with edgetrack: size, GFLOPs per branch and default tracking
    hyper-parameters of each, and where a shipped student's model card is.

    \b
    Example:
      edgetrack models
      edgetrack models --json > models.json
    """
    import dataclasses
    import json

    from edgetrack.distill.models import PRESETS
    from edgetrack.distill.models.summary import summarise
    from edgetrack.runtime.pretrained import describe, shipped

    rows = [summarise(config) for config in PRESETS.values()]
    students = [describe(name) for name in shipped()]
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in [*rows, *students]], indent=2))
        return
    click.echo(f"{'model':<22}{'family':<11}{'teacher':<16}{'params':>10}{'fp32 MB':>9}{'GFLOPs z':>10}{'GFLOPs x':>10}  window/penalty/lr")
    for r in [*rows, *students]:
        h = r.hyper
        click.echo(
            f"{r.name:<22}{r.family:<11}{r.teacher or '-':<16}{r.params / 1e6:>9.3f}M{r.fp32_mb:>9.2f}"
            f"{r.template_gflops:>10.3f}{r.search_gflops:>10.3f}  "
            f"{h['window_influence']:.3f}/{h['penalty_k']:.3f}/{h['lr']:.3f}"
        )
    for student in students:
        click.echo(f"{student.name} is shipped with edgetrack: use its name as a bundle; model card: {student.card}")
