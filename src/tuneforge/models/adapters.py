"""What gets trained: LoRA / DoRA (peft), full fine-tuning, freeze (last N layers), or frozen features."""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.errors import ConfigError
from tuneforge.models.registry import arch_info, get_layers


def apply_method(model, cfg: Config, task_type: str = "CAUSAL_LM", new_token_ids: list[int] = ()):
    """Return the model prepared for cfg.method (a PeftModel for LoRA).

    `new_token_ids`: tokens whose embedding rows were just added (template control tokens); under LoRA their
    rows are trained (peft trainable tokens), else the model could never learn to read or emit them.
    """
    if cfg.method == "lora":
        return apply_lora(model, cfg, task_type, new_token_ids)
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.method in ("freeze", "features"):
        return apply_freeze(model, cfg)
    raise ConfigError(f"unknown method '{cfg.method}'")


def lora_targets(model, target: str | list[str]) -> list[str] | str:
    if isinstance(target, list):
        return target
    if target != "all-linear":
        return [t.strip() for t in target.split(",") if t.strip()]
    info = arch_info(getattr(model.config, "model_type", ""))
    if info:
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        found = [t for t in info.lora_targets if t in present]
        if found:
            return found
    return "all-linear"  # peft's own rule: every Linear except the output head


def new_token_rows(model, modules_to_save: list[str], new_token_ids: list[int]) -> dict[str, list[int]] | None:
    """peft `trainable_token_indices` for new tokens: input embeddings, plus an untied output head."""
    if not new_token_ids:
        return None
    names = {module: name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    rows = {}
    for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
        name = names.get(layer)
        if layer is None or name is None or name in modules_to_save or name in rows:
            continue
        if layer is model.get_output_embeddings() and getattr(model.config, "tie_word_embeddings", False):
            continue  # tied: peft follows the input embedding's rows
        rows[name] = list(new_token_ids)
    return rows or None


def apply_lora(model, cfg: Config, task_type: str = "CAUSAL_LM", new_token_ids: list[int] = ()):
    from peft import get_peft_model

    peft_cfg = lora_config(model, cfg, task_type, new_token_ids)
    try:
        model = get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise ConfigError(f"lora.target: {e}", hint="use all-linear or module names such as q_proj,v_proj") from None
    return model


def lora_config(model, cfg: Config, task_type: str = "CAUSAL_LM", new_token_ids: list[int] = ()):
    """The peft LoraConfig for cfg.lora (fast CPU path registered); TRL trainers take it as `peft_config`, so a
    DPO-style reference is the base with the adapter disabled instead of a second copy."""
    from peft import LoraConfig

    lc = cfg.lora
    targets = lora_targets(model, lc.target)
    token_rows = new_token_rows(model, lc.modules_to_save, new_token_ids)
    peft_cfg = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=targets,
                          use_dora=lc.dora, use_rslora=lc.rslora, bias="none", task_type=task_type,
                          modules_to_save=lc.modules_to_save or None, trainable_token_indices=token_rows)
    if token_rows:
        print(f"lora: training the embedding rows of {len(new_token_ids)} new template token(s) in "
              f"{', '.join(token_rows)} (ids {new_token_ids[0]}..{new_token_ids[-1]})", flush=True)
    if lc.fast_path and not _is_quantized(model):
        # Imported here: lora_fast subclasses peft's LoRA layer at import time, so it pulls in torch and peft;
        # configs that never build a LoRA model should not pay for that.
        from tuneforge.models.lora_fast import register_fast_lora

        register_fast_lora(peft_cfg)
    return peft_cfg


def _is_quantized(model) -> bool:
    # bitsandbytes' 4/8-bit layers subclass nn.Linear: they must keep peft's own quantized LoRA layers.
    return bool(getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None))


def apply_freeze(model, cfg: Config):
    """Train only the last `freeze.trainable_layers` blocks plus parameters matching `freeze.modules`."""
    for p in model.parameters():
        p.requires_grad_(False)
    n = cfg.freeze.trainable_layers if cfg.method == "freeze" else 0
    path, layers = get_layers(model)
    if n and layers is None:
        raise ConfigError("freeze.trainable_layers: could not find the layer list of this model",
                          hint="use freeze.modules with parameter name substrings instead")
    if n > (len(layers) if layers is not None else 0):
        raise ConfigError(f"freeze.trainable_layers={n} but the model has {len(layers)} layers")
    for layer in (list(layers)[-n:] if n else []):
        for p in layer.parameters():
            p.requires_grad_(True)
    for name, p in model.named_parameters():
        if any(m in name for m in cfg.freeze.modules):
            p.requires_grad_(True)
    return model


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
