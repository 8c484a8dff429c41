"""`tuneforge export --format hf`: an adapter merged into its base (or a full run's model re-saved) as sharded
safetensors + tokenizer + chat template + generation config, proven equal to the source by its logits.

The merged copy is reloaded from disk with plain `transformers` (no peft, no tuneforge) and compared with the
adapter-on-base model on sample text: max abs logit difference for float32, perplexity for float16/bfloat16.

For float32 the gate is the difference of the two models' *exact* logits (float64 forwards of the float32
weights): that is what the merge itself changed. The float32-vs-float32 difference is reported beside it with
the float32 noise floor (the adapter model's own float32 vs float64 logits), because two algebraically equal
float32 forwards already differ by about that much on a 30-layer model. Models too big for two float64 copies
fall back to the float32 comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tuneforge.data.templates import stop_token_ids
from tuneforge.errors import ConfigError
from tuneforge.export.report import measure, write_report
from tuneforge.export.source import (
    Source,
    auto_class,
    chat_template,
    load_source,
    open_source,
)
from tuneforge.export.verify import (
    all_logits,
    check,
    exact_logits,
    load_texts,
    max_abs_diff,
    perplexity,
    sample_ids,
)
from tuneforge.models.load import resolve_model_path
from tuneforge.runs import atomic_dir, is_run_dir

Log = Callable[[str], None]
DTYPES = ("float32", "float16", "bfloat16")


def default_out(source: str, name: str, out: str | None) -> Path:
    """`-o` when given; else `<run dir>/export/<name>` (a plain model dir needs -o: we never write beside it)."""
    if out:
        return Path(out)
    if is_run_dir(source):
        return Path(source) / "export" / name
    raise ConfigError(f"where should the result go? {source} is not a run dir", hint="pass -o DIR")


def save_standard(model, tokenizer, src: Source, target: Path, max_shard_size: str = "2GB") -> None:
    """What `from_pretrained` needs and what chat front-ends read: weights, tokenizer with its chat template,
    and a generation config that stops at the template's end-of-turn token."""
    template = chat_template(src, tokenizer)
    if template:
        tokenizer.chat_template = template
    gen = getattr(model, "generation_config", None)
    if gen is not None and hasattr(model, "generate"):
        stops = stop_token_ids(tokenizer, src.template)
        gen.eos_token_id = stops if len(stops) > 1 else stops[0]
        gen.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target, safe_serialization=True, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(target)


def export_hf(source: str, out: str | None = None, dtype: str = "float32", tolerance: float = 1e-4,
              ppl_tolerance: float = 0.01, sample_file: str | None = None, eval_config: str | None = None,
                latency: bool = True,
              max_shard_size: str = "2GB", log: Log = print) -> dict:
    """Merge (or copy) and verify; returns the report. Raises VerificationError above tolerance (nothing kept)."""
    import torch

    if dtype not in DTYPES:
        raise ConfigError(f"unknown --dtype '{dtype}'", hint=f"choose from {', '.join(DTYPES)}")
    src = open_source(source)
    target = default_out(source, "hf", out)
    model, tokenizer = load_source(src)
    rows = sample_ids(tokenizer, load_texts(sample_file))
    reference = all_logits(model, rows)
    exact_ref = exact_logits(model, rows) if dtype == "float32" else None
    what = "adapter on base" if src.has_adapter else "model"
    log(f"{what}: {src.model.path}{' + ' + src.model.adapter if src.has_adapter else ''}")
    with atomic_dir(target) as tmp:
        before = measure(model, tokenizer, resolve_model_path(src.model.path), rows, label=what,
                         eval_config=eval_config, eval_out=tmp, template=src.template, latency=latency,
                         logits=reference, log=log)
        merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        merged = merged.to(getattr(torch, dtype))
        save_standard(merged, tokenizer, src, tmp, max_shard_size)
        reloaded = auto_class(tmp).from_pretrained(tmp, dtype=torch.float32, use_safetensors=True).eval()
        logits = all_logits(reloaded, rows)
        diff = max_abs_diff(reference, logits)
        extra: dict = {"max_abs_logit_diff_float32": diff, "dtype": dtype}
        checks = {}
        if dtype == "float32":
            exact = exact_logits(reloaded, rows) if exact_ref is not None else None
            if exact is not None:
                extra.update(merged_float32_vs_exact_adapter=max_abs_diff(exact_ref, logits),
                             float32_noise_floor=max_abs_diff(exact_ref, reference))
                diff = max_abs_diff(exact_ref, exact)
                log(f"float32 forwards differ by {extra['max_abs_logit_diff_float32']:.3g}; the adapter model's own "
                    f"float32 rounding is {extra['float32_noise_floor']:.3g}; merged float32 vs exact adapter "
                    f"{extra['merged_float32_vs_exact_adapter']:.3g}")
            extra["max_abs_logit_diff"] = diff
            extra["compared_in"] = "float64" if exact is not None else "float32"
            checks["max_abs_logit_diff"] = {"value": diff, "tolerance": tolerance, "ok": diff <= tolerance}
        else:
            rel = abs(perplexity(logits, rows) / perplexity(reference, rows) - 1)
            checks["perplexity_rel_diff"] = {"value": rel, "tolerance": ppl_tolerance, "ok": rel <= ppl_tolerance}
        log(f"merged vs {what}: max abs logit diff {diff:.3g} over {len(rows)} samples "
            f"({dtype} weights{', float64 forwards' if extra.get('compared_in') == 'float64' else ''})")
        for name, c in checks.items():
            check(name, c["value"], c["tolerance"])
        after = measure(reloaded, tokenizer, tmp, rows, label=f"merged {dtype}", eval_config=eval_config,
                        eval_out=tmp, template=src.template, latency=latency, logits=logits, log=log)
        report = write_report(tmp, "export hf", source, before, after, checks,
                              {"max_abs_logit_diff": diff, **extra}, log=log)
    log(f"wrote {target}")
    return report
