"""Tuned tracking hyper-parameters of the published NanoTrack versions: the one source for the bundles that
``import-nanotrack`` writes and for the model zoo's NanoTrack presets."""

from __future__ import annotations

from .bundle import Hyper

# v2 and v3 from ../shared/data/README.md; v1 from the upstream NanoTrack v1 config
# (HonglinChu/SiamTrackers configv1.yaml), which that README does not list.
# Lost threshold: on the calibrated lost signal (``runtime.lost_signal``), the best F1 against absent or missed
# targets on the shared train/ sequences: v1 0.7 (0.64 vs 0.59 at 0.8), v2 0.8, v3 0.65 (0.58 vs 0.41 at 0.8).
NANOTRACK_HYPER = {
    "v1": Hyper(penalty_k=0.148, window_influence=0.462, lr=0.390, lost_threshold=0.7),
    "v2": Hyper(penalty_k=0.150, window_influence=0.490, lr=0.385, lost_threshold=0.8),
    "v3": Hyper(penalty_k=0.138, window_influence=0.455, lr=0.348, lost_threshold=0.65),
}
