"""What every `compare-approaches` route is measured with, whatever the task: running one route so that its failure
is a row, rows kept from an earlier run of the same setup, parameters saved, examples seen, peak memory, machine."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir

# a row is kept from an earlier compare.json only when all of these match the new run's
SAME_SETUP = ("dataset", "encoder", "decoder", "train_samples", "eval_samples", "labels", "shots", "decoder_examples")


def run_route(name: str, route: Callable[[], dict], trains: bool) -> dict:
    """One route's row: its numbers, or its one-line error (one failing route must not hide the others')."""
    row: dict = {"approach": name, "trains": trains, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "load_average_at_start": load_average()}
    _reset_peak_memory()
    try:
        row.update(route())
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        row["error"] = f"{type(e).__name__}: {msg}"[:300]
    row["peak_memory_mib"] = _peak_memory_mib()
    return row


def earlier_rows(root: Path, result: dict, chosen: list[str], routes: Iterable[str]) -> dict[str, dict]:
    """Rows of an earlier comparison in the same output dir with the same setup, for the routes not re-run now:
    re-running one route (after a fix, or one that failed) updates its row and keeps the others' numbers."""
    try:
        earlier = json.loads((root / "compare.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if any(earlier.get(k) != result.get(k) for k in SAME_SETUP):
        return {}
    known = set(routes)
    return {r["approach"]: r for r in earlier.get("rows", []) if r.get("approach") in known
            and r["approach"] not in chosen}


def dataset_name(cfg: Config) -> str:
    """The held-out split the table scores: the eval files, or the part of the training files held out."""
    if cfg.data.eval:
        return ", ".join(s.path for s in cfg.data.eval)
    return f"{', '.join(s.path for s in cfg.data.train)} ({cfg.data.eval_split:g} held out)"


def budget_steps(cfg: Config, examples: int) -> int:
    """train.max_steps that shows a decoder route about `examples` training examples (`--decoder-examples`)."""
    return max(1, -(-examples // (cfg.train.batch_size * cfg.train.grad_accum)))


def examples_seen(cfg: Config, n_train: int) -> int:
    """Training examples the route goes through: max_steps x examples per step, else epochs x the training set
    (features: the set embedded once)."""
    if cfg.method == "features":
        return n_train
    if cfg.train.max_steps > 0:
        return cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum
    return round(n_train * cfg.train.epochs)


def saved_parameters(run: RunDir) -> int:
    """Parameters the route trained, counted in what it saved: adapter (+ head), full model, or feature head."""
    import numpy as np
    from safetensors import safe_open

    for d in (run.adapter, run.model, run.root / "features_head"):
        files = sorted(d.glob("*.safetensors")) if d.is_dir() else []
        if files:
            total = 0
            for f in files:
                with safe_open(str(f), framework="np") as st:
                    for k in st.keys():
                        total += int(np.prod(st.get_slice(k).get_shape()))
            return total
    raise ConfigError(f"run dir {run.root} saved no weights")


def as_written(cfg: Config) -> dict:
    """The config's explicitly set fields (paths already resolved), so schema defaults stay defaults per route."""
    return cfg.model_dump(mode="json", exclude_unset=True)


def device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:  # Linux: "5" resets the process's peak RSS (VmHWM) to its current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_memory_mib() -> float | None:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
