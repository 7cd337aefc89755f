"""search-student: the reward formula, valid samples, the REINFORCE loop's resume, and one real episode."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest

torch = pytest.importorskip("torch", reason="the search trains: it needs the train extra (torch)")

import yaml  # noqa: E402

from edgetrack.distill.models import build_model, preset  # noqa: E402
from edgetrack.distill.search.loop import SearchConfig, best_row, run_search  # noqa: E402
from edgetrack.distill.search.policy import WidthPolicy  # noqa: E402
from edgetrack.distill.search.report import pareto_front  # noqa: E402
from edgetrack.distill.search.reward import RewardConfig, reward, target_miss  # noqa: E402
from edgetrack.distill.search.rows import LOG_FIELDS, SearchRow  # noqa: E402
from edgetrack.distill.search.space import SearchSpace, parameter_count  # noqa: E402
from edgetrack.distill.shrink import shrink  # noqa: E402
from edgetrack.distill.trainer import student_config  # noqa: E402
from edgetrack.runtime.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace(preset("nanotrack-v3"))


def test_reward_matches_the_formula_on_hand_computed_values():
    config = RewardConfig(target_compression=4.0, tolerance=0.1, penalty=1.0)
    # 100 -> 25 parameters: C = 0.75, C(2 - C) = 0.9375, times 0.6 / 0.75 = 0.75; 4x is on target.
    assert reward(25, 100, 0.6, 0.75, config) == pytest.approx(0.75)
    # 100 -> 50: 2x misses 4x by 0.5, 0.4 beyond the tolerance: 0.5 * 1.5 * 0.8 - 0.4 = 0.2.
    assert reward(50, 100, 0.6, 0.75, config) == pytest.approx(0.2)
    # 100 -> 22.727...: 4.4x misses by exactly the tolerance and costs nothing.
    assert target_miss(4.4, config) == pytest.approx(0.1)
    c = 1 - 1 / 4.4
    assert reward(100 / 4.4, 100, 0.5, 0.5, config) == pytest.approx(c * (2 - c))
    with pytest.raises(ValueError):
        RewardConfig(target_compression=1.0)


def test_every_sample_of_the_policy_is_a_valid_model(space):
    teacher = preset("nanotrack-v3")
    model = build_model(teacher).eval()
    policy = WidthPolicy([teacher.widths[g] for g in space.groups], space.ratios, prior=0.5, spread=1.0)
    generator = torch.Generator().manual_seed(3)
    z, x = torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255
    for _ in range(8):
        arch = space.architecture(policy.sample(generator).actions)
        student = shrink(model, arch.widths, name="sample").eval()
        assert sum(p.numel() for p in student.parameters()) == arch.params
        with torch.no_grad():
            out = student.track(x, *student.template_features(z))
        assert out["cls"].shape == (1, 2, 15, 15) and out["loc"].shape == (1, 4, 15, 15)
    # The extremes of the ratio set are valid too.
    for action in (0, len(space.ratios) - 1):
        arch = space.architecture((action,) * len(space.groups))
        shrink(model, arch.widths, name="extreme")


def test_a_fresh_policy_centres_on_the_uniform_ratio_of_the_target(space):
    ratio = space.uniform_ratio(space.teacher_params / 8)
    # Widths are whole channels, so counts move in steps: the uniform ratio gets within a few percent.
    assert space.teacher_params / parameter_count(space.config(space.uniform(ratio), "u")) == pytest.approx(8, rel=0.03)
    policy = WidthPolicy([16] * 3, space.ratios, prior=ratio, spread=0.15)
    # Its output weights start at zero, so every group's first choice follows the bias: peaked at the ratio
    # nearest the prior and falling off on both sides.
    probs = torch.softmax(policy.logits.bias, 0).tolist()
    peak = min(range(len(space.ratios)), key=lambda i: abs(space.ratios[i] - ratio))
    assert probs.index(max(probs)) == peak
    assert probs[: peak + 1] == sorted(probs[: peak + 1]) and probs[peak:] == sorted(probs[peak:], reverse=True)


def evaluator_of(log: list):
    """A stand-in proxy score with a known shape: accuracy falls with compression. It records its calls."""

    def evaluate(archs, episode):
        log.append((episode, [a.key for a in archs]))
        return [0.75 * (1 / a.compression) ** 0.15 for a in archs]

    return evaluate


def test_a_resumed_search_continues_from_its_checkpoint(space, tmp_path):
    config = SearchConfig(episodes=4, students_per_episode=3, seed=5)
    straight_calls, resumed_calls = [], []
    straight = run_search(space, evaluator_of(straight_calls), 0.75, config, tmp_path / "straight")

    partial = SearchConfig(episodes=2, students_per_episode=3, seed=5)
    run_search(space, evaluator_of(resumed_calls), 0.75, partial, tmp_path / "resumed")
    # The stop after episode 2 is simulated by a shorter run; resuming needs the same settings...
    with pytest.raises(InputError, match="other settings"):
        run_search(space, evaluator_of(resumed_calls), 0.75, config, tmp_path / "resumed", resume=True)
    # ...so the checkpoint is made to say 4 episodes, as a search of 4 stopped after 2 would.
    from edgetrack.distill.checkpoint import load_file, save_file

    saved = load_file(tmp_path / "resumed" / "search.pt")
    saved["config"]["episodes"] = 4
    save_file(tmp_path / "resumed" / "search.pt", saved)
    resumed = run_search(space, evaluator_of(resumed_calls), 0.75, config, tmp_path / "resumed", resume=True)

    assert [r.episode for r in resumed.log] == [e for e in range(4) for _ in range(3)]
    assert resumed.log == straight.log and resumed.cache == straight.cache
    # Episodes 0-1 were evaluated once, before the stop; the resumed run evaluated only episodes 2-3.
    assert [e for e, _ in resumed_calls] == [e for e, _ in straight_calls]
    rows = list(csv.DictReader((tmp_path / "resumed" / "log.csv").open()))
    assert len(rows) == 12 and json.loads(rows[0]["widths"]) == resumed.log[0].widths
    assert [SearchRow.from_csv(row) for row in rows] == resumed.log
    with pytest.raises(InputError, match="already holds a search"):
        run_search(space, evaluator_of([]), 0.75, config, tmp_path / "resumed")


def test_identical_students_are_scored_once(space, tmp_path):
    calls = []
    # A policy this sharp samples the same architecture again and again.
    state = run_search(space, evaluator_of(calls), 0.75, SearchConfig(episodes=3, students_per_episode=4, prior_spread=0.01), tmp_path)
    evaluated = [key for _, keys in calls for key in keys]
    assert len(evaluated) == len(set(evaluated)) == len(state.cache)
    assert sum(r.cached for r in state.log) == len(state.log) - len(state.cache)


def _row(compression: float, auc: float, reward: float) -> SearchRow:
    return SearchRow(episode=0, sample=0, key="k", params=1000, compression=compression, auc=auc, reward=reward, cached=False, widths={"a": 8})


def test_best_row_and_pareto_front():
    rows = [
        _row(8.1, 0.50, 0.60),
        _row(7.5, 0.55, 0.66),
        _row(4.0, 0.70, 0.70),  # best reward, but outside the tolerance
        _row(7.9, 0.45, 0.55),
    ]
    assert best_row(rows, RewardConfig(target_compression=8)).compression == 7.5
    assert [r.compression for r in pareto_front(rows)] == [4.0, 7.5, 8.1]


def test_a_search_row_reads_back_from_the_checkpoint_and_the_log():
    row = SearchRow(episode=2, sample=1, key="ab12", params=12345, compression=7.9, auc=0.61, reward=0.58, cached=True, widths={"b1": 16, "b2": 24})
    assert SearchRow.from_json(row.to_json()) == row
    assert list(row.to_json()) == list(LOG_FIELDS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, LOG_FIELDS)
    writer.writeheader()
    writer.writerow(row.to_csv())
    buffer.seek(0)
    assert [SearchRow.from_csv(r) for r in csv.DictReader(buffer)] == [row]


def test_one_real_episode_distils_scores_and_writes_a_preset_distill_accepts(data, tmp_path):
    """The whole command at a tiny budget on the real NanoTrack v3 teacher: proxy distillation, validation,
    best.yaml (read back as a student by the trainer) and search.html with inlined plots."""
    from test_cli import edgetrack

    weights = data / "models" / "nanotrack" / "v3" / "nanotrackv3.pth"
    run = edgetrack(
        "search-student", "--teacher", f"nanotrack-v3:{weights}", "--target-compression", 4, "--episodes", 2,
        "--students-per-episode", 2, "--proxy-steps", 2, "--batch-size", 2, "--quiet", "--device", "cpu",
        "--out", tmp_path / "search", env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "search"
    record = yaml.safe_load((out / "best.yaml").read_text())
    assert record["base"] == "nanotrack-v3" and record["teacher"] == "nanotrack-v3"
    config = student_config(str(out / "best.yaml"))
    assert config.widths == record["widths"]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 4 and all(0 <= float(r["auc"]) <= 1 for r in rows)
    page = (out / "search.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and (out / "reward.png").is_file() and (out / "pareto.png").is_file()
    assert "best student" in run.stdout and "edgetrack distill" in run.stdout
