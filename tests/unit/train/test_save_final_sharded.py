"""save_final when FSDP / DeepSpeed shard the weights: every rank joins the gather (a collective: a rank that skips it
leaves rank 0 waiting forever) and rank 0 writes the gathered weights, not the shards its modules hold.

No GPU here, so the accelerator is a stand-in that records the gather and returns known tensors; the models, PEFT
and the files written are real.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.config.schema import Config
from tuneforge.errors import TrainingError
from tuneforge.runs import RunDir
from tuneforge.train.common import save_final


class Gatherer:
    """accelerator.get_state_dict as under FSDP: returns the whole weights (here: the module's own, plus one)."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = 0, error

    def get_state_dict(self, model):
        self.calls += 1
        if self.error is not None:
            raise self.error
        module = getattr(model, "module", model)
        return {k: v.detach().clone() + 1 for k, v in module.state_dict().items()}

    def unwrap_model(self, model):
        return model


class Trainer:
    def __init__(self, model, sharding: str | None, error: Exception | None = None):
        self.model, self.accelerator = model, Gatherer(error)
        self.is_fsdp_enabled, self.is_deepspeed_enabled = sharding == "fsdp", sharding == "deepspeed"
        self.deepspeed = type("Engine", (), {"module": model})() if sharding == "deepspeed" else None


def tiny_causal_lm(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def test_other_ranks_join_the_gather_and_write_nothing(tiny_llama, tmp_path):
    trainer = Trainer(tiny_causal_lm(tiny_llama), "fsdp")
    save_final(trainer, None, RunDir(tmp_path, main=False), Config())
    assert trainer.accelerator.calls == 1
    assert not (tmp_path / "model").exists()


def test_rank_zero_writes_the_gathered_weights(tiny_llama, tmp_path):
    model = tiny_causal_lm(tiny_llama)
    trainer = Trainer(model, "fsdp")
    save_final(trainer, None, RunDir(tmp_path), Config())
    saved = load_file(str(tmp_path / "model" / "model.safetensors"))
    own = model.state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(saved[key], own[key] + 1)


def test_unsharded_runs_save_the_module_without_gathering(tiny_llama, tmp_path):
    model = tiny_causal_lm(tiny_llama)
    trainer = Trainer(model, None)
    save_final(trainer, None, RunDir(tmp_path), Config())
    assert trainer.accelerator.calls == 0
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(load_file(str(tmp_path / "model" / "model.safetensors"))[key], model.state_dict()[key])


def test_sharded_lora_saves_the_gathered_adapter_and_says_how_to_merge(tiny_llama, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_causal_lm(tiny_llama), LoraConfig(r=4, target_modules="all-linear"))
    cfg = Config()
    cfg.output.save_merged = True
    trainer = Trainer(model, "deepspeed")
    save_final(trainer, None, RunDir(tmp_path), cfg)
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    key = next(k for k in saved if "q_proj.lora_B" in k)
    own = {k.replace(".default", ""): v for k, v in model.state_dict().items()}
    assert torch.equal(saved[key], own[key] + 1)  # lora_B starts at zero: the gathered (+1) tensor was written
    assert not (tmp_path / "model").exists()
    assert "tuneforge export" in capsys.readouterr().out


def test_a_pooled_classifier_splits_the_gathered_weights_into_backbone_and_head(tmp_path):
    from transformers import AutoModel

    from task_tiny_models import tiny_bert
    from tuneforge.models.pooled import PooledClassifier

    model = PooledClassifier(AutoModel.from_pretrained(tiny_bert()), "mean", 3, False, ["a", "b", "c"], 64)
    save_final(Trainer(model, "fsdp"), None, RunDir(tmp_path), Config())
    head = load_file(str(tmp_path / "model" / "head.safetensors"))
    backbone = load_file(str(tmp_path / "model" / "model.safetensors"))
    own_head = model.head.state_dict()
    assert head.keys() == own_head.keys() and all(torch.equal(head[k], own_head[k] + 1) for k in head)
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(backbone[key], model.backbone.state_dict()[key] + 1)


def test_zero3_without_the_16bit_gather_is_one_clear_error(tiny_llama, tmp_path):
    trainer = Trainer(tiny_causal_lm(tiny_llama), "deepspeed", error=ValueError("Cannot get 16bit model weights"))
    with pytest.raises(TrainingError) as e:
        save_final(trainer, None, RunDir(tmp_path), Config())
    assert "stage3_gather_16bit_weights_on_model_save" in e.value.hint
    assert not (tmp_path / "model").exists()
