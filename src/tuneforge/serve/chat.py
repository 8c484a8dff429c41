"""`tuneforge chat`: one-shot or interactive generation with a base model, optionally with an adapter or a run dir."""

from __future__ import annotations

from pathlib import Path

from tuneforge.config.schema import ModelConfig


def model_config_from_run(run_dir: str | Path) -> tuple[ModelConfig, str, str | None]:
    """ModelConfig (+ template, system) that reproduces a run's final model."""
    import yaml

    from tuneforge.config.schema import Config

    root = Path(run_dir)
    cfg = Config.model_validate(yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")))
    mc = cfg.model.model_copy()
    if (root / "adapter" / "adapter_config.json").exists():
        mc.adapter = str(root / "adapter")
    elif (root / "model").is_dir():
        mc.path, mc.gguf_file, mc.adapter = str(root / "model"), None, None
    return mc, cfg.data.template, cfg.data.system


def chat_cli(model: str | None, adapter: str | None, prompt: str | None, config: str | None, system: str | None,
             max_new_tokens: int, temperature: float) -> None:
    from rich.console import Console

    from tuneforge.config import load_config
    from tuneforge.errors import ConfigError
    from tuneforge.models.load import load_model, load_tokenizer
    from tuneforge.serve.generate import generate_reply

    template = "auto"
    if model and (Path(model) / "config.yaml").exists():
        mc, template, default_system = model_config_from_run(model)
        system = system or default_system
    elif config:
        cfg = load_config(config)
        mc, template, system = cfg.model, cfg.data.template, system or cfg.data.system
    elif model:
        mc = ModelConfig(path=model)
    else:
        raise ConfigError("chat needs --model (model dir, .gguf, builtin:smollm2 or a run dir) or --config")
    if adapter:
        mc.adapter = adapter
    tokenizer = load_tokenizer(mc)
    lm = load_model(mc)
    con = Console()
    history: list[dict] = []
    while True:
        text = prompt if prompt is not None else con.input("[bold]you>[/] ")
        if text.strip() in ("/exit", "/quit") or (prompt is None and not text):
            return
        if text.strip() == "/clear":
            history = []
            continue
        history.append({"role": "user", "content": text})
        reply = generate_reply(lm, tokenizer, history, template, system, max_new_tokens, temperature)
        history.append({"role": "assistant", "content": reply})
        con.print(f"[bold green]assistant>[/] {reply}" if prompt is None else reply, highlight=False)
        if prompt is not None:
            return
