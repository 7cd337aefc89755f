"""What `edgetrack models` reports for a model: size, and GFLOPs counted by torch's FlopCounterMode."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import build_model
from edgetrack.runtime.bundle import hyper_json
from edgetrack.runtime.pretrained import ModelSummary

from .base import ModelConfig



def _gflops(run) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / 1e9


def summarise(config: ModelConfig) -> ModelSummary:
    """Count on the meta device: shapes only, so a 90M-parameter teacher costs no memory and no time."""
    with torch.device("meta"):
        model = build_model(config).eval()
        z, x = model.example_crops()
        with torch.no_grad():
            features = model.template_features(z)
            template_gflops = _gflops(lambda: model.template(z))
            search_gflops = _gflops(lambda: model.track(x, *features))
        state = model.state_dict()
    return ModelSummary(
        name=config.name,
        family=config.family,
        teacher=config.teacher,
        params=sum(p.numel() for p in model.parameters()),
        # what an fp32 checkpoint or ONNX file holds: parameters and buffers (BatchNorm statistics)
        fp32_mb=sum(t.numel() * 4 for t in state.values() if t.is_floating_point()) / 1e6,
        template_gflops=template_gflops,
        search_gflops=search_gflops,
        hyper=hyper_json(config.geometry, config.hyper),
    )
