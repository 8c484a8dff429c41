"""Preference tasks (`type: preference`): how often a model prefers the chosen answer of a held-out pair.

Rows are read by the dpo stage's reader (`eval/pairs.py`, any layout it accepts) and tokenized by its tokenizer
code, so the prompt / answer boundary, the template and the cutoff are the ones training used. Answer log-probs come
from the MCQ scorer (a pair is a context with two continuations). Metrics:
- a causal LM (policy): `logp_acc`, log pi(chosen) > log pi(rejected) (answer log-probs summed over the answer
  tokens); with a reference, the implicit DPO reward r = beta * (log pi - log pi_ref): `reward_acc`,
  r(chosen) > r(rejected) (strict, as TRL's `rewards/accuracies`), and `reward_margin`, the mean r(chosen) -
  r(rejected). The reference is the target's base with its adapter disabled (no second copy), or the task's
  `reference:` model; a target without either has no implicit reward (it would be measured against itself).
- a reward model (one-logit sequence classifier, an rm run): `reward_acc` = score(chosen) > score(rejected) and
  `reward_margin` = the mean score difference.
Pairs dropped on reading (identical, empty answer) or tokenizing (cutoff) are counted in the results.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from tuneforge.config.schema import DataConfig, ModelConfig
from tuneforge.data.preference import PairSample
from tuneforge.data.preference_tokenize import TokenStats, tokenize_pair
from tuneforge.data.templates import ensure_template_tokens
from tuneforge.errors import DataError
from tuneforge.eval.logprobs import is_reward_model, sequence_scores
from tuneforge.eval.mcq import Encoded, McqScorer
from tuneforge.eval.pairs import PairSamples
from tuneforge.models.heads import saved_score_outputs
from tuneforge.models.load import grow_vocab, load_model
from tuneforge.models.registry import base_model


def load_reward_model(model_cfg: ModelConfig, tokenizer):
    """A saved one-output sequence classifier (an rm run) with its score head; None for any other model."""
    if saved_score_outputs(model_cfg.path, model_cfg.adapter) != 1:
        return None
    from transformers import AutoModelForSequenceClassification

    model = load_model(model_cfg, AutoModelForSequenceClassification, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token (as in training)
    return model


@dataclass
class PrefContext:
    """What scoring a preference task needs besides the model: the target's template and system prompt, the
    cutoff, the batch size and the target's model config (for a `reference:` model's dtype)."""

    template: str
    system: str | None
    cutoff_len: int
    batch_size: int
    model_cfg: ModelConfig


def tokenize_for(tokenizer, samples: PairSamples, ctx: PrefContext) -> tuple[list[tuple[str, PairSample, dict]],
                                                                             dict[str, int], list[str]]:
    """(id, sample, token rows) of the pairs kept under the cutoff, all drops by reason, their warnings."""
    d = DataConfig(template=ctx.template, system=ctx.system, cutoff_len=ctx.cutoff_len, overlong="truncate")
    ensure_template_tokens(tokenizer, ctx.template)
    st = TokenStats(len(samples))
    kept = [(i, s, r) for i, s in samples.pairs if (r := tokenize_pair(s, tokenizer, d, st)) is not None]
    counts = Counter(samples.dropped)
    counts.update({k.removeprefix("dropped_"): v for k, v in st.c.items() if k.startswith("dropped_")})
    if st.c["truncated"]:
        counts["truncated_to_cutoff"] = st.c["truncated"]
    if not kept:
        raise DataError(f"no preference pairs left after tokenizing with cutoff {ctx.cutoff_len}",
                        file=samples.pairs[0][1].file, hint="; ".join(st.warnings[:3]))
    return kept, dict(counts), samples.warnings + st.warnings


def run_preference(model, tokenizer, samples: PairSamples, metrics: list[str], beta: float, reference: str | None,
                   ctx: PrefContext, progress: Callable[[int], None] | None = None
                   ) -> tuple[dict, list[dict], str, dict]:
    """(metrics, per-pair records, scoring mode, extra result fields: drops and what the reward was)."""
    kept, dropped, warnings = tokenize_for(tokenizer, samples, ctx)
    if len(tokenizer) > base_model(model).get_input_embeddings().weight.shape[0]:
        grow_vocab(base_model(model), len(tokenizer))  # template tokens the tokenizer just gained
    if is_reward_model(model):
        sides = [r["prompt_ids"] + r[f"{side}_ids"] for side in ("chosen", "rejected") for _, _, r in kept]
        done = _Done(progress, len(sides), len(samples))
        scores = sequence_scores(model, tokenizer, sides, 2 * ctx.batch_size, done)  # batch_size counts pairs
        records, mode = _rm_records(kept, scores), "reward model"
        note = "reward = the reward model's score of prompt + answer"
    else:
        pairs = [Encoded(r["prompt_ids"], [r["chosen_ids"], r["rejected_ids"]]) for _, _, r in kept]
        passes = 2 if reference or _has_adapter(model) else 1
        done = _Done(progress, passes * len(pairs), len(samples))
        policy = pair_logprobs(model, tokenizer, pairs, ctx, done)
        ref, note = _reference_logprobs(model, tokenizer, pairs, reference, ctx, done)
        records, mode = _policy_records(kept, policy, ref, beta), "implicit reward" if ref else "log-likelihood"
    names = [m for m in metrics if m in records[0]["scores"]]
    if not names:
        raise DataError(f"none of the metrics {metrics} apply: {note}", file=samples.pairs[0][1].file)
    for r in records:  # main metric first: the comparison's "answers changed" reads the first score
        r["scores"] = {m: r["scores"][m] for m in names}
    summary = {m: sum(r["scores"][m] for r in records) / len(records) for m in names}
    extra = {"reward": note, "beta": beta if mode == "implicit reward" else None, "pairs_read": len(samples),
             "dropped": dropped, "warnings": warnings[:20]}
    return summary, records, mode, extra


def _has_adapter(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


class _Done:
    """Progress in pairs (what the task counts) from units (sequences or pairs) scored over every pass (policy,
    then reference). Called with the units finished since the last call."""

    def __init__(self, progress: Callable[[int], None] | None, units: int, pairs: int):
        self.progress, self.units, self.pairs, self.n = progress, units, pairs, 0

    def __call__(self, k: int) -> None:
        self.n += k
        if self.progress:
            self.progress(self.n * self.pairs // max(self.units, 1))


def pair_logprobs(model, tokenizer, pairs: list[Encoded], ctx: PrefContext, done: _Done) -> list[float]:
    """Summed answer log-probs, every chosen answer then every rejected one, by the MCQ scorer (a pair is a context
    with two continuations: the prompt is run once for both, batches under its token budget)."""
    scorer = McqScorer(model, tokenizer, batch_size=ctx.batch_size, max_length=ctx.cutoff_len)
    finished = [0]

    def pass_progress(n_done: int) -> None:  # the scorer reports a running total per call
        done(n_done - finished[0])
        finished[0] = n_done

    lls, _ = scorer.score_encoded(pairs, pass_progress)
    return [ll[0] for ll in lls] + [ll[1] for ll in lls]


def _reference_logprobs(model, tokenizer, pairs: list[Encoded], reference: str | None, ctx: PrefContext,
                        done: _Done) -> tuple[list[float] | None, str]:
    """Reference log-probs and a line saying where they came from (None: no reference for this target)."""
    if reference:
        ref_model = load_model(ctx.model_cfg.model_copy(update={"path": reference, "gguf_file": None,
                                                                "adapter": None, "tokenizer": None}))
        grow_vocab(ref_model, len(tokenizer))
        ref = pair_logprobs(ref_model.eval(), tokenizer, pairs, ctx, done)
        return ref, f"implicit reward against the reference model {reference}"
    if _has_adapter(model):
        with model.disable_adapter():  # the base the adapter was trained from: DPO's LoRA reference
            ref = pair_logprobs(model, tokenizer, pairs, ctx, done)
        return ref, "implicit reward against the base model (adapter disabled)"
    return None, ("no reference: the model has no adapter and the task sets no `reference:`, so logp_acc only "
                  "(an implicit reward against itself would be 0)")


def _policy_records(kept, policy: list[float], ref: list[float] | None, beta: float) -> list[dict]:
    n = len(kept)
    records = []
    for k, (sid, s, _) in enumerate(kept):
        lc, lr = policy[k], policy[n + k]
        rec: dict[str, Any] = {**_pair_fields(sid, s), "logp_chosen": round(lc, 5), "logp_rejected": round(lr, 5)}
        scores = {"logp_acc": float(lc > lr)}
        if ref is not None:
            rc, rr = beta * (lc - ref[k]), beta * (lr - ref[n + k])
            rec.update(ref_logp_chosen=round(ref[k], 5), ref_logp_rejected=round(ref[n + k], 5),
                       reward_chosen=rc, reward_rejected=rr)
            scores = {"reward_acc": float(rc > rr), "reward_margin": rc - rr, **scores}
        rec["pred"] = "chosen" if (rc > rr if ref is not None else lc > lr) else "rejected"
        records.append({**rec, "scores": scores})
    return records


def _rm_records(kept, scores: list[float]) -> list[dict]:
    n = len(kept)
    records = []
    for k, (sid, s, _) in enumerate(kept):
        sc, sr = scores[k], scores[n + k]
        records.append({**_pair_fields(sid, s), "score_chosen": sc, "score_rejected": sr,
                        "pred": "chosen" if sc > sr else "rejected",
                        "scores": {"reward_acc": float(sc > sr), "reward_margin": sc - sr}})
    return records


def _pair_fields(sid: str, s: PairSample) -> dict:
    return {"id": sid, "file": s.file, "line": s.line, "prompt": s.prompt, "chosen": s.chosen,
            "rejected": s.rejected}
