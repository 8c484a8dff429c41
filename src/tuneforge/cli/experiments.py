"""Commands across runs: `sweep`, `runs list`, `runs compare`."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import app, guarded

runs_app = typer.Typer(no_args_is_help=True, help="List and compare run directories.")
app.add_typer(runs_app, name="runs")


@app.command()
def sweep(
    config: str = typer.Argument(..., help="Training config YAML (builtin:<name> works too)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides applied to every trial."),
    space: str = typer.Option(..., "--space", help="Search space YAML (metric, direction, params, pruner, seed)."),
    trials: int = typer.Option(10, "--trials", help="Trials to complete or prune in total (a rerun resumes)."),
    name: Optional[str] = typer.Option(None, "--name", help="Sweep name (default: the space file's name)."),
) -> None:
    """Optuna search (TPE, median pruning, SQLite in the sweep dir): trials are run dirs; best config as YAML."""
    from tuneforge.train.sweep import run_sweep
    from tuneforge.train.sweep_report import summary_markdown

    out = guarded(run_sweep, config, overrides or [], space, trials, name=name)
    typer.echo(summary_markdown(out["rows"], out["metric"], out["direction"],
                                out["best"]["trial"] if out["best"] else None))
    typer.echo(f"{out['complete']} complete, {out['pruned']} pruned, {out['failed']} failed; "
               f"sweep dir: {out['study'].rsplit('/', 1)[0]}")


@runs_app.command("list")
def runs_list(
    root: str = typer.Argument("runs", help="Folder holding run dirs (searched recursively)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One line per run: stage, method, model, steps, final loss, eval metrics, state."""
    import json

    from tuneforge.train.run_reports import list_runs

    rows = guarded(list_runs, root)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "stage", "method", "model", "steps", "loss", "eval", "state")
    for r in rows:
        table.add_row(r["run"], str(r["stage"]), str(r["method"]), str(r["model"]), str(r["steps"]),
                      f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "",
                      " ".join(f"{k}={v:.4g}" for k, v in r["metrics"].items()), r["state"])
    Console().print(table)


@runs_app.command("compare")
def runs_compare(
    run_dirs: list[str] = typer.Argument(..., help="Two or more run dirs."),
    plot: str = typer.Option("runs-compare.png", "--plot", help="PNG with overlaid loss / eval curves."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The config keys that differ, final metrics, and overlaid curves as one PNG."""
    import json

    from tuneforge.train.run_reports import compare_runs

    out = guarded(compare_runs, run_dirs, plot=plot)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    names = [s["run"].rstrip("/").rsplit("/", 1)[-1] for s in out["summaries"]]
    table = Table("key", *names)
    for key, values in out["differ"].items():
        table.add_row(key, *(str(v) for v in values))
    table.add_section()
    table.add_row("final loss", *(f"{s['final_loss']:.4f}" if s["final_loss"] is not None else "" for s in
                                  out["summaries"]))
    for m in sorted({k for s in out["summaries"] for k in s["metrics"]}):
        table.add_row(m, *(f"{s['metrics'][m]:.4g}" if m in s["metrics"] else "" for s in out["summaries"]))
    Console().print(table)
    typer.echo(f"curves: {out['plot']}")
