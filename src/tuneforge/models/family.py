"""Which family a model belongs to, read from its config without loading weights: stages choose defaults by it
(a LoRA learning rate that suits an encoder's classification head diverges on a decoder's)."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.config.schema import ModelConfig
from tuneforge.models.load import resolve_model_path

_BUILTIN_DECODERS = {"builtin:smollm2": True, "builtin:minilm": False}


def is_decoder_only(cfg: ModelConfig) -> bool | None:
    """True for a decoder-only LM, False for an encoder or encoder-decoder, None when it cannot be told offline
    (a hub id not in the local cache): callers then keep their family-neutral default."""
    if cfg.path in _BUILTIN_DECODERS:
        return _BUILTIN_DECODERS[cfg.path]
    path = Path(resolve_model_path(cfg.path)) if cfg.path else None
    if path is None:
        return None
    if path.suffix == ".gguf" or (cfg.gguf_file or "").endswith(".gguf"):
        return True  # GGUF holds decoder LMs (llama.cpp's format)
    config_file = path / "config.json"
    if not config_file.is_file():
        return None
    try:
        conf = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if conf.get("is_encoder_decoder"):
        return False
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = conf.get("model_type", "")
    # BERT-likes also register a causal-LM class; a masked-LM head marks them as encoders
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
