"""Causal-LM loss computed only where there is a target.

In SFT about half of the tokens are prompt (label -100). The usual path projects every position onto the vocabulary
and throws those logits away; here only positions with a target reach the output head (`logits_to_keep` with a
boolean mask, or our own chunked head + cross-entropy for large vocabularies that never holds all logits at once).

The loss is a *sum* over target tokens divided by `num_items_in_batch`, the number of target tokens in the whole
optimizer step (all gradient-accumulation micro-batches), so batch 4 x accumulation 1 and batch 1 x accumulation 4
give the same loss and gradients (token-weighted, not an average of per-micro-batch means).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tuneforge.errors import ConfigError
from tuneforge.models.registry import base_model

IGNORE = -100


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Next-token targets of right-padded rows: position t predicts labels[t + 1]; the last position has none."""
    return F.pad(labels[..., 1:], (0, 1), value=IGNORE)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ W^T, target_i), computed chunk by chunk; gradients are formed in the forward pass.

    Peak extra memory is one chunk of logits instead of all of them; nothing is recomputed in backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int):
        need_h, need_w = hidden.requires_grad, weight.requires_grad
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        w = weight.float()
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for a in range(0, hidden.shape[0], chunk):
            h = hidden[a:a + chunk].float()
            t = targets[a:a + chunk]
            logits = h @ w.T
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_h or need_w:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place: d(sum CE)/d(logits) = p - onehot
                probs[torch.arange(len(t), device=t.device), t] -= 1.0
                if need_h:
                    grad_h[a:a + chunk] = (probs @ w).to(hidden.dtype)
                if need_w:
                    grad_w.addmm_(probs.T, h)
        ctx.save_for_backward(grad_h if need_h else None, grad_w if need_w else None)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk: int = 1024) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` against `targets` without materialising all logits."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, max(1, int(chunk)))


def _unwrap(model):
    model = getattr(model, "module", model)  # DDP / accelerate wrappers
    return base_model(model)


def _plain_head(model):
    """The output projection when it is a plain bias-free Linear (no logit soft-capping or scaling)."""
    base = _unwrap(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    cfg = getattr(base, "config", None)
    quirks = [k for k in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")
              if getattr(cfg, k, None) not in (None, 1, 1.0)]
    plain = type(head) is torch.nn.Linear and head.bias is None  # not a peft wrapper (trainable tokens, ...)
    if not plain or quirks or not hasattr(base, "get_decoder"):
        raise ConfigError("train.loss_chunk_size: this model's output head is not a plain linear layer"
                          + (f" ({', '.join(quirks)})" if quirks else ""), hint="set train.loss_chunk_size=0")
    return base.get_decoder(), head


def labelled_loss_sum(model, inputs: dict, chunk_size: int = 0):
    """(sum of token losses, number of target tokens, model outputs or None) for one micro-batch.

    `inputs` is a collated batch; `labels` / `shift_labels` are removed from it before the forward pass.
    """
    labels = inputs.pop("labels", None)
    targets = inputs.pop("shift_labels", None)
    if targets is None:
        if labels is None:
            raise ValueError("batch has neither labels nor shift_labels")
        targets = shift_labels(labels)
    keep = targets != IGNORE
    flat_targets = targets[keep]
    if chunk_size > 0:
        decoder, head = _plain_head(model)
        hidden = decoder(**inputs).last_hidden_state
        return chunked_linear_cross_entropy(hidden[keep], head.weight, flat_targets, chunk_size), keep.sum(), None
    try:
        outputs = model(**inputs, logits_to_keep=keep)
    except TypeError:  # a model without logits_to_keep: project every position, keep the targets below
        outputs = model(**inputs)
    logits = outputs.logits
    if logits.dim() != 2 or logits.shape[0] != flat_targets.shape[0]:
        logits = logits[keep]  # a model that ignores a boolean logits_to_keep returned every position
    loss = F.cross_entropy(logits.float(), flat_targets, reduction="sum")
    return loss, keep.sum(), outputs
