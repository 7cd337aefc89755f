"""Building TensorRT engines: everything around the TensorRT API runs here on any machine (builder flags per
precision, calibration feeding, the calibration-cache rule, engine and sidecar writing, the absent-TensorRT path);
the build itself, compared with ONNX Runtime, runs where TensorRT, pycuda and a CUDA GPU are present."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgetrack.deploy.tensorrt_build import (
    BuildPlan,
    CalibrationCache,
    CalibrationFeed,
    build_plan,
    build_tensorrt_engines,
    calibration_cache_path,
    dynamic_input_shapes,
    install_engines,
    network_creation_flags,
    read_timing_cache,
)
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.backends.tensorrt import (
    EngineSidecar,
    Machine,
    TensorRTBackend,
    check_engine_source,
    engine_paths,
    machine_fingerprint,
    read_sidecar,
    sidecar_path,
)
from edgetrack.runtime.bundle import Bundle, ModelIO, load_bundle
from edgetrack.runtime.compare import output_diff
from edgetrack.runtime.records import Tolerance
from edgetrack.runtime.errors import BackendError

ORIN = Machine(tensorrt="8.6.2", cuda="12.2", driver="12.2", gpu="Orin", compute_capability="8.7")


@dataclass
class Crops:
    """Stands for ``edgetrack.deploy.calibration.CalibrationCrops``: the builder reads only these three fields."""

    template_feeds: list[dict[str, np.ndarray]]
    search_feeds: list[dict[str, np.ndarray]]
    fingerprint: str


@pytest.fixture
def bundle(nanotrack_bundles, tmp_path: Path) -> Bundle:
    path = tmp_path / "nanotrack-v2.etb"
    shutil.copytree(nanotrack_bundles["v2"].path, path)
    return load_bundle(path)


def _zero_crops(bundle: Bundle, count: int, fingerprint: str = "crops-1") -> Crops:
    meta = bundle.meta

    def feed(io: ModelIO) -> dict[str, np.ndarray]:
        return {name: np.zeros(shape, np.float32) for name, shape in io.inputs.items()}

    return Crops(
        template_feeds=[feed(meta.template_io) for _ in range(count)],
        search_feeds=[feed(meta.search_io) for _ in range(count)],
        fingerprint=fingerprint,
    )


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ------------------------------------------------------------------------------------------ builder settings


def test_each_precision_asks_for_its_builder_flags() -> None:
    assert build_plan("fp32") == BuildPlan(set_flags=(), clear_flags=("TF32",), calibrate=False)
    assert build_plan("fp16") == BuildPlan(set_flags=("FP16",), clear_flags=(), calibrate=False)
    assert build_plan("int8") == BuildPlan(set_flags=("INT8", "FP16"), clear_flags=(), calibrate=True)
    with pytest.raises(BackendError, match="unknown precision 'fp8' \\(choose from fp32, fp16, int8\\)"):
        build_plan("fp8")


@pytest.mark.parametrize(
    ("version", "flags"),
    [("8.6.1", ("EXPLICIT_BATCH",)), ("8.6.1.post1", ("EXPLICIT_BATCH",)), ("10.0.1", ()), ("10.3.0.26", ())],
)
def test_explicit_batch_is_asked_for_only_before_tensorrt_10(version: str, flags: tuple[str, ...]) -> None:
    assert network_creation_flags(version) == flags


def test_only_dynamic_inputs_get_an_optimization_profile(bundle: Bundle) -> None:
    io = bundle.meta.search_io
    assert dynamic_input_shapes(io, io) == {}
    network = ModelIO(inputs={**io.inputs, "x": (None, *io.inputs["x"][1:])}, outputs=io.outputs)
    assert dynamic_input_shapes(network, io) == {"x": io.inputs["x"]}


# --------------------------------------------------------------------------------------- calibration feeding


def test_calibration_feed_hands_out_each_crop_in_tensorrts_order(bundle: Bundle) -> None:
    io = bundle.meta.search_io
    rng = np.random.default_rng(0)
    # float64 as a producer might hand it: the device buffers are float32, so the feed converts.
    crops = [{name: rng.random(shape) for name, shape in io.inputs.items()} for _ in range(3)]
    feed = CalibrationFeed("search", crops, io)
    assert len(feed) == 3
    assert feed.nbytes("x") == int(np.prod(io.inputs["x"])) * 4

    names = ["zf", "x"]
    for crop in crops:
        arrays = feed.next_batch(names)
        assert [a.shape for a in arrays] == [io.inputs["zf"], io.inputs["x"]]
        for name, array in zip(names, arrays):
            assert array.dtype == np.float32 and array.flags.c_contiguous
            np.testing.assert_array_equal(array, crop[name].astype(np.float32))
    assert feed.next_batch(names) is None
    assert feed.next_batch(names) is None


def test_calibration_feed_keeps_float32_crops_without_copying(bundle: Bundle) -> None:
    io = bundle.meta.template_io
    crop = {"z": np.ones(io.inputs["z"], np.float32)}
    assert CalibrationFeed("template", [crop], io).next_batch(["z"])[0] is crop["z"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda crops: [], "no calibration crops for the search model: int8 needs crops from --calib"),
        (lambda crops: [crops[0], {"x": crops[1]["x"]}], "calibration crop 1 of the search model lacks input 'zf'"),
        (lambda crops: [{**crops[0], "y": crops[0]["x"]}], "crop 0 of the search model has inputs \\['y'\\]"),
        (
            lambda crops: [{**crops[0], "x": crops[0]["x"][:, :, :127, :127]}],
            "crop 0 of the search model has 'x' of shape \\(1, 3, 127, 127\\), the model takes \\(1, 3, 255, 255\\)",
        ),
    ],
)
def test_calibration_crops_that_do_not_fit_the_model_are_one_line(bundle: Bundle, edit, message: str) -> None:
    io = bundle.meta.search_io
    crops = _zero_crops(bundle, 2).search_feeds
    with pytest.raises(BackendError, match=message) as caught:
        CalibrationFeed("search", edit(crops), io)
    assert "\n" not in str(caught.value)


def test_calibration_feed_refuses_an_input_tensorrt_invents(bundle: Bundle) -> None:
    feed = CalibrationFeed("template", _zero_crops(bundle, 1).template_feeds, bundle.meta.template_io)
    with pytest.raises(BackendError, match="TensorRT asks calibration data for \\['input.1'\\]"):
        feed.next_batch(["input.1"])


# ------------------------------------------------------------------------------------------ calibration cache


def _key(fingerprint: str = "crops-1", onnx: str = "ab" * 32, tensorrt: str = "8.6.2") -> dict[str, str]:
    return {"calibration": fingerprint, "onnx_sha256": onnx, "tensorrt": tensorrt}


def test_calibration_cache_lives_beside_its_engine(bundle: Bundle) -> None:
    engine = engine_paths(bundle, "int8")[1]
    assert calibration_cache_path(engine) == bundle.path / "search.int8.engine.calib"
    assert CalibrationCache(calibration_cache_path(engine), _key()).key_path == bundle.path / "search.int8.engine.calib.json"


def test_calibration_cache_is_reused_only_under_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "search.int8.engine.calib"
    assert CalibrationCache(path, _key()).read() is None

    CalibrationCache(path, _key()).write(b"TRT-8602-EntropyCalibration2\nx: 3c010a14\n")
    assert CalibrationCache(path, _key()).read() == b"TRT-8602-EntropyCalibration2\nx: 3c010a14\n"
    assert json.loads((tmp_path / "search.int8.engine.calib.json").read_text()) == _key()
    # Other crops, a re-exported model or another TensorRT each mean calibrating again.
    assert CalibrationCache(path, _key(fingerprint="crops-2")).read() is None
    assert CalibrationCache(path, _key(onnx="cd" * 32)).read() is None
    assert CalibrationCache(path, _key(tensorrt="10.0.1")).read() is None

    CalibrationCache(path, _key(fingerprint="crops-2")).write(b"new table")
    assert CalibrationCache(path, _key(fingerprint="crops-2")).read() == b"new table"
    assert CalibrationCache(path, _key()).read() is None
    assert _files(tmp_path) == {"search.int8.engine.calib", "search.int8.engine.calib.json"}


@pytest.mark.parametrize("damage", ["no key", "bad key", "no table"])
def test_a_damaged_calibration_cache_means_calibrating_again(tmp_path: Path, damage: str) -> None:
    cache = CalibrationCache(tmp_path / "template.int8.engine.calib", _key())
    cache.write(b"table")
    if damage == "no key":
        cache.key_path.unlink()
    elif damage == "bad key":
        cache.key_path.write_text("{not json")
    else:
        cache.path.unlink()
    assert cache.read() is None


# ---------------------------------------------------------------------------------------- engines and sidecars


def _built(bundle: Bundle, precision: str, plans: tuple[object, object]) -> list[tuple[Path, object, str]]:
    meta = bundle.meta
    files = meta.models["fp32"]
    return [
        (engine, plan, EngineSidecar.for_machine(ORIN, precision, io, name, meta.files[name]).to_json())
        for engine, plan, io, name in zip(
            engine_paths(bundle, precision), plans, (meta.template_io, meta.search_io), (files.template, files.search)
        )
    ]


def test_install_engines_writes_engines_and_sidecars_the_runtime_accepts(bundle: Bundle) -> None:
    before = _files(bundle.path)
    install_engines(_built(bundle, "fp16", (b"template plan", memoryview(b"search plan"))))
    template, search = engine_paths(bundle, "fp16")
    assert template.read_bytes() == b"template plan" and search.read_bytes() == b"search plan"
    meta = bundle.meta
    for engine, io in ((template, meta.template_io), (search, meta.search_io)):
        sidecar = read_sidecar(engine)
        assert sidecar.machine == ORIN
        check_engine_source(engine, sidecar, "fp16", io, meta.files)
    assert _files(bundle.path) - before == {
        "template.fp16.engine",
        "template.fp16.engine.json",
        "search.fp16.engine",
        "search.fp16.engine.json",
    }


def test_a_failed_install_changes_no_engine_and_leaves_no_temporary_file(bundle: Bundle) -> None:
    install_engines(_built(bundle, "fp16", (b"old template", b"old search")))
    before = {name: (bundle.path / name).read_bytes() for name in _files(bundle.path)}
    with pytest.raises(TypeError):
        # The search plan cannot be written, so the whole install stops before touching the template engine.
        install_engines(_built(bundle, "fp16", (b"new template", object())))
    assert {name: (bundle.path / name).read_bytes() for name in _files(bundle.path)} == before


def test_an_interrupted_install_leaves_an_engine_the_runtime_refuses(bundle: Bundle, monkeypatch) -> None:
    install_engines(_built(bundle, "fp16", (b"old template", b"old search")))
    template = engine_paths(bundle, "fp16")[0]
    real_replace = os.replace

    def replace(src, dst) -> None:
        if Path(dst) == sidecar_path(template):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        install_engines(_built(bundle, "fp16", (b"new template", b"new search")))
    assert template.read_bytes() == b"new template"
    # The old sidecar, which described the old engine, is gone: the new engine is refused with a rebuild hint.
    with pytest.raises(BackendError, match="has no sidecar template.fp16.engine.json"):
        read_sidecar(template)
    assert not [name for name in _files(bundle.path) if name.startswith(".")]


def test_timing_cache_is_empty_until_there_is_one(tmp_path: Path) -> None:
    assert read_timing_cache(None) == b""
    assert read_timing_cache(tmp_path / "timing.cache") == b""
    (tmp_path / "timing.cache").write_bytes(b"timings")
    assert read_timing_cache(tmp_path / "timing.cache") == b"timings"
    with pytest.raises(BackendError, match=f"cannot read the timing cache {tmp_path}"):
        read_timing_cache(tmp_path)


# ----------------------------------------------------------------------------------- build without TensorRT


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tensorrt`` and ``import pycuda`` fail, whatever this machine has."""
    for name in ("tensorrt", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)


