"""``edgetrack export``: a zoo model or trained weights as a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from edgetrack import defaults

from .common import default_parity_data
from .errors import requires


@click.command("export")
@click.option("--model", "name", default=None, help="A preset name from `edgetrack models`; optional for weights written by train/distill, which record their model (it then picks one student of a run's last.pt).")
@click.option("--weights", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="Checkpoint to load (a state_dict, or {'state_dict': ...}, or a file written by train/distill); strict.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write (NAME.etb).")
@click.option("--opset", type=click.IntRange(11, 21), default=defaults.OPSET, show_default=True, help="ONNX opset.")
@click.option("--parity-data", type=click.Path(path_type=Path, exists=True), default=None, help="Annotated sequences for the torch/ONNX parity crops [default: $EDGETRACK_DATA/sequences when present, else random crops].")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@requires("train", "deploy")
def export_command(name: str | None, weights: Path | None, out: Path, opset: int, parity_data: Path | None, force: bool) -> None:
    """Export a zoo model to a bundle: template.onnx + search.onnx, simplified with onnxslim, checked with
    onnx.checker, and refused unless ONNX Runtime reproduces torch on real crops.

    \b
    Example:
      edgetrack export --model nanotrack-v2 --weights nanotrackv2.pth -o nanotrack-v2.etb
      edgetrack export --weights runs/distill/nanotrack-v3-s50/nanotrack-v3-s50.pt -o student.etb
    """
    from edgetrack.deploy.export import export_model, load_model

    model = load_model(name, weights)
    bundle = export_model(model, out, opset=opset, parity_data=parity_data or default_parity_data(), force=force, weights=weights)
    p = bundle.meta.parity
    click.echo(f"wrote {bundle.path}: {bundle.meta.name}, parity {p.max_abs_diff:.1e} abs / {p.max_rel_diff:.1e} rel on {p.inputs}")
