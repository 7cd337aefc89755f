"""One source of defaults: the command line, the library signatures and the training config all show the values of
``edgetrack.defaults``, and that module stays torch-free."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from edgetrack import defaults
from edgetrack.cli import main


def _option(verb: str, name: str):
    command = main.commands[verb]
    return next(p for p in command.params if p.name == name)


@pytest.mark.parametrize(
    "verb, name, value",
    [
        ("bench", "precisions", ",".join(defaults.PRECISIONS)),
        ("bench", "backends", ",".join(defaults.BENCH_DEFAULT_BACKENDS)),
        ("bench", "max_auc_drop", defaults.MAX_AUC_DROP),
        ("bench", "rounds", defaults.BENCH_ROUNDS),
        ("build-engine", "backend", defaults.BACKEND),
        ("build-engine", "calib_frames", defaults.CALIB_FRAMES),
        ("build-engine", "max_auc_drop", defaults.MAX_AUC_DROP),
        ("export", "opset", defaults.OPSET),
        ("eval", "precision", defaults.PRECISION),
        ("eval", "backend", defaults.BACKEND),
        ("eval", "device", defaults.DEVICE),
        ("compare", "precisions", (defaults.PRECISION,)),
        ("search-student", "target_compression", defaults.SEARCH_TARGET_COMPRESSION),
        ("search-student", "tolerance", defaults.SEARCH_TOLERANCE),
        ("search-student", "episodes", defaults.SEARCH_EPISODES),
        ("search-student", "students_per_episode", defaults.SEARCH_STUDENTS_PER_EPISODE),
        ("search-student", "proxy_steps", defaults.SEARCH_PROXY_STEPS),
        ("search-student", "batch_size", defaults.SEARCH_PROXY_BATCH_SIZE),
        ("search-student", "seed", defaults.SEED),
    ],
)
def test_the_cli_defaults_are_the_modules(verb, name, value):
    assert _option(verb, name).default == value


@pytest.mark.parametrize("verb, name, choices", [("eval", "precision", defaults.PRECISIONS), ("eval", "backend", defaults.BACKENDS), ("build-engine", "backend", defaults.BUILD_BACKENDS), ("train", "optimizer", defaults.OPTIMIZERS)])
def test_the_cli_choices_are_the_modules(verb, name, choices):
    assert tuple(_option(verb, name).type.choices) == choices


def test_the_calibration_method_help_shows_the_modules_value():
    option = _option("build-engine", "calib_method")
    assert tuple(option.type.choices) == defaults.CALIB_METHODS and f"[default: {defaults.CALIB_METHOD}]" in option.help


def test_the_training_help_shows_the_modules_values():
    helps = {p.name: p.help for p in main.commands["train"].params}
    assert f"[default: {defaults.EPOCHS}]" in helps["epochs"]
    assert f"[default: {defaults.STEPS_PER_EPOCH}]" in helps["steps"]
    assert f"[default: {defaults.BATCH_SIZE}]" in helps["batch_size"]
    assert f"[default: {defaults.LR}]" in helps["lr"]
    assert f"[default: {defaults.OPTIMIZER}]" in helps["optimizer"]
    assert f"[default: {defaults.SEED}]" in helps["seed"]


def test_the_runtime_reads_the_module():
    from edgetrack.runtime.backends import BACKENDS, open_backend
    from edgetrack.runtime.bundle import PRECISIONS

    assert PRECISIONS is defaults.PRECISIONS and BACKENDS is defaults.BACKENDS
    signature = inspect.signature(open_backend).parameters
    assert (signature["precision"].default, signature["backend"].default, signature["device"].default) == (defaults.PRECISION, defaults.BACKEND, defaults.DEVICE)


def test_the_module_imports_nothing_heavy():
    code = "import sys, edgetrack.defaults; print(sorted(m for m in ('torch', 'numpy', 'click', 'onnxruntime') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_the_build_and_bench_signatures_read_the_module():
    pytest.importorskip("onnx", reason="building needs the deploy extra")
    from edgetrack.deploy.bench import plan_bench
    from edgetrack.deploy.build_engine import build_engine

    for function in (build_engine, plan_bench):
        parameters = inspect.signature(function).parameters
        assert parameters["max_auc_drop"].default == defaults.MAX_AUC_DROP
        assert parameters["calib_frames"].default == defaults.CALIB_FRAMES


def test_the_training_config_defaults_are_the_modules():
    pytest.importorskip("torch", reason="the training config needs the train extra (torch)")
    from edgetrack.distill.config import TrainConfig

    config = TrainConfig()
    assert (config.epochs, config.steps_per_epoch, config.batch_size, config.seed) == (defaults.EPOCHS, defaults.STEPS_PER_EPOCH, defaults.BATCH_SIZE, defaults.SEED)
    assert (config.optim.optimizer, config.optim.lr, config.data.workers) == (defaults.OPTIMIZER, defaults.LR, defaults.WORKERS)


def test_the_search_configs_defaults_are_the_modules():
    pytest.importorskip("torch", reason="the search is torch")
    from edgetrack.distill.search.loop import SearchConfig
    from edgetrack.distill.search.proxy import ProxySettings
    from edgetrack.distill.search.reward import RewardConfig

    search, proxy, reward = SearchConfig(), ProxySettings(), RewardConfig()
    assert (search.episodes, search.students_per_episode, search.seed) == (defaults.SEARCH_EPISODES, defaults.SEARCH_STUDENTS_PER_EPISODE, defaults.SEED)
    assert (proxy.steps, proxy.batch_size, proxy.seed) == (defaults.SEARCH_PROXY_STEPS, defaults.SEARCH_PROXY_BATCH_SIZE, defaults.SEED)
    assert (reward.target_compression, reward.tolerance) == (defaults.SEARCH_TARGET_COMPRESSION, defaults.SEARCH_TOLERANCE)
