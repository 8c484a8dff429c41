"""Multiple-choice scoring by log-likelihood, with each shared context computed once.

Tokenisation follows lm-evaluation-harness exactly (so per-sample choices agree): trailing whitespace of the context
moves into the continuation, `context + continuation` is encoded whole and the continuation tokens are what follows
the separately encoded context; an empty context is replaced by the BOS (else EOS) token.

Two ways to run the model:
- shared (default): one row per question, `context + choice_1[:-1] + choice_2[:-1] + ...`, with a 4D attention
  mask in which every choice block sees the context and itself only, and position ids restarting after the
  context for each block. The context is encoded once and single-token choices cost nothing extra.
- separate: one row per (question, choice), lm-eval's layout; used as the reference and as a fallback for models
  that ignore custom 4D masks (checked once per run in `auto` mode).
Rows are left-padded and the LM head runs only on the last positions (`logits_to_keep`).
"""

from __future__ import annotations

import inspect
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

from tuneforge.eval.prefix import PrefixStore, compute_prefix, prefix_groups, row_cache
from tuneforge.eval.tasks import McqSample
from tuneforge.models.registry import base_model

log = logging.getLogger(__name__)

_DEFAULT_MAX_LENGTH = 2048
MIN_PREFIX_SHARE = 0.25  # reuse a shared prefix only when it is at least this share of its rows
_PROBE_TOKENS = 24  # context tokens used by the one-off shared-vs-separate check
# model -> (scoring mode, prefix reuse works: True / False / None = not checked)
_VERDICTS: "weakref.WeakKeyDictionary[Any, tuple[str, bool | None]]" = weakref.WeakKeyDictionary()


@dataclass
class Encoded:
    context: list[int]
    continuations: list[list[int]]


@dataclass
class McqScore:
    loglikelihoods: list[float]
    greedy: list[bool]  # continuation is the greedy decode
    pred: int
    pred_norm: int  # argmax of log-likelihood / choice length in characters (lm-eval's acc_norm)
    acc: float
    acc_norm: float


def resolve_max_length(model: Any, tokenizer: Any, override: int | None = None) -> int:
    """Model context size: config n_positions / max_position_embeddings / n_ctx, else tokenizer limit, else 2048."""
    if override:
        return override
    cfg = getattr(model, "config", None)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        if cfg is not None and isinstance(getattr(cfg, attr, None), int):
            return getattr(cfg, attr)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 1_000_000:
        return limit
    return _DEFAULT_MAX_LENGTH


