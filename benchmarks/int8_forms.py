"""Which fp16/int8 form of NanoTrack is fastest with ONNX Runtime on this CPU, and what each costs in accuracy.

The forms are the bundle's fp32 search model as the runtime loads it (``ORT_ENABLE_ALL``), the same graph
optimised offline by ONNX Runtime, fp16, and ONNX Runtime's static int8 in its variants (QDQ or QOperator,
per-channel or per-tensor weights, uint8 or int8 activations, ``quant_pre_process``, the first convolution or
the depth-wise convolutions left in fp32, only some op types quantised). Each is timed on a real search crop
through the runtime's own session settings, at the runtime's default thread count and at one thread, in
interleaved rounds so that machine noise hits every form alike; each int8 form is also tracked on the shared
sequences through the runtime for its AUC against fp32's. The calibration crops are the build's own
(``edgetrack.deploy.calibration``); the calibration methods and a leave-one-sequence-out calibration are
compared on the default form. Last, whole tracking (crop + inference + post-processing) is timed per precision.

    .venv/bin/python benchmarks/int8_forms.py [--version v2] [--calib-frames 200] [--rounds 30] [--out benchmarks/int8_forms.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgetrack.deploy.build_engine import accuracy_gate
from edgetrack.deploy.bundle_writer import add_precision
from edgetrack.deploy.calibration import sample_calibration
from edgetrack.deploy.import_nanotrack import import_nanotrack
from edgetrack.deploy.quantize import DEFAULT_INT8, Int8Form, build_models, effective_form
from edgetrack.runtime.backends import open_backend
from edgetrack.runtime.environment import cpu_model
from edgetrack.runtime.backends.onnxruntime import _session
from edgetrack.runtime.bundle import load_bundle
from edgetrack.runtime.datasets import load_dataset
from edgetrack.runtime.records import AccuracyRecord
from edgetrack.runtime.tracker import SiameseTracker

DATA = Path(os.environ.get("EDGETRACK_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
SEQUENCES = ["Crossing", "bag", "dat"]
PAIRS = {
    "v1": ("nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "v2": ("nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "v3": ("nanotrack_backbone.onnx", "nanotrack_head.onnx"),
}
MAX_AUC_DROP = 0.02
MAX_SIZE_RATIO = 0.35

INT8_FORMS = {
    "int8 QDQ, per-channel, u8 act": Int8Form(format="qdq", per_channel=True, activations="uint8"),
    "int8 QDQ, per-tensor, u8 act": Int8Form(format="qdq", per_channel=False, activations="uint8"),
    "int8 QDQ, per-channel, s8 act": Int8Form(format="qdq", per_channel=True, activations="int8"),
    "int8 QOperator, per-channel, u8 act": Int8Form(format="qoperator", per_channel=True, activations="uint8"),
    "int8 QOperator, per-tensor, u8 act": Int8Form(format="qoperator", per_channel=False, activations="uint8"),
    "int8 QOperator, per-channel, s8 act": Int8Form(format="qoperator", per_channel=True, activations="int8"),
    "int8 QDQ + quant_pre_process": Int8Form(preprocess=True),
    "int8 QDQ, first conv fp32": Int8Form(keep_first_conv=True),
    "int8 QOperator, first conv fp32": Int8Form(format="qoperator", keep_first_conv=True),
    "int8 QDQ, first conv + depth-wise fp32": Int8Form(keep_first_conv=True, keep_depthwise=True),
    "int8 QOperator, first conv + depth-wise fp32": Int8Form(format="qoperator", keep_first_conv=True, keep_depthwise=True),
    "int8 QDQ, first conv fp32, Conv only": Int8Form(keep_first_conv=True, op_types=("Conv",)),
}



def offline_optimised(source: Path, out: Path, level) -> Path:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return out


def time_search(files: dict[str, Path], feed: dict, threads: int | None, rounds: int, runs: int) -> dict[str, dict[str, list[float]]]:
    """ms per search-model run, one figure per round, the forms taking turns (a rotating first form per round).

    ``wall`` is elapsed time. With one thread the model runs on the calling thread, so ``cpu`` (that thread's CPU
    time) is also taken: it does not count the time other processes on this shared machine take the core away.
    """
    sessions = {name: _session(path, ["CPUExecutionProvider"], threads) for name, path in files.items()}
    names = list(sessions)
    times = {name: {"wall": [], "cpu": []} for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            session = sessions[name]
            for _ in range(5):
                session.run(None, feed)
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(runs):
                session.run(None, feed)
            times[name]["wall"].append((time.perf_counter() - wall) / runs * 1e3)
            times[name]["cpu"].append((time.thread_time() - cpu) / runs * 1e3)
    return times


def profile_ops(path: Path, feed: dict, runs: int) -> dict[str, dict[str, float]]:
    """us per run by op type and for the five slowest nodes, from ONNX Runtime's profiler: one thread, the
    runtime's other settings."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    by_op: dict[str, float] = {}
    by_node: dict[str, float] = {}
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op, node = event["args"]["op_name"], event["name"].removesuffix("_kernel_time")
            by_op[op] = by_op.get(op, 0.0) + event["dur"] / runs
            by_node[f"{op} {node}"] = by_node.get(f"{op} {node}", 0.0) + event["dur"] / runs

    def ranked(times: dict[str, float], top: int | None = None) -> dict[str, float]:
        return {k: round(v, 1) for k, v in sorted(times.items(), key=lambda item: -item[1])[:top]}

    return {"total": round(sum(by_op.values()), 1), "by_op": ranked(by_op), "slowest_nodes": ranked(by_node, 5)}


