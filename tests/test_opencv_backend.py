"""The OpenCV DNN backend runs every NanoTrack bundle like ONNX Runtime does, and never loads ONNX Runtime."""

from __future__ import annotations

import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgetrack.runtime import geometry as geo
from edgetrack.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgetrack.runtime.backends.opencv import OpenCVBackend
from edgetrack.runtime.bundle import load_bundle, sha256_file
from edgetrack.runtime.crops import TargetState, search_crop, template_crop
from edgetrack.runtime.errors import BundleError


def real_crops(data, geometry):
    """An exemplar and a search crop of bag, made as the tracker makes them."""
    first = cv2.imread(str(data / "sequences" / "bag" / "color" / "00000001.jpg"))
    later = cv2.imread(str(data / "sequences" / "bag" / "color" / "00000010.jpg"))
    box = (292.23, 128.36, 145.96, 132.47)
    fill = geo.mean_fill(first)
    z = template_crop(first, box, geometry, fill=fill).transpose(2, 0, 1)[None].astype(np.float32)
    x = search_crop(later, TargetState.from_box(box), geometry, fill=fill).transpose(2, 0, 1)[None].astype(np.float32)
    return z, x


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_outputs_match_onnxruntime_on_real_crops(nanotrack_bundles, data, version):
    bundle = nanotrack_bundles[version]
    z, x = real_crops(data, bundle.meta.geometry)
    results = []
    for backend in (OnnxRuntimeBackend(bundle), OpenCVBackend(bundle)):
        backend.template_input[...] = z
        backend.run_template()
        backend.search_input[...] = x
        results.append({k: v.copy() for k, v in backend.run_search().items()})
    for name in ("cls", "loc"):
        # float32 round-off only: v1's loc reaches 480 px, where 1e-3 absolute is 2e-6 relative
        np.testing.assert_allclose(results[1][name], results[0][name], rtol=1e-5, atol=1e-4, err_msg=name)
    # the two backends pick the same best cell
    assert results[0]["cls"][0, 1].argmax() == results[1]["cls"][0, 1].argmax()


def test_features_stay_bound_between_frames(nanotrack_bundles, data):
    backend = OpenCVBackend(nanotrack_bundles["v2"])
    z, x = real_crops(data, nanotrack_bundles["v2"].meta.geometry)
    backend.template_input[...] = z
    backend.run_template()
    backend.search_input[...] = x
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
