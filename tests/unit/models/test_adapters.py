"""Method switches reach peft / requires_grad as configured (no training needed)."""

import pytest

from tuneforge.config import load_config
from tuneforge.config.schema import ModelConfig
from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.models.adapters import apply_method, count_parameters
from tuneforge.models.load import load_model, resolve_model_path


def model(path):
    return load_model(ModelConfig(path=path))


def test_lora_dora_rslora_flags(tiny_llama):
    m = apply_method(model(tiny_llama), load_config(None, ["lora.dora=true", "lora.rslora=true", "lora.r=4"]))
    pc = m.peft_config["default"]
    assert pc.use_dora and pc.use_rslora and pc.r == 4
    assert set(pc.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_lora_fast_path_switch(tiny_llama):
    from tuneforge.models.lora_fast import FastLoraLinear

    def kinds(overrides):
        m = apply_method(model(tiny_llama), load_config(None, overrides))
        return {type(mod) is FastLoraLinear for name, mod in m.named_modules() if name.endswith("q_proj")}

    assert kinds([]) == {True}
    assert kinds(["lora.fast_path=false"]) == {False}


def test_lora_explicit_targets(tiny_llama):
    m = apply_method(model(tiny_llama), load_config(None, ["lora.target=q_proj,v_proj"]))
    assert set(m.peft_config["default"].target_modules) == {"q_proj", "v_proj"}
    with pytest.raises(ConfigError, match="lora.target"):
        apply_method(model(tiny_llama), load_config(None, ["lora.target=[nope_proj]"]))


def test_freeze_last_layers_and_modules(tiny_llama):
    m = apply_method(model(tiny_llama), load_config(None, ["method=freeze", "freeze.trainable_layers=1"]))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.layers.1.") for n in trainable)
    m = apply_method(model(tiny_llama), load_config(None, ["method=freeze", "freeze.trainable_layers=0",
                                                           "freeze.modules=[lm_head]"]))
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {"lm_head.weight"}
    with pytest.raises(ConfigError, match="has 2 layers"):
        apply_method(model(tiny_llama), load_config(None, ["method=freeze", "freeze.trainable_layers=5"]))


def test_full_trains_everything(tiny_llama):
    total, trainable = count_parameters(apply_method(model(tiny_llama), load_config(None, ["method=full"])))
    assert total == trainable


def test_builtin_paths_and_errors(tmp_path):
    assert resolve_model_path("builtin:smollm2").endswith(".gguf")
    with pytest.raises(ModelLoadError, match="unknown built-in"):
        resolve_model_path("builtin:gpt5")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(ModelConfig(path=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no model weights"):
        load_model(ModelConfig(path=str(tmp_path / "empty")))


def test_gguf_first_load_is_trainable(tmp_path, monkeypatch):
    """First load converts the GGUF (no cache yet); the result must be a plain, trainable model."""
    import torch

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path))
    m = load_model(ModelConfig(path="builtin:smollm2"))
    assert not getattr(m, "is_quantized", False) and getattr(m, "hf_quantizer", None) is None
    assert any((tmp_path / "gguf").glob("*/model.safetensors"))
    from transformers import Trainer, TrainingArguments

    Trainer(model=m, args=TrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none"))
    assert m.get_input_embeddings().weight.dtype == torch.float32


def test_gguf_cache_holds_the_language_model_whichever_class_loads_first(tmp_path, monkeypatch):
    """A classifier loaded first must not leave its random head in the shared cache (a later classifier with
    another label count failed on its shape), and every class loads the file's embeddings from the cache (a
    classifier got random ones when the tied embeddings were stored under `lm_head.weight` only)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path))
    cfg = ModelConfig(path="builtin:smollm2")
    two = load_model(cfg, auto_class=AutoModelForSequenceClassification, num_labels=2)
    assert two.score.weight.shape[0] == 2
    [cached] = (tmp_path / "gguf").glob("*/model.safetensors")
    with safe_open(str(cached), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("score")] and "model.embed_tokens.weight" in f.keys()
    four = load_model(cfg, auto_class=AutoModelForSequenceClassification, num_labels=4)
    lm = load_model(cfg, auto_class=AutoModelForCausalLM)
    assert four.score.weight.shape[0] == 4
    assert torch.equal(four.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    assert torch.equal(two.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    assert torch.equal(lm.get_output_embeddings().weight, lm.model.embed_tokens.weight)
    assert lm.model.embed_tokens.weight.std() > 0.05  # the file's embeddings, not a fresh N(0, 0.02) init
