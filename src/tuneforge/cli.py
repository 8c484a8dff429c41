"""The `tuneforge` command. Each command is a few lines that call into a package.

Heavy libraries (torch, transformers) are imported inside commands only, so `tuneforge --help` is instant.
Feature packages add their commands through ``register(app)`` functions listed in ``_FEATURE_CLIS``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

import typer

from tuneforge.errors import TuneforgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune language models from one typed YAML config.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect and clean datasets.")
app.add_typer(data_app, name="data")

DEBUG = {"on": False}

# module:function pairs; each function receives (app, data_app) and adds commands.
_FEATURE_CLIS = [
    "tuneforge.eval.commands:register",
    "tuneforge.data.hygiene_commands:register",
    "tuneforge.train.task_commands:register",
]


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
    try:
        return fn(*args, **kwargs)
    except TuneforgeError as e:
        fail(e)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks.")) -> None:
    DEBUG["on"] = debug
    offline_env()


@app.command()
def train(
    config: Optional[str] = typer.Argument(
        None, help="YAML config; builtin:<name>; '-' for defaults + overrides only. Default: the SmolLM2 identity demo."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides like train.lr=1e-4 lora.r=16."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run dir's latest checkpoint."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Load data and model, print sizes and memory estimate, stop."),
) -> None:
    """Train (pt / sft / task stages) from a config; writes a complete run directory."""
    from tuneforge.train.run import run_from_cli

    guarded(run_from_cli, config, overrides or [], resume=resume, dry_run=dry_run)


@app.command()
def chat(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model dir, .gguf file or run dir."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="LoRA adapter dir to apply."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="One-shot prompt (else interactive)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Take model/template from a config."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt."),
    max_new_tokens: int = typer.Option(256, help="Max tokens to generate."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
) -> None:
    """Chat with a base model, optionally with an adapter (interactive, or one-shot with --prompt)."""
    from tuneforge.serve.chat import chat_cli

    guarded(chat_cli, model=model, adapter=adapter, prompt=prompt, config=config, system=system,
            max_new_tokens=max_new_tokens, temperature=temperature)


@app.command()
def env() -> None:
    """Versions, threads and devices (paste this into bug reports)."""
    from tuneforge.train.environment import print_env

    print_env()


@data_app.command("check")
def data_check(
    config: str = typer.Argument(..., help="YAML config whose data section to check."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides like data.cutoff_len=512."),
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
) -> None:
    """Validate and tokenize the data without training: counts, token lengths, truncation."""
    from tuneforge.data.check import check_cli

    guarded(check_cli, config, overrides or [], as_json=as_json)


def _register_features() -> None:
    for spec in _FEATURE_CLIS:
        mod_name, fn_name = spec.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:  # feature not present in this build
                continue
            raise
        getattr(mod, fn_name)(app, data_app)


_register_features()


def entry() -> None:  # pragma: no cover - console script shim
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
