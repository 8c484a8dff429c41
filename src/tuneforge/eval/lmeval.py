"""Run lm-evaluation-harness (`lm-eval`, the `eval` extra) on the same local task files, for cross-checking.

Where lm-eval ships the benchmark, its own task definition is used, only pointed at the local file: the
hellaswag and gsm8k YAMLs (with their preprocessing, stop strings, filters and metrics) and, for MMLU, ARC and
OpenBookQA, lm-eval's Jinja prompts written out here over the raw row; MMLU runs as one lm-eval task per subject
(as lm-eval's mmlu group does), so its per-subject first_n few-shot examples are lm-eval's own. Custom tasks and
TruthfulQA's CSV layout (field names with spaces, unreachable from Jinja) use our `render`/field functions as
lm-eval callables, with lm-eval's own MC2 scoring. Few-shot sampling is lm-eval's (`lm_eval` / `first_n`); our
per-sample `random` sampler has no lm-eval counterpart.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tuneforge.config.evaluation import EvalTaskConfig
from tuneforge.errors import ConfigError
from tuneforge.eval.tasks import _labels, get_field, overridden_fields, read_task_rows, render, resolve_task

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
    "mmlu": dict(doc_to_text=_MMLU_TEXT, doc_to_choice=["A", "B", "C", "D"], doc_to_target="answer"),
}
LMEVAL_YAML = {"hellaswag": "hellaswag/hellaswag.yaml", "gsm8k": "gsm8k/gsm8k.yaml"}
_SPEC_FIELDS = {"prompt", "choices", "gold", "labels", "description", "target", "stop", "metrics", "extract"}
_ACC = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]


def _own_yaml(preset: str) -> dict[str, Any]:
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's loader resolves its `!function` hooks

    cfg = load_yaml(Path(lm_eval.tasks.__file__).parent / LMEVAL_YAML[preset])
    for key in ("tag", "dataset_name", "training_split", "validation_split", "test_split", "fewshot_split"):
        cfg.pop(key, None)
    return cfg


def lmeval_tasks(cfg: EvalTaskConfig, test_file: str, prefix: str = "tf_") -> list[dict[str, Any]]:
    """lm-eval task configs (dicts) reading `test_file` with the same prompt, choices/target and few-shot setup
    as our task `cfg` (several for MMLU: one per subject)."""
    spec = resolve_task(cfg)
    if spec.fewshot and spec.fewshot_sampler == "random":
        raise ConfigError("lm-eval has no per-sample sampler; cross-check with fewshot_sampler lm_eval or first_n")
    files = {"test": test_file}
    custom = bool(set(overridden_fields(cfg)) & _SPEC_FIELDS)
    if cfg.preset in LMEVAL_YAML and not custom:
        task = _own_yaml(cfg.preset)
    elif spec.type == "mcq":
        task = dict(output_type="multiple_choice", metric_list=_ACC)
        task.update(JINJA[cfg.preset] if cfg.preset in JINJA and not custom else _callables(spec))
        if "mc2" in spec.metrics:
            from lm_eval.tasks.truthfulqa.utils import process_results_mc2

            task.update(metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
                        process_docs=_with_mc2_targets(spec), process_results=process_results_mc2)
    else:
        task = dict(output_type="generate_until", doc_to_text=lambda d: render(spec.prompt, _row(spec, d)),
                    doc_to_target=lambda d: _references(spec, d)[0],
                    metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}])
    task.update(task=prefix + cfg.name, dataset_path="json", test_split="test",
                target_delimiter=cfg.target_delimiter, fewshot_delimiter=cfg.fewshot_delimiter)
    if spec.type == "generate":
        task["generation_kwargs"] = {"until": list(spec.stop), "do_sample": False, "temperature": 0.0,
                                     "max_gen_toks": spec.max_new_tokens or 128}
    if spec.fewshot:
        if cfg.fewshot_file:
            files["fewshot"] = cfg.fewshot_file
        task.update(fewshot_split="fewshot" if cfg.fewshot_file else "test", num_fewshot=spec.fewshot,
                    fewshot_config={"sampler": "first_n" if spec.fewshot_sampler == "first_n" else "default"})
    else:
        task["num_fewshot"] = 0
    task["dataset_kwargs"] = {"data_files": files}
    if cfg.preset == "mmlu" and not custom:
        return _per_subject(task, test_file)
    if spec.description and "description" not in task:
        task["description"] = (lambda d: render(spec.description, _row(spec, d)))
    return [task]


def _per_subject(task: dict[str, Any], test_file: str) -> list[dict[str, Any]]:
    """lm-eval's mmlu group: one task per subject, its description and its own few-shot pool."""
    subjects = sorted({str(d.get("subject", "")) for d, _, _ in read_task_rows(test_file)})
    out = []
    for s in subjects:
        def only(ds, s=s):
            return ds.map(lambda r, i: {"_row": i}, with_indices=True).filter(lambda r: r["subject"] == s)

        out.append(dict(task, task=f"{task['task']}_{s}", process_docs=only,
                        description=f"The following are multiple choice questions (with answers) about "
                                    f"{s.replace('_', ' ')}.\n\n"))
    return out


