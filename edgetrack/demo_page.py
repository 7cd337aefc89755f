"""The demo's report: success and precision plots, an annotated clip, and ``index.html``, one self-contained page
(images inlined as base64, as ``runtime/profile_report.py`` does) drawn from the demo's summary alone."""

from __future__ import annotations

import html
import io
import itertools
import time
from pathlib import Path

import cv2
import numpy as np

from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.bundle import Bundle
from edgetrack.runtime.datasets import Sequence
from edgetrack.runtime.evaluate import SequenceResult
from edgetrack.runtime.files import inline_image, write_atomic
from edgetrack.runtime.metrics import PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS, center_error, precision_curve, rect_iou, success_curve
from edgetrack.runtime.track_session import draw_overlay
from edgetrack.runtime.tracker import SiameseTracker

#: BGR. The tracker's box and label are draw_overlay's: green, red when lost.
GROUND_TRUTH_COLOUR = (0, 215, 255)
TRACKED_COLOUR, LOST_COLOUR = (0, 255, 0), (0, 0, 255)
CLIP_FRAME_MS = 80
#: 64 colours keep 60 frames of 320x240 near 1 MB; more barely show.
GIF_COLOURS = 64
LEGEND_HEIGHT = 22


def mean_curves(results: list[SequenceResult], sequences: list[Sequence]) -> dict:
    """The OTB success and precision curves, averaged over sequences as the mean AUC is, so that a curve's mean
    is the AUC in the table."""
    success, precision = [], []
    for result, sequence in zip(results, sequences):
        truth = sequence.groundtruth[: result.frames]
        boxes = result.boxes.copy()
        boxes[0] = truth[0]  # as ope_scores counts it: the first frame is the box the tracker was given
        success.append(success_curve(rect_iou(boxes, truth)))
        precision.append(precision_curve(center_error(boxes, truth)))
    return {"success": np.round(np.mean(success, 0), 4).tolist(), "precision": np.round(np.mean(precision, 0), 4).tolist()}


