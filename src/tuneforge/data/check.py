"""`tuneforge data check`: load, validate and tokenize without training; print counts and length stats."""

from __future__ import annotations

from tuneforge.config import load_config


def check_cli(config: str, overrides: list[str], as_json: bool = False) -> dict:
    import json

    from rich.console import Console
    from rich.table import Table

    from tuneforge.train.run import resolve_config_arg

    cfg = load_config(resolve_config_arg(config), overrides)
    result = check(cfg)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return result
    con = Console()
    t = Table(title=f"data check ({cfg.stage})", show_header=False)
    for k, v in result.items():
        if k != "warnings":
            t.add_row(k, str(v))
    con.print(t)
    for w in result.get("warnings", [])[:20]:
        con.print(f"[yellow]warning:[/] {w}", highlight=False)
    return result


def check(cfg) -> dict:
    """Stats for the config's data: counts read/kept/invalid/truncated/dropped and token-length percentiles."""
    if cfg.stage in ("cls", "qa", "seq2seq"):
        from tuneforge.data.task_data import check_task_data

        return check_task_data(cfg)
    from tuneforge.data.load import load_datasets
    from tuneforge.data.tokenize import tokenize_samples
    from tuneforge.train.sft import load_sft_tokenizer

    tokenizer = load_sft_tokenizer(cfg)
    train, evals, report = load_datasets(cfg)
    tok = tokenize_samples(train, tokenizer, cfg)
    out = {"train_samples": len(train), "eval_samples": len(evals), **report.as_dict()}
    out.update({f"tokens.{k}": v for k, v in tok.stats.items() if k != "warnings"})
    out["warnings"] = report.warnings + tok.stats.get("warnings", [])
    return out
