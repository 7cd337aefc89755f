"""``edgetrack import-nanotrack``: a published NanoTrack ONNX pair as a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from .common import default_parity_data
from .errors import requires


@click.command("import-nanotrack")
@click.argument("backbone", type=click.Path(path_type=Path))
@click.argument("head", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write (NAME.etb).")
@click.option("--version", "version", type=click.Choice(["v1", "v2", "v3"]), default=None, help="NanoTrack version; detected from the files when omitted.")
@click.option("--parity-data", type=click.Path(path_type=Path, exists=True), default=None, help="Annotated sequences for the fused-model parity crops [default: $EDGETRACK_DATA/sequences when present, else random crops].")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@requires("deploy")
def import_nanotrack_command(backbone: Path, head: Path, out: Path, version: str | None, parity_data: Path | None, force: bool) -> None:
    """Turn a published NanoTrack backbone/head ONNX pair into a bundle.

    \b
    Example:
      edgetrack import-nanotrack nanotrack_backbone_sim.onnx nanotrack_head_sim.onnx --version v2 -o nanotrack-v2.etb
    """
    from edgetrack.deploy.import_nanotrack import import_nanotrack

    bundle = import_nanotrack(backbone, head, out, version=version, force=force, parity_data=parity_data or default_parity_data())
    meta = bundle.meta
    click.echo(
        f"wrote {bundle.path}: {meta.name}, score map {meta.geometry.score_size}x{meta.geometry.score_size}, "
        f"fused-model parity {meta.parity.max_abs_diff:.1e} on {meta.parity.inputs}"
    )
