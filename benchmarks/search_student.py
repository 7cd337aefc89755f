"""search-student on the real NanoTrack v3, then the searched student against a uniformly shrunk one.

1. The search: target 8x, the synthetic world plus the shared unlabeled videos (teacher-labelled pairs), scored
   on synthetic validation sequences that no training pair comes from. Its report goes to
   benchmarks/search_student/ (search.html with its plots inlined, log.csv, best.yaml).
2. The comparison: the best student and the uniform shrink with the same parameter count (one ratio for every
   group) are distilled with the teacher-student losses in one run, on the same pairs for the same steps, then
   exported and tracked with ONNX Runtime on the shared sequences (Crossing, bag, dat), which neither step saw.

A stopped run resumes: the search from its checkpoint, the distillation from its last.pt.

    .venv/bin/python benchmarks/search_student.py          # about 25 min on 2 cores
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path

import torch
import yaml

from distill_ablation import DATA, TEACHER, evaluate
from edgetrack.deploy.export import load_model
from edgetrack.distill.config import load_config
from edgetrack.distill.losses import LOSS_PRESETS
from edgetrack.distill.search.loop import SearchConfig
from edgetrack.distill.search.proxy import ProxySettings, write_record
from edgetrack.distill.search.report import episode_rewards
from edgetrack.distill.search.reward import RewardConfig
from edgetrack.distill.search.rows import SearchRow
from edgetrack.distill.search.space import SearchSpace, parameter_count
from edgetrack.distill.search.student_search import StudentSearch, search_student
from edgetrack.distill.trainer import RunSpec, run

HERE = Path(__file__).resolve().parent
#: The report's PNGs stay in the run folder: search.html inlines them.
COPIED = ("search.html", "log.csv", "best.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=8.0)
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--students-per-episode", type=int, default=4)
    parser.add_argument("--proxy-steps", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3, help="distillation of the two compared students")
    parser.add_argument("--steps", type=int, default=150, help="steps per epoch of that distillation")
    parser.add_argument("--synthetic", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/search-student"))
    parser.add_argument("--out", type=Path, default=HERE / "search_student.json")
    args = parser.parse_args()

    videos = DATA / "videos"
    sources = (
        f"synthetic:{args.synthetic}",
        f"unlabeled:{videos / 'oneperson.mp4'}@0.3",
        f"unlabeled:{videos / 'fear_test.mp4'}@0.3",
        f"unlabeled:{DATA / 'sequences/tennis_unlabeled'}@0.2",
    )
    search_dir = args.work / "search"
    started = time.perf_counter()
    outcome = search_student(
        StudentSearch(
            teacher=TEACHER,
            out=search_dir,
            search=SearchConfig(episodes=args.episodes, students_per_episode=args.students_per_episode, seed=args.seed, reward=RewardConfig(target_compression=args.target)),
            proxy=ProxySettings(steps=args.proxy_steps, data=sources, seed=args.seed),
            resume=(search_dir / "search.pt").exists(),
            device="cpu",
        )
    )
    search_seconds = time.perf_counter() - started
    copy = HERE / "search_student"
    copy.mkdir(exist_ok=True)
    for name in COPIED:
        shutil.copy(search_dir / name, copy / name)

    teacher = load_model("nanotrack-v3", Path(TEACHER.split(":", 1)[1]))
    space = SearchSpace(teacher.config)
    best = outcome.best
    uniform_widths = space.uniform(space.uniform_ratio(best.params))
    uniform_params = parameter_count(space.config(uniform_widths, "uniform"))
    uniform_name = f"nanotrack-v3-uniform-{space.teacher_params / uniform_params:.1f}x"
    uniform_yaml = write_record(space, uniform_widths, uniform_name, args.work / "uniform.yaml")
    searched_name = yaml.safe_load(Path(outcome.best_yaml).read_text())["name"]

    loss = {f"loss.{k}": v for k, v in dataclasses.asdict(LOSS_PRESETS["teacher-student"]).items()}
    config = load_config(
        None, epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed, student_noise=0.0,
        **{"data.sources": list(sources), "validation.synthetic": 4, **loss},
    )
    folder = args.work / "distill"
    started = time.perf_counter()
    finished = (folder / "history.json").exists() and len(json.loads((folder / "history.json").read_text())) == args.epochs
    if not finished:
        torch.set_num_threads(2)
        run(RunSpec(out=folder, config=config, students=(str(outcome.best_yaml), str(uniform_yaml)), teacher=TEACHER, resume=(folder / "last.pt").exists(), device="cpu"))
    distill_seconds = time.perf_counter() - started

    compared = {}
    for role, name in (("searched", searched_name), ("uniform", uniform_name)):
        model = load_model(name, folder / f"{name}.pt")
        params = sum(p.numel() for p in model.parameters())
        compared[role] = {"name": name, "params": params, "compression": space.teacher_params / params, **evaluate(model, args.work / f"{role}.etb")}
        print(f"{role}: {params:,} params ({compared[role]['compression']:.2f}x), AUC {compared[role]['auc']:.3f} {compared[role]['per_sequence']}", flush=True)

    rewards = episode_rewards(_log(search_dir))
    means = [m for _, m, _, _ in rewards]
    report = {
        "teacher": {"name": "nanotrack-v3", "params": space.teacher_params, "validation_auc": outcome.teacher_auc},
        "search": {
            "target_compression": args.target,
            "episodes": args.episodes,
            "students_per_episode": args.students_per_episode,
            "proxy_steps": args.proxy_steps,
            "batch_size": 16,
            "data": list(sources),
            "seconds_this_call": round(search_seconds, 1),
            "mean_reward_per_episode": means,
            "mean_reward_first_third": statistics.mean(means[: len(means) // 3]),
            "mean_reward_last_third": statistics.mean(means[-(len(means) // 3):]),
            "best": {k: getattr(best, k) for k in ("episode", "params", "compression", "auc", "reward")},
            "best_within_10_percent": abs(best.compression / args.target - 1) <= 0.1,
        },
        "comparison": {
            "budget": {"epochs": args.epochs, "steps_per_epoch": args.steps, "batch_size": 16, "losses": "teacher-student", "seconds": round(distill_seconds, 1)},
            **compared,
        },
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["search"], indent=2))


def _log(search_dir: Path) -> list[SearchRow]:
    return [SearchRow.from_csv(row) for row in csv.DictReader((search_dir / "log.csv").open())]


if __name__ == "__main__":
    main()
