"""``edgetrack profile``'s report folder: report.json, report.md, a self-contained report.html and PNG plots.

The folder is written beside its destination under a temporary name and swapped into place at the end, so a
failed or interrupted profile leaves either the previous report or nothing, never half of one. Only a folder that
a previous profile wrote (``output_folder``'s manifest) is replaced; one holding anything else is refused.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .errors import OutputError
from .files import current_umask, inline_image
from .output_folder import owned_entries, write_manifest
from .profile import ProfileRun
from .resources import peak_rss_mb
from .profile_record import (
    REPORT_TOOL,
    GpuMemory,
    ProfileReport,
    ReportBundle,
    ReportCpu,
    ReportFps,
    ReportMemory,
    ReportModel,
    ReportRun,
    ReportSamples,
    ReportTimeline,
)
from .stopwatch import latency_stats
PLOTS = {
    "latency_breakdown": "Latency per stage",
    "latency_timeline": "Latency per frame",
    "memory": "Memory and CPU over time",
}
#: Stacked in this order in the timeline: together they are a frame's decode-to-result time.
FRAME_STAGES = ("decode", "preprocess", "search", "postprocess")


def _report_names(folder: Path) -> set[str]:
    """What a report folder written before manifests holds: the report's fixed file names, report.json among them."""
    names = {"report.json", "report.md", "report.html", *(f"{plot}.png" for plot in PLOTS)}
    return names if (folder / "report.json").is_file() else set()


def check_report_dir(path: Path) -> Path:
    """Fail before any work when ``path`` cannot become a report folder."""
    path = Path(path)
    owned_entries(path, REPORT_TOOL, "--report", legacy=_report_names)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.probe-").cleanup()
    except OSError as exc:
        raise OutputError(f"cannot write a report in {path.parent}: {exc.strerror or exc}; choose another --report") from None
    return path


def build_report(run: ProfileRun, bundle: Bundle, precision: str, backend: str, environment: dict) -> ProfileReport:
    """The report of ``run``: what report.json holds."""
    meta = bundle.meta
    latency = {stage: latency_stats(run.stages[stage]) for stage in FRAME_STAGES[:2]}
    latency["template"] = latency_stats(run.template)
    latency.update({stage: latency_stats(run.stages[stage]) for stage in FRAME_STAGES[2:]})
    latency["update"] = latency_stats(run.update)
    latency["end_to_end"] = latency_stats(run.end_to_end)
    if run.arrival_latency:
        latency["arrival_to_result"] = latency_stats(run.arrival_latency)
    trace = run.trace
    rss = trace.rss_mb
    gpu = [v for v in trace.gpu_mb if v is not None]
    cost = meta.cost
    settings = run.settings
    return ProfileReport(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        bundle=ReportBundle(name=meta.name, path=str(bundle.path), family=meta.family, precision=precision, backend=backend),
        run=ReportRun(
            source=run.source,
            mode=settings.mode,
            paced_fps=settings.fps if settings.mode == "paced" else None,
            warmup=settings.warmup,
            frames=run.frames,
            dropped=run.dropped,
            lost=run.lost,
            init=tuple(run.init),
            wall_seconds=run.wall_seconds,
        ),
        fps=ReportFps(tracker=run.tracker_fps, end_to_end=run.end_to_end_fps),
        latency_ms=latency,
        memory=ReportMemory(
            rss_start_mb=rss[0],
            rss_end_mb=rss[-1],
            rss_peak_mb=max(rss),
            rss_growth_mb=rss[-1] - rss[0],
            process_peak_rss_mb=peak_rss_mb(),
            gpu=GpuMemory(reader=run.gpu_memory, start_mb=gpu[0], peak_mb=max(gpu), end_mb=gpu[-1]) if gpu else None,
        ),
        cpu=ReportCpu(
            seconds=trace.cpu_seconds,
            utilisation_percent=100.0 * trace.cpu_seconds / trace.wall_seconds,
            machine_percent=100.0 * trace.cpu_seconds / trace.wall_seconds / (environment["usable_cores"] or 1),
        ),
        model=ReportModel(
            size_mb=sum(p.stat().st_size for p in bundle.model_paths(precision)) / 1e6,
            params=cost.params if cost else None,
            template_gflops=cost.template_gflops if cost else None,
            search_gflops=cost.search_gflops if cost else None,
        ),
        environment=environment,
        timeline=ReportTimeline(
            finished_at_s=tuple(run.finished_at),
            stages_ms={stage: tuple(1000 * s for s in run.stages[stage]) for stage in FRAME_STAGES},
            arrival_to_result_ms=tuple(1000 * s for s in run.arrival_latency),
        ),
        samples=ReportSamples(seconds=tuple(trace.seconds), rss_mb=tuple(rss), cpu_percent=tuple(trace.cpu_percent), gpu_mb=tuple(trace.gpu_mb)),
        plots={name: f"{name}.png" for name in PLOTS},
    )


