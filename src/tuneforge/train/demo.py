"""The before/after demo of a training run: the model's replies to `demo_prompts`, printed side by side."""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.templates import render_prompt, stop_token_ids
from tuneforge.models.generate import Sampling, generate_text


def demo_replies(model, tokenizer, cfg: Config, max_new_tokens: int = 48) -> list[str]:
    """Greedy replies to each demo prompt with the run's chat template (stops at its end-of-turn token)."""
    prompts = [render_prompt(tokenizer, [{"role": "user", "content": p}], cfg.data.template, system=cfg.data.system)
               for p in cfg.demo_prompts]
    return generate_text(model, tokenizer, prompts, sampling=Sampling(max_new_tokens=max_new_tokens),
                         stop_ids=stop_token_ids(tokenizer, cfg.data.template), batch_size=1)


def print_demo(prompts: list[str], before: list[str] | None, after: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="before / after training", show_lines=True)
    t.add_column("prompt", style="bold")
    if before:
        t.add_column("before")
    t.add_column("after", style="green")
    for i, p in enumerate(prompts):
        t.add_row(p, *([before[i]] if before else []), after[i])
    Console().print(t)
