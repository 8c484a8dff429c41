"""Environment facts: printed by `tuneforge env` and saved as env.json in every run dir."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = ["tuneforge", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers",
            "safetensors", "pydantic", "sentence-transformers", "faiss-cpu", "lm-eval", "gguf"]


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def file_sha256(path: str | Path, limit: int = 1 << 30) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def devices() -> dict:
    import torch

    info = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.is_available(), "mps": getattr(torch.backends, "mps", None) is not None
            and torch.backends.mps.is_available()}
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def collect(data_files: list[str] | None = None, seed: int | None = None) -> dict:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions(),
            "git_sha": git_sha(), "devices": devices(), "seed": seed,
            "data_sha256": {f: file_sha256(f) for f in (data_files or [])}}


def print_env() -> None:
    from rich.console import Console
    from rich.table import Table

    env = collect()
    t = Table(title="tuneforge environment", show_header=False)
    t.add_row("python", env["python"])
    t.add_row("platform", env["platform"])
    for k, v in env["versions"].items():
        t.add_row(k, v or "-")
    for k, v in env["devices"].items():
        t.add_row(k, str(v))
    t.add_row("git sha", env["git_sha"] or "-")
    Console().print(t)