# ------------------------------------------------------------------------------------------------------ plots


def _plot_latency_breakdown(report: ProfileReport, ax) -> None:
    latency = report.latency_ms
    names = [n for n in latency if n != "update"]
    y = np.arange(len(names))[::-1]
    p50 = [latency[n].p50 for n in names]
    ax.barh(y, p50, color="#4c72b0", label="p50")
    ax.scatter([latency[n].p95 for n in names], y, marker="|", s=200, color="#dd8452", label="p95", zorder=3)
    ax.scatter([latency[n].p99 for n in names], y, marker="x", color="#c44e52", label="p99", zorder=3)
    ax.set_yticks(y, names)
    ax.set_xlabel("ms")
    ax.legend(loc="lower right")
    ax.set_title(f"{report.bundle.name} {report.bundle.precision} on {report.bundle.backend}")


def _plot_latency_timeline(report: ProfileReport, ax) -> None:
    stages = report.timeline.stages_ms
    x = np.arange(len(stages["decode"]))
    ax.stackplot(x, *(stages[s] for s in FRAME_STAGES), labels=FRAME_STAGES, alpha=0.85)
    if report.timeline.arrival_to_result_ms:
        ax.plot(x, report.timeline.arrival_to_result_ms, color="black", lw=1, label="arrival to result")
    ax.set_xlabel("recorded frame")
    ax.set_ylabel("ms")
    ax.legend(loc="upper right", fontsize="small")


def _plot_memory(report: ProfileReport, ax) -> None:
    samples = report.samples
    ax.plot(samples.seconds, samples.rss_mb, color="#4c72b0", label="host RSS")
    gpu = [np.nan if v is None else v for v in samples.gpu_mb]
    if not np.all(np.isnan(gpu)):
        ax.plot(samples.seconds, gpu, color="#55a868", label="GPU memory")
    ax.set_xlabel("s")
    ax.set_ylabel("MiB")
    cpu = ax.twinx()
    cpu.plot(samples.seconds, samples.cpu_percent, color="#c44e52", lw=0.8, alpha=0.7, label="CPU")
    cpu.set_ylabel("CPU % of one core")
    lines = ax.get_legend_handles_labels()
    more = cpu.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right")