def time_tracking(bundle, precisions: list[str], sequences, rounds: int) -> dict[str, float]:
    """fps of whole update calls per precision on preloaded frames, precisions taking turns per sequence."""
    frames = [(s, list(s.frames())) for s in sequences]
    trackers = {p: SiameseTracker(bundle.meta, open_backend(bundle, p, backend="onnxruntime")) for p in precisions}
    seconds = {p: 0.0 for p in precisions}
    updates = {p: 0 for p in precisions}
    for round_ in range(rounds):
        for sequence, images in frames:
            order = precisions[round_ % len(precisions):] + precisions[: round_ % len(precisions)]
            for p in order:
                tracker = trackers[p]
                tracker.init(images[0], sequence.groundtruth[0])
                start = time.perf_counter()
                for image in images[1:]:
                    tracker.update(image)
                seconds[p] += time.perf_counter() - start
                updates[p] += len(images) - 1
    return {p: updates[p] / seconds[p] for p in precisions}


def staged_with(bundle, precision: str, files: dict[str, bytes], root: Path, name: str):
    copy = shutil.copytree(bundle.path, root / name)
    return add_precision(load_bundle(copy), precision, files)


def gate(bundle, candidate, precision: str, sequences) -> AccuracyRecord:
    return accuracy_gate(bundle, candidate, precision, "onnxruntime", sequences, max_auc_drop=math.inf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="v2", choices=["v1", "v2", "v3"])
    parser.add_argument("--calib-frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=50, help="search-model runs per form per round")
    parser.add_argument("--track-rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("int8_forms.json"))
    args = parser.parse_args()

    sources = [DATA / "sequences" / name for name in SEQUENCES]
    sequences = [(source, s) for source in sources for s in load_dataset(source).sequences]
    with tempfile.TemporaryDirectory(prefix="int8-forms-") as tmp:
        root = Path(tmp)
        pair = [DATA / "models" / "nanotrack" / args.version / name for name in PAIRS[args.version]]
        bundle = import_nanotrack(*pair, root / f"nanotrack-{args.version}.etb", version=args.version)
        crops = sample_calibration(bundle, sources, frames=args.calib_frames)
        feed = crops.search_feeds[len(crops.search_feeds) // 2]
        fp32_search = bundle.model_paths("fp32")[1]
        fp32_bytes = fp32_search.stat().st_size

        files = {
            "fp32, bundle file (runtime: ORT_ENABLE_ALL at load)": fp32_search,
            "fp32, ORT-optimised offline (EXTENDED), ENABLE_ALL at load": offline_optimised(
                fp32_search, root / "fp32-extended.onnx", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            ),
        }
        rows = {name: {"search_size_ratio": round(path.stat().st_size / fp32_bytes, 3)} for name, path in files.items()}
        fp16 = build_models(bundle, "fp16")
        (root / "fp16.onnx").write_bytes(fp16["search.fp16.onnx"])
        files["fp16 (fp32 I/O, Exp in fp32)"] = root / "fp16.onnx"
        staged = {"fp16 (fp32 I/O, Exp in fp32)": ("fp16", fp16)}
        for name, form in INT8_FORMS.items():
            print(f"quantising: {name}", file=sys.stderr)
            built = build_models(bundle, "int8", crops, "minmax", form)
            path = root / f"int8-{len(staged)}.onnx"
            path.write_bytes(built["search.int8.onnx"])
            files[name] = path
            staged[name] = ("int8", built)
        fp32_template = bundle.model_paths("fp32")[0].stat().st_size
        for name, (precision, built) in staged.items():
            rows[name] = {
                "form": INT8_FORMS[name].describe() if name in INT8_FORMS else None,
                "search_size_ratio": round(len(built[f"search.{precision}.onnx"]) / fp32_bytes, 3),
                "template_size_ratio": round(len(built[f"template.{precision}.onnx"]) / fp32_template, 3),
            }

        for threads, label in ((None, "default threads"), (1, "1 thread")):
            print(f"timing the search model, {label}", file=sys.stderr)
            for name, measured in time_search(files, feed, threads, args.rounds, args.runs).items():
                kinds = ("wall",) if threads is None else ("wall", "cpu")
                for kind in kinds:
                    key = f"ms_{kind}_{'threads_default' if threads is None else 'thread_1'}"
                    rows[name][f"{key}_min"] = round(min(measured[kind]), 3)
                    rows[name][f"{key}_median"] = round(float(np.median(measured[kind])), 3)

        for index, (name, (precision, built)) in enumerate(staged.items()):
            print(f"tracking: {name}", file=sys.stderr)
            candidate = staged_with(bundle, precision, built, root, f"staged-{index}.etb")
            record = gate(bundle, candidate, precision, sequences)
            rows[name].update(auc=record.auc, fp32_auc=record.fp32_auc, drop=record.drop)
            rows[name]["per_sequence"] = [s.to_json() for s in record.sequences]

        print("profiling fp32, plain int8 and the default int8", file=sys.stderr)
        default_name = next(n for n, f in INT8_FORMS.items() if f == DEFAULT_INT8)
        profiles = {
            name: profile_ops(files[name], feed, 300)
            for name in (next(iter(files)), "int8 QOperator, per-channel, u8 act", default_name)
        }

        fp32 = rows[next(iter(files))]
        for row in rows.values():
            row["speed_vs_fp32_threads_default"] = round(fp32["ms_wall_threads_default_median"] / row["ms_wall_threads_default_median"], 3)
            row["speed_vs_fp32_thread_1_cpu"] = round(fp32["ms_cpu_thread_1_median"] / row["ms_cpu_thread_1_median"], 3)
        passing = [
            n for n, r in rows.items() if n in INT8_FORMS and r["drop"] <= MAX_AUC_DROP and r["search_size_ratio"] <= MAX_SIZE_RATIO
        ]
        # Ranked by one-thread CPU time, the figure this shared machine's noise disturbs least.
        fastest = min(passing, key=lambda n: rows[n]["ms_cpu_thread_1_median"]) if passing else None

        methods = {}
        for method in ("minmax", "entropy", "percentile"):
            print(f"calibration method: {method}", file=sys.stderr)
            start = time.perf_counter()
            built = build_models(bundle, "int8", crops, method, DEFAULT_INT8)
            seconds = time.perf_counter() - start
            record = gate(bundle, staged_with(bundle, "int8", built, root, f"method-{method}.etb"), "int8", sequences)
            methods[method] = {
                "auc": record.auc,
                "drop": record.drop,
                "quantise_seconds": round(seconds, 1),
                "form": effective_form(method, DEFAULT_INT8).describe(),
                "search_size_ratio": round(len(built["search.int8.onnx"]) / fp32_bytes, 3),
            }

        held_out = {}
        for i, name in enumerate(SEQUENCES):
            print(f"calibrating without {name}", file=sys.stderr)
            others = [s for j, s in enumerate(sources) if j != i]
            loo = sample_calibration(bundle, others, frames=args.calib_frames)
            built = build_models(bundle, "int8", loo, "minmax", DEFAULT_INT8)
            candidate = staged_with(bundle, "int8", built, root, f"loo-{name}.etb")
            record = gate(bundle, candidate, "int8", [sequences[i]])
            held_out[name] = {"auc": record.auc, "fp32_auc": record.fp32_auc, "drop": record.drop}

        print("timing whole tracking per precision", file=sys.stderr)
        tracked = staged_with(bundle, "fp16", fp16, root, "tracking.etb")
        tracked = add_precision(tracked, "int8", build_models(bundle, "int8", crops, "minmax", DEFAULT_INT8))
        fps = time_tracking(tracked, ["fp32", "fp16", "int8"], [s for _, s in sequences], args.track_rounds)

    report = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
        },
        "model": f"nanotrack-{args.version}",
        "calibration": {"sequences": SEQUENCES, "frames": args.calib_frames, "fingerprint": crops.fingerprint},
        "timing": {"rounds": args.rounds, "runs_per_round": args.runs, "feed": "a real search crop from the calibration set"},
        "forms": rows,
        "profiles_us_per_run_1_thread": profiles,
        "fastest_int8_passing_gate": fastest,
        "default_int8": default_name,
        "calibration_methods_on_default": methods,
        "held_out_calibration_on_default": held_out,
        "tracking_fps": {p: round(v, 1) for p, v in fps.items()},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{'form':<60}{'wall ms':>9}{'vs fp32':>9}{'1t cpu ms':>10}{'vs fp32':>9}{'size':>7}{'AUC':>8}{'drop':>8}")
    for name, r in rows.items():
        auc = f"{r['auc']:>8.3f}{r['drop']:>8.3f}" if "auc" in r else f"{'':>8}{'':>8}"
        print(
            f"{name:<60}{r['ms_wall_threads_default_median']:>9.3f}{r['speed_vs_fp32_threads_default']:>8.2f}x"
            f"{r['ms_cpu_thread_1_median']:>10.3f}{r['speed_vs_fp32_thread_1_cpu']:>8.2f}x{r['search_size_ratio']:>7.2f}{auc}"
        )
    print(f"fastest int8 form within the gate (drop <= {MAX_AUC_DROP}, size <= {MAX_SIZE_RATIO}x): {fastest}; default: {default_name}")
    print("calibration methods (default form):", json.dumps(methods))
    print("calibrated without the evaluated sequence:", json.dumps(held_out))
    print("whole tracking fps:", json.dumps(report["tracking_fps"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
