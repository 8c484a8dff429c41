"""The generated reference pages match the code: every config key and every CLI command/option is documented.

Stale? Regenerate with one command:  python scripts/gen_reference.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_reference_pages_are_current():
    gen = _generator()
    stale = gen.stale_pages()
    assert not stale, (f"{', '.join(str(p.relative_to(REPO)) for p in stale)} out of date with the code: "
                       f"run `{gen.REGENERATE}` and commit the result")


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    gen = _generator()
    out = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        out.append(key)
        for inner in gen.nested_models(info.annotation):
            is_list = "list[" in gen.type_name(info.annotation)
            out += _keys(inner, f"{key}[]." if is_list else f"{key}.")
    return out


def test_every_config_key_and_command_is_on_the_pages():
    from tuneforge.config.schema import Config

    gen = _generator()
    config_md, cli_md = gen.config_reference(), gen.cli_reference()
    missing = [k for k in _keys(Config) if f"| `{k}` |" not in config_md]
    assert not missing, missing
    import typer

    from tuneforge.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="tuneforge")
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        assert f"## `tuneforge {name}`" in cli_md
        for p in cmd.params:
            assert any(o in cli_md for o in [*p.opts, p.name.upper()]), (name, p.name)
