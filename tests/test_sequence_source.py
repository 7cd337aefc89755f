"""The ``sequences:DIR`` training source: real annotated sequences in the layouts ``edgetrack eval`` reads, with
absent frames never used as positives, and the evaluation folders refused as training data."""

from __future__ import annotations

import numpy as np
import pytest

from edgetrack.distill.data.catalog import open_data
from edgetrack.distill.data.pairs import PairConfig, PairSampler
from edgetrack.distill.data.readers import read_sequence_folders
from edgetrack.runtime.bundle import Geometry
from edgetrack.runtime.datasets import read_groundtruth
from edgetrack.runtime.errors import SourceError

GEOMETRY = Geometry(exemplar_size=127, instance_size=255, stride=16, score_size=16)


def test_every_train_sequence_is_read_with_its_exact_boxes(data):
    train = read_sequence_folders(data / "train")
    assert sorted(s.name for s in train.sequences) == ["RedTeam", "TLD_david", "TLD_panda", "TLD_pedestrian1", "VOT13_car"]
    assert not train.skipped
    panda = next(s for s in train.sequences if s.name == "TLD_panda")
    truth = read_groundtruth(data / "train" / "TLD_panda" / "groundtruth_rect.txt")
    assert len(panda) == 1000 and int((~panda.visible).sum()) == 270
    np.testing.assert_array_equal(panda.boxes[panda.visible], truth[panda.visible])
    assert np.isnan(panda.boxes[~panda.visible]).all() and np.isnan(truth[~panda.visible]).all()
    lines = (data / "train" / "TLD_panda" / "groundtruth_rect.txt").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "NaN" not in line)
    assert panda.visible[first] and tuple(panda.boxes[first]) == tuple(float(v) for v in lines[first].split(","))
    assert panda.frame(0).shape == (233, 312, 3)


def test_absent_frames_are_never_read_for_a_positive_pair(data):
    panda = next(s for s in read_sequence_folders(data / "train" / "TLD_panda").sequences)
    read = []
    original = panda.frame
    panda.frame = lambda index: read.append(index) or original(index)
    source = open_data(f"sequences:{data / 'train' / 'TLD_panda'}", 0)[0]
    sampler = PairSampler([type(source)(source.name, [panda])], GEOMETRY, PairConfig(negative=0.0), seed=0)
    for index in range(60):
        assert sampler.pair(index).box is not None
    assert len(read) == 120 and panda.visible[read].all()


@pytest.mark.parametrize("folder", ["benchmark", "sequences", "benchmark/TLD_pedestrian3", "."])
def test_evaluation_folders_are_refused_as_training_data(data, folder):
    with pytest.raises(SourceError, match="never trained on"):
        open_data(f"sequences:{data / folder}", 0)


def test_the_default_sources_hold_no_evaluation_data(data):
    pytest.importorskip("torch")
    from edgetrack.distill.config import TrainConfig

    specs = TrainConfig().data.sources
    assert specs and all("benchmark" not in s and "sequences" not in s for s in specs)
    for spec in specs:
        open_data(spec, 0)
