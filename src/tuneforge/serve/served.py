"""Which models a server answers for: one base model in memory, any number of LoRA adapters over it.

Each spec is a run dir, a model dir / .gguf / `builtin:smollm2`, or `NAME=SPEC` to choose the id clients put in the
`model` field. Run dirs with an adapter become peft adapters of the one base (rows of one batch may use different
adapters: peft's mixed-adapter forward); the base is always served too, under its own id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.schema import ModelConfig
from tuneforge.data.templates import stop_token_ids
from tuneforge.errors import ConfigError
from tuneforge.models.load import attach_adapter, load_model, load_tokenizer
from tuneforge.runs import RunDir


@dataclass
class ServedModel:
    """What a `model` id means: tokenizer, chat template, default system prompt, stop ids and peft adapter name."""

    id: str
    tokenizer: Any
    template: str
    system: str | None
    stop_ids: frozenset[int]
    adapter: str | None = None


@dataclass
class _Spec:
    id: str
    mc: ModelConfig
    template: str
    system: str | None


def _parse_spec(spec: str, dtype: str) -> _Spec:
    name, _, target = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
    if (Path(target) / "config.yaml").is_file():
        mc, template, system = RunDir(target).model_config()
        return _Spec(name or Path(target).resolve().name, mc.model_copy(update={"dtype": dtype}), template, system)
    if not target:
        raise ConfigError(f"empty model spec '{spec}'")
    return _Spec(name or _base_id(target), ModelConfig(path=target, dtype=dtype), "auto", None)


def _base_id(path: str) -> str:
    return path.removeprefix("builtin:") if path.startswith("builtin:") else Path(path).name or path


def _base_key(mc: ModelConfig) -> tuple:
    return (mc.path, mc.gguf_file, mc.revision)


def load_served(specs: list[str], dtype: str = "auto") -> tuple[Any, list[ServedModel]]:
    """(model, served models): load the base once and attach every adapter by name."""
    if not specs:
        raise ConfigError("serve needs at least one model (a run dir, a model dir, a .gguf or builtin:smollm2)")
    parsed = [_parse_spec(s, dtype) for s in specs]
    bases = {_base_key(p.mc) for p in parsed}
    if len(bases) > 1:
        raise ConfigError("all served models must share one base model; got " +
                          ", ".join(sorted(str(b[0]) for b in bases)), hint="start one server per base model")
    ids = [p.id for p in parsed]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"two models would be served as the same id: {ids}", hint="name them: NAME=RUN_DIR")
    base_mc = parsed[0].mc.model_copy(update={"adapter": None})
    model = load_model(base_mc, apply_adapter=False)
    served: list[ServedModel] = []
    plain = next((p for p in parsed if not p.mc.adapter), None)
    base_spec = plain or _Spec(_base_id(base_mc.path), base_mc, parsed[0].template, parsed[0].system)
    for p in [base_spec] + [p for p in parsed if p.mc.adapter]:
        name = None
        if p.mc.adapter:
            if not hasattr(model, "load_adapter") or not hasattr(model, "peft_config"):
                model = attach_adapter(model, p.mc.adapter)  # first adapter: wraps the base as "default"
                name = "default"
            else:
                name = p.id
                model.load_adapter(str(_adapter_dir(p.mc.adapter)), adapter_name=name)
        tok = load_tokenizer(p.mc)
        served.append(ServedModel(p.id, tok, p.template, p.system, frozenset(stop_token_ids(tok, p.template)), name))
    if served[0].id in {s.id for s in served[1:]}:
        raise ConfigError(f"an adapter is named like the base model '{served[0].id}'", hint="name it: NAME=RUN_DIR")
    model.eval()
    return model, served


def _adapter_dir(path: str) -> Path:
    p = Path(path)
    return p / "adapter" if (p / "adapter").is_dir() else p
