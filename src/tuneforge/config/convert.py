"""LLaMA-Factory YAML -> tuneforge config (`tuneforge convert`, and `tuneforge train lf.yaml` in memory).

Every LLaMA-Factory key ends up in exactly one of three lists, all printed: *mapped* (to the tuneforge key named),
*ignored* (no effect here, with the reason: a worker count, a flag that is always on) or *unsupported* (it would
change what is trained and tuneforge cannot do it; the reason says what to use instead). Nothing is dropped
silently. A target key that this version's schema does not have (a feature not landed yet) becomes unsupported
with that reason, so the table stays honest as the schema grows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError

# Keys only LLaMA-Factory configs have at the top level (ours are nested sections).
LF_MARKERS = frozenset({"model_name_or_path", "finetuning_type", "do_train", "output_dir", "dataset",
                        "per_device_train_batch_size", "learning_rate", "export_dir", "adapter_name_or_path"})

# LLaMA-Factory template names -> tuneforge template names (both ChatML-style families map to chatml).
TEMPLATES = {"default": "default", "alpaca": "alpaca", "chatml": "chatml", "qwen": "chatml", "qwen2_5": "chatml",
             "qwen3": "chatml", "qwen3_nothink": "chatml", "llama3": "llama3", "mistral": "mistral",
             "gemma": "gemma", "gemma2": "gemma", "phi": "phi", "empty": "auto"}

# (LLaMA-Factory stage, pref_loss) pairs that are stages of their own here.
STAGE_BY_LOSS = {("dpo", "orpo"): "orpo", ("dpo", "simpo"): "simpo"}

# Keys with no effect in tuneforge, and why.
IGNORED = {
    "do_train": "tuneforge train always trains",
    "do_eval": "evaluation runs when eval data or data.eval_split is set",
    "do_predict": "use `tuneforge eval` for predictions",
    "preprocessing_num_workers": "tokenization is cached; no worker pool to size",
    "dataloader_num_workers": "batches are built in-process",
    "overwrite_cache": "the tokenized-data cache is keyed by data + tokenizer + template + cutoff, so it never goes stale",
    "ddp_timeout": "distributed timeouts come from the launcher (accelerate / torchrun)",
    "save_only_model": "checkpoints always hold optimizer state so --resume is exact",
    "bf16": "model.dtype: auto already trains in bfloat16 on GPUs that support it (float32 on CPU)",
    "fp16": "model.dtype: auto picks the dtype; set model.dtype: float16 to force it",
    "per_device_eval_batch_size": "evaluation uses train.batch_size",
    "eval_strategy": "train.eval_steps decides when to evaluate (0: at the end)",
    "infer_backend": "tuneforge generates with transformers (huggingface backend)",
    "export_device": "tuneforge export works on CPU",
    "export_legacy_format": "tuneforge always writes safetensors",
    "flash_attn": "model.attn_implementation picks the attention kernel (library default: sdpa)",
}

# Keys that would change what is trained and have no tuneforge equivalent, and what to do instead.
UNSUPPORTED_PREFIXES = {
    "use_galore": "GaLore optimizer", "galore_": "GaLore optimizer", "use_apollo": "APOLLO optimizer",
    "apollo_": "APOLLO optimizer", "use_badam": "BAdam optimizer", "badam_": "BAdam optimizer",
    "loraplus_": "LoRA+ learning-rate ratio", "pissa_": "PiSSA initialisation", "use_llama_pro": "LLaMA Pro expansion",
    "tokenized_path": "pre-tokenized datasets (tuneforge caches tokenized data itself, keyed by its inputs)",
    "export_quantization_": "GPTQ calibrated quantization (`tuneforge quantize MODEL --bits 4` or `--bits 8` does "
                            "weight-only int4/int8 with a perplexity check instead)",
    "use_unsloth": "unsloth kernels",
    "rope_scaling": "RoPE scaling", "neftune_noise_alpha": "NEFTune noise", "use_badam_": "BAdam optimizer",
}


@dataclass
class Conversion:
    """The converted tree and what happened to every source key."""

    source: str
    kind: str  # train | model (inference / merge: a model section only) | deepspeed | accelerate
    config: dict[str, Any] = field(default_factory=dict)
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (lf key, our key)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (lf key, reason)
    unsupported: list[tuple[str, str]] = field(default_factory=list)  # (lf key, reason)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """Every key's fate, one line each."""
        lines = [f"{self.source}: LLaMA-Factory {self.kind} config"]
        lines += [f"  mapped       {k} -> {t}" for k, t in self.mapped]
        lines += [f"  ignored      {k}: {r}" for k, r in self.ignored]
        lines += [f"  UNSUPPORTED  {k}: {r}" for k, r in self.unsupported]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def looks_like_llamafactory(tree: dict) -> bool:
    """True for a flat LLaMA-Factory YAML (our configs nest everything except stage/method/demo_prompts).

    A file with any of our sections as a mapping is ours, so a stray `learning_rate:` in a tuneforge config gets the
    usual "unknown key, did you mean" error instead of being taken for a LLaMA-Factory file."""
    ours = any(isinstance(tree.get(name), dict) for name in Config.model_fields)
    return bool(LF_MARKERS & set(tree)) and not ours


