"""`tuneforge train`: load and validate the config, open the run dir, run the stage, record the results."""

from __future__ import annotations

import time

from tuneforge.config.load import resolve_config_arg, split_config_args
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.eval.run import after_training
from tuneforge.runs import RunDir, is_main_process, open_run, world_size
from tuneforge.train import seeds as seed_runs
from tuneforge.train.common import set_threads
from tuneforge.train.stages import get_stage, load_training_config

def run_training(cfg: Config, resume: bool = False, dry_run: bool = False) -> dict:
    """Run the config's stage into a fresh (or resumed) run dir; returns the run dir and final metrics."""
    stage = get_stage(cfg)
    if cfg.train.seeds and not dry_run:
        stage.preflight(cfg)
        return run_seeds(cfg, resume)
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


def run_seeds(cfg: Config, resume: bool = False) -> dict:
    """One run per seed in `<run>/seed-<s>/`, then seeds.json / seeds.md / results.json with mean and std of the
    eval metrics. With --resume, seeds that finished are reused and the others continue or start."""
    seed_runs.check_seeds(cfg.train.seeds)
    if world_size() > 1:
        raise ConfigError("train.seeds runs the seeds one after another in one process", hint="drop --nproc")
    if resume and not cfg.output.name:
        raise ConfigError("--resume with train.seeds needs output.name (the parent run dir to continue)")
    # The parent only holds the seed runs and the summary: reopening it to resume keeps what is there.
    opened = cfg.model_copy(update={"output": cfg.output.model_copy(update={"overwrite": True})}) if resume else cfg
    parent = open_run(opened, False, resolved={"train.seeds": cfg.train.seeds})
    try:
        rows, roots = [], []
        for seed in cfg.train.seeds:
            sub = seed_runs.seed_config(cfg, parent.root, seed)
            root = parent.root / f"seed-{seed}"
            results = seed_runs.finished_results(root) if resume else None
            if results is None:
                results = run_training(sub, resume=resume and RunDir(root).latest_checkpoint() is not None)
            rows.append(seed_runs.row(seed, str(root), results))
            roots.append(root)
        summary = seed_runs.summarize(rows)
        try:
            summary["ensemble"] = get_stage(cfg).seed_ensemble(cfg, parent, roots)
        except ConfigError as e:  # the seeds trained: keep their summary and say why no ensemble was scored
            summary["ensemble"], summary["ensemble_error"] = {}, str(e)
        seed_runs.write_summary(parent, summary)
        parent.write_json("results.json", {k: summary[k] for k in ("seeds", "mean", "std", "ensemble",
                                                                    "ensemble_error") if k in summary})
        if is_main_process():
            seed_runs.print_summary(summary)
    finally:
        parent.release()
    return {"run_dir": str(parent.root), **{f"mean_{k}": v for k, v in summary["mean"].items()},
            **{f"std_{k}": v for k, v in summary["std"].items()}, **summary["ensemble"]}


def run_from_cli(config: str | None, overrides: list[str], resume: bool = False, dry_run: bool = False,
                 seeds: int | None = None) -> dict:
    from rich.console import Console

    config, overrides = split_config_args(config, overrides)
    cfg, _ = load_training_config(resolve_config_arg(config), overrides)
    if seeds is not None:
        cfg = seed_runs.expand_seeds(cfg, seeds)
    out = run_training(cfg, resume=resume, dry_run=dry_run)
    if not dry_run and is_main_process():
        Console().print(f"[bold green]done[/] run dir: {out['run_dir']}  ({out.get('wall_time_s')} s)")
    return out
