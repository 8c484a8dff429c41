"""Greedy / sampled chat generation, shared by `tuneforge chat` and the before/after demo of a training run."""

from __future__ import annotations

from tuneforge.config.schema import Config


def generate_reply(model, tokenizer, messages: list[dict], template: str = "auto", system: str | None = None,
                   max_new_tokens: int = 128, temperature: float = 0.0) -> str:
    import torch

    from tuneforge.data.templates import render_prompt

    ids = render_prompt(tokenizer, messages, template, system=system)
    input_ids = torch.tensor([ids], device=model.device)
    was_training = model.training
    model.eval()
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=_stop_ids(tokenizer))
    if temperature > 0:
        gen_kwargs["temperature"] = temperature
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=True,
                             **gen_kwargs)
    if was_training:
        model.train()
    return tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip()


def _stop_ids(tokenizer) -> list[int]:
    """eos plus every known template's end-of-turn token that this tokenizer has as one token."""
    from tuneforge.data.template_specs import TEMPLATES

    ids = {tokenizer.eos_token_id}
    for tok in sorted({t.eot for t in TEMPLATES.values() if "{" not in t.eot}):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def demo_replies(model, tokenizer, cfg: Config, max_new_tokens: int = 48) -> list[str]:
    use_cache = model.config.use_cache
    model.config.use_cache = True
    try:
        return [generate_reply(model, tokenizer, [{"role": "user", "content": p}], cfg.data.template,
                               cfg.data.system, max_new_tokens) for p in cfg.demo_prompts]
    finally:
        model.config.use_cache = use_cache


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