def schema_has(dotted: str) -> bool:
    """Whether this version's Config has the key `a.b.c`."""
    cls: Any = Config
    for part in dotted.split("."):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return False
        cls = cls.model_fields[part].annotation
    return True


def _names(value: Any) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()] if value is not None else []


def _lora_target(value: Any) -> Any:
    names = _names(value)
    return "all-linear" if names in (["all"], []) else names


def _run_dir(value: Any) -> dict:
    # LLaMA-Factory's output_dir *is* the run dir; ours is output.dir / output.name (one path component).
    p = PurePosixPath(str(value))
    return {"dir": str(p.parent) if str(p.parent) not in ("", ".") else "runs", "name": p.name}


# lf key -> (our key, value transform). Keys needing more context are handled in _special.
SIMPLE: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "model_name_or_path": ("model.path", None),
    "trust_remote_code": ("model.trust_remote_code", None),
    "cache_dir": ("model.cache_dir", None),
    "model_revision": ("model.revision", None),
    "dataset_dir": ("data.dataset_dir", None),
    "cutoff_len": ("data.cutoff_len", None),
    "train_on_prompt": ("data.train_on_prompt", None),
    "mask_history": ("data.mask_history", None),
    "default_system": ("data.system", None),
    "packing": ("data.packing", None),
    "finetuning_type": ("method", None),
    "lora_rank": ("lora.r", None),
    "lora_alpha": ("lora.alpha", None),
    "lora_dropout": ("lora.dropout", None),
    "lora_target": ("lora.target", _lora_target),
    "use_dora": ("lora.dora", None),
    "use_rslora": ("lora.rslora", None),
    "additional_target": ("lora.modules_to_save", _names),
    "freeze_extra_modules": ("freeze.modules", _names),
    "pref_beta": ("align.pref_beta", None),
    "pref_ftx": ("align.pref_ftx", None),
    "simpo_gamma": ("align.simpo_gamma", None),
    "dpo_label_smoothing": ("align.label_smoothing", None),
    "kto_chosen_weight": ("align.kto_desirable_weight", None),
    "kto_rejected_weight": ("align.kto_undesirable_weight", None),
    "learning_rate": ("train.lr", float),
    "num_train_epochs": ("train.epochs", float),
    "max_steps": ("train.max_steps", None),
    "per_device_train_batch_size": ("train.batch_size", None),
    "gradient_accumulation_steps": ("train.grad_accum", None),
    "lr_scheduler_type": ("train.scheduler", None),
    "warmup_ratio": ("train.warmup_ratio", None),
    "weight_decay": ("train.weight_decay", None),
    "max_grad_norm": ("train.max_grad_norm", None),
    "optim": ("train.optim", None),
    "seed": ("train.seed", None),
    "logging_steps": ("train.logging_steps", None),
    "save_steps": ("train.save_steps", None),
    "save_total_limit": ("train.save_total_limit", None),
    "eval_steps": ("train.eval_steps", None),
    "deepspeed": ("train.deepspeed", None),
    "overwrite_output_dir": ("output.overwrite", None),
    "plot_loss": ("output.plot", None),
    "quantization_bit": ("model.quantization_bit", None),
}


def convert_tree(tree: dict, source: str = "config") -> Conversion:
    """Translate a parsed LLaMA-Factory YAML mapping; see the module docstring for the three outcomes."""
    kind = "train" if ("stage" in tree or "dataset" in tree) else "model"
    conv = Conversion(source=source, kind=kind)
    out: dict[str, Any] = {}
    for key, value in tree.items():
        handled = _special(key, value, tree, out, conv)
        if handled:
            continue
        if key in SIMPLE:
            target, fn = SIMPLE[key]
            _put(out, conv, key, target, fn(value) if fn and value is not None else value)
        elif key in IGNORED:
            conv.ignored.append((key, IGNORED[key]))
        elif reason := next((r for p, r in UNSUPPORTED_PREFIXES.items() if key.startswith(p)), None):
            conv.unsupported.append((key, f"{reason} is not available in tuneforge"))
        else:
            conv.unsupported.append((key, "no tuneforge equivalent known to the converter"))
    if "lora_rank" in tree and "lora_alpha" not in tree and schema_has("lora.alpha"):
        # LLaMA-Factory's default alpha is 2 x rank; ours is a fixed 16. Keep their scale.
        _set(out, "lora.alpha", 2 * int(tree["lora_rank"]))
        conv.notes.append(f"lora.alpha set to {2 * int(tree['lora_rank'])} (LLaMA-Factory's default: 2 x lora_rank)")
    if "dataset" in tree and "dataset_dir" not in tree:
        _set(out, "data.dataset_dir", "data")
        conv.notes.append("data.dataset_dir set to 'data' (LLaMA-Factory's default: its dataset_info.json folder)")
    if kind == "model":
        conv.notes.append("inference / export config: the result holds the model section; use it with "
                          "`tuneforge chat -c OUT.yaml` or `tuneforge eval OUT.yaml`, export with `tuneforge export`")
    conv.config = out
    return conv


