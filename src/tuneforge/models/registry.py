"""Per-architecture facts in one table, keyed by `config.model_type` (no scattered `if model_type == ...`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchInfo:
    layers: str                 # attribute path of the decoder/encoder layer list
    lora_targets: tuple[str, ...]  # the "all-linear" set, named explicitly (excludes the output head)


LLAMA_LIKE = ArchInfo("model.layers", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))

ARCHS: dict[str, ArchInfo] = {
    "llama": LLAMA_LIKE,
    "mistral": LLAMA_LIKE,
    "qwen2": LLAMA_LIKE,
    "qwen3": LLAMA_LIKE,
    "gemma": LLAMA_LIKE,
    "gemma2": LLAMA_LIKE,
    "phi3": ArchInfo("model.layers", ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")),
    "gpt2": ArchInfo("transformer.h", ("c_attn", "c_proj", "c_fc")),
    "bert": ArchInfo("encoder.layer", ("query", "key", "value", "dense")),
    "t5": ArchInfo("encoder.block", ("q", "k", "v", "o", "wi", "wo", "wi_0", "wi_1")),
}


def arch_info(model_type: str) -> ArchInfo | None:
    return ARCHS.get(model_type)


def base_model(model):
    """The transformers model inside a peft wrapper (the model itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def get_layers(model):
    """The repeated block list of a model (for freeze tuning), found via the registry or common fallbacks."""
    base = base_model(model)
    info = arch_info(getattr(base.config, "model_type", ""))
    candidates = [info.layers] if info else []
    candidates += ["model.layers", "model.model.layers", "transformer.h", "encoder.layer", "bert.encoder.layer",
                   "model.decoder.layers", "gpt_neox.layers"]
    for path in candidates:
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__"):
            return path, obj
    return None, None


# Padding-free packing isolates samples inside attention only. Token mixers that carry state along the sequence
# (recurrent / state-space / convolution / linear-attention layers) and attention sinks would still let one
# packed sample see the previous one, so packing is refused for them.
STATEFUL_MIXER_MODELS = frozenset({
    "mamba", "mamba2", "falcon_mamba", "rwkv", "jamba", "zamba", "zamba2", "bamba", "falcon_h1", "recurrent_gemma",
    "lfm2", "lfm2_moe", "nemotron_h", "granitemoehybrid", "qwen3_next", "xlstm", "minimax", "plamo2",
})
PACKABLE_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})


def packing_blockers(model) -> list[str]:
    """Reasons why padding-free packing would leak between samples in `model` (empty when it is safe)."""
    base = base_model(model)
    config = getattr(base.config, "text_config", None) or base.config
    reasons = []
    model_type = getattr(config, "model_type", "")
    if model_type in STATEFUL_MIXER_MODELS:
        reasons.append(f"'{model_type}' has recurrent/state-space layers")
    other = sorted({t for t in (getattr(config, "layer_types", None) or []) if t not in PACKABLE_LAYER_TYPES})
    if other:
        reasons.append(f"layer types {', '.join(other)}")
    if any(getattr(m, "sinks", None) is not None for m in base.modules()):
        reasons.append("attention sinks")
    return reasons
