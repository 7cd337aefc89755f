"""``edgetrack bench``: a bundle over precisions x backends, each build behind the accuracy gate."""

from __future__ import annotations

from pathlib import Path

import click

from edgetrack import defaults

from .common import ClickProgress, echo_note
from .errors import requires


@click.command("bench")
@click.argument("bundle", type=click.Path(path_type=Path), required=False)
@click.option("--model", "model_name", default=None, help="Instead of BUNDLE: a preset from `edgetrack models`, exported into --out first (needs torch).")
@click.option("--weights", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None, help="Checkpoint for --model, as for `edgetrack export`.")
@click.option("--dataset", type=click.Path(path_type=Path), required=True, help="Annotated sequences to track: a sequence folder, a folder of sequences or a video.")
@click.option("--precisions", default=",".join(defaults.PRECISIONS), show_default=True, help="Comma-separated precisions to bench.")
@click.option("--backends", default=",".join(defaults.BENCH_DEFAULT_BACKENDS), show_default=True, help=f"Comma-separated backends: {', '.join(defaults.BENCH_BACKENDS)}.")
@click.option("--calib", "calib", multiple=True, type=click.Path(path_type=Path), help="Calibration sequences for int8 builds; repeatable [default: --dataset].")
@click.option("--max-auc-drop", type=float, default=defaults.MAX_AUC_DROP, show_default=True, help="Accuracy gate of every build: how far its mean AUC may fall below fp32's.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for ONNX Runtime and the OpenCV reference (default: their own choice).")
@click.option("--compare", default=None, help="opencv-nano: add cv2.TrackerNano as a reference row, on the bundle's published pair found under $EDGETRACK_DATA/models/nanotrack, or on opencv-nano=BACKBONE.onnx,HEAD.onnx.")
@click.option("--rounds", type=click.IntRange(min=1), default=defaults.BENCH_ROUNDS, show_default=True, help="Timed passes over --dataset per cell, cells taking turns; FPS is the median.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where bench.json and bench.md go [default: runs/bench/BUNDLE].")
@requires("deploy")
def bench_command(bundle: Path | None, model_name: str | None, weights: Path | None, dataset: Path, precisions: str, backends: str, calib: tuple[Path, ...], max_auc_drop: float, threads: int | None, compare: str | None, rounds: int, out: Path | None) -> None:
    """Bench a bundle over precisions x backends: build what is missing (each build passes the accuracy gate),
    then track --dataset with every cell and report size, AUC, ms/frame and FPS.

    Status: ✅ ok, ❎ built but failed the accuracy gate (not kept), ❌ could not be built or run here, each
    with its one-line reason. The bundle keeps what was built.

    \b
    Example:
      edgetrack bench nanotrack-v2.etb --dataset ../shared/data/sequences --compare opencv-nano
      edgetrack bench --model nanotrack-v3 --weights nanotrackv3.pth --dataset ../shared/data/sequences \\
          --precisions fp32,int8 --backends onnxruntime,tensorrt
    """
    from edgetrack.deploy.bench import BENCH_TOOL, export_preset, parse_compare, plan_bench, previous_bench, render_text, run_bench, write_report
    from edgetrack.runtime.bundle import load_bundle
    from edgetrack.runtime.errors import InputError
    from edgetrack.runtime.output_folder import claim_output
    from edgetrack.runtime.pretrained import resolve, writable_copy

    if (bundle is None) == (model_name is None):
        raise InputError("give either a BUNDLE or --model NAME to bench")
    if weights is not None and model_name is None:
        raise InputError("--weights goes with --model; a BUNDLE already holds its weights")
    shipped = bundle is not None and resolve(bundle) != bundle
    if bundle is not None:
        load_bundle(resolve(bundle))
    name = Path(bundle).name.removesuffix(".etb") if bundle else model_name
    writes = ["bench.json", "bench.md"] + ([f"{name}.etb"] if shipped or bundle is None else [])
    folder = claim_output(out or Path("runs") / "bench" / name, BENCH_TOOL, "--out", writes, previous_bench)
    with folder:
        plan = plan_bench(
            dataset,
            folder.path,
            precisions=precisions.split(","),
            backends=backends.split(","),
            calib=calib,
            max_auc_drop=max_auc_drop,
            threads=threads,
            compare=parse_compare(compare) if compare else None,
            rounds=rounds,
            note=echo_note,
        )
        benched = writable_copy(bundle, folder.path / f"{name}.etb") if bundle else export_preset(model_name, weights, plan, note=echo_note)
        report = run_bench(benched, plan, note=echo_note, progress=ClickProgress())
        click.echo(render_text(report))
        written = write_report(report, plan.out)
        folder.commit(writes)
    click.echo(f"wrote {written[0]} and {written[1]}")