def _special(key: str, value: Any, tree: dict, out: dict, conv: Conversion) -> bool:
    """Keys whose translation depends on their value or on other keys. True when handled."""
    if key == "stage":
        # LLaMA-Factory runs ORPO and SimPO as dpo + pref_loss; here they are stages of their own.
        _put(out, conv, key, "stage", STAGE_BY_LOSS.get((value, tree.get("pref_loss")), value))
    elif key == "pref_loss":
        if (tree.get("stage"), value) in STAGE_BY_LOSS:
            conv.mapped.append((key, f"stage: {value}"))
        else:
            _put(out, conv, key, "align.pref_loss", value)
    elif key == "template":
        ours = TEMPLATES.get(str(value))
        _put(out, conv, key, "data.template", ours or "auto")
        if ours is None or (ours != value and ours != "auto"):
            conv.notes.append(f"template '{value}' -> '{ours or 'auto'}'"
                              + ("" if ours else " (no named equivalent: the tokenizer's own chat template)"))
    elif key in ("dataset", "eval_dataset"):
        target = "data.train" if key == "dataset" else "data.eval"
        cap = tree.get("max_samples")  # per dataset in LLaMA-Factory, as DatasetSpec.max_samples is here
        specs = [{"path": n, "max_samples": cap} if cap else n for n in _names(value)]
        _put(out, conv, key, target, specs)
    elif key == "max_samples":
        conv.mapped.append((key, "data.train[*].max_samples" if "dataset" in tree else "(no dataset)"))
    elif key == "val_size":
        if isinstance(value, float) and 0 < value < 1:
            _put(out, conv, key, "data.eval_split", value)
        else:
            conv.unsupported.append((key, "an absolute eval count; data.eval_split takes a fraction in (0, 1)"))
    elif key == "output_dir":
        _put(out, conv, key, "output.dir", _run_dir(value)["dir"])
        _set(out, "output.name", _run_dir(value)["name"])
        conv.mapped[-1] = (key, "output.dir + output.name")
    elif key == "adapter_name_or_path":
        names = _names(value)
        if len(names) == 1:
            _put(out, conv, key, "model.adapter", names[0])
        else:
            conv.unsupported.append((key, "several stacked adapters; merge them first (tuneforge export)"))
    elif key == "pure_bf16":
        if value:
            _put(out, conv, key, "model.dtype", "bfloat16")
        else:
            conv.ignored.append((key, "false: no effect"))
    elif key == "freeze_trainable_layers":
        if int(value) >= 0:
            _put(out, conv, key, "freeze.trainable_layers", int(value))
        else:
            conv.unsupported.append((key, "negative counts (train the first N layers) are not supported"))
    elif key == "freeze_trainable_modules":
        if _names(value) == ["all"]:
            conv.ignored.append((key, "'all' is what tuneforge's freeze method trains in the last layers"))
        else:
            conv.unsupported.append((key, "per-module choice inside layers; use freeze.modules (name substrings)"))
    elif key == "report_to":
        names = [n for n in _names(value) if n != "none"]
        _put(out, conv, key, "train.report_to", names)
    elif key == "resume_from_checkpoint":
        if value in (None, False):
            conv.ignored.append((key, "null: no effect"))
        else:
            conv.unsupported.append((key, "resume with `tuneforge train CONFIG --resume` (the run's last checkpoint)"))
    elif key.startswith("export_") and key not in IGNORED and not key.startswith("export_quantization_"):
        conv.ignored.append((key, "export is a command, not a config key: `tuneforge export RUN_DIR -o DIR`"
                                  + (f" (here: -o {value})" if key == "export_dir" else "")))
    else:
        return False
    return True


def _put(out: dict, conv: Conversion, lf_key: str, target: str, value: Any) -> None:
    if schema_has(target):
        _set(out, target, value)
        conv.mapped.append((lf_key, target))
    else:
        conv.unsupported.append((lf_key, f"this tuneforge version has no '{target}' key"))


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[last] = value


def convert_in_memory(tree: dict, source: str) -> dict:
    """`tuneforge train lf.yaml`: the converted tree, with a one-line note; unsupported keys stop the run first."""
    conv = convert_tree(tree, source)
    if conv.unsupported:
        keys = "; ".join(f"{k} ({r})" for k, r in conv.unsupported)
        raise ConfigError(f"{source}: LLaMA-Factory config with keys tuneforge cannot honour: {keys}",
                          hint=f"`tuneforge convert {source} -o tuneforge.yaml` writes a config without them to review")
    print(f"note: {source} is a LLaMA-Factory config, converted in memory ({len(conv.mapped)} keys mapped, "
          f"{len(conv.ignored)} without effect here; `tuneforge convert {source}` lists each)", file=sys.stderr)
    return conv.config
