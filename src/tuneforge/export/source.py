"""What an export command reads: a run dir (through `RunDir.model_config`) or a plain model dir, in float32."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.schema import ModelConfig
from tuneforge.data.template_specs import TEMPLATES
from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.models.heads import refuse_pooled_classifier
from tuneforge.models.load import load_model, load_tokenizer, resolve_model_path
from tuneforge.runs import RunDir, is_run_dir


@dataclass
class Source:
    """A model to export: its config (base + adapter, or a model dir), chat template name and system prompt."""

    model: ModelConfig
    template: str = "auto"
    system: str | None = None
    label: str = "model"

    @property
    def has_adapter(self) -> bool:
        return bool(self.model.adapter)

    def adapter_dir(self) -> Path | None:
        return Path(resolve_model_path(self.model.adapter)) if self.model.adapter else None


def open_source(path: str, adapter: str | None = None) -> Source:
    """A run dir (its adapter/ or model/), a model dir / .gguf / builtin: name, optionally with an adapter dir."""
    if is_run_dir(path):
        mc, template, system = RunDir(path).model_config()
        return Source(mc.model_copy(update={"dtype": "float32"}), template, system, Path(path).name)
    if Path(path).is_dir() and (Path(path) / "config.yaml").is_file():
        raise ConfigError(f"run dir {path} has neither adapter/ nor model/", hint="did training finish?")
    resolved = resolve_model_path(path)
    if not (path.startswith("builtin:") or Path(resolved).exists()):
        raise ModelLoadError(f"model path not found: {path}", hint="give a run dir, a model dir or a .gguf file")
    mc = ModelConfig(path=path, adapter=adapter, dtype="float32")
    return Source(mc, "auto", None, Path(resolved).stem if resolved.endswith(".gguf") else Path(resolved).name)


def auto_class(model_dir: str | Path | None):
    """AutoModelForSequenceClassification for classifier checkpoints, AutoModelForCausalLM otherwise."""
    import transformers

    archs: list[str] = []
    cfg = Path(model_dir) / "config.json" if model_dir else None
    if cfg is not None and cfg.is_file():
        archs = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return transformers.AutoModelForSequenceClassification
    return transformers.AutoModelForCausalLM


def load_source(src: Source, apply_adapter: bool = True) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer). The tokenizer saved next to an adapter wins: it has the template tokens."""
    tok_cfg = src.model
    adir = src.adapter_dir()
    if adir is not None and (adir / "tokenizer_config.json").is_file():
        tok_cfg = src.model.model_copy(update={"tokenizer": str(adir)})
    tokenizer = load_tokenizer(tok_cfg)
    base = resolve_model_path(src.model.path)
    refuse_pooled_classifier(base, "export")
    model = load_model(src.model, auto_class=auto_class(base if Path(base).is_dir() else None),
                       apply_adapter=apply_adapter)
    model.eval()
    return model, tokenizer


def load_merged(src: Source) -> tuple[Any, Any]:
    """(model with any adapter folded into its weights, tokenizer): what quantize / prune / GGUF / merge work on."""
    model, tokenizer = load_source(src)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model, tokenizer


def chat_template(src: Source, tokenizer) -> str | None:
    """The jinja chat template the model was trained with: the named template's reference jinja, else the
    tokenizer's own."""
    if src.template in TEMPLATES and TEMPLATES[src.template].jinja:
        return TEMPLATES[src.template].jinja
    return getattr(tokenizer, "chat_template", None)
