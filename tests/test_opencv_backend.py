"""The OpenCV DNN backend runs every NanoTrack bundle like ONNX Runtime does, and never loads ONNX Runtime."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.backends.opencv import OpenCVBackend
from edgetrack.runtime.bundle import load_bundle, sha256_file
from edgetrack.runtime.compare import compare_outputs, real_crops, run_crops
from edgetrack.runtime.errors import BundleError
from edgetrack.runtime.records import Tolerance


def bag_crops(bundle, data, searches: int = 4):
    """The tracker's exemplar crop of bag and search crops spread over it."""
    return real_crops(bundle.meta, data / "sequences" / "bag", searches)


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_outputs_match_onnxruntime_on_real_crops(nanotrack_bundles, data, version):
    bundle = nanotrack_bundles[version]
    crops = bag_crops(bundle, data)
    with OnnxRuntimeBackend(bundle) as onnxruntime, OpenCVBackend(bundle) as opencv:
        expected, got = run_crops(onnxruntime, crops), run_crops(opencv, crops)
    # float32 round-off only: v1's loc reaches 480 px, where 1e-3 absolute is 2e-6 relative
    errors = compare_outputs(expected, got, Tolerance(atol=1e-4, rtol=1e-5))
    assert [e.name for e in errors] == ["zf", "cls", "loc"]
    assert all(e.passed for e in errors), errors
    # the two backends pick the same best cell on every crop
    best = [outputs["cls"][:, 0, 1].reshape(len(outputs["cls"]), -1).argmax(axis=1) for outputs in (expected, got)]
    assert np.array_equal(*best)


def test_features_stay_bound_between_frames(nanotrack_bundles, data):
    backend = OpenCVBackend(nanotrack_bundles["v2"])
    crops = bag_crops(nanotrack_bundles["v2"], data, searches=1)
    backend.template_input[...] = crops.z
    backend.run_template()
    backend.search_input[...] = crops.x[0]
    first = {k: v.copy() for k, v in backend.run_search().items()}
    again = backend.run_search()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert backend.run_search() is again  # the same buffers every frame


def test_truncated_model_is_one_line(nanotrack_bundles, tmp_path):
    copy = tmp_path / "b.etb"
    shutil.copytree(nanotrack_bundles["v2"].path, copy)
    search = copy / "search.onnx"
    search.write_bytes(search.read_bytes()[:30000])
    meta = (copy / "edgetrack.json").read_text().replace(nanotrack_bundles["v2"].meta.files["search.onnx"], sha256_file(search))
    (copy / "edgetrack.json").write_text(meta)
    with pytest.raises(BundleError, match="OpenCV cannot load") as error:
        OpenCVBackend(load_bundle(copy))
    assert "\n" not in str(error.value)


def test_track_with_opencv_never_loads_onnxruntime(nanotrack_bundles, data, tmp_path):
    script = (
        "import sys\n"
        "from edgetrack.cli import main\n"
        f"main({['track', str(nanotrack_bundles['v3'].path), '--source', str(data / 'sequences' / 'dat' / 'color'), '--init', '10,10,30,30', '--no-show', '--backend', 'opencv', '--results', str(tmp_path / 'r.txt')]!r}, standalone_mode=False)\n"
        "print('onnxruntime loaded:', 'onnxruntime' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "onnxruntime loaded: False" in run.stdout, run.stdout + run.stderr
    assert len((tmp_path / "r.txt").read_text().splitlines()) == 105
