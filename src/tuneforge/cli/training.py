"""Commands that run a training config: `train`, `data check`, `env`."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import DEBUG, app, data_app, guarded


@app.command()
def train(
    config: Optional[str] = typer.Argument(
        None, help="YAML config; builtin:<name>; '-' for defaults + overrides only. Default: the SmolLM2 identity demo."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides like train.lr=1e-4 lora.r=16."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run dir's latest checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Load data and model, print sizes and memory estimate, stop."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (torchrun / accelerate launch; one per GPU)."),
    launch_config: Optional[str] = typer.Option(
        None, "--launch-config", help="accelerate YAML (FSDP, DeepSpeed, ...) or DeepSpeed JSON; "
        "examples/distributed/ and LLaMA-Factory's files work as they are."),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", help="Train N times (seeds train.seed, +1, ...) into <run>/seed-<s>/ and write the mean and "
        "std of the eval metrics (seeds.md); same as train.seeds=[...]."),
) -> None:
    """Train any stage (pt, sft, cls, qa, seq2seq, ...) from a config; writes a complete run directory."""
    if seeds is not None and (nproc > 1 or launch_config):
        raise typer.BadParameter("--seeds runs the seeds one after another in one process; drop --nproc / "
                                 "--launch-config")
    from tuneforge.config.load import load_config, resolve_config_arg, split_config_args

    # Schema errors in < 1 s: the training modules import transformers / peft / trl (seconds) before they
    # would get to validating the config.
    path, extra = split_config_args(config, overrides or [])
    guarded(lambda: load_config(resolve_config_arg(path), extra))
    if (nproc > 1 or launch_config) and not dry_run:  # a dry run sizes one process; no launcher needed
        from tuneforge.train.launch import launch_training

        guarded(launch_training, config, overrides or [], nproc=nproc, launch_config=launch_config, resume=resume,
                debug=DEBUG["on"])
        return
    from tuneforge.train.run import run_from_cli

    guarded(run_from_cli, config, overrides or [], resume=resume, dry_run=dry_run, seeds=seeds)


@data_app.command("check")
def data_check(
    config: str = typer.Argument(..., help="YAML config whose data section to check."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides like data.cutoff_len=512."),
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
) -> None:
    """Validate and tokenize the data without training: counts, token lengths, truncation."""
    from tuneforge.train.check import check_cli

    guarded(check_cli, config, overrides or [], as_json=as_json)


@app.command()
def env() -> None:
    """Versions, threads and devices (paste this into bug reports)."""
    from tuneforge.environment import print_env

    print_env()
