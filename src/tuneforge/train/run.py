"""`tuneforge train`: load config, dispatch to the stage recipe, record the environment."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from tuneforge.config import load_config
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError

# stage name -> "module:function"; a new stage is a new module plus one line here.
STAGES = {
    "pt": "tuneforge.train.pt:run",
    "sft": "tuneforge.train.sft:run",
    "cls": "tuneforge.train.cls:run",
    "qa": "tuneforge.train.qa:run",
    "seq2seq": "tuneforge.train.seq2seq:run",
}

# The built-in demo: teach SmolLM2-135M-Instruct (packaged GGUF) a new identity from bundled data.
DEFAULT_CONFIG = "builtin:identity"


def builtin_config_path(name: str) -> str:
    from importlib.resources import files

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


def stage_fn(stage: str):
    mod_name, fn = STAGES[stage].split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name == mod_name:
            raise ConfigError(f"stage '{stage}' is not available in this build") from None
        raise
    return getattr(mod, fn)


def run_training(cfg: Config, resume: bool = False, dry_run: bool = False) -> dict:
    from tuneforge.train.common import prepare_run_dir, set_threads

    set_threads(cfg)
    from transformers import set_seed

    set_seed(cfg.train.seed)  # before any weights are created: LoRA/head init must be reproducible
    if dry_run:
        from tuneforge.train.dry_run import dry_run as do_dry_run

        return do_dry_run(cfg)
    run = prepare_run_dir(cfg, resume)
    t0 = time.time()
    metrics = stage_fn(cfg.stage)(cfg, run, resume)
    if cfg.eval.after_train:
        from tuneforge.eval.run import after_training

        metrics.update(after_training(cfg, run.root))
    metrics["wall_time_s"] = round(time.time() - t0, 2)
    run.write_json("results.json", metrics)
    return {"run_dir": str(run.root), **metrics}


def run_from_cli(config: str | None, overrides: list[str], resume: bool = False, dry_run: bool = False) -> dict:
    from rich.console import Console

    if config and "=" in config and not Path(config).exists():  # `tuneforge train a.b=c`: tweak the demo
        config, overrides = None, [config, *overrides]
    cfg = load_config(resolve_config_arg(config), overrides)
    out = run_training(cfg, resume=resume, dry_run=dry_run)
    if not dry_run:
        Console().print(f"[bold green]done[/] run dir: {out['run_dir']}  ({out.get('wall_time_s')} s)")
    return out