def plot_curves(curves: dict[str, dict], path: Path) -> None:
    """Success and precision plots of every ``"KEY PRECISION"``, best first in the legends; int8 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(label.split()[0] for label in curves))
    colours = {key: plt.get_cmap("tab10")(i) for i, key in enumerate(keys)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for ax, kind, x, title, xlabel in (
        (left, "success", SUCCESS_THRESHOLDS, "Success plot", "overlap threshold"),
        (right, "precision", PRECISION_THRESHOLDS, "Precision plot", "location error threshold (px)"),
    ):
        # The legend's number is the one the table reports: AUC for success, the value at 20 px for precision.
        score = {label: float(np.mean(c["success"])) if kind == "success" else c["precision"][20] for label, c in curves.items()}
        for label in sorted(curves, key=score.get, reverse=True):
            key, precision = label.split()
            ax.plot(x, curves[label][kind], color=colours[key], ls="--" if precision != "fp32" else "-", label=f"{label} [{score[label]:.3f}]")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("success rate" if kind == "success" else "precision")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def write_clip(bundle: Bundle, precision: str, sequence: Sequence, frames: int, path: Path) -> None:
    """An animated GIF of ``bundle`` tracking the first ``frames`` of ``sequence`` with the runtime's overlay,
    the ground truth drawn under it, and a legend below."""
    from PIL import Image

    images, seconds = [], 0.0
    with SiameseTracker(bundle.meta, open_backend(bundle, precision, backend="onnxruntime"), bundle=bundle) as tracker:
        for index, frame in enumerate(itertools.islice(sequence.frames(), frames)):
            truth = sequence.groundtruth[index]
            if index == 0:
                tracker.init(frame, truth)
                label = "init: the ground truth box"
            else:
                start = time.perf_counter()
                result = tracker.update(frame)
                seconds += time.perf_counter() - start
            x, y, w, h = (int(round(v)) for v in truth)
            cv2.rectangle(frame, (x, y), (x + w, y + h), GROUND_TRUTH_COLOUR, 1)
            if index == 0:
                cv2.putText(frame, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, GROUND_TRUTH_COLOUR, 1, cv2.LINE_AA)
            else:
                draw_overlay(frame, result, index / seconds)
            # The legend goes on a strip below the frame, where no scenery makes it hard to read.
            frame = cv2.copyMakeBorder(frame, 0, LEGEND_HEIGHT, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            baseline = frame.shape[0] - 7
            cv2.putText(frame, "ground truth", (8, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.45, GROUND_TRUTH_COLOUR, 1, cv2.LINE_AA)
            cv2.putText(frame, f"{bundle.meta.name} {precision}", (120, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.45, TRACKED_COLOUR, 1, cv2.LINE_AA)
            images.append(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    palette = _gif_palette(images)
    # One palette and no dithering: dither noise is what the GIF's compression does worst on.
    indexed = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    buffer = io.BytesIO()
    indexed[0].save(buffer, format="GIF", save_all=True, append_images=indexed[1:], duration=CLIP_FRAME_MS, loop=0, optimize=True)
    write_atomic(path, buffer.getvalue())


def _gif_palette(images: list):
    """The clip's colours, plus the overlay's exactly: a palette learnt from the scene alone could turn a thin red
    box into the nearest brown."""
    from PIL import Image

    overlay = [GROUND_TRUTH_COLOUR, TRACKED_COLOUR, LOST_COLOUR]
    picks = images[:: max(1, len(images) // 4)]
    mosaic = Image.new("RGB", (picks[0].width, picks[0].height * len(picks)))
    for i, image in enumerate(picks):
        mosaic.paste(image, (0, i * image.height))
    scene = mosaic.quantize(colors=GIF_COLOURS - len(overlay)).getpalette()[: 3 * (GIF_COLOURS - len(overlay))]
    palette = Image.new("P", (1, 1))
    palette.putpalette(scene + [c for bgr in overlay for c in reversed(bgr)])
    return palette


# ----------------------------------------------------------------------------------------------------- the page


def _number(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A table of already escaped cells."""
    lines = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join([*lines, "</table>"])


def _model_rows(summary: dict) -> list[list[str]]:
    rows = []
    for r in summary["table"]:
        if r["status"] == "ok":
            note = f'<a href="{html.escape(r["profile"])}">profile</a>' if r.get("profile") else ""
        else:
            note = html.escape(r["note"])
        rows.append([
            html.escape(r["model"]), html.escape(r["role"]), f"{r['params'] / 1e6:.3f}M", _number(r["size_mb"], 2),
            html.escape(r["precision"]), f"<b>{r['auc']:.3f}</b>", f"{r['precision_20px']:.3f}", _number(r["fps"], 0),
            _number(r["p50_ms"], 2), _number(r["rss_mb"], 0), note,
        ])
    return rows


