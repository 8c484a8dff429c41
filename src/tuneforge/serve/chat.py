"""`tuneforge chat`: one-shot or interactive chat with a base model, an adapter, a merged model, a .gguf or a run dir.

Replies stream token by token through the shared generation core and stop at the template's end-of-turn token.
Interactive commands: `/reset` (or `/clear`) forgets the history, `/exit` (or `/quit`, or an empty line) leaves.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tuneforge.config import load_config
from tuneforge.config.schema import ModelConfig
from tuneforge.data.templates import render_prompt, stop_token_ids
from tuneforge.errors import ConfigError
from tuneforge.models.generate import Sampling, stream_text
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.runs import RunDir


def resolve_chat_model(model: str | None, adapter: str | None, config: str | None, system: str | None
                       ) -> tuple[ModelConfig, str, str | None]:
    """(ModelConfig, template, system prompt) from a run dir, a config, or a model path (+ adapter)."""
    template = "auto"
    if model and (Path(model) / "config.yaml").exists():
        mc, template, default_system = RunDir(model).model_config()
        system = system or default_system
    elif config:
        cfg = load_config(config)
        mc, template, system = cfg.model, cfg.data.template, system or cfg.data.system
    elif model:
        mc = ModelConfig(path=model)
    else:
        raise ConfigError("chat needs --model (model dir, .gguf, builtin:smollm2 or a run dir) or --config")
    if adapter:
        mc = mc.model_copy(update={"adapter": adapter})
    return mc, template, system


def chat_cli(model: str | None, adapter: str | None, prompt: str | None, config: str | None, system: str | None,
             max_new_tokens: int, temperature: float) -> None:
    from rich.console import Console

    mc, template, system = resolve_chat_model(model, adapter, config, system)
    tokenizer = load_tokenizer(mc)
    lm = load_model(mc)
    stops = stop_token_ids(tokenizer, template)
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature)
    con = Console()
    history: list[dict] = []
    while True:
        text = prompt if prompt is not None else con.input("[bold]you>[/] ")
        if text.strip() in ("/exit", "/quit") or (prompt is None and not text):
            return
        if text.strip() in ("/reset", "/clear"):
            history = []
            continue
        history.append({"role": "user", "content": text})
        ids = render_prompt(tokenizer, history, template, system=system)
        if prompt is None:
            con.print("[bold green]assistant>[/] ", end="")
        pieces: list[str] = []

        def show(piece: str) -> None:
            if not pieces:
                piece = piece.lstrip()  # replies are shown without the template's leading whitespace
                if not piece:
                    return
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()

        reply = stream_text(lm, tokenizer, ids, sampling=sampling, stop_ids=stops, on_text=show).strip()
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": reply})
        if prompt is not None:
            return
