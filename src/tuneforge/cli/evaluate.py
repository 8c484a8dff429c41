"""`tuneforge eval`: benchmarks, generation metrics and base-vs-tuned comparisons."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import app, guarded


@app.command("eval")
def eval_command(
    targets: Optional[list[str]] = typer.Argument(
        None, help="A config (.yaml), a run dir, or a model path/.gguf/builtin:smollm2; "
                   "with --compare: 2+ run dirs, model paths or `base`. key=value items are config overrides."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Config whose `eval:` tasks (and base model) to use."),
    compare: bool = typer.Option(False, "--compare", help="Evaluate every target and write a comparison report."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output dir (default: <run>/eval or <run>/eval/compare)."),
    task: Optional[list[str]] = typer.Option(None, "--task", "-t", help="Run only this task (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N samples per task (quick checks)."),
    force: bool = typer.Option(False, "--force", help="Re-evaluate even if results for the same inputs exist."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (same as eval.threads=N)."),
) -> None:
    """Benchmarks (MCQ log-likelihood), generation metrics and base-vs-tuned comparisons."""
    from tuneforge.eval.run import eval_cli

    extra = [f"eval.threads={threads}"] if threads else []
    guarded(eval_cli, (targets or []) + extra, config=config, out=out, compare_mode=compare, tasks=task or None,
            limit=limit, force=force)
