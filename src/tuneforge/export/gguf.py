"""`tuneforge export --format gguf`: a llama.cpp / Ollama file written with the `gguf` package, then proven.

Supported: Llama-family decoders (Llama, SmolLM2, Qwen2) with byte-level BPE tokenizers. The file carries the
architecture hyper-parameters, the whole vocabulary with merges and token types, the special token ids and the
chat template; an Ollama `Modelfile` is written next to it. Verification loads the file back with transformers'
GGUF reader (and llama.cpp through llama-cpp-python when installed) and compares logits / perplexity with the
source model on sample text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, ModelLoadError


@dataclass(frozen=True)
class GgufArch:
    name: str           # llama.cpp architecture name
    permute_qk: bool    # llama.cpp's llama graph expects q/k rows interleaved per rotary pair


ARCHS = {"llama": GgufArch("llama", True), "qwen2": GgufArch("qwen2", False)}

# --quant choices: (tensor type for 2-D weights, llama.cpp file type). 1-D tensors (norms, biases) stay f32.
QUANTS = {"f32": ("F32", 0), "f16": ("F16", 1), "bf16": ("BF16", 32), "q8_0": ("Q8_0", 7), "q5_1": ("Q5_1", 9),
          "q5_0": ("Q5_0", 8), "q4_1": ("Q4_1", 3), "q4_0": ("Q4_0", 2)}

TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


def check_supported(model, tokenizer, quant: str) -> GgufArch:
    """One readable line for what this writer cannot represent faithfully (before any work is done)."""
    if quant not in QUANTS:
        raise ConfigError(f"unknown GGUF --quant '{quant}'", hint=f"choose from {', '.join(QUANTS)}")
    cfg = model.config
    arch = ARCHS.get(getattr(cfg, "model_type", ""))
    if arch is None:
        raise ConfigError(f"GGUF export supports {', '.join(ARCHS)} models, not '{cfg.model_type}'",
                          hint="export --format hf gives a safetensors model that llama.cpp's converter can read")
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") not in ("default", None):
        raise ConfigError(f"GGUF export: rope scaling '{rope.get('rope_type')}' is not written by this exporter")
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend.get("model", {}).get("type") != "BPE" or "ByteLevel" not in json.dumps(backend.get("pre_tokenizer")):
        raise ConfigError("GGUF export supports byte-level BPE tokenizers (SmolLM2, Llama 3, Qwen2) only",
                          hint="export --format hf, then llama.cpp's convert_hf_to_gguf.py")
    return arch


def _pre_tokenizer_name(backend: dict) -> str:
    """llama.cpp's name for the text-splitting rule of this tokenizer (how digits and words are split)."""
    pre = json.dumps(backend.get("pre_tokenizer"))
    if "\\\\p{N}{1,3}" in pre:
        return "llama-bpe"
    if "Split" in pre and "\\\\p{N}" in pre:
        return "qwen2"
    if "Digits" in pre and '"individual_digits": true' in pre:
        return "smollm"
    return "gpt2"


def vocab_fields(tokenizer, rows: int) -> dict[str, Any]:
    """Tokens by id (holes and embedding padding as unused `[PADn]`), their types, and the merges."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {i: a for i, a in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(rows):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(TOKEN_CONTROL if i in added and added[i].special
                         else TOKEN_USER_DEFINED if i in added else TOKEN_NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"].get("merges", [])]
    return {"tokens": tokens, "types": types, "merges": merges, "pre": _pre_tokenizer_name(backend)}


def _permute(w, heads: int):
    """HF rotary layout (halves) -> llama.cpp layout (interleaved pairs), per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_theta(cfg) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta") or getattr(cfg, "rope_theta", None) or 10000.0)


def write_gguf(model, tokenizer, path: Path, quant: str, chat_template: str | None, name: str,
               stop_ids: list[int]) -> dict:
    """Write `model` (a plain float transformers model) to `path`; returns counts of tensor types written."""
    import gguf
    import numpy as np

    arch = check_supported(model, tokenizer, quant)
    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    rows = model.get_input_embeddings().weight.shape[0]
    w = gguf.GGUFWriter(None, arch.name)
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(_rope_theta(cfg))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(rows)
    w.add_file_type(QUANTS[quant][1])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    vocab = vocab_fields(tokenizer, rows)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    w.add_token_merges(vocab["merges"])
    for setter, tid in ((w.add_bos_token_id, tokenizer.bos_token_id), (w.add_eos_token_id, tokenizer.eos_token_id),
                        (w.add_unk_token_id, tokenizer.unk_token_id), (w.add_pad_token_id, tokenizer.pad_token_id)):
        if tid is not None:
            setter(int(tid))
    eot = [i for i in stop_ids if i != tokenizer.eos_token_id]
    if eot:
        w.add_eot_token_id(int(eot[0]))  # llama.cpp stops at end-of-turn as well as at eos
    bos = tokenizer.bos_token_id
    w.add_add_bos_token(bool(bos is not None and tokenizer("a")["input_ids"][:1] == [bos]))
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.name.upper()], cfg.num_hidden_layers)
    target_type = gguf.GGMLQuantizationType[QUANTS[quant][0]]
    counts: dict[str, int] = {}
    tied = getattr(cfg, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # the reader ties output to token_embd when output.weight is absent
        gg_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gg_name is None:
            raise ModelLoadError(f"GGUF export: no llama.cpp name for tensor '{hf_name}'")
        data = tensor.detach().float().cpu().numpy()
        if arch.permute_qk and hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif arch.permute_qk and hf_name.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        qtype = target_type if data.ndim == 2 else gguf.GGMLQuantizationType.F32
        if qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            block = gguf.GGML_QUANT_SIZES[qtype][0]
            if data.shape[-1] % block:
                qtype = gguf.GGMLQuantizationType.F16  # rows not a whole number of blocks (llama.cpp does the same)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gg_name, data.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gg_name, data.astype(np.float16))
        else:
            w.add_tensor(gg_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return counts
