"""`tuneforge data check`: load, validate and tokenize without training (the stage decides how); print the stats."""

from __future__ import annotations

import json

from tuneforge.train.run import resolve_config_arg
from tuneforge.train.stages import load_training_config


def check_cli(config: str, overrides: list[str], as_json: bool = False) -> dict:
    from rich.console import Console
    from rich.table import Table

    cfg, stage = load_training_config(resolve_config_arg(config), overrides)
    result = stage.check_data(cfg)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return result
    con = Console()
    t = Table(title=f"data check ({stage.name})", show_header=False)
    for k, v in result.items():
        if k != "warnings":
            t.add_row(k, str(v))
    con.print(t)
    for w in result.get("warnings", [])[:20]:
        con.print(f"[yellow]warning:[/] {w}", highlight=False)
    return result
