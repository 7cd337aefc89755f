"""The TensorRT backend: engine naming, sidecars and their checks, the absent-TensorRT path, and (where TensorRT and
a GPU are present) a real engine compared with ONNX Runtime."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.backends.tensorrt import (
    EngineSidecar,
    Machine,
    TensorRTBackend,
    check_engine_source,
    check_sidecar,
    engine_paths,
    import_tensorrt,
    machine_fingerprint,
    read_sidecar,
    sidecar_path,
    tensorrt_available,
)
from edgetrack.runtime.bundle import (
    METADATA_FILE,
    Bundle,
    BundleMeta,
    Geometry,
    Hyper,
    InputLayout,
    ModelFiles,
    ModelIO,
    load_bundle,
    sha256_file,
)
from edgetrack.runtime.compare import output_diff
from edgetrack.runtime.errors import BackendError
from edgetrack.runtime.records import Tolerance

TEMPLATE_IO = ModelIO(inputs={"z": (1, 3, 127, 127)}, outputs={"zf": (1, 4, 15, 15)})
SEARCH_IO = ModelIO(
    inputs={"x": (1, 3, 255, 255), "zf": (1, 4, 15, 15)},
    outputs={"cls": (1, 2, 31, 31), "loc": (1, 4, 31, 31)},
)
ORIN = Machine(tensorrt="8.6.2", cuda="12.2", driver="12.2", gpu="Orin", compute_capability="8.7")


def _write_tiny_bundle(root: Path) -> Path:
    """A nanotrack-shaped bundle small enough to build engines from in seconds.

    The search model pools the template features and scales its own features by them, so its outputs depend on
    both crops: a backend that did not bind the features would give different numbers.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0.0, 0.1, shape).astype(np.float32), name)

    def value(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    def save(graph: onnx.GraphProto, name: str) -> None:
        # Opset 13 and IR 7: old enough for the ONNX parser of TensorRT 8.6 and every ONNX Runtime the project allows.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
        onnx.checker.check_model(model)
        onnx.save(model, str(root / name))

    root.mkdir(parents=True)
    save(
        helper.make_graph(
            [helper.make_node("Conv", ["z", "wz"], ["zf"], kernel_shape=[8, 8], strides=[8, 8])],
            "template",
            [value("z", TEMPLATE_IO.inputs["z"])],
            [value("zf", TEMPLATE_IO.outputs["zf"])],
            [weight("wz", (4, 3, 8, 8))],
        ),
        "template.onnx",
    )
    save(
        helper.make_graph(
            [
                helper.make_node("Conv", ["x", "wx"], ["xf"], kernel_shape=[8, 8], strides=[8, 8]),
                helper.make_node("GlobalAveragePool", ["zf"], ["zp"]),
                helper.make_node("Mul", ["xf", "zp"], ["f"]),
                helper.make_node("Conv", ["f", "wc"], ["cls"], kernel_shape=[1, 1]),
                helper.make_node("Conv", ["f", "wl"], ["loc"], kernel_shape=[1, 1]),
            ],
            "search",
            [value(n, s) for n, s in SEARCH_IO.inputs.items()],
            [value(n, s) for n, s in SEARCH_IO.outputs.items()],
            [weight("wx", (4, 3, 8, 8)), weight("wc", (2, 4, 1, 1)), weight("wl", (4, 4, 1, 1))],
        ),
        "search.onnx",
    )
    meta = BundleMeta(
        name="tiny",
        family="nanotrack",
        geometry=Geometry(exemplar_size=127, instance_size=255, stride=8, score_size=31),
        input=InputLayout(),
        hyper=Hyper(penalty_k=0.1, window_influence=0.4, lr=0.3, lost_threshold=0.2),
        template_io=TEMPLATE_IO,
        search_io=SEARCH_IO,
        models={"fp32": ModelFiles(template="template.onnx", search="search.onnx")},
        files={name: sha256_file(root / name) for name in ("template.onnx", "search.onnx")},
    )
    (root / METADATA_FILE).write_text(meta.to_json())
    return root


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Bundle:
    return load_bundle(_write_tiny_bundle(tmp_path / "tiny.etb"))


def _sidecar(**changes) -> EngineSidecar:
    base = EngineSidecar.for_machine(ORIN, "fp16", SEARCH_IO, "search.onnx", "ab" * 32)
    return dataclasses.replace(base, **changes)


def test_engine_and_sidecar_names(tiny_bundle: Bundle) -> None:
    template, search = engine_paths(tiny_bundle, "fp16")
    assert template == tiny_bundle.path / "template.fp16.engine"
    assert search == tiny_bundle.path / "search.fp16.engine"
    assert sidecar_path(search) == tiny_bundle.path / "search.fp16.engine.json"
    with pytest.raises(BackendError, match="unknown precision 'fp8'"):
        engine_paths(tiny_bundle, "fp8")


def test_sidecar_round_trips_through_json() -> None:
    sidecar = _sidecar()
    text = sidecar.to_json()
    assert json.loads(text)["shapes"]["outputs"]["cls"] == [1, 2, 31, 31]
    assert EngineSidecar.from_json(text) == sidecar
    assert sidecar.machine == ORIN


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: "{not json", "not valid JSON"),
        (lambda raw: "[1, 2]", "must hold a JSON object"),
        (lambda raw: json.dumps({k: v for k, v in raw.items() if k != "gpu"}), "lacks the field 'gpu'"),
        (lambda raw: json.dumps({**raw, "tensorrt": 8.6}), "'tensorrt' must be a string"),
        (lambda raw: json.dumps({**raw, "shapes": {"inputs": {"x": ["a"]}, "outputs": {}}}), "malformed"),
        (lambda raw: json.dumps({**raw, "shapes": {"inputs": {}}}), "lacks the field 'outputs'"),
    ],
)
def test_malformed_sidecar_is_one_backend_error(edit, message: str) -> None:
    with pytest.raises(BackendError, match=message) as caught:
        EngineSidecar.from_json(edit(json.loads(_sidecar().to_json())))
    assert "\n" not in str(caught.value)


