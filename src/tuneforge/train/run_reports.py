"""`tuneforge runs list` / `tuneforge runs compare A B ...`: read run dirs (through `tuneforge.runs`) side by side.

list: one row per run under a folder (stage, method, model, steps, final loss and eval metrics, state).
compare: the config keys that differ between the runs, their final metrics, and one PNG with their loss and eval
curves overlaid (`--plot`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir, atomic_write
from tuneforge.train.plots import read_metrics

# Bookkeeping keys that differ between any two runs and say nothing about them.
IGNORED_KEYS = ("output.", "resolved.distributed")


def _flatten(tree, prefix: str = "") -> dict:
    out = {}
    for k, v in (tree or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _config(run: RunDir) -> dict:
    """The run's config as validated at its start plus its `resolved:` decisions ({} without a config.yaml)."""
    if not run.config.is_file():
        return {}
    return {**run.read_config().model_dump(mode="json"), "resolved": run.resolved()}


def find_runs(root: str | Path) -> list[Path]:
    """Run dirs (a config.yaml next to metrics, results or checkpoints) under `root`, or `root` itself."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    candidates = [root] if (root / "config.yaml").is_file() else sorted(p.parent for p in root.rglob("config.yaml"))
    return [p for p in candidates if any((p / n).exists() for n in ("metrics.jsonl", "results.json", "checkpoints"))]


def run_summary(path: Path) -> dict:
    """The facts of one run: state, config highlights, final metrics."""
    run = RunDir(path)
    tree = _config(run)
    results = json.loads((path / "results.json").read_text(encoding="utf-8")) if (path / "results.json").is_file() \
        else {}
    rows = read_metrics(run.metrics)
    losses = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    state = "finished" if results else ("checkpointed" if run.latest_checkpoint() else "incomplete")
    return {"run": str(path), "stage": tree.get("stage"), "method": tree.get("method"),
            "model": (tree.get("model") or {}).get("path"), "state": state,
            "steps": losses[-1]["step"] if losses else 0,
            "final_loss": losses[-1]["loss"] if losses else None,
            "metrics": {k: v for k, v in results.items() if k.startswith("eval_") and isinstance(v, (int, float))}}


def list_runs(root: str | Path) -> list[dict]:
    return [run_summary(p) for p in find_runs(root)]


def compare_runs(paths: list[str | Path], plot: str | Path | None = None) -> dict:
    """Config keys that differ, final metrics per run, and (with `plot`) overlaid loss/eval curves in one PNG."""
    if len(paths) < 2:
        raise ConfigError("runs compare: give at least two run dirs")
    runs = [Path(p) for p in paths]
    for p in runs:
        if not (p / "config.yaml").is_file():
            raise ConfigError(f"{p} is not a run dir (no config.yaml)")
    flat = [_flatten(_config(RunDir(p))) for p in runs]
    keys = sorted(set().union(*flat))
    differ = {k: [f.get(k) for f in flat] for k in keys
              if not k.startswith(IGNORED_KEYS) and len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1}
    summaries = [run_summary(p) for p in runs]
    out = {"runs": [str(p) for p in runs], "differ": differ, "summaries": summaries}
    if plot:
        out["plot"] = str(plot_curves(runs, Path(plot)))
    return out


def plot_curves(runs: list[Path], path: Path) -> Path:
    """Training loss (left) and eval loss or the first eval metric (right) of every run, overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    eval_key = None
    for p in runs:
        rows = read_metrics(RunDir(p).metrics)
        pts = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float))]
        if pts:
            ax_loss.plot(*zip(*pts), label=p.name)
        keys = [k for r in rows for k in r if k.startswith("eval_") and k not in ("eval_runtime",)
                and not k.endswith(("_per_second", "_runtime"))]
        eval_key = eval_key or ("eval_loss" if "eval_loss" in keys else (keys[0] if keys else None))
        ev = [(r["step"], r[eval_key]) for r in rows if eval_key and isinstance(r.get(eval_key), (int, float))]
        if ev:
            ax_eval.plot(*zip(*ev), marker=".", label=p.name)
    ax_loss.set(title="training loss", xlabel="step")
    ax_eval.set(title=eval_key or "no eval metrics", xlabel="step")
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path
