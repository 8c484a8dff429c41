"""FastLoraLinear must compute exactly peft's LoRA: same outputs, same gradients, same saved adapter."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from tuneforge.models.lora_fast import FastLoraLinear, register_fast_lora


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(24, 40, bias=True)
        self.down = nn.Linear(40, 24, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def _pair(dtype=torch.float64, **lora_kwargs):
    torch.manual_seed(0)
    base = TwoLayer().to(dtype)
    kwargs = dict(r=4, lora_alpha=8, target_modules=["up", "down"], **lora_kwargs)
    ref = get_peft_model(copy.deepcopy(base), LoraConfig(**kwargs))
    cfg = LoraConfig(**kwargs)
    register_fast_lora(cfg)
    fast = get_peft_model(copy.deepcopy(base), cfg)
    torch.manual_seed(1)
    for name, p in ref.named_parameters():  # LoRA B starts at zero; give it values so its gradients matter
        if "lora_B" in name:
            nn.init.normal_(p)
    fast.load_state_dict(ref.state_dict())  # same parameter names: same weights in both
    return ref, fast


def _grads(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), x.grad, grads


def test_fast_path_matches_peft_outputs_and_gradients():
    ref, fast = _pair()
    assert isinstance(fast.base_model.model.up, FastLoraLinear)
    assert not isinstance(ref.base_model.model.up, FastLoraLinear)
    x = torch.randn(3, 7, 24, dtype=torch.float64)
    out_r, gx_r, g_r = _grads(ref, x)
    out_f, gx_f, g_f = _grads(fast, x)
    torch.testing.assert_close(out_f, out_r)
    torch.testing.assert_close(gx_f, gx_r)
    assert g_f.keys() == g_r.keys() and len(g_f) == 4
    for name in g_r:
        torch.testing.assert_close(g_f[name], g_r[name], msg=name)
        assert g_f[name].shape == dict(fast.named_parameters())[name].shape


def test_fast_path_is_taken_and_falls_back_when_not_plain(monkeypatch):
    from tuneforge.models import lora_fast

    calls = []
    real = lora_fast._PlainLoraLinear.apply
    monkeypatch.setattr(lora_fast._PlainLoraLinear, "apply", lambda *a: calls.append(1) or real(*a))
    _, fast = _pair(dtype=torch.float32)
    fast(torch.randn(2, 24))
    assert len(calls) == 2  # both layers
    calls.clear()
    with fast.disable_adapter():
        fast(torch.randn(2, 24))
    assert not calls
    _, dropped = _pair(dtype=torch.float32, lora_dropout=0.1)
    dropped(torch.randn(2, 24))
    assert not calls  # dropout > 0: peft's path


@pytest.mark.parametrize("variant", [{"use_dora": True}, {"lora_dropout": 0.2}])
def test_non_plain_variants_still_match_peft(variant):
    ref, fast = _pair(**variant)
    ref.eval(), fast.eval()  # dropout off so both are deterministic
    x = torch.randn(5, 24, dtype=torch.float64)
    torch.testing.assert_close(fast(x), ref(x))


def test_saved_adapter_loads_in_plain_peft(tmp_path):
    _, fast = _pair()
    fast.save_pretrained(tmp_path / "adapter")
    torch.manual_seed(0)
    base = TwoLayer().to(torch.float64)
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert not isinstance(loaded.base_model.model.up, FastLoraLinear)
    x = torch.randn(4, 24, dtype=torch.float64)
    torch.testing.assert_close(loaded(x), fast(x))
    merged = fast.merge_and_unload()
    torch.testing.assert_close(merged(x), loaded(x))
