"""REINFORCE over the width policy: sample students, score them, move the policy towards the better ones.

Each episode samples ``students_per_episode`` architectures; those not seen before are scored together by the
evaluator (a brief distillation, see ``proxy``), identical ones come from the cache. The policy gradient uses a
moving-average baseline and an entropy bonus. Every episode ends with a checkpoint (policy, optimiser, baseline,
sampler state, cache, log), written atomically, so a stopped search resumes exactly where it was.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from edgetrack.runtime.errors import InputError
from edgetrack.runtime.files import write_atomic

from edgetrack import defaults

from ..checkpoint import load_file, save_file
from .policy import WidthPolicy
from .reward import RewardConfig, reward, target_miss
from .rows import LOG_FIELDS, SearchRow
from .space import Architecture, SearchSpace

CHECKPOINT = "search.pt"
CHECKPOINT_FORMAT = "edgetrack-search-1"

#: scores the given architectures (none of them cached) in the given episode: their AUCs, in order
Evaluator = Callable[[list[Architecture], int], list[float]]


@dataclass(frozen=True)
class SearchConfig:
    episodes: int = defaults.SEARCH_EPISODES
    students_per_episode: int = defaults.SEARCH_STUDENTS_PER_EPISODE
    #: Adam's step on the policy; at 0.1 a 12-episode search collapsed onto one student by episode 5
    lr: float = 0.02
    #: baseline <- decay * baseline + (1 - decay) * mean episode reward
    baseline_decay: float = 0.7
    #: summed over every group's choice, so it pulls hard towards uniform ratios (a 3x student): keep it small
    entropy_bonus: float = 0.003
    #: how widely a fresh policy spreads its ratios around the uniform ratio that meets the target
    prior_spread: float = 0.25
    seed: int = defaults.SEED
    reward: RewardConfig = field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.students_per_episode < 1:
            raise InputError("--episodes and --students-per-episode must be at least 1")


@dataclass
class SearchState:
    episode: int
    baseline: float | None
    cache: dict[str, float]
    log: list[SearchRow]


def _log_csv(rows: list[SearchRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, LOG_FIELDS)
    writer.writeheader()
    writer.writerows(row.to_csv() for row in rows)
    return buffer.getvalue()


def best_row(rows: list[SearchRow], config: RewardConfig) -> SearchRow:
    """The highest reward among students within the compression tolerance (all students when none is)."""
    within = [r for r in rows if target_miss(r.compression, config) <= config.tolerance]
    return max(within or rows, key=lambda r: r.reward)


def run_search(
    space: SearchSpace,
    evaluate: Evaluator,
    teacher_auc: float,
    config: SearchConfig,
    out: Path,
    resume: bool = False,
    on_episode: Callable[[int, list[SearchRow]], None] | None = None,
) -> SearchState:
    """Run (or resume) the search in ``out``; ``on_episode`` hears each finished episode's rows."""
    torch.manual_seed(config.seed)
    prior = space.uniform_ratio(space.teacher_params / config.reward.target_compression)
    policy = WidthPolicy([space.teacher.widths[g] for g in space.groups], space.ratios, prior, config.prior_spread)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    state = SearchState(episode=0, baseline=None, cache={}, log=[])
    path = out / CHECKPOINT
    if resume:
        if not path.is_file():
            raise InputError(f"nothing to resume: {path} does not exist")
        saved = load_file(path)
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path} is not an edgetrack search checkpoint")
        if saved["teacher"] != space.teacher.name or saved["config"] != dataclasses.asdict(config):
            raise InputError(f"{path} holds a search with other settings: resume it with the same --teacher and options")
        policy.load_state_dict(saved["policy"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        state = SearchState(saved["episode"], saved["baseline"], dict(saved["cache"]), [SearchRow.from_json(r) for r in saved["log"]])
    elif path.exists():
        raise InputError(f"{out} already holds a search: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    while state.episode < config.episodes:
        samples = [policy.sample(generator) for _ in range(config.students_per_episode)]
        archs = [space.architecture(s.actions) for s in samples]
        fresh = list({a.key: a for a in archs if a.key not in state.cache}.values())
        if fresh:
            for arch, auc in zip(fresh, evaluate(fresh, state.episode)):
                state.cache[arch.key] = float(auc)
        rewards = [reward(a.params, space.teacher_params, state.cache[a.key], teacher_auc, config.reward) for a in archs]
        mean = sum(rewards) / len(rewards)
        baseline = mean if state.baseline is None else state.baseline
        loss = torch.stack([-(r - baseline) * s.log_prob - config.entropy_bonus * s.entropy for r, s in zip(rewards, samples)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state.baseline = mean if state.baseline is None else config.baseline_decay * state.baseline + (1 - config.baseline_decay) * mean
        # Only the first sample of a newly evaluated architecture paid for a distillation; the rest hit the cache.
        pending = {a.key for a in fresh}
        cached = []
        for a in archs:
            cached.append(a.key not in pending)
            pending.discard(a.key)
        rows = [
            SearchRow(state.episode, i, a.key, a.params, a.compression, state.cache[a.key], r, hit, a.widths)
            for i, (a, r, hit) in enumerate(zip(archs, rewards, cached))
        ]
        state.log += rows
        state.episode += 1
        save_file(
            path,
            {
                "format": CHECKPOINT_FORMAT,
                "teacher": space.teacher.name,
                "config": dataclasses.asdict(config),
                "episode": state.episode,
                "policy": policy.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "baseline": state.baseline,
                "cache": state.cache,
                "log": [row.to_json() for row in state.log],
                "teacher_auc": teacher_auc,
            },
        )
        write_atomic(out / "log.csv", _log_csv(state.log))
        if on_episode is not None:
            on_episode(state.episode, rows)
    return state
