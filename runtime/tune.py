"""``tune``: search a bundle's tracking hyper-parameters on one dataset, report whether the gain holds on another,
and write the best values into a bundle.

The search: Optuna's TPE sampler, seeded, over ``penalty_k``, ``window_influence`` and ``lr`` (``SearchSpace``),
maximising the mean success AUC over the tuning sequences. The first trial tries the bundle's own values, so the
best is never worse than them on the tuning set and the AUC before tuning costs no extra pass.

The study is kept in a journal file (``WORK/study.journal``, Optuna's ``JournalStorage``: no database), so a run
that stops, or one asked for more trials, continues where the last one ended when it is given the same work
folder: the completed trials are kept and the study goes on until ``trials`` trials have completed in all. A trial
that a killed run left running is marked failed and does not count. One run at a time per work folder.

The lost threshold moves no box, so it cannot change the AUC, and it is not a TPE dimension: each trial records
the score of every updated frame during its one pass over the sequences, and ``choose_lost_threshold`` then picks,
from those scores, the threshold whose ``lost`` flag best matches the target's absence (F1). A trial costs one
pass whatever the threshold, and the threshold is the best one for that trial's boxes rather than a sample. With
no absent frame in the tuning set there is nothing to fit, and the bundle's threshold is kept.

Torch-free; Optuna is imported inside ``tune`` (the ``tune`` extra).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetrack import defaults

from .backends import ignore_note
from .bundle import METADATA_FILE, Bundle, BundleMeta, Hyper, load_bundle
from .datasets import Sequence, load_dataset
from .errors import OutputError, SourceError
from .evaluate import track_sequence
from .files import current_umask, swap_folder, write_atomic
from .metrics import LostScores, lost_scores
from .open_tracker import open_tracker
from .output_folder import claim_output
from .pretrained import FOLDER as SHIPPED_FOLDER, resolve
from .progress import NO_PROGRESS, Progress
from .records import FieldsJson
from .tracker import SiameseTracker, TrackResult

TUNE_TOOL = "edgetrack tune"
STUDY_FILE = "study.journal"
REPORT_FILE = "tune.json"
STUDY_NAME = "edgetrack-tune"
#: what a bundle that ``tune`` wrote records under ``producer`` in its metadata
PRODUCER_KEY = "tuned"
#: the hyper-parameters TPE samples; ``lost_threshold`` is fitted per trial instead (see the module's doc)
SEARCHED = ("penalty_k", "window_influence", "lr")


@dataclass(frozen=True)
class SearchSpace(FieldsJson):
    """The (low, high) range searched for each of ``SEARCHED``."""

    penalty_k: tuple[float, float] = defaults.TUNE_PENALTY_K
    window_influence: tuple[float, float] = defaults.TUNE_WINDOW_INFLUENCE
    lr: tuple[float, float] = defaults.TUNE_LR

    def including(self, hyper: Hyper) -> SearchSpace:
        """This space widened to hold ``hyper``'s values, so that the bundle's own values are a point of it."""
        ranges = {}
        for name in SEARCHED:
            (low, high), value = getattr(self, name), getattr(hyper, name)
            ranges[name] = (min(low, value), max(high, value))
        return SearchSpace(**ranges)


@dataclass(frozen=True)
class Evaluation(FieldsJson):
    """One setting's mean success AUC over a dataset's sequences, and the F1 of its ``lost`` flag against the
    target's absence over their updated frames (None when the target is never absent)."""

    auc: float
    lost_f1: float | None


@dataclass(frozen=True)
class TrialRecord(FieldsJson):
    """A completed trial: the values it tried, its AUC on the tuning set, the lost threshold fitted to its pass and
    that threshold's F1; ``baseline`` marks the trial of the bundle's own values."""

    number: int
    auc: float
    penalty_k: float
    window_influence: float
    lr: float
    lost_threshold: float
    lost_f1: float | None
    baseline: bool


@dataclass(frozen=True)
class TrialProgress:
    """What ``tune`` reports after each trial it completes: the trial, the best AUC so far, and the trials
    completed of those asked for (counting a previous run's)."""

    trial: TrialRecord
    best_auc: float
    done: int
    total: int


