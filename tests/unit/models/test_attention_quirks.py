"""Packed rows through tuneforge_varlen equal each sample run alone, also for sliding-window and soft-capped layers."""

from __future__ import annotations

import pytest
import torch

from tuneforge.models.attention import NAME, use_varlen_attention


def _tiny(kind: str):
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig, \
        MistralForCausalLM

    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    torch.manual_seed(0)
    if kind == "mistral":  # every layer slides over 5 tokens
        return MistralForCausalLM(MistralConfig(sliding_window=5, **common))
    if kind == "gemma2":  # soft-capped logits, alternating sliding (window 5) and global layers
        return Gemma2ForCausalLM(Gemma2Config(sliding_window=5, attn_logit_softcapping=2.0,
                                              final_logit_softcapping=None, query_pre_attn_scalar=8, **common))
    return LlamaForCausalLM(LlamaConfig(**common))


@pytest.mark.parametrize("kind", ["llama", "mistral", "gemma2"])
def test_packed_equals_alone(kind):
    model = _tiny(kind).eval()
    lens = [12, 3, 9]  # longer and shorter than the window
    torch.manual_seed(1)
    samples = [torch.randint(1, 64, (1, n)) for n in lens]
    with torch.no_grad():
        alone = torch.cat([model(input_ids=s).logits for s in samples], dim=1)  # the model's own attention
        assert use_varlen_attention(model) and model.config._attn_implementation == NAME
        packed = model(input_ids=torch.cat(samples, dim=1),
                       position_ids=torch.cat([torch.arange(n) for n in lens])[None]).logits
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-4)


def test_packing_is_refused_where_samples_would_leak():
    from types import SimpleNamespace

    from transformers import MambaConfig, MambaForCausalLM

    from tuneforge.models.registry import packing_blockers

    assert packing_blockers(_tiny("gemma2")) == []  # sliding + full attention: safe
    mamba = MambaForCausalLM(MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, state_size=4))
    assert "recurrent" in " ".join(packing_blockers(mamba))

    class Stub(torch.nn.Module):
        def __init__(self, layer_types, sinks=None):
            super().__init__()
            self.config = SimpleNamespace(model_type="x", layer_types=layer_types)
            self.attn = torch.nn.Module()
            self.attn.sinks = sinks

    assert packing_blockers(Stub(["full_attention", "linear_attention"])) == ["layer types linear_attention"]
    assert packing_blockers(Stub(["full_attention"], sinks=torch.nn.Parameter(torch.zeros(2)))) == ["attention sinks"]


def test_sft_refuses_packing_for_a_recurrent_model(tmp_path):
    from transformers import MambaConfig, MambaForCausalLM

    from tuneforge.config import load_config
    from tuneforge.errors import ConfigError
    from tuneforge.train.sft import STAGE

    mamba = MambaForCausalLM(MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, state_size=4))
    with pytest.raises(ConfigError, match="data.packing: samples would see each other"):
        STAGE.prepare_model(mamba, load_config(None, ["method=full", "data.packing=true"]))
    STAGE.prepare_model(mamba, load_config(None, ["method=full", "data.packing=false"]))  # unpacked is fine
    auto = load_config(None, ["method=full"])
    _, packing = STAGE.prepare_model(mamba, auto)
    assert packing is False  # auto falls back to padded batches
    assert auto.data.packing == "auto"  # a runtime decision, returned; the validated config is not rewritten


def test_auto_packing_switches_a_llama_to_per_sample_attention():
    from tuneforge.config import load_config
    from tuneforge.train.sft import STAGE

    cfg = load_config(None, ["method=full"])
    model, packing = STAGE.prepare_model(_tiny("llama"), cfg)
    assert packing is True and model.config._attn_implementation == NAME
    assert cfg.data.packing == "auto"


def test_a_model_left_on_per_sample_attention_generates_like_sdpa():
    """After packed training the model stays on tuneforge_varlen; decoding after a cache (a prompt after a shared
    head, draft tokens of a lone row) must still see the whole cache. A regression built no mask there, so SDPA's
    is_causal hid most of the cache and the README demo's replies after training came out garbled."""
    from tuneforge.models.generate import Sampling, generate_ids

    reference = _tiny("llama").eval()
    packed = _tiny("llama").eval()
    assert use_varlen_attention(packed) and packed.config._attn_implementation == NAME
    torch.manual_seed(3)
    head = torch.randint(1, 64, (40,)).tolist()
    # repeated n-grams invite prompt-lookup drafts; a 40-token shared head is prefilled once and reused
    prompts = [head + [5, 6, 7, 5, 6, 7, 5, 6], head + [9, 8], [4, 4, 2, 4, 4, 2, 4, 4]]
    s = Sampling(max_new_tokens=12)
    want = generate_ids(reference, prompts, pad_id=0, sampling=s, batch_size=2, continuous=False)
    for batch in (1, 2):
        assert generate_ids(packed, prompts, pad_id=0, sampling=s, batch_size=batch, continuous=True) == want
