"""Data specs, as the command line and config files write them, opened into weighted data sources.

``synthetic[:SEQUENCES]``   the synthetic world (default 200 sequences), seeded by the run's seed
``unlabeled:PATH``          a video or image folder without boxes; the teacher labels its pairs
``sequences:PATH``          annotated sequence folders in OTB or VOT layout (``$EDGETRACK_DATA/train``)
``FORMAT:PATH``             a dataset in a real layout: got10k, lasot, trackingnet, vid, coco

Any spec may end in ``@WEIGHT`` to set its share of the pairs (default 1), e.g. ``unlabeled:clip.mp4@0.5``.
"""

from __future__ import annotations

from pathlib import Path

from edgetrack.runtime.errors import InputError

from .pairs import DataSource
from .sequence import TrainingSet

DEFAULT_SYNTHETIC_SEQUENCES = 200


def split_weight(spec: str) -> tuple[str, float]:
    body, at, weight = spec.rpartition("@")
    if not at:
        return spec, 1.0
    try:
        value = float(weight)
    except ValueError:
        raise InputError(f"data spec {spec!r}: the weight after '@' must be a number") from None
    if value <= 0:
        raise InputError(f"data spec {spec!r}: the weight after '@' must be positive")
    return body, value


def open_data(spec: str, seed: int) -> tuple[DataSource, TrainingSet]:
    """The source a spec names, and everything read (with what was skipped, for the run's report)."""
    body, weight = split_weight(spec)
    kind, _, where = body.partition(":")
    if kind == "synthetic":
        from .synthetic import synthetic_world

        try:
            count = int(where) if where else DEFAULT_SYNTHETIC_SEQUENCES
        except ValueError:
            raise InputError(f"data spec {spec!r}: synthetic takes a number of sequences, e.g. synthetic:200") from None
        data = synthetic_world(seed, count)
    elif kind == "sequences":
        from .readers import read_sequence_folders

        data = read_sequence_folders(Path(where))
    elif kind == "unlabeled":
        from .unlabeled import read_unlabeled

        data = read_unlabeled(Path(where))
    else:
        from .readers import read_training_data

        try:
            data = read_training_data(body)
        except ValueError as exc:
            raise InputError(f"data spec {spec!r}: {exc}") from None
    return DataSource(body, data.sequences, weight), data