@dataclass(frozen=True)
class TuneReport:
    """The result of ``tune``, written as ``tune.json`` beside the study."""

    bundle: str
    #: the bundle the best values went into: a new one, or ``bundle`` itself
    written: str
    dataset: str
    report_on: str | None
    seed: int
    space: SearchSpace
    #: every completed trial, in order
    trials: tuple[TrialRecord, ...]
    before: Hyper
    best: Hyper
    #: the bundle's values and the best ones on the tuning set, and on the report set when one was given
    tune_before: Evaluation
    tune_after: Evaluation
    report_before: Evaluation | None
    report_after: Evaluation | None

    def to_json(self) -> dict[str, Any]:
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return raw | {
            "space": self.space.to_json(),
            "trials": [t.to_json() for t in self.trials],
            "before": dataclasses.asdict(self.before),
            "best": dataclasses.asdict(self.best),
            **{key: None if raw[key] is None else raw[key].to_json() for key in ("tune_before", "tune_after", "report_before", "report_after")},
        }


def lost_f1(scores: LostScores) -> float | None:
    """The F1 of the lost flag against absence: precision = lost_when_absent / all lost, recall = lost_when_absent /
    absent frames; None when no target is absent."""
    if not scores.absent_frames:
        return None
    flagged = scores.lost_when_absent + scores.lost_when_present
    return 2 * scores.lost_when_absent / (flagged + scores.absent_frames)


def lost_flags(scores: np.ndarray, lost_threshold: float) -> np.ndarray:
    """The frames ``SiameseTracker.update`` reports lost, from their scores: those scoring below the threshold."""
    return np.asarray(scores, float) < lost_threshold


