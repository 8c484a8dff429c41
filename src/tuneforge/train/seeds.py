"""Seed averaging (`train.seeds` / `tuneforge train CFG --seeds N`): one config per seed inside the parent run dir,
and the summary (mean and sample std of every numeric eval metric) written next to them.

The loop itself is `run_seeds` in train/run.py; this module holds what it needs and nothing that trains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir, atomic_write

SUMMARY_KEYS = ("train_loss", "best_step", "train_runtime", "wall_time_s")  # besides eval_*: fit, best step, cost


def check_seeds(seeds: list[int]) -> None:
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"train.seeds has repeated seeds ({seeds})", hint="give each seed once")


def expand_seeds(cfg: Config, n: int) -> Config:
    """`--seeds N`: train.seed, train.seed + 1, ..., as if `train.seeds` had been written in the config."""
    if n < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {n})")
    if cfg.train.seeds:
        raise ConfigError("both --seeds and train.seeds are set", hint="keep one of them")
    tree = cfg.model_dump(exclude_unset=True)
    tree.setdefault("train", {})["seeds"] = [cfg.train.seed + i for i in range(n)]
    return Config.model_validate(tree)


def seed_config(cfg: Config, parent: Path, seed: int) -> Config:
    """The config of one seed's run: `<parent>/seed-<seed>`, train.seed = seed, no further seed loop. Built from
    the keys the user set, so per-method defaults (train.lr) still apply as in a single run."""
    tree = cfg.model_dump(exclude_unset=True)
    tree.setdefault("train", {}).update(seed=seed, seeds=[])
    tree.setdefault("output", {}).update(dir=str(parent), name=f"seed-{seed}")
    return Config.model_validate(tree)


def finished_results(root: Path) -> dict | None:
    """results.json of a seed run that completed (reused by --resume), else None."""
    path = root / "results.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def summarize(rows: list[dict]) -> dict:
    """Mean and sample standard deviation (n - 1; 0 for one run) of each numeric metric every row has."""
    keys = [k for k in rows[0] if k not in ("seed", "run_dir") and all(_is_number(r.get(k)) for r in rows)]
    mean, std = {}, {}
    for k in keys:
        vals = [float(r[k]) for r in rows]
        m = sum(vals) / len(vals)
        mean[k] = m
        std[k] = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"seeds": [r["seed"] for r in rows], "n": len(rows), "mean": mean, "std": std, "runs": rows}


def row(seed: int, run_dir: str, results: dict) -> dict:
    kept = {k: v for k, v in results.items()
            if (k.startswith(("eval_", "best_eval_")) or k in SUMMARY_KEYS) and _is_number(v)}
    return {"seed": seed, "run_dir": run_dir, **kept}


def write_summary(run: RunDir, summary: dict) -> None:
    """seeds.json (everything) and seeds.md (one row per seed, then mean ± std) in the parent run dir."""
    run.write_json("seeds.json", summary)
    keys = list(summary["mean"])
    lines = ["| seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {r['seed']} | " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in summary["runs"]]
    lines.append("| mean ± std | " + " | ".join(f"{_fmt(summary['mean'][k])} ± {_fmt(summary['std'][k])}"
                                                for k in keys) + " |")
    ensemble = summary.get("ensemble") or {}
    if ensemble:  # the seeds' predictions averaged: one more row, under the columns it has
        lines.append("| ensemble | " + " | ".join(_fmt(ensemble[f"ensemble_{k}"]) if f"ensemble_{k}" in ensemble
                                                  else "" for k in keys) + " |")
    if run.main:
        atomic_write(run.root / "seeds.md", "\n".join(lines) + "\n")


def print_summary(summary: dict) -> None:
    from rich.console import Console

    shown = "  ".join(f"{k} {summary['mean'][k]:.4f} ± {summary['std'][k]:.4f}" for k in summary["mean"]
                      if k.startswith("eval_") and k != "eval_n")
    Console().print(f"[bold]{summary['n']} seeds[/] {shown}")
    ensemble = summary.get("ensemble") or {}
    if summary.get("ensemble_error"):
        Console().print(f"[yellow]no seed ensemble:[/] {summary['ensemble_error']}")
    if ensemble:
        shown = "  ".join(f"{k.removeprefix('ensemble_')} {v:.4f}" for k, v in ensemble.items()
                          if k != "ensemble_eval_n")
        Console().print(f"[bold]ensemble of {summary['n']}[/] (probabilities averaged) {shown}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v: float) -> str:
    return f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}"
