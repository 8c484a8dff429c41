"""The Typer app, the error printer and the offline environment every command shares.

Library code never imports this package: a library function raises a TuneforgeError and the command that called
it prints one line (`--debug` shows the traceback).
"""

from __future__ import annotations

import os

import typer

from tuneforge.errors import TuneforgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune language models from one typed YAML config.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect and clean datasets.")
app.add_typer(data_app, name="data")

DEBUG = {"on": False}


def offline_env() -> None:
    """No hub at run time unless the user explicitly allows it."""
    if os.environ.get("TUNEFORGE_ALLOW_NETWORK") != "1":
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(k, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Library chatter (per-tensor progress bars, deprecation notices) drowns our own progress output.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' tqdm bars follow this switch
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\.")
    warnings.filterwarnings("ignore", message=r".*pin_memory.*")


def fail(e: BaseException) -> None:
    """Print a user-facing error in one line (traceback with --debug) and exit non-zero."""
    if DEBUG["on"] or not isinstance(e, TuneforgeError):
        raise e
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {type(e).__name__}: {e}", markup=True, highlight=False,
                               soft_wrap=True)
    raise typer.Exit(e.exit_code)


def guarded(fn, *args, **kwargs):
    """Call a library function; a TuneforgeError becomes one printed line and its exit code."""
    try:
        return fn(*args, **kwargs)
    except TuneforgeError as e:
        fail(e)


def split_list(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated lists."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tuneforge {version('tuneforge')}")
        raise typer.Exit()


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
         _version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                       help="Print the version (semantic versioning; CHANGELOG.md) and exit.")) -> None:
    DEBUG["on"] = debug
    offline_env()