def choose_lost_threshold(scores: np.ndarray, absent: np.ndarray, current: float) -> float:
    """The lost threshold whose flag (``lost_flags``) best matches ``absent`` over these frames' ``scores``, by
    F1; ``current`` when no target is absent or no threshold beats its F1.

    Flagging the k lowest scores is every threshold there is, so one sort scores them all; the threshold returned
    lies midway between the highest score flagged and the next one (just above the highest when all are flagged).
    """
    scores, absent = np.asarray(scores, float), np.asarray(absent, bool)
    if not absent.any():
        return current
    order = np.argsort(scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(absent[order])
    f1 = 2 * hits / (np.arange(1, len(ranked) + 1) + absent.sum())
    # a threshold cannot part equal scores: only the last of a run of equal ones is a cut
    f1[np.append(ranked[1:] == ranked[:-1], False)] = -1.0
    best = int(np.argmax(f1))
    if f1[best] <= lost_f1(lost_scores(lost_flags(scores, current), absent)):
        return current
    low = ranked[best]
    high = ranked[best + 1] if best + 1 < len(ranked) else np.nextafter(low, np.inf)
    middle = (low + high) / 2
    return float(middle if middle > low else high)


class _ScoreRecorder(SiameseTracker):
    """A tracker that keeps every update's score, one list per sequence, for the lost threshold to be fitted after
    the pass."""

    def __init__(self, meta: BundleMeta, base: SiameseTracker):
        super().__init__(meta, base.backend, bundle=base.bundle)
        self.scores: list[list[float]] = []

    def init(self, frame: np.ndarray, box) -> tuple[float, float, float, float]:
        self.scores.append([])
        return super().init(frame, box)

    def update(self, frame: np.ndarray) -> TrackResult:
        result = super().update(frame)
        self.scores[-1].append(result.score)
        return result


@dataclass(frozen=True)
class _Pass:
    """One setting tracked over a dataset: its mean AUC, and the score and absence of every updated frame."""

    auc: float
    scores: np.ndarray
    absent: np.ndarray

    def evaluation(self, lost_threshold: float) -> Evaluation:
        return Evaluation(self.auc, lost_f1(lost_scores(lost_flags(self.scores, lost_threshold), self.absent)))


def _track(base: SiameseTracker, hyper: Hyper, sequences: Seq[Sequence], progress: Progress, label: str) -> _Pass:
    """Track ``sequences`` once with ``hyper`` in place of the bundle's, on ``base``'s backend (no model is
    reloaded or rewritten)."""
    recorder = _ScoreRecorder(dataclasses.replace(base.meta, hyper=hyper), base)
    progress.start(sum(len(s) - 1 for s in sequences), label)
    try:
        aucs = [track_sequence(recorder, s, on_frame=progress.advance).scores.auc for s in sequences]
    finally:
        progress.close()
    absent = [s.absent[1 : 1 + len(r)] for s, r in zip(sequences, recorder.scores)]
    return _Pass(float(np.mean(aucs)), np.concatenate([np.asarray(r, float) for r in recorder.scores]), np.concatenate(absent))


def _destination(source: Bundle, given: str | Path, out: Path | None, in_place: bool, work: Path) -> Path:
    """Where the best values go, checked before any work: ``source`` itself (never a shipped student), or a new
    bundle (``WORK/NAME.etb`` by default), which may replace only a bundle ``tune`` wrote before."""
    if in_place:
        if out is not None:
            raise ValueError("give out or in_place, not both")
        if source.path.resolve().is_relative_to(SHIPPED_FOLDER):
            raise OutputError(f"{given} is a student shipped with edgetrack and is never changed in place: give --out NEW.etb")
        return source.path
    out = Path(out) if out is not None else work / f"{_stem(given)}.etb"
    if out.resolve() == source.path.resolve():
        raise OutputError(f"--out {out} is the bundle being tuned: give another --out, or --in-place to write into it")
    if (out.exists() or out.is_symlink()) and not _written_by_tune(out):
        raise OutputError(f"--out {out} exists and is not a bundle that edgetrack tune wrote: move it or choose another --out")
    return out


def _stem(bundle: str | Path) -> str:
    return Path(bundle).name.removesuffix(".etb")


def _written_by_tune(path: Path) -> bool:
    try:
        return not path.is_symlink() and PRODUCER_KEY in json.loads((path / METADATA_FILE).read_text())["producer"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_tuned(source: Bundle, hyper: Hyper, out: Path, provenance: dict[str, Any]) -> Bundle:
    """Write ``hyper`` into the bundle at ``out``, recording ``provenance`` under ``producer.tuned``.

    ``out`` is ``source``'s own folder (its metadata re-read and replaced in one rename, the models untouched), or a
    new bundle: a copy of ``source``'s folder, made beside ``out`` and renamed into place (replacing a previous
    one whole), whose files keep their sha256. Returns the bundle read back.
    """
    out = Path(out)
    in_place = out.resolve() == source.path.resolve()
    meta = load_bundle(source.path, verify=False).meta if in_place else source.meta
    meta = dataclasses.replace(meta, hyper=hyper, producer={**meta.producer, PRODUCER_KEY: provenance})
    try:
        if in_place:
            write_atomic(out / METADATA_FILE, meta.to_json())
            return load_bundle(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            os.chmod(staging, 0o777 & ~current_umask())
            for path in sorted(source.path.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    target = staging / path.relative_to(source.path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)
            write_atomic(staging / METADATA_FILE, meta.to_json())
            load_bundle(staging)
            swap_folder(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise OutputError(f"cannot write the tuned bundle {out}: {exc.strerror or exc}; free space there or choose another --out") from None
    return load_bundle(out)


def _record(trial) -> TrialRecord:
    """The ``TrialRecord`` of a completed Optuna trial."""
    return TrialRecord(
        number=trial.number,
        auc=float(trial.value),
        **{name: float(trial.params[name]) for name in SEARCHED},
        lost_threshold=float(trial.user_attrs["lost_threshold"]),
        lost_f1=trial.user_attrs["lost_f1"],
        baseline=bool(trial.user_attrs.get("baseline", False)),
    )


def tune(
    bundle: str | Path,
    dataset: Path,
    work: Path,
    trials: int = defaults.TUNE_TRIALS,
    seed: int = defaults.TUNE_SEED,
    report_on: Path | None = None,
    out: Path | None = None,
    in_place: bool = False,
    space: SearchSpace = SearchSpace(),
    precision: str = defaults.PRECISION,
    backend: str = defaults.BACKEND,
    device: str = defaults.DEVICE,
    threads: int | None = None,
    on_trial: Callable[[TrialProgress], None] = lambda progress: None,
    progress: Progress = NO_PROGRESS,
    note: Callable[[str], None] = ignore_note,
) -> TuneReport:
    """Tune ``bundle`` (a folder or a shipped student's name) on the sequences at ``dataset`` until ``trials``
    trials have completed in the study kept in ``work`` (see the module's doc), then evaluate the bundle's values
    and the best ones on ``report_on``, write the best into ``out`` (default ``WORK/NAME.etb``) or, with
    ``in_place``, into ``bundle`` itself, and write ``WORK/tune.json``.

    ``on_trial`` hears of each trial completed; ``progress`` follows the frames of each pass over a dataset;
    ``note`` hears of skipped sub-folders and of a backend passed over.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    source = load_bundle(resolve(bundle))
    source.model_paths(precision)  # a precision the bundle lacks fails here, before any work
    destination = _destination(source, bundle, out, in_place, Path(work))
    data = {}
    for role, path in (("tune", dataset), ("report", report_on)):
        if path is not None:
            loaded = load_dataset(path)
            for name, reason in loaded.skipped:
                note(f"skipping {name} of {path}: {reason}")
            blind = next((s.name for s in loaded.sequences if not s.scored), None)
            if blind is not None:
                raise SourceError(f"sequence {blind} of {path} has ground truth on its first frame only (a test split): tune and report on annotated sequences")
            data[role] = loaded.sequences
    folder = claim_output(Path(work), TUNE_TOOL, "--work", [STUDY_FILE, REPORT_FILE])
    folder.commit([STUDY_FILE, REPORT_FILE])  # now, so that a run that stops leaves a study the next one may resume

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=JournalStorage(JournalFileBackend(str(folder.path / STUDY_FILE))),
        sampler=optuna.samplers.TPESampler(seed=seed),
        study_name=STUDY_NAME,
        direction="maximize",
        load_if_exists=True,
    )
    # The values before tuning are those the study began from: a resumed run on a bundle tuned in place keeps them.
    before = Hyper(**study.user_attrs.get("before", dataclasses.asdict(source.meta.hyper)))
    space = space.including(before)
    setup = {
        "models": {name: source.meta.files[name] for name in dataclasses.astuple(source.meta.models[precision])},
        "precision": precision,
        "dataset": str(Path(dataset).resolve()),
        "seed": seed,
        "space": space.to_json(),
    }
    setup = json.loads(json.dumps(setup))
    if "setup" not in study.user_attrs:
        study.set_user_attr("setup", setup)
        study.set_user_attr("before", dataclasses.asdict(before))
    elif study.user_attrs["setup"] != setup:
        differ = ", ".join(key for key in setup if study.user_attrs["setup"].get(key) != setup[key])
        raise OutputError(f"--work {folder.path} holds a study of another setup (its {differ} differ): give another --work to start a new one")
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)
    kept = (TrialState.COMPLETE, TrialState.WAITING)
    if not any(t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False, states=kept)):
        study.enqueue_trial({name: getattr(before, name) for name in SEARCHED}, user_attrs={"baseline": True})

    with open_tracker(source.path, precision, backend=backend, device=device, threads=threads, note=note) as base:

        def objective(trial) -> float:
            values = {name: trial.suggest_float(name, *getattr(space, name)) for name in SEARCHED}
            run = _track(base, Hyper(**values, lost_threshold=before.lost_threshold), data["tune"], progress, f"trial {trial.number}")
            threshold = choose_lost_threshold(run.scores, run.absent, before.lost_threshold)
            trial.set_user_attr("lost_threshold", threshold)
            trial.set_user_attr("lost_f1", run.evaluation(threshold).lost_f1)
            trial.set_user_attr("bundle_lost_f1", run.evaluation(before.lost_threshold).lost_f1)
            return run.auc

        def completed() -> list:
            return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

        def report(study, trial) -> None:
            if trial.state == TrialState.COMPLETE:
                on_trial(TrialProgress(_record(trial), float(study.best_value), len(completed()), trials))

        remaining = trials - len(completed())
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, callbacks=[report])
        done = completed()
        best_trial, baseline = study.best_trial, next(t for t in done if t.user_attrs.get("baseline"))
        best = Hyper(**{name: float(best_trial.params[name]) for name in SEARCHED}, lost_threshold=float(best_trial.user_attrs["lost_threshold"]))
        report_before = report_after = None
        if "report" in data:
            name = Path(report_on).name
            report_before = _track(base, before, data["report"], progress, f"before on {name}").evaluation(before.lost_threshold)
            report_after = _track(base, best, data["report"], progress, f"after on {name}").evaluation(best.lost_threshold)

    result = TuneReport(
        bundle=str(bundle),
        written=str(destination),
        dataset=str(dataset),
        report_on=None if report_on is None else str(report_on),
        seed=seed,
        space=space,
        trials=tuple(_record(t) for t in sorted(done, key=lambda t: t.number)),
        before=before,
        best=best,
        tune_before=Evaluation(float(baseline.value), baseline.user_attrs["bundle_lost_f1"]),
        tune_after=Evaluation(float(best_trial.value), best_trial.user_attrs["lost_f1"]),
        report_before=report_before,
        report_after=report_after,
    )
    provenance = {"from": str(bundle), "dataset": str(dataset), "trials": len(done), "auc_before": result.tune_before.auc, "auc_after": result.tune_after.auc}
    write_tuned(source, best, destination, provenance)
    try:
        write_atomic(folder.path / REPORT_FILE, json.dumps(result.to_json(), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {folder.path / REPORT_FILE}: {exc.strerror or exc}") from None
    return result
