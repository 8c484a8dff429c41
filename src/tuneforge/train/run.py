"""`tuneforge train`: load and validate the config, open the run dir, run the stage, record the results."""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.eval.run import after_training
from tuneforge.runs import is_main_process, open_run
from tuneforge.train.common import set_threads
from tuneforge.train.stages import get_stage, load_training_config

# The built-in demo: teach SmolLM2-135M-Instruct (packaged GGUF) a new identity from bundled data.
DEFAULT_CONFIG = "builtin:identity"


def builtin_config_path(name: str) -> str:
    path = files("tuneforge") / "resources" / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown built-in config '{name}'")
    return str(path)


def resolve_config_arg(config: str | None) -> str | None:
    """A config file path; None for "-" (schema defaults + overrides only); the built-in demo when omitted."""
    if config == "-":
        return None
    config = config or DEFAULT_CONFIG
    if config.startswith("builtin:"):
        return builtin_config_path(config.split(":", 1)[1])
    return config


def run_training(cfg: Config, resume: bool = False, dry_run: bool = False) -> dict:
    """Run the config's stage into a fresh (or resumed) run dir; returns the run dir and final metrics."""
    stage = get_stage(cfg)
    set_threads(cfg)
    from transformers import set_seed

    set_seed(cfg.train.seed)  # before any weights are created: LoRA/head init must be reproducible
    if dry_run:
        return stage.dry_run(cfg)
    stage.preflight(cfg)  # a bad model path fails here, before the run dir exists or data is read
    lr = stage.default_lr(cfg)
    run = open_run(cfg, resume, resolved={"train.lr": lr} if lr is not None else None)
    try:
        t0 = time.time()
        metrics = stage.run(cfg, run, resume)
        if cfg.eval.after_train:
            metrics.update(after_training(cfg, run))
        metrics["wall_time_s"] = round(time.time() - t0, 2)
        run.write_json("results.json", metrics)
    finally:
        run.release()
    return {"run_dir": str(run.root), **metrics}


def run_from_cli(config: str | None, overrides: list[str], resume: bool = False, dry_run: bool = False) -> dict:
    from rich.console import Console

    if config and "=" in config and not Path(config).exists():  # `tuneforge train a.b=c`: tweak the demo
        config, overrides = None, [config, *overrides]
    cfg, _ = load_training_config(resolve_config_arg(config), overrides)
    out = run_training(cfg, resume=resume, dry_run=dry_run)
    if not dry_run and is_main_process():
        Console().print(f"[bold green]done[/] run dir: {out['run_dir']}  ({out.get('wall_time_s')} s)")
    return out