def test_int8_without_calibration_is_one_line_before_anything_else(bundle: Bundle) -> None:
    before = _files(bundle.path)
    with pytest.raises(BackendError) as caught:
        build_tensorrt_engines(bundle, "int8")
    message = str(caught.value)
    assert message.startswith("int8 engines need calibration crops: give --calib sequences or videos")
    assert "\n" not in message
    assert _files(bundle.path) == before


@pytest.mark.usefixtures("no_tensorrt")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_without_tensorrt_the_build_says_how_to_get_it(bundle: Bundle, tmp_path: Path, precision: str) -> None:
    before = _files(bundle.path)
    timing = tmp_path / "timing.cache"
    with pytest.raises(BackendError) as caught:
        build_tensorrt_engines(bundle, precision, calibration=_zero_crops(bundle, 2), timing_cache=timing)
    message = str(caught.value)
    assert "\n" not in message
    assert "tensorrt cannot be imported" in message
    assert "JetPack" in message and 'pip install "edgetrack[tensorrt]"' in message
    assert "--backend onnxruntime" in message
    assert _files(bundle.path) == before
    assert not timing.exists()


@pytest.mark.usefixtures("no_tensorrt")
def test_bad_calibration_crops_are_reported_before_tensorrt_is_looked_for(bundle: Bundle) -> None:
    crops = _zero_crops(bundle, 2)
    crops.search_feeds[1] = {"x": crops.search_feeds[1]["x"]}
    with pytest.raises(BackendError, match="calibration crop 1 of the search model lacks input 'zf'"):
        build_tensorrt_engines(bundle, "int8", calibration=crops)