def _row(spec, doc: dict) -> dict:
    return spec.transform(doc) if spec.transform else doc


def _references(spec, doc: dict) -> list[str]:
    v = get_field(_row(spec, doc), spec.target)
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def _with_mc2_targets(spec):
    def process(ds):
        return ds.map(lambda d: {"mc2_targets": {"choices": _row(spec, d)["mc2_choices"],
                                                 "labels": _row(spec, d)["mc2_labels"]}})
    return process


def _callables(spec) -> dict[str, Any]:
    def choices(doc: dict) -> list[str]:
        r = _row(spec, doc)
        if isinstance(spec.choices, list):
            return [render(c, r) for c in spec.choices]
        return [str(c) for c in get_field(r, spec.choices)]

    def target(doc: dict) -> int:
        r, ch = _row(spec, doc), choices(doc)
        v = get_field(r, spec.gold)
        if isinstance(v, list):  # one 0/1 label per choice: the first true one
            return v.index(1)
        if isinstance(v, str):
            v = v.strip()
            labels = _labels(spec, r, len(ch), "", 0)
            v = int(v) if v.lstrip("-").isdigit() else labels.index(v) if v in labels else ch.index(v)
        return int(v)

    return dict(doc_to_text=lambda doc: render(spec.prompt, _row(spec, doc)), doc_to_choice=choices,
                doc_to_target=target)


def run_lmeval(model: Any, tokenizer: Any, tasks: list[EvalTaskConfig], batch_size: int = 8,
               max_length: int | None = None) -> dict[str, dict[str, Any]]:
    """lm-eval on an already-loaded HF model. Per task, in file order: MCQ {acc, acc_norm, pred, pred_norm,
    loglikelihoods}; generation {outputs (lm-eval's text cut at its stop strings), filtered: {filter: answers},
    metrics}; both with n and seconds. `limit` keeps the first N rows of the file (as ours does; few-shot
    examples still come from the whole file)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)
    # Every task here is a config dict (lm-eval's own YAMLs are read by _own_yaml), so lm-eval's index of its
    # ~10k bundled task files is not needed; building it costs 15-60 s per simple_evaluate call on this CPU.
    tasks_index = TaskManager(include_defaults=False)
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in tasks:
            test_file, limit = cfg.file, cfg.limit
            if cfg.limit and cfg.preset == "mmlu":  # lm-eval would limit every subject; ours: first N rows
                spec = resolve_task(cfg)
                if spec.fewshot and not cfg.fewshot_file:
                    raise ConfigError("cross-check mmlu few-shot with a limit needs fewshot_file (the dev split)")
                test_file, limit = str(Path(tmp) / f"{cfg.name}.jsonl"), None
                rows = [d for d, _, _ in read_task_rows(cfg.file)][: cfg.limit]
                Path(test_file).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            confs = lmeval_tasks(cfg, test_file)
            t0 = time.perf_counter()
            res = lm_eval.simple_evaluate(model=lm, tasks=confs, log_samples=True, verbosity="ERROR",
                                          bootstrap_iters=0, limit=limit, task_manager=tasks_index)
            secs = time.perf_counter() - t0
            every = _in_file_order(res, [c["task"] for c in confs])
            samples = [s for s in every if s["filter"] == every[0]["filter"]]  # one entry per filter and doc
            entry: dict[str, Any] = {"n": len(samples), "seconds": secs}
            if confs[0]["output_type"] == "generate_until":
                entry["outputs"] = [s["resps"][0][0] for s in samples]
                entry["filtered"] = _filtered(every)
                entry["metrics"] = {k: v for k, v in res["results"][confs[0]["task"]].items()
                                    if isinstance(v, float) and "stderr" not in k}
            else:
                lls = [[r[0] for r in s["filtered_resps"]] for s in samples]
                lens = [[len(c) for _, c in s["arguments"]] for s in samples]
                delim = len(cfg.target_delimiter)
                entry.update(
                    acc=sum(s["acc"] for s in samples) / len(samples),
                    acc_norm=sum(s.get("acc_norm", 0.0) for s in samples) / len(samples),
                    pred=[_argmax(x) for x in lls], loglikelihoods=lls,
                    pred_norm=[_argmax([v / (n - delim) for v, n in zip(x, ln)]) for x, ln in zip(lls, lens)])
            out[cfg.name] = entry
    return out


def _in_file_order(res: dict, names: list[str]) -> list[dict]:
    samples = [s for name in names for s in res["samples"][name]]
    return sorted(samples, key=lambda s: (s["doc"].get("_row", s["doc_id"])))


def _filtered(samples: list[dict]) -> dict[str, list[str]]:
    by: dict[str, dict[int, str]] = {}
    for s in samples:
        by.setdefault(s["filter"], {})[s["doc"].get("_row", s["doc_id"])] = s["filtered_resps"][0]
    return {f: [v[k] for k in sorted(v)] for f, v in by.items()}


def _argmax(v: list[float]) -> int:
    return max(range(len(v)), key=lambda i: (v[i], -i))
