"""Load a Config from YAML plus ``a.b=c`` overrides, with errors that name the key and suggest a fix."""

from __future__ import annotations

import difflib
from importlib.resources import files
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from tuneforge.config.convert import convert_in_memory, looks_like_llamafactory
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError

# The one alias table (LLaMA-Factory / HF habits -> our keys), applied to YAML files and overrides alike.
ALIASES = {
    "train.learning_rate": "train.lr",
    "train.num_train_epochs": "train.epochs",
    "train.per_device_train_batch_size": "train.batch_size",
    "train.gradient_accumulation_steps": "train.grad_accum",
    "lora.rank": "lora.r",
    "lora.lora_alpha": "lora.alpha",
    "lora.lora_dropout": "lora.dropout",
}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=1e-4", "lora.r=16"]`` into a nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value", hint="e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(out, key.split("."), value)
    return out


def apply_aliases(tree: dict, source: str) -> dict:
    """Move aliased keys (`train.learning_rate`) to our names (`train.lr`); both at once is an error."""
    for alias, key in ALIASES.items():
        a_sec, a_name = alias.split(".")
        section = tree.get(a_sec)
        if not isinstance(section, dict) or a_name not in section:
            continue
        k_sec, k_name = key.split(".")
        target = tree.setdefault(k_sec, {}) if isinstance(tree.get(k_sec, {}), dict) else None
        if target is None or k_name in target:
            raise ConfigError(f"{source}: both '{alias}' and '{key}' are set (the first is an alias of the second)",
                              hint=f"keep only '{key}'")
        target[k_name] = section.pop(a_name)
    return tree


def _set_path(tree: dict, parts: list[str], value: Any) -> None:
    for p in parts[:-1]:
        node = tree.get(p)
        if not isinstance(node, dict):
            node = tree[p] = {}
        tree = node
    tree[parts[-1]] = value


def deep_merge(base: dict, extra: dict, where: str = "") -> dict:
    out = dict(base)
    for k, v in extra.items():
        key = f"{where}{k}"
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v, f"{key}.")
        elif isinstance(v, dict) and isinstance(out.get(k), list) and v and all(str(i).isdigit() for i in v):
            out[k] = _merge_indexed(out[k], v, key)  # `data.train.0.max_samples=500`: one element of a list
        else:
            out[k] = v
    return out


def _merge_indexed(items: list, extra: dict, key: str) -> list:
    out = list(items)
    for i, v in extra.items():
        n = int(i)
        if n >= len(out):
            raise ConfigError(f"override '{key}.{i}': {key} has {len(out)} item(s), no index {n}",
                              hint=f"indexes start at 0; set the whole list with {key}=[...]")
        if isinstance(v, dict) and not isinstance(out[n], dict):
            raise ConfigError(f"override '{key}.{i}.{next(iter(v))}': {key}.{i} is a value ({out[n]!r}), not a "
                              "section", hint=f"write the item out in the config, or set {key}=[...] whole")
        out[n] = deep_merge(out[n], v, f"{key}.{i}.") if isinstance(v, dict) else v
    return out


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


# A run's config.yaml records its runtime decisions under this key; reading that file back as a config ignores it.
RESOLVED_KEY = "resolved"


# The built-in demo: teach SmolLM2-135M-Instruct (packaged GGUF) a new identity from bundled data.
DEFAULT_CONFIG = "builtin:identity"


def builtin_config_path(name: str) -> str:
    path = files("tuneforge") / "resources" / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown built-in config '{name}'")
    return str(path)


def split_config_args(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """`tuneforge train a.b=c` tweaks the demo: a first argument that is an override, not a file, joins them."""
    if config and "=" in config and not Path(config).exists():
        return None, [config, *overrides]
    return config, list(overrides)


def resolve_config_arg(config: str | None) -> str | None:
    """A config file path; None for "-" (schema defaults + overrides only); the built-in demo when omitted."""
    if config == "-":
        return None
    config = config or DEFAULT_CONFIG
    if config.startswith("builtin:"):
        return builtin_config_path(config.split(":", 1)[1])
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> Config:
    """Build a validated Config from an optional YAML file, an optional base dict and CLI overrides."""
    tree: dict = dict(base or {})
    source = "config"
    if path is not None:
        from_file = read_yaml(path)
        if looks_like_llamafactory(from_file):  # `tuneforge train lf.yaml`: converted in memory, with a note
            from_file = convert_in_memory(from_file, str(path))
        from_file = apply_aliases(from_file, str(path))
        from_file.pop(RESOLVED_KEY, None)
        tree = deep_merge(tree, from_file)
        source = str(path)
        tree.setdefault("_config_dir", str(Path(path).resolve().parent))
    tree = deep_merge(tree, apply_aliases(parse_overrides(overrides or []), "override"))
    config_dir = tree.pop("_config_dir", None)
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    if config_dir:
        resolve_relative_paths(cfg, Path(config_dir))
    return cfg


def resolve_relative_paths(cfg: Config, config_dir: Path) -> None:
    """Data/model paths that do not exist from the CWD but do next to the config file are taken from there."""

    def fix(p: str | None) -> str | None:
        if not p or Path(p).is_absolute() or Path(p).exists():
            return p
        cand = config_dir / p
        return str(cand.resolve()) if cand.exists() else p

    cfg.model.path = fix(cfg.model.path) or cfg.model.path
    cfg.model.adapter = fix(cfg.model.adapter)
    cfg.model.tokenizer = fix(cfg.model.tokenizer)
    cfg.distill.teacher = fix(cfg.distill.teacher)
    cfg.align.rewards = [_fix_reward(r, fix) for r in cfg.align.rewards]
    cfg.data.dataset_dir = fix(cfg.data.dataset_dir)
    for spec in [*cfg.data.train, *cfg.data.eval]:
        spec.path = fix(spec.path) or spec.path
    cfg.data.decontaminate_against = [fix(p) or p for p in cfg.data.decontaminate_against]
    for task in cfg.eval.tasks:
        task.file = fix(task.file) or task.file
        if getattr(task, "fewshot_file", None):
            task.fewshot_file = fix(task.fewshot_file)


def _fix_reward(spec: str, fix) -> str:
    """`rm:<run dir>` and `path/file.py:function` rewards name files; built-ins and module:function do not."""
    if spec.startswith("rm:"):
        return "rm:" + (fix(spec[3:]) or spec[3:])
    path, sep, func = spec.rpartition(":")
    if sep and path.endswith(".py"):
        return f"{fix(path) or path}:{func}"
    return spec


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at the parent of ``loc`` (walking nested models, lists and dicts)."""
    cls: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return []
        cls = _inner_model(cls.model_fields[part].annotation)
    return list(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []


def _inner_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann) if get_origin(ann) is not None else []:
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def format_validation_error(e: ValidationError, source: str) -> str:
    msgs = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            valid = _fields_at(Config, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{'.'.join(str(p) for p in (*loc[:-1], close[0]))}'?" if close else \
                f"valid keys here: {', '.join(valid)}"
            msgs.append(f"unknown key '{key}' ({hint})")
        else:
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            msgs.append(f"'{key}': {err['msg']}{got_s}")
    return f"{source}: " + "; ".join(msgs)