def test_check_sidecar_accepts_the_machine_it_was_built_on() -> None:
    engine = Path("/b/tiny.etb/search.fp16.engine")
    check_sidecar(engine, _sidecar(), ORIN)
    # A CUDA or driver update alone does not invalidate an engine (see PORTABILITY_FIELDS).
    check_sidecar(engine, _sidecar(), dataclasses.replace(ORIN, cuda="12.6", driver="12.8"))


@pytest.mark.parametrize(
    ("field", "other", "label"),
    [
        ("tensorrt", "10.0.1", "TensorRT version"),
        ("gpu", "NVIDIA GeForce RTX 4090", "GPU"),
        ("compute_capability", "8.9", "compute capability"),
    ],
)
def test_check_sidecar_rejects_each_machine_difference(field: str, other: str, label: str) -> None:
    machine = dataclasses.replace(ORIN, **{field: other})
    with pytest.raises(BackendError) as caught:
        check_sidecar(Path("/b/tiny.etb/search.fp16.engine"), _sidecar(), machine)
    message = str(caught.value)
    assert message.startswith("engine search.fp16.engine was built for TensorRT 8.6.2 on Orin (sm 8.7)")
    assert getattr(ORIN, field) in message and other in message
    assert f"({label} differs)" in message
    assert message.endswith("rebuild it with `edgetrack build-engine /b/tiny.etb --precision fp16`")
    assert "\n" not in message


def test_check_sidecar_names_every_difference() -> None:
    machine = Machine(
        tensorrt="10.0.1", cuda="12.4", driver="12.4", gpu="NVIDIA GeForce RTX 4090", compute_capability="8.9"
    )
    with pytest.raises(BackendError) as caught:
        check_sidecar(Path("/b/tiny.etb/search.fp16.engine"), _sidecar(), machine)
    assert (
        "this machine has TensorRT 10.0.1 on NVIDIA GeForce RTX 4090 (sm 8.9) "
        "(TensorRT version, GPU, compute capability differ)"
    ) in str(caught.value)