@pytest.mark.parametrize("workspace", [0, -64, 1.5])
def test_the_workspace_must_be_a_positive_number_of_mib(bundle: Bundle, workspace) -> None:
    with pytest.raises(BackendError, match=f"positive number of MiB, not {workspace!r}"):
        build_tensorrt_engines(bundle, "fp16", workspace_mib=workspace)


# -------------------------------------------------------------------------- real builds (TensorRT and a GPU)


@pytest.fixture
def machine() -> Machine:
    try:
        return machine_fingerprint()
    except BackendError as exc:
        pytest.skip(f"needs TensorRT >= 8.6, pycuda and a CUDA GPU (runs on a Jetson or a GPU machine): {exc}")


def _real_crops(bundle: Bundle, data: Path, count: int, fingerprint: str) -> Crops:
    """Template and search crops around the ground truth of the first ``count`` frames of OTB Crossing, cut and
    normalised as the tracker does, with the template features ONNX Runtime computes for each."""
    import onnxruntime as ort

    from edgetrack.runtime.datasets import load_dataset
    from edgetrack.runtime.crops import TargetState, search_crop, template_crop
    from edgetrack.runtime.geometry import Cropper
    from edgetrack.runtime.tracker import InputWriter

    meta = bundle.meta
    g = meta.geometry
    writer = InputWriter(meta)
    z_cropper, x_cropper = Cropper(g.exemplar_size), Cropper(g.instance_size)
    template = ort.InferenceSession(str(bundle.model_paths("fp32")[0]), providers=["CPUExecutionProvider"])
    features = list(meta.template_io.outputs)
    sequence = load_dataset(data / "sequences" / "Crossing").sequences[0]
    crops = Crops(template_feeds=[], search_feeds=[], fingerprint=fingerprint)
    for frame, box in zip(sequence.frames(), sequence.groundtruth[:count]):
        z = np.empty(meta.template_io.inputs["z"], np.float32)
        x = np.empty(meta.search_io.inputs["x"], np.float32)
        writer.write(template_crop(frame, box, g, cropper=z_cropper), z[0])
        writer.write(search_crop(frame, TargetState.from_box(box), g, cropper=x_cropper), x[0])
        crops.template_feeds.append({"z": z})
        crops.search_feeds.append({"x": x, **dict(zip(features, template.run(features, {"z": z})))})
    return crops


