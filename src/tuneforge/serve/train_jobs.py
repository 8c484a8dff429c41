"""Training runs started from the web UI: the same YAML config and `tuneforge train` command a terminal would use.

The UI writes `<workdir>/<run name>.yaml`, validates it exactly as the CLI does (`load_training_config`: schema, stage
x method), then runs `python -m tuneforge.cli train <yaml>` as a subprocess in `<workdir>`, its output going to
`<workdir>/runs/<name>.log`. Stop sends SIGTERM (training saves a checkpoint and exits 143); resume reruns the same
command with `--resume`. Loss points are read from the run dir's `metrics.jsonl`, so the plot shows what the run
recorded, nothing the UI computed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import ConfigError
from tuneforge.runs import atomic_write
from tuneforge.train.stages import STAGES, load_training_config


def stage_methods() -> dict[str, list[str]]:
    """Stage name -> the methods that stage accepts (from the stage table)."""
    return {name: list(entry.methods) for name, entry in STAGES.items()}


def build_config(*, model: str, data: str, stage: str, method: str, template: str, lr: float, max_steps: int,
                 batch_size: int, lora_r: int, cutoff_len: int, name: str) -> dict[str, Any]:
    """The config tree the form describes (only what the user set; every other key keeps its default)."""
    cfg: dict[str, Any] = {
        "stage": stage, "method": method, "model": {"path": model.strip()},
        "data": {"train": [p.strip() for p in data.split(",") if p.strip()], "template": template.strip() or "auto",
                 "cutoff_len": int(cutoff_len)},
        "train": {"lr": float(lr), "max_steps": int(max_steps), "batch_size": int(batch_size)},
        "output": {"dir": "runs", "name": name.strip()},
    }
    if method == "lora":
        cfg["lora"] = {"r": int(lora_r), "alpha": 2 * int(lora_r)}
    return cfg


def to_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


class TrainJob:
    """At most one training subprocess per UI session."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir).resolve()
        self.proc: subprocess.Popen | None = None
        self.config_path: Path | None = None
        self.run_dir: Path | None = None
        self.log_path: Path | None = None

    def write_and_validate(self, cfg: dict[str, Any]) -> Path:
        """Write `<workdir>/<name>.yaml` and validate it like the CLI would (raises TuneforgeError)."""
        name = (cfg.get("output") or {}).get("name") or ""
        if not name or "/" in name or name.startswith("."):
            raise ConfigError("output.name: give the run a plain name (letters, digits, '-', '_')")
        path = self.workdir / f"{name}.yaml"
        atomic_write(path, to_yaml(cfg))
        load_training_config(str(path), [])
        return path

    def start(self, cfg: dict[str, Any], resume: bool = False) -> str:
        if self.running:
            raise ConfigError("a training run is already going; stop it first")
        self.config_path = self.write_and_validate(cfg)
        self.run_dir = self.workdir / "runs" / cfg["output"]["name"]
        self.log_path = self.workdir / "runs" / f"{cfg['output']['name']}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "tuneforge.cli", "train", str(self.config_path)] + (["--resume"] if resume else [])
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return " ".join(["tuneforge", "train", str(self.config_path)] + (["--resume"] if resume else []))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        if not self.running:
            return "no run is going"
        self.proc.send_signal(signal.SIGTERM)  # training saves a checkpoint, then exits
        return "stopping: a checkpoint is being saved; Resume continues from it"

    def status(self) -> str:
        if self.proc is None:
            return "idle"
        code = self.proc.poll()
        if code is None:
            return "running"
        return {0: "finished", 143: "stopped (resumable)"}.get(code, f"failed (exit {code}; see the log)")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open(encoding="utf-8", errors="replace") as f:
            # progress bars rewrite one line with \r: show the last state of each line
            return "\n".join(line.rsplit("\r", 1)[-1] for line in deque(f, maxlen=lines)).rstrip()

    def losses(self) -> list[tuple[int, float]]:
        """(step, training loss) points recorded so far."""
        if self.run_dir is None or not (self.run_dir / "metrics.jsonl").exists():
            return []
        points = []
        for line in (self.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written right now
            if "loss" in rec and "step" in rec:
                points.append((int(rec["step"]), float(rec["loss"])))
        return points
