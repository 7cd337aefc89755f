"""The controller: a small LSTM that reads the teacher's width groups in order and picks a ratio for each.

At each group its input is the ratio it chose for the previous group (one-hot), the group's teacher width
(log-scaled) and its position, so a choice can depend on what came before, as in N2N learning's layer-removal
and layer-shrinkage controllers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Sample:
    actions: tuple[int, ...]
    #: sum of the chosen actions' log-probabilities, with its graph (REINFORCE differentiates it)
    log_prob: torch.Tensor
    #: sum of the per-group entropies, with its graph (the entropy bonus)
    entropy: torch.Tensor


class WidthPolicy(nn.Module):
    def __init__(self, teacher_widths: list[int], ratios: tuple[float, ...], prior: float, spread: float = 0.15, hidden: int = 32):
        super().__init__()
        choices = len(ratios)
        self.choices = choices
        count = len(teacher_widths)
        features = [[math.log2(w) / 10.0, i / max(count - 1, 1)] for i, w in enumerate(teacher_widths)]
        self.register_buffer("features", torch.tensor(features, dtype=torch.float32))
        self.cell = nn.LSTMCell(choices + 1 + 2, hidden)
        self.logits = nn.Linear(hidden, choices)
        # A fresh policy picks every group's ratio around ``prior``, the uniform ratio that meets the compression
        # target: a uniform start over 0.1..1.0 averages a 3x student, and most of a short search's samples would
        # be spent learning to shrink at all rather than where to shrink.
        nn.init.zeros_(self.logits.weight)
        with torch.no_grad():
            self.logits.bias.copy_(torch.tensor([-((r - prior) / spread) ** 2 / 2 for r in ratios]))

    def sample(self, generator: torch.Generator | None = None) -> Sample:
        h = c = torch.zeros(1, self.cell.hidden_size)
        previous = torch.zeros(1, self.choices + 1)
        previous[0, self.choices] = 1.0  # "no previous group"
        actions, log_probs, entropies = [], [], []
        for i in range(self.features.shape[0]):
            h, c = self.cell(torch.cat([previous, self.features[i : i + 1]], dim=1), (h, c))
            distribution = torch.distributions.Categorical(logits=self.logits(h)[0])
            action = torch.multinomial(distribution.probs.detach(), 1, generator=generator)[0]
            actions.append(int(action))
            log_probs.append(distribution.log_prob(action))
            entropies.append(distribution.entropy())
            previous = torch.zeros(1, self.choices + 1)
            previous[0, int(action)] = 1.0
        return Sample(tuple(actions), torch.stack(log_probs).sum(), torch.stack(entropies).sum())