class McqScorer:
    """Log-likelihood of each choice of each question, batched."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, max_length: int | None = None,
                 mode: str = "auto", prefix_cache: bool = True, batch_tokens: int | None = None):
        if mode not in {"auto", "shared", "separate"}:
            raise ValueError(f"mode must be auto, shared or separate, not {mode!r}")
        self.model, self.tok = model, tokenizer
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.prefix_cache = prefix_cache
        self.max_length = resolve_max_length(model, tokenizer, max_length)
        self.mode = mode
        base = base_model(model)
        self._keep_kw = "logits_to_keep" in inspect.signature(base.forward).parameters
        if mode == "auto" and getattr(getattr(base, "config", None), "_attn_implementation", "") in {
                "flash_attention_2", "flash_attention_3"}:
            self.mode = "separate"  # flash kernels take no custom mask
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id

    # ---------------------------------------------------------------------------------------- tokenisation
    def _encode(self, text: str) -> list[int]:
        bos = self.tok.bos_token
        special = not (bos and text.startswith(bos))  # don't add a second BOS
        return self.tok.encode(text, add_special_tokens=special)

    def encode(self, context: str, continuations: Sequence[str]) -> Encoded:
        """lm-eval's context/continuation split, with the context encoded once for all choices."""
        if context == "":
            conts = []
            for c in continuations:
                ids = self.tok.encode(c, add_special_tokens=False)
                conts.append(ids[1:] if ids and ids[0] == self.prefix_id else ids)
            return Encoded([self.prefix_id], conts)
        n_spaces = len(context) - len(context.rstrip())
        moved = context[len(context) - n_spaces:] if n_spaces else ""
        ctx = context[: len(context) - n_spaces]
        ctx_ids = self._encode(ctx)
        conts = [self._encode(ctx + moved + c)[len(ctx_ids):] for c in continuations]
        for c, ids in zip(continuations, conts):
            if not ids:
                raise ValueError(f"continuation {c!r} encodes to no tokens after the context")
        return Encoded(ctx_ids, conts)

    # -------------------------------------------------------------------------------------------- scoring
    def score(self, samples: Sequence[McqSample], delimiter: str = " ",
              progress: Any = None) -> list[McqScore]:
        """Score every sample; `progress(n_done)` is called after each batch."""
        encoded = [self.encode(s.context, [delimiter + c for c in s.choices]) for s in samples]
        lls, greedy = self.score_encoded(encoded, progress)
        return [_result(s, ll, gr) for s, ll, gr in zip(samples, lls, greedy)]

    def score_encoded(self, encoded: Sequence[Encoded], progress: Any = None
                      ) -> tuple[list[list[float]], list[list[bool]]]:
        """Log-likelihood of every continuation after its context (token ids already), and whether it is the greedy
        decode; `progress(n_done)` after each batch. Preference tasks call this with (prompt, [chosen, rejected])."""
        import torch

        encoded = list(encoded)
        if self.mode == "auto":
            # how a model treats custom masks and cached prefixes is a property of the model, not of the task:
            # check once per model object, not once per task (the probe is a few forwards)
            verdict = _VERDICTS.get(self.model)
            if verdict is None or (self.prefix_cache and verdict[1] is None):
                asked = self.prefix_cache
                self.mode = self._check_shared(encoded)
                _VERDICTS[self.model] = (self.mode, self.prefix_cache if asked else None)
            else:
                self.mode, self.prefix_cache = verdict[0], self.prefix_cache and bool(verdict[1])
        lls: list[list[float] | None] = [None] * len(encoded)
        greedy: list[list[bool] | None] = [None] * len(encoded)
        done = 0
        with torch.inference_mode():
            for prefix, batch in self._plan(encoded):
                for j, (ll, gr) in zip(batch, self._run(encoded, batch, prefix)):
                    lls[j], greedy[j] = ll, gr
                done += len(batch)
                if progress:
                    progress(done)
        return lls, greedy

    def _run(self, encoded: list[Encoded], batch: list[int], prefixes: list | None):
        if self.mode == "separate":
            return self._separate_batch([encoded[j] for j in batch])
        return self._shared_batch([encoded[j] for j in batch], prefixes)

    def _plan(self, encoded: list[Encoded]):
        """Yield (per-row cached prefixes or None, question indices). Shared mode: questions whose contexts start
        with the same head (>= MIN_PREFIX tokens) reuse that head's KV cache; separate: batches by length."""
        if self.mode == "separate" or not self.prefix_cache:
            order = sorted(range(len(encoded)), key=lambda i: -self._row_len(encoded[i]))
            for idx in self._batches(encoded, order):
                yield None, idx
            return
        contexts = [self._truncate(e) for e in encoded]
        groups = prefix_groups(contexts)
        store = PrefixStore(self.model, contexts, groups, self._keep_kw)
        if store.all_fit(rows=self.batch_size):
            # every head stays cached, so batches are cut by what is left after each head, across heads: full and
            # with little padding (MMLU 0-shot: ~16-token subject heads, 10 questions each)
            left = [self._row_len(e) - store.plen(i) for i, e in enumerate(encoded)]
            order = sorted(range(len(encoded)), key=lambda i: -left[i])
            for idx in self._batches(encoded, order, left):
                yield [store.get(i) for i in idx], idx
                store.done(idx)
            return
        # heads too big to keep together (a long few-shot head, many subjects): one head's questions at a time
        alone: list[int] = []
        for plen, members in groups:
            mean_len = sum(self._row_len(encoded[i]) for i in members) / len(members)
            if not plen or plen < MIN_PREFIX_SHARE * mean_len or store.get(members[0]) is None:
                alone += members  # a short head saves less than the batches cut at its borders cost
                continue
            members = sorted(members, key=lambda i: -self._row_len(encoded[i]))
            for idx in self._batches(encoded, members):
                yield [store.get(i) for i in idx], idx
                store.done(idx)
        alone.sort(key=lambda i: -self._row_len(encoded[i]))
        for idx in self._batches(encoded, alone):
            yield None, idx

    def _batches(self, encoded: list[Encoded], order: list[int], lengths: Sequence[int] | None = None):
        """Consecutive slices of `order`: at most batch_size rows (a question is one row in shared mode, one per
        choice in separate mode) and at most batch_tokens padded tokens per forward — by default as many as
        batch_size rows of the mean length, so the longest rows go in smaller batches instead of padding others."""
        if not order:
            return
        length = (lambda j: lengths[j]) if lengths is not None else (lambda j: self._row_len(encoded[j]))
        budget = self.batch_tokens or self.batch_size * sum(map(length, order)) / len(order)
        i = 0
        while i < len(order):
            rows, width, n = 0, 0, 0
            for j in order[i:]:
                k = 1 if self.mode == "shared" else len(encoded[j].continuations)
                w = max(width, length(j))
                if n and (rows + k > self.batch_size or (rows + k) * w > budget):
                    break
                rows, width, n = rows + k, w, n + 1
            yield order[i: i + n]
            i += n

    def _row_len(self, e: Encoded) -> int:
        if self.mode == "shared":
            return len(e.context) + sum(len(c) - 1 for c in e.continuations)
        return len(e.context) + max(len(c) for c in e.continuations) - 1

    def _truncate(self, e: Encoded) -> list[int]:
        """Left-truncate the context so the longest continuation fits in max_length."""
        keep = self.max_length + 1 - max(len(c) for c in e.continuations)
        if keep < 1:
            raise ValueError(f"a choice is longer ({max(len(c) for c in e.continuations)} tokens) than "
                             f"max_length {self.max_length}")
        return e.context[-keep:]

    def _forward(self, ids, mask, positions, keep: int, cache=None):
        kw = dict(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=cache is not None)
        if cache is not None:
            kw["past_key_values"] = cache
        if self._keep_kw:
            kw["logits_to_keep"] = keep
        logits = self.model(**kw).logits
        return logits[:, -keep:, :].float().log_softmax(-1)

    def _shared_batch(self, batch: list[Encoded], prefixes: list | None = None
                      ) -> list[tuple[list[float], list[bool]]]:
        """One row per question: context + every choice but its last token, each choice block seeing the context
        and itself only. prefixes[b] = (length, KV) of a cached head: row b starts after it (same positions)."""
        import torch

        prefixes = prefixes or [None] * len(batch)
        plens = [p[0] if p else 0 for p in prefixes]
        rows, segs, poss, targets, ctx_lens = [], [], [], [], []
        for e, plen in zip(batch, plens):
            ctx = self._truncate(e)[plen:]
            n_ctx = plen + len(ctx)
            ctx_lens.append(len(ctx))
            row, seg, pos = list(ctx), [0] * len(ctx), list(range(plen, n_ctx))
            tgt = []  # per choice: [(row index predicting the token, token id)]
            for i, cont in enumerate(e.continuations, 1):
                start = len(row)
                tgt.append([(len(ctx) - 1, cont[0])] + [(start + j - 1, t) for j, t in enumerate(cont[1:], 1)])
                row += cont[:-1]
                seg += [i] * (len(cont) - 1)
                pos += range(n_ctx, n_ctx + len(cont) - 1)
            rows.append(row), segs.append(seg), poss.append(pos), targets.append(tgt)
        width = max(map(len, rows))
        keep = max(len(r) - n + 1 for r, n in zip(rows, ctx_lens))
        dev = self.model.device
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        seg = torch.full((len(rows), width), -1, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        for b, (r, s, p) in enumerate(zip(rows, segs, poss)):
            ids[b, width - len(r):] = torch.tensor(r)
            seg[b, width - len(r):] = torch.tensor(s)
            pos[b, width - len(r):] = torch.tensor(p)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        # a token sees the earlier context (segment 0) and earlier tokens of its own segment; pads see pads
        allowed = causal & ((seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None]))
        slots, cache = row_cache(prefixes)
        if slots:  # real tokens see their row's head (the last plen slots); pads see every slot (no empty row)
            filled = torch.arange(slots)[None, :] >= slots - torch.tensor(plens)[:, None]
            allowed = torch.cat([filled[:, None, :] | (seg[:, :, None] == -1), allowed], dim=-1)
        dtype = self.model.dtype if self.model.dtype.is_floating_point else torch.float32
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
        logp = self._forward(ids.to(dev), mask.to(dev), pos.to(dev), keep, cache)
        picks = [[(q, keep - len(r) + i, t) for i, t in ch] for q, (r, tg) in enumerate(zip(rows, targets)) for ch in tg]
        owner = [q for q, tg in enumerate(targets) for _ in tg]
        return _group(_gather(logp, picks), owner, len(batch))

    def _separate_batch(self, batch: list[Encoded]) -> list[tuple[list[float], list[bool]]]:
        import torch

        rows, conts, owner = [], [], []
        for q, e in enumerate(batch):
            for cont in e.continuations:
                rows.append((e.context + cont)[-(self.max_length + 1):][:-1])
                conts.append(cont)
                owner.append(q)
        width = max(map(len, rows))
        keep = max(map(len, conts))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r):] = torch.tensor(r)
            att[b, width - len(r):] = 1
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        dev = self.model.device
        logp = self._forward(ids.to(dev), att.to(dev), pos.to(dev), keep)
        picks = [[(b, keep - len(cont) + j, t) for j, t in enumerate(cont)] for b, cont in enumerate(conts)]
        return _group(_gather(logp, picks), owner, len(batch))

    def _check_shared(self, encoded: list[Encoded]) -> str:
        """Score a probe question both ways; fall back to separate rows if the model ignores the 4D mask, and
        score without prefix reuse if the cached-prefix path disagrees (a cache layout we don't handle)."""
        import torch

        probe = [e for e in encoded if len(e.continuations) > 1][:1] or encoded[:1]
        if not probe:
            return "shared"
        # one question and the end of its context are enough to see whether the mask is honoured; a full 5-shot
        # context scored one row per choice would cost more than scoring a few hundred questions' prefixes
        probe = [Encoded(e.context[-_PROBE_TOKENS:], e.continuations) for e in probe]
        with torch.inference_mode():
            try:
                a = self._shared_batch(probe)
            except Exception as e:  # a model whose attention rejects 4D masks
                log.warning("shared-context scoring failed (%s); using one row per choice", str(e)[:200])
                return "separate"
            b = self._separate_batch(probe)
            if _worst(a, b) > 0.05:
                log.warning("shared-context scores differ from per-choice scores by %.3g; using one row per choice",
                            _worst(a, b))
                return "separate"
            ctx = self._truncate(probe[0])
            if self.prefix_cache and len(ctx) > 2:
                # the probe twice in one batch, after heads of different lengths: per-row heads, padded slots
                try:
                    heads = [(n, compute_prefix(self.model, ctx[:n], self._keep_kw)) for n in
                             (len(ctx) // 2, len(ctx) // 3)]
                    c = (self._shared_batch(probe * 2, heads) if all(kv is not None for _, kv in heads)
                         else None)
                except Exception as e:  # noqa: BLE001 - any failure means: don't reuse prefixes with this model
                    log.warning("prefix reuse failed (%s); scoring every context in full", str(e)[:200])
                    c = None
                if c is None or _worst(c, b * 2) > 0.05:
                    self.prefix_cache = False
        return "shared"


def _worst(a, b) -> float:
    # numerical noise (fp32: ~1e-4, bf16: ~1e-2) is far below what leaking attention between choices gives
    return max(abs(x - y) - 0.002 * abs(y) for (la, _), (lb, _) in zip(a, b) for x, y in zip(la, lb))


def _gather(logp, picks: list[list[tuple[int, int, int]]]) -> list[tuple[float, bool]]:
    """Sum of log-probs and "all tokens greedy" per continuation; picks[k] = [(row, kept position, token)]."""
    import torch

    flat = [x for ch in picks for x in ch]
    idx = torch.tensor(flat, device=logp.device)
    rows = logp[idx[:, 0], idx[:, 1]]  # (n_tokens, vocab)
    tok_lp = rows.gather(-1, idx[:, 2:3])[:, 0]
    hit = rows.argmax(-1) == idx[:, 2]
    seg = torch.tensor([k for k, ch in enumerate(picks) for _ in ch], device=logp.device)
    sums = torch.zeros(len(picks), dtype=tok_lp.dtype, device=logp.device).index_add_(0, seg, tok_lp)
    misses = torch.zeros(len(picks), dtype=torch.long, device=logp.device).index_add_(0, seg, (~hit).long())
    return list(zip(sums.tolist(), (misses == 0).tolist()))


def _group(values: list[tuple[float, bool]], owner: list[int], n: int) -> list[tuple[list[float], list[bool]]]:
    out: list[tuple[list[float], list[bool]]] = [([], []) for _ in range(n)]
    for (ll, gr), q in zip(values, owner):
        out[q][0].append(ll)
        out[q][1].append(gr)
    return out


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def _result(sample: McqSample, lls: list[float], greedy: list[bool]) -> McqScore:
    pred = _argmax(lls)
    pred_norm = _argmax([ll / len(c) for ll, c in zip(lls, sample.choices)])
    return McqScore(lls, greedy, pred, pred_norm, float(pred == sample.gold), float(pred_norm == sample.gold))


def summarize(scores: Sequence[McqScore]) -> dict[str, float]:
    """Mean acc / acc_norm over samples."""
    n = max(len(scores), 1)
    return {"acc": sum(s.acc for s in scores) / n, "acc_norm": sum(s.acc_norm for s in scores) / n}


def mcq_metric_names(spec: Any, samples: Sequence[McqSample]) -> list[str]:
    """The task's MCQ metrics; acc_norm is left out when every question's choices have equal lengths (then it
    can only repeat acc, e.g. MMLU's single letters)."""
    names = list(spec.metrics)
    if "acc_norm" in names and len(names) > 1 and all(len({len(c) for c in s.choices}) == 1 for s in samples):
        names.remove("acc_norm")
    return names


def mc2_score(loglikelihoods: list[float], labels: list[int]) -> float:
    """TruthfulQA MC2: probability mass of the true answers, normalised over all answers (lm-eval's definition)."""
    import math

    top = max(loglikelihoods)
    probs = [math.exp(x - top) for x in loglikelihoods]
    return sum(p for p, lab in zip(probs, labels) if lab == 1) / sum(probs)
