"""Commands that use a trained model: `chat` (and, as they land, export / quantize / serve / webui)."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import app, guarded


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