def test_check_engine_source(tiny_bundle: Bundle) -> None:
    meta = tiny_bundle.meta
    engine = engine_paths(tiny_bundle, "fp32")[1]
    good = EngineSidecar.for_machine(ORIN, "fp32", meta.search_io, "search.onnx", meta.files["search.onnx"])
    check_engine_source(engine, good, "fp32", meta.search_io, meta.files)
    rebuild = f"rebuild it with `edgetrack build-engine {tiny_bundle.path} --precision fp32`"

    with pytest.raises(BackendError, match="says it is fp16, not fp32") as caught:
        check_engine_source(engine, dataclasses.replace(good, precision="fp16"), "fp32", meta.search_io, meta.files)
    assert str(caught.value).endswith(rebuild)

    with pytest.raises(BackendError, match="was built for inputs") as caught:
        check_engine_source(engine, good, "fp32", meta.template_io, meta.files)
    assert str(caught.value).endswith(rebuild)

    changed = {**meta.files, "search.onnx": "cd" * 32}
    old = meta.files["search.onnx"][:12]
    with pytest.raises(BackendError, match=f"sha256 {old}, the bundle now has sha256 cdcdcdcdcdcd, so the bundle"):
        check_engine_source(engine, good, "fp32", meta.search_io, changed)
    with pytest.raises(BackendError, match="the bundle now has no such file"):
        check_engine_source(engine, dataclasses.replace(good, onnx_file="old.onnx"), "fp32", meta.search_io, meta.files)


