"""The private upstream APIs we override must still exist with the shape we rely on.

If one of these fails after a transformers / peft upgrade, read the comment at the override
(train/common.py GuardMixin._save_checkpoint, models/lora_fast.py register_fast_lora) before changing anything.
"""

from __future__ import annotations

import inspect

import torch


def test_trainer_save_checkpoint_keeps_its_signature():
    from transformers import Trainer

    assert hasattr(Trainer, "_save_checkpoint"), "transformers.Trainer._save_checkpoint is gone: atomic checkpoints"
    params = list(inspect.signature(Trainer._save_checkpoint).parameters)
    assert params[:3] == ["self", "model", "trial"], params


def test_trainer_eval_sampler_keeps_its_signature():
    from transformers import Trainer

    assert hasattr(Trainer, "_get_eval_sampler"), "transformers.Trainer._get_eval_sampler is gone: eval order"
    assert list(inspect.signature(Trainer._get_eval_sampler).parameters) == ["self", "eval_dataset"]


def test_peft_custom_module_dispatch_still_reaches_our_layer():
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.lora_fast import FastLoraLinear, register_fast_lora

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"])
    assert hasattr(cfg, "_register_custom_module"), "peft LoraConfig._register_custom_module is gone"
    register_fast_lora(cfg)
    peft_model = get_peft_model(model, cfg)
    fast = [m for m in peft_model.modules() if isinstance(m, FastLoraLinear)]
    assert len(fast) == 2, "peft no longer routes nn.Linear targets to the registered custom LoRA layer"
