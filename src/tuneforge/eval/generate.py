"""Generation evaluation: generation through the shared core (`models/generate.py`: continuous batching, a shared
few-shot head's KV cache computed once, stop strings checked on each row's decoded tail), cut at stop strings,
then score the texts.

Per-sample scores are kept for every metric so reports can give confidence intervals: mean metrics
(exact_match, f1, accuracy, rouge*) store one number per sample; corpus metrics (bleu, chrf, ter) store
sacrebleu's sufficient statistics per sample, so a bootstrap resample is a sum, not a re-tokenisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tuneforge.data.templates import render_prompt, stop_token_ids
from tuneforge.eval import metrics as M
from tuneforge.eval.mcq import resolve_max_length
from tuneforge.eval.tasks import GenSample, TaskSpec
from tuneforge.models.generate import Sampling, generate_text

CORPUS_METRICS = ("bleu", "chrf", "ter")


@dataclass
class GenSettings:
    batch_size: int = 8
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 1234
    max_length: int | None = None
    template: str = "auto"  # chat template name for `chat: true` tasks
    system: str | None = None  # the run's default system prompt (data.system): chat prompts render as it trained


def encode_prompt(tokenizer: Any, sample: GenSample, template: str = "auto", system: str | None = None) -> list[int]:
    """Plain prompt (tokenizer's default special tokens), or the chat-rendered prompt for `chat: true` tasks (with
    the run's default system prompt, so a model tuned with `data.system` is asked the way it was taught)."""
    if sample.chat:
        shots = [{"role": role, "content": text} for turn in sample.turns
                 for role, text in zip(("user", "assistant"), turn)]
        return render_prompt(tokenizer, [*shots, {"role": "user", "content": sample.prompt}], template, system)
    return tokenizer.encode(sample.prompt)


def generate(model: Any, tokenizer: Any, samples: Sequence[GenSample], settings: GenSettings,
             stop: Sequence[str] = (), max_new_tokens: int | None = None,
             progress: Callable[[int], None] | None = None) -> list[str]:
    """Generated continuation (prompt removed, cut at `stop`) for each sample, in input order.

    Chat-rendered prompts also stop at the template's end-of-turn token; prompts longer than the model's limit
    lose their left part (as in lm-eval)."""
    new = max_new_tokens or settings.max_new_tokens
    limit = resolve_max_length(model, tokenizer, settings.max_length)
    prompts = [encode_prompt(tokenizer, s, settings.template, settings.system)[-max(limit - new, 1):] for s in samples]
    stop_ids = stop_token_ids(tokenizer, settings.template) if any(s.chat for s in samples) else ()
    sampling = Sampling(max_new_tokens=new, temperature=settings.temperature if settings.do_sample else 0.0,
                        top_p=settings.top_p, top_k=0, seed=settings.seed)
    return generate_text(model, tokenizer, prompts, sampling=sampling, stop_ids=stop_ids, stop_strings=stop,
                         batch_size=settings.batch_size, on_batch=progress)


def _extract(spec: TaskSpec, text: str) -> str:
    if spec.extract == "number":
        return M.extract_number(text) or ""
    if spec.extract == "choice":
        return M.extract_choice(text) or ""
    return text


def score_generations(spec: TaskSpec, samples: Sequence[GenSample], outputs: Sequence[str]
                      ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(corpus-level metrics, per-sample records) for a generation task."""
    preds = [_extract(spec, o) for o in outputs]
    refs = [[_extract(spec, r) for r in s.references] for s in samples]
    per: list[dict[str, Any]] = [{"extracted": p} if spec.extract != "none" else {} for p in preds]
    summary: dict[str, float] = {}
    for name in spec.metrics:
        if name in ("exact_match", "f1"):
            vals = [M.per_sample_em_f1(p, r)[0 if name == "exact_match" else 1] for p, r in zip(preds, refs)]
            _put(per, name, vals)
            summary[name] = _mean(vals)
        elif name == "accuracy":
            # extracted answers compared exactly (after normalisation when nothing is extracted)
            if spec.extract == "none":
                vals = [M.per_sample_em_f1(p, r)[0] for p, r in zip(preds, refs)]
            else:
                vals = [float(p != "" and p in r) for p, r in zip(preds, refs)]
            _put(per, name, vals)
            summary[name] = _mean(vals)
        elif name in M.GSM8K_FILTERS:  # lm-eval's gsm8k filters on the raw output
            vals = [M.gsm8k_score(name, o, s.references) for o, s in zip(outputs, samples)]
            _put(per, name, vals)
            summary[name] = _mean(vals)
        elif name == "rouge":
            for t in M.ROUGE_TYPES:
                vals = [M.rouge([p], [r], types=(t,))[t] for p, r in zip(preds, refs)]
                _put(per, t, vals)
                summary[t] = _mean(vals)
        elif name in CORPUS_METRICS:
            summary[name] = getattr(M, name)(preds, refs)
            for rec, st in zip(per, corpus_stats(name, preds, refs)):
                rec.setdefault("stats", {})[name] = st
    return summary, per


def _put(per: list[dict], name: str, vals: list[float]) -> None:
    for rec, v in zip(per, vals):
        rec.setdefault("scores", {})[name] = v


def _mean(v: Sequence[float]) -> float:
    return sum(v) / len(v) if v else 0.0


def _sacrebleu_metric(name: str):
    import sacrebleu

    return {"bleu": sacrebleu.BLEU, "chrf": sacrebleu.CHRF, "ter": sacrebleu.TER}[name]()


def corpus_stats(name: str, preds: Sequence[str], refs: Sequence[Sequence[str]]) -> list[list[float]]:
    """sacrebleu's per-sentence sufficient statistics (summing rows gives the corpus score's input)."""
    metric = _sacrebleu_metric(name)
    streams = M._ref_streams(refs)
    stats = metric._extract_corpus_statistics(list(preds), streams)
    return [[float(x) for x in row] for row in stats]


def score_from_stats(name: str, summed: Sequence[float]) -> float:
    """Corpus score from summed sufficient statistics (same numbers as `metrics.bleu` & co.)."""
    metric = _sacrebleu_metric(name)
    row = [int(round(x)) if name == "bleu" else x for x in summed]
    return float(metric._compute_score_from_stats(row).score)
