"""`tuneforge convert`: migrate a LLaMA-Factory config (the translation lives in tuneforge.config.convert)."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import app, guarded


@app.command("convert")
def convert(
    source: str = typer.Argument(..., help="LLaMA-Factory YAML (train / inference / merge), or a DeepSpeed / "
                                 "accelerate file (reported as usable as it is)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write the tuneforge YAML here (default: print it)."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists."),
    strict: bool = typer.Option(False, "--strict", help="Fail (exit 2) when any key cannot be carried over."),
) -> None:
    """Translate a LLaMA-Factory config into a tuneforge config; every key it cannot map is printed with the reason."""
    from tuneforge.train.migrate import convert_cli

    guarded(convert_cli, source, out, force=force, strict=strict)
