"""``DIR/search.html`` (self-contained) and its plots as PNG: reward per episode, and every sampled student's
accuracy against its compression with the Pareto front."""

from __future__ import annotations

import html
import statistics
from pathlib import Path

from edgetrack.runtime.files import inline_image, write_atomic

from .reward import RewardConfig
from .rows import SearchRow

PLOTS = {"reward": "Reward per episode", "pareto": "Accuracy and compression of every sampled student"}


def episode_rewards(rows: list[SearchRow]) -> list[tuple[int, float, float, float]]:
    """(episode, mean, min, max) of the rewards of each episode."""
    by: dict[int, list[float]] = {}
    for row in rows:
        by.setdefault(row.episode, []).append(row.reward)
    return [(e, statistics.mean(v), min(v), max(v)) for e, v in sorted(by.items())]


def pareto_front(rows: list[SearchRow]) -> list[SearchRow]:
    """The students no other beats on both compression and AUC, by increasing compression."""
    front = []
    for row in sorted(rows, key=lambda r: (-r.compression, -r.auc)):
        if not front or row.auc > front[-1].auc:
            front.append(row)
    return sorted(front, key=lambda r: r.compression)


def _plot(rows: list[SearchRow], teacher_auc: float, reward: RewardConfig, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    episodes = episode_rewards(rows)
    x = [e + 1 for e, *_ in episodes]
    ax.fill_between(x, [lo for *_, lo, _ in episodes], [hi for *_, hi in episodes], alpha=0.25, label="min to max")
    ax.plot(x, [m for _, m, _, _ in episodes], marker="o", label="mean")
    ax.set_xlabel("episode")
    ax.set_ylabel("reward")
    ax.legend()
    fig.suptitle(PLOTS["reward"])
    fig.tight_layout()
    paths["reward"] = folder / "reward.png"
    fig.savefig(paths["reward"])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    points = ax.scatter([r.compression for r in rows], [r.auc for r in rows], c=[r.episode for r in rows], cmap="viridis", s=22)
    fig.colorbar(points, label="episode")
    front = pareto_front(rows)
    ax.plot([r.compression for r in front], [r.auc for r in front], color="#c44e52", marker="s", label="Pareto front")
    ax.axvline(reward.target_compression, color="grey", ls="--", label="target compression")
    ax.axvspan(reward.target_compression * (1 - reward.tolerance), reward.target_compression * (1 + reward.tolerance), color="grey", alpha=0.12)
    ax.axhline(teacher_auc, color="black", lw=0.8, label="teacher AUC")
    ax.set_xlabel("compression (teacher params / student params)")
    ax.set_ylabel("validation AUC after the proxy distillation")
    ax.legend(loc="lower left", fontsize="small")
    fig.suptitle(PLOTS["pareto"])
    fig.tight_layout()
    paths["pareto"] = folder / "pareto.png"
    fig.savefig(paths["pareto"])
    plt.close(fig)
    return paths


def write_search_report(out: Path, rows: list[SearchRow], best: SearchRow, teacher: str, teacher_params: int, teacher_auc: float, reward: RewardConfig, budget: dict) -> Path:
    """Plots as PNG beside ``search.html``, which inlines them."""
    pngs = _plot(rows, teacher_auc, reward, out)
    episodes = episode_rewards(rows)

    def table(header: list[str], body: list[list]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><tr>{head}</tr>{cells}</table>"

    def image(name: str) -> str:
        return inline_image(pngs[name], PLOTS[name])

    top = sorted(rows, key=lambda r: -r.reward)[:10]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Student search</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em}img{max-width:100%}</style></head><body>",
        f"<h1>Student search from {html.escape(teacher)}</h1>",
        "<section id=\"best\"><h2>Best student</h2>",
        table(["teacher params", "student params", "compression", "target", "validation AUC", "teacher AUC", "reward", "found in episode"],
              [[f"{teacher_params:,}", f"{best.params:,}", f"{best.compression:.2f}x", f"{reward.target_compression:g}x",
                f"{best.auc:.3f}", f"{teacher_auc:.3f}", f"{best.reward:.3f}", best.episode + 1]]),
        "<p>Widths: " + html.escape(", ".join(f"{k} {v}" for k, v in best.widths.items())) + "</p></section>",
        "<section id=\"reward\"><h2>Reward per episode</h2>" + image("reward"),
        table(["episode", "mean", "min", "max"], [[e + 1, f"{m:.3f}", f"{lo:.3f}", f"{hi:.3f}"] for e, m, lo, hi in episodes]) + "</section>",
        "<section id=\"pareto\"><h2>Accuracy against compression</h2>" + image("pareto"),
        table(["compression", "AUC", "reward", "episode"], [[f"{r.compression:.2f}x", f"{r.auc:.3f}", f"{r.reward:.3f}", r.episode + 1] for r in pareto_front(rows)]),
        "<h3>Ten best rewards</h3>",
        table(["episode", "compression", "params", "AUC", "reward", "cached"], [[r.episode + 1, f"{r.compression:.2f}x", f"{r.params:,}", f"{r.auc:.3f}", f"{r.reward:.3f}", r.cached] for r in top]),
        "</section>",
        "<section id=\"budget\"><h2>Budget</h2>" + table(["setting", "value"], [[k, v] for k, v in budget.items()]) + "</section>",
        "</body></html>",
    ]
    path = out / "search.html"
    write_atomic(path, "\n".join(parts) + "\n")
    return path
