"""`tuneforge convert`: read a LLaMA-Factory file, translate it (config/convert.py), validate, write our YAML.

Validation goes through the stage table too, so a converted training config that names a stage or stage x method
pair tuneforge cannot run stops here, not at `tuneforge train`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from tuneforge.config.convert import (
    LF_MARKERS,
    Conversion,
    convert_tree,
    looks_like_llamafactory,
)
from tuneforge.config.load import format_validation_error, read_yaml
from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.runs import atomic_write
from tuneforge.train.stages import get_stage


def convert_file(path: str | Path) -> Conversion:
    """Convert a LLaMA-Factory training / inference / export YAML; recognise DeepSpeed and accelerate files."""
    p = Path(path)
    if p.suffix == ".json":
        try:
            json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{p}: not a readable JSON file ({e})") from None
        conv = Conversion(source=str(p), kind="deepspeed")
        conv.notes.append(f"DeepSpeed JSON files are used as they are: set train.deepspeed: {p} in a tuneforge config "
                          "(its \"auto\" values are filled from the train section)")
        return conv
    tree = read_yaml(p)
    if "distributed_type" in tree and "compute_environment" in tree:
        conv = Conversion(source=str(p), kind="accelerate")
        conv.notes.append(f"accelerate configs are used as they are: accelerate launch --config_file {p} "
                          "-m tuneforge.cli train CONFIG.yaml (see the distributed how-to)")
        return conv
    if not looks_like_llamafactory(tree):
        raise ConfigError(f"{p}: not a LLaMA-Factory config (none of {', '.join(sorted(LF_MARKERS))} at the top level)")
    return convert_tree(tree, str(p))


def validate_converted(conv: Conversion) -> Config:
    """The converted tree as a validated Config (training configs also pass the stage table's checks)."""
    try:
        cfg = Config.model_validate(conv.config)
    except ValidationError as e:
        origin = {ours: lf for lf, ours in conv.mapped}
        sources = sorted({origin[k] for k in origin if any(".".join(map(str, err["loc"])).startswith(k)
                                                           for err in e.errors())})
        hint = f"from LLaMA-Factory key(s) {', '.join(sources)}" if sources else None
        raise ConfigError(format_validation_error(e, conv.source), hint=hint) from None
    if conv.kind == "train":
        get_stage(cfg)
    return cfg


def to_yaml(conv: Conversion) -> str:
    """Our YAML, headed by comments that list every key not carried over and why (nothing silently dropped)."""
    head = [f"# Converted from {conv.source} by `tuneforge convert`."]
    if conv.unsupported:
        head.append("# NOT carried over (tuneforge cannot do these; review before training):")
        head += [f"#   {k}: {r}" for k, r in conv.unsupported]
    if conv.ignored:
        head.append("# Without effect in tuneforge:")
        head += [f"#   {k}: {r}" for k, r in conv.ignored]
    head += [f"# {n}" for n in conv.notes]
    # Sections in the order of the schema (stage and method first), as our own examples read.
    ordered = {k: conv.config[k] for k in Config.model_fields if k in conv.config}
    return "\n".join(head) + "\n" + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True)


def convert_cli(source: str, out: str | None = None, force: bool = False, strict: bool = False) -> Conversion:
    """Convert, print every key's fate, validate, then write OUT (or print the YAML when no OUT is given)."""
    conv = convert_file(source)
    print(conv.report())
    if conv.kind in ("deepspeed", "accelerate"):
        return conv
    validate_converted(conv)
    if strict and conv.unsupported:
        raise ConfigError(f"{source}: {len(conv.unsupported)} key(s) cannot be converted: "
                          + ", ".join(k for k, _ in conv.unsupported), hint="drop --strict to write the rest")
    text = to_yaml(conv)
    if out is None:
        print(text, end="")
        return conv
    target = Path(out)
    if target.exists() and not force:
        raise ConfigError(f"{target} exists", hint="pass --force to overwrite it")
    atomic_write(target, text)
    print(f"wrote {target} ({len(conv.mapped)} mapped, {len(conv.ignored)} without effect, "
          f"{len(conv.unsupported)} not carried over)")
    return conv
