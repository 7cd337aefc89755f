"""``edgetrack build-engine``: fp16 and int8 models or TensorRT engines for a bundle, behind an accuracy gate."""

from __future__ import annotations

from pathlib import Path

import click

from edgetrack import defaults

from .common import ClickProgress, echo_note
from .errors import requires


@click.command("build-engine")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--precision", type=click.Choice(defaults.PRECISIONS), required=True, help="The precision to build.")
@click.option("--backend", type=click.Choice(defaults.BUILD_BACKENDS), default=defaults.BACKEND, show_default=True, help="auto: TensorRT when it imports and a CUDA GPU exists, else ONNX Runtime.")
@click.option("--calib", "calib", multiple=True, type=click.Path(path_type=Path), help="Annotated sequence folder, folder of sequences or video with ground truth for int8 calibration; repeatable.")
@click.option("--calib-frames", type=click.IntRange(min=1), default=defaults.CALIB_FRAMES, show_default=True, help="Search crops to calibrate on, spread over the --calib sequences.")
@click.option("--calib-method", type=click.Choice(defaults.CALIB_METHODS), default=None, help=f"ONNX Runtime's calibration method [default: {defaults.CALIB_METHOD}]; TensorRT always uses its entropy calibrator.")
@click.option("--workspace", "workspace_mib", type=click.IntRange(min=1), default=1024, show_default=True, help="TensorRT builder workspace pool limit, MiB.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None, help="TensorRT timing cache file, reused and updated across builds.")
@click.option("--max-auc-drop", type=float, default=defaults.MAX_AUC_DROP, show_default=True, help="Fail the build when the mean AUC falls more than this below fp32's.")
@click.option("--eval", "eval_sources", multiple=True, type=click.Path(path_type=Path), help="Annotated sequences for the accuracy gate; repeatable [default: the --calib sources].")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help="For a shipped student: the copy to build into [default: ./NAME.etb]; the installed one is never changed.")
@requires("deploy")
def build_engine_command(bundle: Path, precision: str, backend: str, calib: tuple[Path, ...], calib_frames: int, calib_method: str | None, workspace_mib: int, timing_cache: Path | None, max_auc_drop: float, eval_sources: tuple[Path, ...], out: Path | None) -> None:
    """Build fp16 or int8 models (ONNX Runtime) or engines (TensorRT) for a bundle, kept only if they track
    within --max-auc-drop of fp32 on the --eval sequences; otherwise the bundle is left as it was.

    \b
    Example:
      edgetrack build-engine nanotrack-v2.etb --precision int8 --calib ../shared/data/sequences
      edgetrack build-engine edgetrack-nano-m --precision int8 --calib ../shared/data/train -o nano-m.etb
      edgetrack build-engine nanotrack-v2.etb --precision fp16 --eval ../shared/data/sequences/bag
      edgetrack eval nanotrack-v2.etb --precision int8 --dataset ../shared/data/sequences
    """
    from edgetrack.deploy.build_engine import build_engine
    from edgetrack.runtime.pretrained import writable_copy

    report = build_engine(
        writable_copy(bundle, out),
        precision,
        backend=backend,
        calib=list(calib),
        calib_frames=calib_frames,
        calib_method=calib_method,
        workspace_mib=workspace_mib,
        timing_cache=timing_cache,
        max_auc_drop=max_auc_drop,
        eval_sources=list(eval_sources),
        note=echo_note,
        progress=ClickProgress(),
    )
    if report.accuracy is None:
        click.echo(report.note)
        return
    a = report.accuracy
    click.echo(f"built {precision} for {report.backend} in {report.bundle}: {', '.join(p.name for p in report.files)}")
    click.echo(
        f"accuracy gate passed: mean AUC {a.auc:.3f} vs fp32 {a.fp32_auc:.3f} (drop {a.drop:+.3f} <= {max_auc_drop}) "
        f"on {len(a.sequences)} sequence(s)"
    )
