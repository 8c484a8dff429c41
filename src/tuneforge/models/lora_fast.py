"""A faster forward/backward for plain LoRA linear layers on CPU, plugged in through peft's custom-module API.

Why: in a LoRA step on CPU, the rank-r matmuls cost far more than their FLOPs (r = 8 is ~2.5 % of a layer's
FLOPs but ~15 % of the step). Most of it is two backward GEMMs whose *output* is tall and skinny
(`grad_B = g^T @ h`, `grad_h = g @ B`, output width r): MKL runs these 3x slower than the same product
computed in transposed layout (`(h^T @ g)^T`, `(B^T @ g^T)^T`). Autograd picks the slow layout because
it follows the parameters' strides. This module computes the same math with the fast layouts, and fuses the
scale-and-add of the LoRA branch into the base layer's output (`addmm_`), saving two passes over the
(tokens x out_features) activation.

`FastLoraLinear` *is* a peft `lora.Linear` (same parameters, same state-dict names, merge/unmerge, saving):
only `forward` differs, and only on the plain path — one active vanilla LoRA adapter, no dropout, frozen
`nn.Linear` base, CPU tensors, no autocast. Everything else (DoRA, dropout > 0, mixed adapter batches, GPUs,
quantized bases) runs peft's own forward. `tests/unit/models/test_lora_fast.py` checks outputs and gradients
against peft's path.
"""

from __future__ import annotations

import torch
from peft.tuners.lora import Linear as PeftLoraLinear
from torch import nn


class _PlainLoraLinear(torch.autograd.Function):
    """y = x W^T + b + s * (x A^T) B^T for a frozen W/b; gradients for x, A and B."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float):
        x2 = x.reshape(-1, x.shape[-1])
        h = x2 @ lora_a.t()  # (tokens, r)
        y = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
        y.addmm_(h, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(x2, weight, lora_a, lora_b, h)
        ctx.scaling = scaling
        ctx.x_shape = x.shape
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_y):
        x2, weight, lora_a, lora_b, h = ctx.saved_tensors
        s = ctx.scaling
        g = grad_y.reshape(-1, grad_y.shape[-1])
        # Fast layouts: the r-wide results are computed as (r x n) products and transposed back (views).
        grad_h = (lora_b.t() @ g.t()).t().mul_(s)  # (tokens, r) = s * g @ B
        grad_b = (h.t() @ g).mul_(s).t() if ctx.needs_input_grad[4] else None  # (out, r) = s * g^T @ h
        grad_a = grad_h.t() @ x2 if ctx.needs_input_grad[3] else None  # (r, in)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g @ weight
            grad_x.addmm_(grad_h, lora_a)
            grad_x = grad_x.view(ctx.x_shape)
        return grad_x, None, None, grad_a, grad_b, None


class FastLoraLinear(PeftLoraLinear):
    """peft's LoRA Linear with `_PlainLoraLinear` on the plain CPU path (see the module docstring)."""

    def _plain_adapter(self, x: torch.Tensor, args, kwargs) -> str | None:
        """The one active adapter when the fast path computes exactly what peft would; else None."""
        if args or any(v is not None for v in kwargs.values()) or self.disable_adapters or self.merged:
            return None
        active = [a for a in self.active_adapters if a in self.lora_A]
        if len(active) != 1 or active[0] in self.lora_variant:
            return None
        name = active[0]
        base, lora_a, lora_b = self.get_base_layer(), self.lora_A[name], self.lora_B[name]
        if type(base) is not nn.Linear or self.fan_in_fan_out or base.weight.requires_grad:
            return None
        if base.bias is not None and base.bias.requires_grad:
            return None
        if not isinstance(self.lora_dropout[name], nn.Identity) or lora_b.bias is not None:
            return None
        if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return None
        if not (x.dtype == base.weight.dtype == lora_a.weight.dtype == lora_b.weight.dtype):
            return None
        return name

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        name = self._plain_adapter(x, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.get_base_layer()
        return _PlainLoraLinear.apply(x, base.weight, base.bias, self.lora_A[name].weight,
                                      self.lora_B[name].weight, float(self.scaling[name]))


def register_fast_lora(peft_config) -> None:
    """Route plain `nn.Linear` targets to FastLoraLinear (peft's custom-module API; quantized bases excluded)."""
    # `_register_custom_module` is peft's documented hook for custom LoRA layers ("Custom models" in peft's docs)
    # but still spelled as private API. tests/unit/train/test_upstream_hooks.py fails loudly if peft renames it
    # or stops dispatching nn.Linear to the registered class; `lora.fast_path=false` is the way out meanwhile.
    peft_config._register_custom_module({nn.Linear: FastLoraLinear})
