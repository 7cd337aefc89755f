"""``edgetrack tune`` on a hand-built siamrpn bundle and two short moving-square sequences, one of which loses its
target for a few frames: it runs, writes a bundle holding the best trial's values, leaves the source alone,
resumes a stopped study, refuses to change a shipped student in place, and says what to install without optuna."""

from __future__ import annotations

import builtins
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgetrack.cli import main
from edgetrack.runtime.bundle import METADATA_FILE, load_bundle, sha256_file
from edgetrack.runtime.errors import OutputError, SourceError
from edgetrack.runtime.metrics import LostScores
from edgetrack.runtime.tune import REPORT_FILE, STUDY_FILE, choose_lost_threshold, lost_f1, tune

import synthetic

#: the frames of the second sequence whose square is gone
GONE = range(6, 9)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A siamrpn bundle and a dataset of two 10-frame sequences; in the second the square vanishes for a while."""
    root = tmp_path_factory.mktemp("tune")
    bundle = synthetic.siamrpn_bundle(root / "rpn.etb").path
    for name, step, gone in (("slow", (3, 2), ()), ("fast", (6, 4), GONE)):
        frames, truth = synthetic.moving_square(frames=10, step=step)
        folder = root / "data" / name
        (folder / "img").mkdir(parents=True)
        for i, frame in enumerate(frames):
            if i in gone:
                frame[:] = synthetic.BACKGROUND
                truth[i] = np.nan
            cv2.imwrite(str(folder / "img" / f"{i:04d}.png"), frame)
        (folder / "groundtruth.txt").write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in truth))
    return bundle, root / "data"


def _digests(bundle):
    return {path.name: sha256_file(path) for path in sorted(bundle.iterdir())}


def test_tune_writes_the_best_trial_into_a_new_bundle(scene, tmp_path):
    bundle, data = scene
    untouched = _digests(bundle)
    seen = []
    report = tune(bundle, data, tmp_path / "work", trials=3, report_on=data / "slow", out=tmp_path / "tuned.etb", on_trial=seen.append)

    assert [s.done for s in seen] == [1, 2, 3] and seen[0].trial.baseline
    assert seen[-1].best_auc == max(t.auc for t in report.trials)
    best = max(report.trials, key=lambda t: t.auc)
    tuned = load_bundle(tmp_path / "tuned.etb")
    assert tuned.meta.hyper == report.best
    assert (tuned.meta.hyper.penalty_k, tuned.meta.hyper.window_influence, tuned.meta.hyper.lr) == (best.penalty_k, best.window_influence, best.lr)
    assert tuned.meta.hyper.lost_threshold == best.lost_threshold
    # the models are copied, not rewritten; the source bundle is as it was
    source = load_bundle(bundle)
    assert {name: tuned.meta.files[name] for name in source.meta.files} == source.meta.files
    assert _digests(bundle) == untouched
    assert report.tune_before.auc == report.trials[0].auc <= report.tune_after.auc == best.auc
    assert report.tune_after.lost_f1 is not None and report.report_before.lost_f1 is None
    written = json.loads((tmp_path / "work" / REPORT_FILE).read_text())
    assert written["best"] == json.loads(json.dumps(report.to_json()))["best"] and len(written["trials"]) == 3


def test_a_resumed_study_continues_where_it_stopped(scene, tmp_path):
    bundle, data = scene
    args = dict(out=tmp_path / "tuned.etb")
    first = tune(bundle, data, tmp_path / "work", trials=3, **args)
    assert (tmp_path / "work" / STUDY_FILE).is_file()
    seen = []
    resumed = tune(bundle, data, tmp_path / "work", trials=5, on_trial=seen.append, **args)
    assert [s.trial.number for s in seen] == [3, 4]
    assert resumed.trials[:3] == first.trials and len(resumed.trials) == 5
    assert load_bundle(tmp_path / "tuned.etb").meta.hyper == resumed.best


def test_a_trial_a_killed_run_left_running_does_not_count(scene, tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    from edgetrack.runtime.tune import STUDY_NAME

    bundle, data = scene
    tune(bundle, data, tmp_path / "work", trials=2, out=tmp_path / "tuned.etb")
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "work" / STUDY_FILE)))
    optuna.load_study(study_name=STUDY_NAME, storage=storage).ask()  # then the run is killed
    report = tune(bundle, data, tmp_path / "work", trials=3, out=tmp_path / "tuned.etb")
    assert [t.number for t in report.trials] == [0, 1, 3]
    states = [t.state for t in optuna.load_study(study_name=STUDY_NAME, storage=storage).get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def test_a_seed_repeats_a_run(scene, tmp_path):
    bundle, data = scene
    runs = [tune(bundle, data, tmp_path / f"work{i}", trials=3, out=tmp_path / f"tuned{i}.etb").trials for i in range(2)]
    assert runs[0] == runs[1]


def test_another_setup_in_the_same_work_folder_is_refused(scene, tmp_path):
    bundle, data = scene
    tune(bundle, data, tmp_path / "work", trials=1, out=tmp_path / "tuned.etb")
    with pytest.raises(OutputError, match="another setup"):
        tune(bundle, data, tmp_path / "work", trials=2, seed=1, out=tmp_path / "tuned.etb")


def test_a_test_split_is_refused_before_any_trial(scene, tmp_path):
    """A GOT-10k test sequence has its first box only: there is nothing to score a trial on."""
    bundle, data = scene
    split = tmp_path / "test"
    sequence = split / "GOT-10k_Test_000001"
    sequence.mkdir(parents=True)
    for i, frame in enumerate(synthetic.moving_square(frames=4)[0]):
        cv2.imwrite(str(sequence / f"{i + 1:08d}.jpg"), frame)
    (sequence / "groundtruth.txt").write_text("60,80,64,64\n")
    (split / "list.txt").write_text("GOT-10k_Test_000001\n")
    with pytest.raises(SourceError, match="first frame only"):
        tune(bundle, split, tmp_path / "work", trials=1)
    assert not (tmp_path / "work" / STUDY_FILE).exists()


def test_in_place_rewrites_only_the_metadata(scene, tmp_path):
    import shutil

    bundle, data = scene
    copy = shutil.copytree(bundle, tmp_path / "mine.etb")
    models = {name: digest for name, digest in _digests(copy).items() if name != METADATA_FILE}
    report = tune(copy, data, tmp_path / "work", trials=2, in_place=True)
    assert load_bundle(copy).meta.hyper == report.best
    assert {name: digest for name, digest in _digests(copy).items() if name != METADATA_FILE} == models


def test_out_never_replaces_what_tune_did_not_write(scene, tmp_path):
    bundle, data = scene
    (tmp_path / "mine.etb").mkdir()
    with pytest.raises(OutputError, match="not a bundle that edgetrack tune wrote"):
        tune(bundle, data, tmp_path / "work", trials=1, out=tmp_path / "mine.etb")
    with pytest.raises(OutputError, match="is the bundle being tuned"):
        tune(bundle, data, tmp_path / "work", trials=1, out=bundle)


def test_a_shipped_student_is_never_tuned_in_place(scene, tmp_path):
    _, data = scene
    result = CliRunner().invoke(main, ["tune", "edgetrack-nano-m", "--dataset", str(data), "--in-place", "--work", str(tmp_path / "w")])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["error: edgetrack-nano-m is a student shipped with edgetrack and is never changed in place: give --out NEW.etb"]
    assert not (tmp_path / "w").exists()


def test_the_cli_shows_each_trial_and_the_gain(scene, tmp_path):
    bundle, data = scene
    args = ["tune", str(bundle), "--dataset", str(data), "--report-on", str(data / "fast"), "--trials", "2", "--work", str(tmp_path / "w")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "trial 1/2 (#0, bundle values)" in result.output and "trial 2/2 (#1)" in result.output
    assert "reported on fast" in result.output
    assert load_bundle(tmp_path / "w" / "rpn.etb").meta.name == "synthetic-siamrpn"


def test_missing_optuna_is_one_line(scene, tmp_path, monkeypatch):
    bundle, data = scene
    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name.split(".")[0] == "optuna":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    result = CliRunner().invoke(main, ["tune", str(bundle), "--dataset", str(data), "--work", str(tmp_path / "w")])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["Error: tune needs the tune extra (optuna is missing): pip install 'edgetrack[tune]'"]


def test_the_lost_threshold_is_the_best_f1_cut():
    scores = np.array([0.9, 0.2, 0.8, 0.3, 0.7, 0.5])
    absent = np.array([False, True, False, True, False, False])
    threshold = choose_lost_threshold(scores, absent, current=0.6)
    assert threshold == pytest.approx(0.4)  # flags exactly the two absent frames
    assert choose_lost_threshold(scores, np.zeros(6, bool), current=0.6) == 0.6
    assert choose_lost_threshold(np.array([0.5, 0.5]), np.array([True, True]), current=0.1) > 0.5
    # a threshold as good as the bundle's is not worth a change
    assert choose_lost_threshold(scores, absent, current=0.35) == 0.35
    assert lost_f1(LostScores(absent_frames=2, present_frames=4, lost_when_absent=1, lost_when_present=1)) == pytest.approx(0.5)
    assert lost_f1(LostScores(0, 4, 0, 1)) is None


def test_the_defaults_are_the_modules():
    import inspect

    from edgetrack import defaults
    from edgetrack.runtime.tune import SearchSpace

    params = {p.name: p.default for p in main.commands["tune"].params}
    assert (params["trials"], params["seed"]) == (defaults.TUNE_TRIALS, defaults.TUNE_SEED)
    signature = inspect.signature(tune).parameters
    assert (signature["trials"].default, signature["seed"].default) == (defaults.TUNE_TRIALS, defaults.TUNE_SEED)
    assert SearchSpace() == SearchSpace(defaults.TUNE_PENALTY_K, defaults.TUNE_WINDOW_INFLUENCE, defaults.TUNE_LR)


def test_the_module_imports_neither_torch_nor_optuna():
    import subprocess
    import sys

    code = "import sys, edgetrack.runtime.tune; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
