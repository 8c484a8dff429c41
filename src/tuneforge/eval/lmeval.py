"""Run lm-evaluation-harness (`lm-eval`, the `eval` extra) on the same local task files, for cross-checking.

For the MCQ presets the lm-eval task is written independently of our prompt code (lm-eval Jinja templates over
the raw row, lm-eval's own few-shot assembly, tokenisation, scoring and acc/acc_norm), so agreement tests the
whole path. Custom tasks and TruthfulQA (field names with spaces, unreachable from Jinja) use our
`render`/field functions as lm-eval callables. Few-shot agreement needs `fewshot_sampler: first_n` (lm-eval's
random sampler draws from one shared RNG in document order; ours is per sample).
"""

from __future__ import annotations

import time
from typing import Any

from tuneforge.config.evaluation import EvalTaskConfig
from tuneforge.errors import ConfigError
from tuneforge.eval.tasks import _labels, get_field, overridden_fields, render, resolve_task

_MMLU_TEXT = ("{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\n"
              "Answer:")
_OBQA_CHOICES = "{{question.choices | map(attribute='text') | list}}"
_OBQA_GOLD = "{{(question.choices | map(attribute='label') | list).index(answerKey)}}"

# preset -> lm-eval fields (Jinja over the raw row), written from lm-eval's own task YAMLs
JINJA = {
    "openbookqa": dict(doc_to_text="Question: {{question.stem}}\nAnswer:", doc_to_choice=_OBQA_CHOICES,
                       doc_to_target=_OBQA_GOLD),
    "hellaswag_obqa": dict(doc_to_text="{{question.stem}}", doc_to_choice=_OBQA_CHOICES, doc_to_target=_OBQA_GOLD),
    "arc": dict(doc_to_text="Question: {{question}}\nAnswer:", doc_to_choice="{{choices.text}}",
                doc_to_target="{{choices.label.index(answerKey)}}"),
    "mmlu": dict(doc_to_text=_MMLU_TEXT, doc_to_choice=["A", "B", "C", "D"], doc_to_target="answer",
                 description="The following are multiple choice questions (with answers) about "
                             "{{subject.replace('_', ' ')}}.\n\n"),
}


def lmeval_task(cfg: EvalTaskConfig, prefix: str = "tf_") -> dict[str, Any]:
    """An lm-eval task config (dict) reading `cfg.file` with the same prompt, choices, gold and few-shot setup."""
    spec = resolve_task(cfg)
    if spec.type != "mcq":
        raise ConfigError(f"lm-eval cross-check supports mcq tasks only ('{cfg.name}' is {spec.type})")
    if cfg.fewshot and cfg.fewshot_sampler != "first_n":
        raise ConfigError("lm-eval cross-check with few-shot needs fewshot_sampler: first_n")
    if cfg.fewshot and cfg.preset == "mmlu":
        raise ConfigError("lm-eval runs MMLU few-shot per subject task; cross-check mmlu zero-shot")
    files = {"test": cfg.file}
    task: dict[str, Any] = dict(task=prefix + cfg.name, dataset_path="json", test_split="test",
                                output_type="multiple_choice", target_delimiter=cfg.target_delimiter,
                                fewshot_delimiter=cfg.fewshot_delimiter,
                                metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                             {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}])
    if cfg.preset in JINJA and not set(overridden_fields(cfg)) & {"prompt", "choices", "gold", "labels", "description"}:
        task.update(JINJA[cfg.preset])
    else:
        task.update(_callables(spec))
    if cfg.fewshot:
        if cfg.fewshot_file:
            files["fewshot"] = cfg.fewshot_file
        task.update(fewshot_split="fewshot" if cfg.fewshot_file else "test", num_fewshot=cfg.fewshot,
                    fewshot_config={"sampler": "first_n"})
    task["dataset_kwargs"] = {"data_files": files}
    return task


def _callables(spec) -> dict[str, Any]:
    def row(doc: dict) -> dict:
        return spec.transform(doc) if spec.transform else doc

    def choices(doc: dict) -> list[str]:
        r = row(doc)
        if isinstance(spec.choices, list):
            return [render(c, r) for c in spec.choices]
        return [str(c) for c in get_field(r, spec.choices)]

    def target(doc: dict) -> int:
        r, ch = row(doc), choices(doc)
        v = get_field(r, spec.gold)
        if isinstance(v, str):
            v = v.strip()
            labels = _labels(spec, r, len(ch), "", 0)
            v = int(v) if v.lstrip("-").isdigit() else labels.index(v) if v in labels else ch.index(v)
        return int(v)

    out = dict(doc_to_text=lambda doc: render(spec.prompt, row(doc)), doc_to_choice=choices, doc_to_target=target)
    if spec.description:
        out["description"] = lambda doc: render(spec.description, row(doc))
    return out


def run_lmeval(model: Any, tokenizer: Any, tasks: list[EvalTaskConfig], batch_size: int = 8,
               max_length: int | None = None) -> dict[str, dict[str, Any]]:
    """lm-eval on an already-loaded HF model: {task: {acc, acc_norm, n, seconds, pred, pred_norm}} (per-sample
    predictions in file order)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)
    out: dict[str, dict[str, Any]] = {}
    for cfg in tasks:
        conf = lmeval_task(cfg)
        t0 = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=[conf], log_samples=True, limit=cfg.limit,
                                      verbosity="ERROR", num_fewshot=cfg.fewshot or None,
                                      bootstrap_iters=0)
        secs = time.perf_counter() - t0
        name = conf["task"]
        samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
        lls = [[r[0] for r in s["filtered_resps"]] for s in samples]
        lens = [[len(c) for _, c in (a for a in s["arguments"])] for s in samples]
        delim = len(cfg.target_delimiter)
        out[cfg.name] = {
            "acc": res["results"][name]["acc,none"], "acc_norm": res["results"][name]["acc_norm,none"],
            "n": len(samples), "seconds": secs,
            "pred": [_argmax(x) for x in lls],
            "pred_norm": [_argmax([v / (n - delim) for v, n in zip(x, ln)]) for x, ln in zip(lls, lens)],
            "loglikelihoods": lls,
        }
    return out


def _argmax(v: list[float]) -> int:
    return max(range(len(v)), key=lambda i: (v[i], -i))
