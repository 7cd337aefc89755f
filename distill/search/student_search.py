"""``edgetrack search-student``: load the teacher, score it, search, and leave best.yaml, log.csv and search.html."""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edgetrack.runtime.output_folder import make_writable

from ..data.synthetic import synthetic_sequence, write_sequence
from ..trainer import load_teacher
from ..validate import validate, validation_sequences
from .loop import CHECKPOINT, SearchConfig, best_row, run_search
from .proxy import ProxyDistillation, ProxySettings, write_record
from .report import write_search_report
from .rows import SearchRow
from .space import SearchSpace

#: Seed offset of the synthetic validation sequences, as the trainer uses: no training pair comes from them.
VALIDATION_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class StudentSearch:
    teacher: str
    out: Path
    search: SearchConfig = SearchConfig()
    proxy: ProxySettings = ProxySettings()
    #: synthetic validation sequences to write when ``proxy.validation`` names none
    synthetic_validation: int = 4
    resume: bool = False
    device: str = "auto"


@dataclass(frozen=True)
class SearchOutcome:
    best: SearchRow
    best_yaml: Path
    report: Path
    teacher_auc: float
    seconds: float


def _validation(request: StudentSearch) -> tuple[str, ...]:
    if request.proxy.validation:
        return request.proxy.validation
    folder = request.out / "validation"
    for index in range(request.synthetic_validation):
        target = folder / f"synthetic-{index:03d}"
        if not target.exists():
            write_sequence(synthetic_sequence(request.proxy.seed + VALIDATION_SEED_OFFSET, index), target)
    return (str(folder),)


def search_student(request: StudentSearch, progress: bool = True) -> SearchOutcome:
    """Run (or resume) the search; a search that fails before its first checkpoint removes the folders it created."""
    teacher = load_teacher(request.teacher)
    created = make_writable(request.out, "--out")
    try:
        return _search(request, teacher, progress)
    except BaseException:
        if created is not None and not (request.out / CHECKPOINT).exists():
            shutil.rmtree(created, ignore_errors=True)
        raise


def _search(request: StudentSearch, teacher, progress: bool) -> SearchOutcome:
    started = time.perf_counter()
    space = SearchSpace(teacher.config)
    proxy = dataclasses.replace(request.proxy, validation=_validation(request))
    teacher_auc = validate(teacher, validation_sequences(proxy.validation))["auc"]
    evaluate = ProxyDistillation(space, request.teacher, proxy, request.out, request.device)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=request.search.episodes, unit="episode", dynamic_ncols=True)

    def on_episode(episode: int, rows: list[SearchRow]) -> None:
        if bar is not None:
            if bar.n == 0:
                bar.update(episode - 1)  # a resumed search starts where it stopped
            bar.update(1)
            mean = sum(r.reward for r in rows) / len(rows)
            compressions = ", ".join(f"{r.compression:.1f}x" for r in rows)
            bar.set_postfix_str(f"mean reward {mean:.3f}, compressions {compressions}")

    try:
        state = run_search(space, evaluate, teacher_auc, request.search, request.out, request.resume, on_episode)
    finally:
        if bar is not None:
            bar.close()
    best = best_row(state.log, request.search.reward)
    name = f"{teacher.config.name}-searched-{best.compression:.1f}x"
    best_yaml = write_record(space, dict(best.widths), name, request.out / "best.yaml")
    budget = {
        "episodes": request.search.episodes,
        "students per episode": request.search.students_per_episode,
        "proxy steps x batch": f"{proxy.steps} x {proxy.batch_size}",
        "training data": ", ".join(proxy.data),
        "validation": ", ".join(proxy.validation),
        "distinct students distilled": len(state.cache),
        "target compression": f"{request.search.reward.target_compression:g}x (tolerance {request.search.reward.tolerance:.0%})",
        "wall time of this call (s)": f"{time.perf_counter() - started:.0f}",
    }
    report = write_search_report(request.out, state.log, best, teacher.config.name, space.teacher_params, teacher_auc, request.search.reward, budget)
    return SearchOutcome(best, best_yaml, report, teacher_auc, time.perf_counter() - started)