def _run_both(bundle: Bundle, precision: str, crops: Crops) -> list[tuple[dict, dict]]:
    """(ONNX Runtime, TensorRT) search outputs for each crop."""
    reference = OnnxRuntimeBackend(bundle)
    backend = TensorRTBackend(bundle, precision)
    pairs = []
    try:
        for template, search in zip(crops.template_feeds, crops.search_feeds):
            outputs = []
            for b in (reference, backend):
                b.template_input[...] = template["z"]
                b.run_template()
                b.search_input[...] = search["x"]
                outputs.append({name: out.copy() for name, out in b.run_search().items()})
            pairs.append(tuple(outputs))
    finally:
        backend.close()
        reference.close()
    return pairs


def test_built_engines_track_like_onnxruntime(bundle: Bundle, data: Path, machine: Machine, tmp_path: Path) -> None:
    crops = _real_crops(bundle, data, 24, fingerprint="crossing-24")
    first = Crops(crops.template_feeds[:4], crops.search_feeds[:4], crops.fingerprint)
    timing = tmp_path / "timing.cache"
    meta = bundle.meta

    for precision in ("fp32", "fp16", "int8"):
        engines = build_tensorrt_engines(bundle, precision, calibration=crops, workspace_mib=512, timing_cache=timing)
        assert engines == engine_paths(bundle, precision)
        assert timing.stat().st_size > 0
        for engine, io in zip(engines, (meta.template_io, meta.search_io)):
            sidecar = read_sidecar(engine)
            assert sidecar.machine == machine and sidecar.precision == precision and sidecar.shapes == io

        for want, got in _run_both(bundle, precision, first):
            for name in want:
                if precision == "fp32":
                    scale = np.abs(want[name]).max()
                    diff = output_diff(name, want[name], got[name], Tolerance(atol=1e-3 * scale, rtol=1e-3))
                    assert diff.passed, diff
                elif precision == "fp16":
                    diff = output_diff(name, want[name], got[name])
                    assert diff.max_rel <= 0.05, diff
                else:
                    assert np.corrcoef(got[name].ravel(), want[name].ravel())[0, 1] >= 0.9, name
            # The tracker follows the peak of the foreground softmax, which is where channel 1 most exceeds channel 0.
            assert np.argmax(got["cls"][0, 1] - got["cls"][0, 0]) == np.argmax(want["cls"][0, 1] - want["cls"][0, 0])

    calibrated = {path: path.read_bytes() for path in map(calibration_cache_path, engine_paths(bundle, "int8"))}
    assert all(calibrated.values())
    # Same fingerprint, other crops: the tables are reused untouched, so these zero crops are never fed.
    build_tensorrt_engines(bundle, "int8", calibration=_zero_crops(bundle, 2, "crossing-24"), timing_cache=timing)
    assert {path: path.read_bytes() for path in calibrated} == calibrated
