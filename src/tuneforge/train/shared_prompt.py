"""Preference pairs with one copy of their prompt: DPO's policy and reference forwards, without the waste.

TRL's DPOTrainer scores a batch as 2B right-padded rows (B chosen, then B rejected, each prompt + answer) through a
fused LM head that, off GPU, projects *every* position through the 49k-word output layer (prompt and padding
included: its compact path needs Triton). On a CPU that costs time and, in the head's float32 tiles, about 1 GiB of
peak memory per 3k positions. Here the same forward contract (TRL's `FusedCausalLMOutput`: per-token log-probs,
entropy, mean logit, top-1, zero where the label is -100) is met by:

- packing each pair into one segment of a single row: prompt, chosen answer, then the rejected answer with its
  positions restarting where the prompt ended, so it attends to the prompt and itself only (a *branch*, handled by
  `models/attention.py`); no padding, and the prompt runs once instead of twice;
- projecting only the answer tokens through the LM head, in row chunks (TRL's `ChunkedLogProbFunction`, so the
  numbers are the ones TRL's head computes).

The log-probs equal the padded batch's to float rounding (tests/unit/train/test_shared_prompt.py). Anything this does
not cover (a pair whose two rows disagree on the prompt, extra model inputs, soft-capped or scaled logits, router
logits, attention that cannot take branches, FSDP / DeepSpeed-sharded weights) goes to the forward TRL installed,
unchanged.
"""

from __future__ import annotations

import types

import torch

from tuneforge.models.attention import use_varlen_attention

# Answer tokens per call of the chunked head, and vocabulary entries per tile: its float32 tiles (and the few
# temporaries of the same size it makes off GPU) stay at ~32 MiB each.
HEAD_ROWS = 1024
VOCAB_TILE = 8192
_PASSED_KWARGS = {"input_ids", "attention_mask", "use_cache"}


def pack_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
    """One row holding every pair as prompt + chosen + rejected, or None when the batch is not a set of pairs.

    Returns (ids (1, T), position_ids (1, T), source (2B, L-1) long): source[r, t] is the packed index of the hidden
    state that predicts token t+1 of padded row r, -1 where that token is not scored (label -100).
    """
    rows, length = input_ids.shape
    if rows % 2 or rows == 0:
        return None
    pairs = rows // 2
    scored = labels[:, 1:] != -100
    lengths = attention_mask.sum(1).tolist()
    if attention_mask.shape != input_ids.shape or any(
            bool(attention_mask[r, :n].eq(0).any()) for r, n in enumerate(lengths)):
        return None  # not right-padded
    starts = [int(torch.nonzero(labels[r] != -100)[0]) if bool((labels[r] != -100).any()) else lengths[r]
              for r in range(rows)]
    ids, pos, source = [], [], torch.full((rows, length - 1), -1, dtype=torch.long)
    at = 0
    for i in range(pairs):
        c, r = i, pairs + i
        p = starts[c]
        if p == 0 or starts[r] != p or not torch.equal(input_ids[c, :p], input_ids[r, :p]):
            return None  # the two rows of a pair must share their prompt token for token
        lc, lr = lengths[c], lengths[r]
        ids += [input_ids[c, :lc], input_ids[r, p:lr]]
        pos += [torch.arange(lc), torch.arange(p, lr)]
        # Chosen: the packed row continues the padded one. Rejected: its first token is predicted from the prompt's
        # last state, the others from the rejected branch, which starts after the chosen answer.
        source[c, :lc - 1] = torch.arange(at, at + lc - 1)
        source[r, p - 1] = at + p - 1
        source[r, p:lr - 1] = torch.arange(at + lc, at + lc + lr - 1 - p)
        at += lc + lr - p
    source = source.masked_fill(~scored, -1)
    if bool((scored & (source < 0)).any()):
        return None  # a label outside the attended tokens: leave the batch to the padded forward
    return torch.cat(ids)[None], torch.cat(pos)[None], source


def _plain_logits(text_config) -> bool:
    """True when the LM head output is `hidden @ W.T` (no soft-capping or scale factor our path would miss)."""
    names = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
    return all(getattr(text_config, n, None) in (None, 1.0) for n in names)