def render_plots(report: ProfileReport, folder: Path) -> dict[str, Path]:
    """Save each plot of ``report`` as a PNG in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawers = {"latency_breakdown": _plot_latency_breakdown, "latency_timeline": _plot_latency_timeline, "memory": _plot_memory}
    paths = {}
    for name, title in PLOTS.items():
        fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
        drawers[name](report, ax)
        fig.suptitle(title)
        fig.tight_layout()
        paths[name] = folder / report.plots[name]
        fig.savefig(paths[name])
        plt.close(fig)
    return paths


# --------------------------------------------------------------------------------------------------- tables


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def report_tables(report: ProfileReport) -> list[tuple[str, str, list[str], list[list[str]], str | None]]:
    """The report's sections as (id, title, header, rows, plot name): one source for the Markdown and the HTML."""
    run, fps, memory, cpu, model, env = report.run, report.fps, report.memory, report.cpu, report.model, report.environment
    summary = [
        ["tracker fps (update calls only, as `edgetrack eval`)", _number(fps.tracker)],
        ["end-to-end fps (decode to result, whole loop)", _number(fps.end_to_end)],
        ["frames recorded / dropped / lost", f"{run.frames} / {run.dropped} / {run.lost}"],
        ["mode", run.mode + (f" at {_number(run.paced_fps)} fps" if run.paced_fps else "")],
        ["source", run.source],
    ]
    latency = [[name, *(_number(v) for v in (s.p50, s.p95, s.p99, s.mean, s.max)), str(s.count)] for name, s in report.latency_ms.items()]
    gpu = memory.gpu
    mem = [
        ["host RSS at start / end (MiB)", f"{_number(memory.rss_start_mb)} / {_number(memory.rss_end_mb)}"],
        ["host RSS peak during the run (MiB)", _number(memory.rss_peak_mb)],
        ["host RSS growth over the run (MiB)", _number(memory.rss_growth_mb)],
        ["process peak RSS, loading included (MiB)", _number(memory.process_peak_rss_mb)],
        ["GPU memory start / peak / end (MiB)", f"{_number(gpu.start_mb)} / {_number(gpu.peak_mb)} / {_number(gpu.end_mb)} ({gpu.reader})" if gpu else "n/a (CPU backend or no reader)"],
        ["CPU utilisation (% of one core)", _number(cpu.utilisation_percent)],
        ["CPU utilisation (% of the machine)", _number(cpu.machine_percent)],
    ]
    gflops = [model.template_gflops, model.search_gflops]
    mod = [
        ["files size (MB)", _number(model.size_mb)],
        ["parameters", _number(model.params)],
        ["GFLOPs template / search", " / ".join(_number(g) for g in gflops)],
    ]
    libraries = ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v)
    environment = [
        ["CPU", f"{env['cpu']}, {env['cores']} cores ({env['usable_cores']} usable)"],
        ["threads", f"{env['threads'] if env['threads'] else 'backend default'}; OpenCV {env['opencv_threads']}"],
        ["backend", env["backend"]],
        ["GPU", f"{env['gpu']['name']}, driver {env['gpu']['driver']}" if env["gpu"] else "none"],
        ["OS / Python", f"{env['os']} / {env['python']}"],
        ["libraries", libraries],
    ]
    return [
        ("summary", "Summary", ["measure", "value"], summary, None),
        ("latency", "Latency (ms)", ["stage", "p50", "p95", "p99", "mean", "max", "samples"], latency, "latency_breakdown"),
        ("timeline", "Per-frame timeline", ["measure", "value"], _timeline_rows(report), "latency_timeline"),
        ("memory", "Memory and CPU", ["measure", "value"], mem, "memory"),
        ("model", "Model", ["measure", "value"], mod, None),
        ("environment", "Environment", ["item", "value"], environment, None),
    ]


def _timeline_rows(report: ProfileReport) -> list[list[str]]:
    """What the timeline shows, in numbers: how steady the frame time is and where the worst frame was."""
    stages = report.timeline.stages_ms
    per_frame = np.sum([stages[s] for s in FRAME_STAGES], axis=0)
    median = float(np.median(per_frame))
    worst = int(np.argmax(per_frame))
    return [
        ["median frame, decode to result (ms)", _number(median)],
        ["slowest frame (ms, at recorded frame)", f"{_number(float(per_frame[worst]))} at {worst}"],
        ["frames slower than twice the median", _number(int(np.sum(per_frame > 2 * median)))],
        ["frame time spread p95 / p50", _number(float(np.percentile(per_frame, 95)) / median)],
    ]


def render_markdown(report: ProfileReport) -> str:
    b = report.bundle
    lines = [f"# Profile of {b.name} ({b.precision}, {b.backend})", "", f"Created {report.created} by edgetrack profile.", ""]
    for _, title, header, rows, plot in report_tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        if plot:
            lines += ["", f"![{PLOTS[plot]}]({report.plots[plot]})"]
        lines.append("")
    return "\n".join(lines)


def render_html(report: ProfileReport, pngs: dict[str, Path]) -> str:
    """One file with everything in it: the plots are inlined as base64 PNG, so it can be mailed or archived."""
    b = report.bundle
    title = f"Profile of {b.name} ({b.precision}, {b.backend})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Created {html.escape(report.created)} by edgetrack profile.</p>",
    ]
    for key, title, header, rows, plot in report_tables(report):
        parts.append(f'<section id="{key}"><h2>{html.escape(title)}</h2><table>')
        parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
        if plot:
            parts.append(inline_image(pngs[plot], PLOTS[plot]))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(folder: Path, report: ProfileReport) -> Path:
    """Write the whole report folder, or nothing: it is built under a temporary name and renamed into place."""
    folder = Path(folder)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        pngs = render_plots(report, staging)
        (staging / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        (staging / "report.md").write_text(render_markdown(report))
        (staging / "report.html").write_text(render_html(report, pngs))
        write_manifest(staging, REPORT_TOOL, (p.name for p in staging.iterdir()))
        os.chmod(staging, 0o777 & ~current_umask())
        if folder.exists():
            retired = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.replace(folder, retired)
            os.replace(staging, folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except OSError as exc:
        raise OutputError(f"cannot write the report to {folder}: {exc.strerror or exc}; choose another --report") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