def test_missing_engine_or_sidecar_says_to_build(tiny_bundle: Bundle) -> None:
    engine = engine_paths(tiny_bundle, "fp16")[1]
    command = f"`edgetrack build-engine {tiny_bundle.path} --precision fp16`"
    with pytest.raises(BackendError, match="no TensorRT engine") as caught:
        read_sidecar(engine)
    assert str(engine) in str(caught.value) and str(caught.value).endswith(command)

    engine.write_bytes(b"plan")
    with pytest.raises(BackendError, match="has no sidecar search.fp16.engine.json") as caught:
        read_sidecar(engine)
    assert str(caught.value).endswith(command)

    sidecar_path(engine).write_text("{}")
    with pytest.raises(BackendError, match="lacks the field") as caught:
        read_sidecar(engine)
    assert str(sidecar_path(engine)) in str(caught.value) and str(caught.value).endswith(command)

    sidecar_path(engine).write_text(_sidecar().to_json())
    assert read_sidecar(engine) == _sidecar()


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tensorrt`` and ``import pycuda`` fail, whatever this machine has."""
    for name in ("tensorrt", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("no_tensorrt")
def test_absent_tensorrt_is_one_line_saying_how_to_get_it() -> None:
    with pytest.raises(BackendError) as caught:
        import_tensorrt()
    message = str(caught.value)
    assert "\n" not in message
    assert "tensorrt cannot be imported" in message
    assert "JetPack" in message and "sudo apt install python3-libnvinfer" in message
    assert 'pip install "edgetrack[tensorrt]"' in message
    assert "--backend onnxruntime" in message


@pytest.mark.usefixtures("no_tensorrt")
def test_without_tensorrt_nothing_raises_import_error(tiny_bundle: Bundle) -> None:
    assert tensorrt_available() is False
    with pytest.raises(BackendError, match="tensorrt cannot be imported"):
        machine_fingerprint()
    with pytest.raises(BackendError, match="tensorrt cannot be imported"):
        TensorRTBackend(tiny_bundle, "fp16")


@pytest.mark.parametrize("module", ["edgetrack.runtime.backends.tensorrt", "edgetrack.deploy.tensorrt_build"])
def test_importing_loads_neither_tensorrt_nor_pycuda_nor_torch(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('tensorrt', 'pycuda', 'torch') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_tiny_bundle_runs_on_onnxruntime(tiny_bundle: Bundle) -> None:
    """The fixture the TensorRT test builds engines from is itself a sound bundle."""
    backend = OnnxRuntimeBackend(tiny_bundle)
    backend.template_input[...] = 1.0
    backend.run_template()
    backend.search_input[...] = 1.0
    outputs = backend.run_search()
    assert {name: out.shape for name, out in outputs.items()} == SEARCH_IO.outputs
    assert np.abs(outputs["cls"]).max() > 0


def _build_engine(trt, onnx_path: Path, engine_path: Path) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 is always explicit batch and deprecates the flag; 8.6 needs it.
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        pytest.fail(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    # TF32 would round the convolutions to 10-bit mantissas; fp32 engines are compared at fp32 tolerance.
    config.clear_flag(trt.BuilderFlag.TF32)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, f"TensorRT could not build {engine_path.name}"
    with open(engine_path, "wb") as f:
        f.write(plan)


def test_engine_matches_onnxruntime(tiny_bundle: Bundle) -> None:
    try:
        machine = machine_fingerprint()
    except BackendError as exc:
        pytest.skip(f"needs TensorRT, pycuda and a CUDA GPU (runs on a Jetson or a GPU machine): {exc}")
    trt, _ = import_tensorrt()
    meta = tiny_bundle.meta
    for onnx_name, engine, io in zip(
        ("template.onnx", "search.onnx"), engine_paths(tiny_bundle, "fp32"), (meta.template_io, meta.search_io)
    ):
        _build_engine(trt, tiny_bundle.path / onnx_name, engine)
        sidecar = EngineSidecar.for_machine(machine, "fp32", io, onnx_name, meta.files[onnx_name])
        sidecar_path(engine).write_text(sidecar.to_json())

    reference = OnnxRuntimeBackend(tiny_bundle)
    backend = TensorRTBackend(tiny_bundle, "fp32")
    try:
        rng = np.random.default_rng(0)
        x = rng.random(SEARCH_IO.inputs["x"], dtype=np.float32) * 255
        results = []
        for _ in range(2):
            z = rng.random(TEMPLATE_IO.inputs["z"], dtype=np.float32) * 255
            for b in (reference, backend):
                b.template_input[...] = z
                b.run_template()
                b.search_input[...] = x
            want = {name: out.copy() for name, out in reference.run_search().items()}
            got = backend.run_search()
            assert set(got) == set(want)
            for name in want:
                diff = output_diff(name, want[name], got[name], Tolerance(atol=1e-3 * np.abs(want[name]).max(), rtol=1e-3))
                assert diff.passed, diff
            features = output_diff("zf", reference.template_features()["zf"], backend.template_features()["zf"])
            assert features.max_rel <= 2e-3, features  # read back from the device
            assert backend.run_search() is got, "outputs must be the same buffers every frame"
            results.append({name: out.copy() for name, out in got.items()})
        # Same search crop, new template: the search engine must read the new features from the device.
        assert not np.allclose(results[0]["cls"], results[1]["cls"])
    finally:
        backend.close()
        backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.run_search()


def test_auto_passes_over_engines_built_for_another_machine_with_one_note(tiny_bundle: Bundle, monkeypatch) -> None:
    """`--backend auto` on a machine with TensorRT whose engines' sidecars name another GPU: ONNX Runtime, one note."""
    from edgetrack.runtime.backends import open_backend, tensorrt

    for path, io in zip(engine_paths(tiny_bundle, "fp32"), (TEMPLATE_IO, SEARCH_IO)):
        path.write_bytes(b"engine")
        model = path.name.split(".")[0] + ".onnx"
        sidecar = EngineSidecar.for_machine(ORIN, "fp32", io, model, tiny_bundle.meta.files[model])
        sidecar_path(path).write_text(sidecar.to_json())
    here = dataclasses.replace(ORIN, gpu="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    monkeypatch.setattr(tensorrt, "tensorrt_available", lambda: True)
    monkeypatch.setattr(tensorrt, "import_tensorrt", lambda: (object(), object()))
    monkeypatch.setattr(tensorrt, "machine_fingerprint", lambda: here)
    notes: list[str] = []
    with open_backend(tiny_bundle, "fp32", backend="auto", note=notes.append) as runner:
        assert isinstance(runner, OnnxRuntimeBackend)
    assert len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith("not using the TensorRT engines (engine template.fp32.engine was built for") and "Orin" in notes[0]
    assert notes[0].endswith("running ONNX Runtime instead")
    # asked for by name, the same engines are refused, not replaced
    with pytest.raises(BackendError, match="was built for"):
        open_backend(tiny_bundle, "fp32", backend="tensorrt")