def shared_prompt_forward(model, input_ids, attention_mask, labels, outputs: tuple[str, ...]):
    """TRL's fused-head output for a batch of pairs, computed from one packed row; None when it does not apply."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    packed = pack_pairs(input_ids, attention_mask, labels)
    if packed is None:
        return None
    ids, pos, source = packed
    ids, pos, source = ids.to(input_ids.device), pos.to(input_ids.device), source.to(input_ids.device)
    hidden = model.base_model(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state[0]
    lm_head = model.get_output_embeddings()
    mask = source >= 0
    picked = hidden.index_select(0, source[mask])
    targets = labels[:, 1:][mask]
    parts = [ChunkedLogProbFunction.apply(picked[s:s + HEAD_ROWS], lm_head.weight, lm_head.bias,
                                          targets[s:s + HEAD_ROWS], 1.0, VOCAB_TILE, None, 1.0, outputs)
             for s in range(0, picked.shape[0], HEAD_ROWS)]
    fields = []
    for k in range(5):  # log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 (None when not asked for)
        vals = [part[k] for part in parts]
        if vals and vals[0] is None:
            fields.append(None)
            continue
        flat = torch.cat(vals) if vals else picked.new_zeros(0)
        fields.append(flat.new_zeros(mask.shape).masked_scatter(mask, flat))
    log_probs = fields[0]
    loss = -log_probs.sum() / mask.sum().clamp(min=1)
    return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=fields[1], log_sum_sq_probs=fields[2],
                               mean_logits=fields[3], is_top1=fields[4], label_mask=mask)


def _branches_honoured(model, fused) -> bool:
    """One two-pair probe: does the packed forward give TRL's padded log-probs on this architecture? (An attention
    layer that never sees position_ids would let the rejected answer attend to the chosen one.)"""
    g = torch.Generator().manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    device = model.get_output_embeddings().weight.device
    pairs = [(5, 3, 4), (2, 4, 2)]
    rows = [torch.randint(3, vocab, (p + a,), generator=g) for p, c, r in pairs for a in (c, r)]
    rows = [rows[0], rows[2], rows[1], rows[3]]  # chosen rows first, then rejected, as TRL's collator orders them
    for i, (p, _, _) in enumerate(pairs):
        rows[2 + i][:p] = rows[i][:p]
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([r, r.new_zeros(width - len(r))]) for r in rows]).to(device)
    mask = torch.stack([torch.arange(width) < len(r) for r in rows]).long().to(device)
    prompt = torch.tensor([p for p, _, _ in pairs] * 2)[:, None]
    labels = ids.masked_fill((torch.arange(width)[None] < prompt).to(device) | (mask == 0), -100)
    with torch.no_grad():
        want = fused(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False, fused_lm_head=True)
        got = shared_prompt_forward(model, ids, mask, labels, ("log_probs",))
    return got is not None and torch.allclose(got.log_probs, want.log_probs, atol=1e-3, rtol=1e-3)


def install_shared_prompt_head(model, outputs: tuple[str, ...]) -> bool:
    """Put the shared-prompt path in front of the fused head TRL installed on `model` (the HF model, not a PEFT
    wrapper). Returns False, leaving TRL's head alone, when the model cannot take it."""
    fused = model.forward
    if not _plain_logits(model.config.get_text_config()) or not use_varlen_attention(model):
        return False
    if not _branches_honoured(model, fused):
        model.set_attn_implementation("sdpa")  # nothing packed will reach it: back to the stock attention
        return False

    def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        plain = all(k in _PASSED_KWARGS or v is None for k, v in kwargs.items())  # PEFT passes unused keys as None
        if fused_lm_head and not args and labels is not None and plain \
                and kwargs.get("input_ids") is not None and kwargs.get("attention_mask") is not None:
            out = shared_prompt_forward(self, kwargs["input_ids"], kwargs["attention_mask"], labels, outputs)
            if out is not None:
                return out
        return fused(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)

    model.forward = types.MethodType(forward, model)
    return True


def share_prompts(trainer) -> bool:
    """Install the shared-prompt path on a DPOTrainer's policy (and its reference copy, if it holds one), with the
    per-token fields TRL's own head was asked for. Returns whether the policy got it."""
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        return False  # sharded weights: TRL's head gathers them, ours reads the LM head as one tensor
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    if getattr(trainer, "use_weighting", False):
        outputs += ("log_sum_sq_probs",)
    policy = trainer.accelerator.unwrap_model(trainer.model)
    policy = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    if trainer.ref_model is not None:
        install_shared_prompt_head(trainer.accelerator.unwrap_model(trainer.ref_model), ("log_probs",))
    return install_shared_prompt_head(policy, outputs)
