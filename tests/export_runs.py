"""Run dirs made without training: a tiny base model plus a LoRA/DoRA adapter with non-zero random B matrices
(a fresh adapter is a no-op; these change the logits, so a wrong merge shows)."""

from __future__ import annotations

from pathlib import Path

from tuneforge.config import load_config
from tuneforge.runs import atomic_dir, open_run


def lora_run(root: Path, base: str, name: str = "r", seed: int = 0, dora: bool = False, template: str = "chatml",
             rank: int = 4) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = load_config(None, [f"output.dir={root}", f"output.name={name}", f"model.path={base}",
                             f"data.template={template}", "method=lora"])
    run = open_run(cfg, resume=False)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, use_dora=dora,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
            if "lora_magnitude" in n:
                p.mul_(1.1)
    with atomic_dir(run.adapter) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    return run.root


def full_run(root: Path, base: str, name: str = "full") -> Path:
    import shutil

    cfg = load_config(None, [f"output.dir={root}", f"output.name={name}", f"model.path={base}", "method=full"])
    run = open_run(cfg, resume=False)
    shutil.copytree(base, run.model)
    return run.root
