"""Commands that put a model behind an interface: `serve` (OpenAI-compatible API) and `webui` (Gradio)."""

from __future__ import annotations

from typing import Optional

import typer

from tuneforge.cli._app import app, guarded


@app.command()
def serve(
    models: list[str] = typer.Argument(..., help="Run dirs, model dirs, .gguf files or builtin:smollm2 (one base; "
                                                 "adapter runs over it share it). NAME=SPEC sets the model id."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Required bearer key (or TUNEFORGE_API_KEY)."),
    max_batch: int = typer.Option(32, help="Sequences decoded together (1 = one by one)."),
    max_queue: int = typer.Option(256, help="Waiting sequences before answering 429."),
    max_prompt_tokens: int = typer.Option(4096, help="Longest prompt accepted (413 beyond)."),
    max_tokens: int = typer.Option(2048, help="Largest max_tokens accepted (422 beyond)."),
    max_body_kb: int = typer.Option(1024, help="Largest request body in KiB (413 beyond)."),
    dtype: str = typer.Option("auto", help="auto | float32 | bfloat16 | float16."),
    threads: int = typer.Option(0, help="torch CPU threads (0: library default; 1 helps on a busy shared CPU)."),
) -> None:
    """Serve models over an OpenAI-compatible HTTP API with dynamic batching and streaming."""
    from tuneforge.serve.api import Limits, serve_cli

    limits = Limits(max_body_bytes=max_body_kb * 1024, max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens)
    guarded(serve_cli, models, host=host, port=port, api_key=api_key, max_batch=max_batch, max_queue=max_queue,
            limits=limits, dtype=dtype, threads=threads)


@app.command()
def webui(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(7860, help="TCP port."),
    workdir: str = typer.Option(".", help="Where configs are written and runs are started (runs/ inside)."),
) -> None:
    """Web UI: build a config, train as a subprocess with a live loss plot, evaluate, chat, export."""
    from tuneforge.serve.webui import webui_cli

    guarded(webui_cli, host=host, port=port, workdir=workdir)