def render_index(summary: dict, curves_png: Path, clip_gif: Path) -> str:
    settings, env, comparison, clip = summary["settings"], summary["environment"], summary["comparison"], summary["clip"]
    total = summary["timings_s"]["total"]
    teacher = summary["teacher"]
    b_teacher, b_student = settings["teacher_budget"], settings["student_budget"]
    if teacher["source"] == "trained here":
        teacher_line = f"{teacher['model']}, trained alone from scratch: {b_teacher['epochs'] * b_teacher['steps_per_epoch']} steps of {b_teacher['batch_size']} pairs."
    else:
        teacher_line = f"{teacher['model']}, given: {teacher['source']}."
    steps = f"{b_student['epochs'] * b_student['steps_per_epoch']} steps of {b_student['batch_size']} pairs"
    what = [
        ("Teacher", teacher_line),
        ("Students", f"two {summary['student']}, shrunk from the teacher (its strongest channels) and distilled with TSsKD "
                     f"(ground truth, teacher-student and student-student losses): {steps}."),
        ("Baseline", f"the same {summary['student']} trained alone from scratch, on ground truth only: {steps}, the same optimiser ({settings['optimizer']}, lr {settings['lr']})."),
        ("Data", f"the synthetic world, nothing downloaded: training on {summary['data']['train']}; evaluation on "
                 f"{len(summary['data']['eval_sequences'])} sequences of {settings['eval_length']} frames from a seed training never saw ({summary['data']['eval']})."),
        ("Machine", f"{env['cpu']}, {env['usable_cores']} cores; the whole run took {int(total) // 60} min {int(total) % 60} s. Every number below was measured by it."),
    ]
    timings = [[html.escape(step), f"{seconds:.0f}", f"{100 * seconds / total:.0f}%"] for step, seconds in summary["timings_s"].items() if step != "total"]
    timings.append(["<b>total</b>", f"<b>{total:.0f}</b>", "100%"])
    first = next(r for r in summary["table"] if r["key"].startswith("student-"))
    rerun = f"edgetrack eval bundles/{first['key']}.etb --dataset {summary['data']['eval']} --precision fp32"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>edgetrack demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}.verdict{font-size:1.1em;padding:.6em;background:#f6f6e8;border-left:4px solid #b5a642}"
        "code{background:#f3f3f3;padding:0 .2em}</style>",
        "</head><body>",
        "<h1>edgetrack demo: teacher-students knowledge distillation, from training to the device</h1>",
        "<ul>" + "".join(f"<li><b>{name}</b>: {html.escape(text)}</li>" for name, text in what) + "</ul>",
        f'<p class="verdict" id="verdict">{html.escape(comparison["sentence"])}</p>',
        '<section id="models"><h2>Models</h2>',
        _table(["model", "role", "params", "size MB", "precision", "AUC", "P@20", "fps", "p50 ms", "RSS MiB", "notes"], _model_rows(summary)),
        "<p>AUC and P@20 (precision at 20 px) are means over the evaluation sequences; fps counts the tracker's update "
        "calls on them (ONNX Runtime, CPU). p50 is the median update latency and RSS the peak resident memory of "
        "<code>edgetrack profile</code> on the first sequence, each in a process of its own. Size is the two model files. "
        f"int8 is calibrated on {settings['calib_frames']} crops of training sequences and kept only within "
        f"{settings['max_auc_drop']} AUC of fp32.</p></section>",
        '<section id="curves"><h2>Success and precision plots</h2>',
        inline_image(curves_png, "success and precision plots"),
        "</section>",
        '<section id="clip"><h2>Annotated clip</h2>',
        f"<p>The best student, {html.escape(clip['key'])} ({html.escape(clip['model'])} {html.escape(clip['precision'])}), "
        f"tracking the first {clip['frames']} frames of {html.escape(clip['sequence'])}: its box in green (red when lost), "
        "the ground truth in yellow.</p>",
        inline_image(clip_gif, "annotated clip", "image/gif"),
        "</section>",
        '<section id="time"><h2>Time per step</h2>',
        _table(["step", "seconds", "share"], timings),
        "</section>",
        '<section id="files"><h2>Files</h2><ul>',
        '<li><a href="summary.json">summary.json</a>: every number on this page</li>',
        "<li><code>bundles/</code>: one bundle per model; <code>eval/</code>: results per model and precision; "
        "<code>profiles/</code>: full profile reports; <code>runs/</code>: training runs (checkpoints, log.csv, tensorboard); "
        f"<code>{html.escape(summary['data']['eval'])}</code>, <code>{html.escape(summary['data']['calib'])}</code>: the sequences, as OTB folders</li>",
        f"<li>Re-run an evaluation from this folder: <code>{html.escape(rerun)}</code></li>",
        "</ul></section>",
        f"<p>Created {html.escape(summary['created'])} by <code>edgetrack demo</code>.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_index(out: Path, summary: dict) -> Path:
    """``out/index.html`` from the summary and the images beside it, in one rename."""
    path = out / "index.html"
    write_atomic(path, render_index(summary, out / summary["files"]["curves"], out / summary["files"]["clip"]))
    return path
