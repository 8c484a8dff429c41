"""Extractive QA recipe (stage: qa): SQuAD-format data → start/end span head on an encoder.

Long contexts are split into windows (`task.doc_stride` tokens of overlap, `data.cutoff_len` tokens each); answers
are decoded from the n-best start/end logits over all windows of a question (`eval/qa_postprocess.py`).
Unanswerable questions (SQuAD v2) are skipped unless `task.allow_unanswerable`. Reports SQuAD EM/F1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tuneforge.config.schema import Config
from tuneforge.data.formats import QA_PROMPT
from tuneforge.data.qa_data import QAExample, qa_features, qa_splits
from tuneforge.data.task_data import invalid_warning
from tuneforge.data.task_rows import percentile
from tuneforge.errors import ConfigError
from tuneforge.eval.metrics import per_sample_em_f1
from tuneforge.eval.qa_postprocess import decode_answers
from tuneforge.models.load import load_tokenizer
from tuneforge.runs import RunDir
from tuneforge.train.common import TuneforgeTrainer, callbacks, fit, save_final
from tuneforge.train.compare_task import GenComparison
from tuneforge.train.stage import Stage
from tuneforge.train.task_common import (ListDataset, columns_to_rows, load_task_model, max_input_len,
                                         prepare_task_model, print_summary, task_training_args)


@dataclass
class QAData:
    train: list[QAExample]
    eval: list[QAExample]


# how a decoder is asked (compare-approaches): SFT `format: qa`'s user turn under examples/qa_smollm2.yaml's system
QA_SYSTEM = "Answer with the shortest span copied from the context."


def _squad_row(e: QAExample) -> dict:
    return {"id": e.id, "title": e.title, "context": e.context, "question": e.question,
            "answers": {"text": [a["text"] for a in e.answers], "answer_start": [a["answer_start"] for a in e.answers]}}


def build_data(cfg: Config, run: RunDir | None = None) -> QAData:
    """Validated questions; without data.eval, whole contexts are held out (no paragraph in both splits)."""
    train, evals, report = qa_splits(cfg)
    if run is not None:
        run.write_json("data_report.json", report)
    return QAData(train, evals)


def score(examples: list[QAExample], decoded: list[dict]) -> tuple[dict, list[dict]]:
    """SQuAD EM/F1 overall (and split by has-answer / no-answer when both occur) plus per-sample records."""
    records, sums = [], {"has": [0.0, 0.0, 0], "no": [0.0, 0.0, 0]}
    for ex, d in zip(examples, decoded):
        refs = [a["text"] for a in ex.answers] or [""]
        em, f1 = per_sample_em_f1(d["prediction"], refs)
        s = sums["no" if ex.is_impossible else "has"]
        s[0], s[1], s[2] = s[0] + em, s[1] + f1, s[2] + 1
        records.append({"id": ex.id, "file": ex.file, "line": ex.line, "question": ex.question,
                        "prediction": d["prediction"], "answers": refs, "exact_match": em, "f1": f1,
                        "score": d["score"], "null_score": d["null_score"],
                        "n_best": [{"text": c["text"], "score": round(c["score"], 4)} for c in d["n_best"][:5]]})
    n = len(records) or 1
    out = {"exact_match": sum(r["exact_match"] for r in records) / n, "f1": sum(r["f1"] for r in records) / n,
           "n": len(records)}
    if sums["has"][2] and sums["no"][2]:
        for k, (em, f1, c) in sums.items():
            out[f"{k}_answer_exact_match"], out[f"{k}_answer_f1"] = em / c, f1 / c
    return out, records


def metrics_fn(cfg: Config, examples: list[QAExample], feats):
    """compute_metrics for periodic evaluation: decode spans, then SQuAD EM/F1."""
    def compute(p):
        start, end = p.predictions[:2]
        decoded = decode_answers(examples, feats, start, end, **decode_kwargs(cfg))
        res, _ = score(examples, decoded)
        return {"exact_match": res["exact_match"], "f1": res["f1"]}

    return compute


def decode_kwargs(cfg: Config) -> dict:
    t = cfg.task
    return dict(n_best=t.n_best, max_answer_len=t.max_answer_len, allow_unanswerable=t.allow_unanswerable,
                null_threshold=t.null_score_diff_threshold)


class QaStage(Stage):
    name = "qa"
    description = "extractive question answering (SQuAD v1/v2 spans on an encoder)"
    metrics = ("f1", "exact_match")
    peft_task_type = "QUESTION_ANS"
    # bench/results/tasks.md (MiniLM-L6, SQuAD subset): full at the schema's 2e-4 -> F1 0.110; LoRA was measured
    # at 2e-3 only (0.055), as for cls where LoRA needs ~10x the full rate. To be re-measured (docs/compare.md).
    lr_defaults = {"lora": 2e-3}
    # label smoothing is not offered: the span head computes its own start/end loss inside the model
    recipe_keys = frozenset({"train.early_stopping_patience"})

    def check_data(self, cfg: Config) -> dict:
        """Questions (answerable / unanswerable), contexts, token windows per question."""
        tok = load_tokenizer(cfg.model)
        max_len = max_input_len(cfg, tok)
        out: dict = {"stage": self.name, "max_len": max_len}
        train, evals, report = qa_splits(cfg)
        out.update({f"{split}.{k}": v for split in ("train", "eval") for k, v in report[split].items()})
        out.update({f"used.{k}": v for k, v in report["used"].items()})
        feats = qa_features(train, tok, max_len, cfg.task.doc_stride, with_labels=True)
        out["train.windows"] = len(feats)
        out["train.windows_per_question"] = round(len(feats) / max(len(train), 1), 2)
        lengths = [len(e.context) for e in train]
        out["train.context_chars.p50/max"] = f"{percentile(lengths, 50)}/{max(lengths, default=0)}"
        out["warnings"] = [invalid_warning(report["invalid"])] if "invalid" in report else []
        return out

    def comparison(self, cfg: Config) -> GenComparison:
        """Span head vs a decoder asked to copy the answer span; scored on the held-out answerable questions."""
        train, evals, _ = qa_splits(cfg)
        heldout = [e for e in evals if not e.is_impossible]  # a decoder has no "no answer"; the same rows for all
        if not heldout:
            raise ConfigError("compare-approaches: no answerable held-out question",
                              hint="set data.eval, or data.eval_split > 0 so whole contexts are held out")
        return GenComparison(
            kind="extractive QA", own_route="span_head", train=[_squad_row(e) for e in train],
            heldout=[_squad_row(e) for e in heldout], shots=[_squad_row(e) for e in train if not e.is_impossible],
            own_task={"context_column": "context", "question_column": "question", "answers_column": "answers",
                      "max_eval_samples": None},
            eval_task={"preset": "squad", "prompt": QA_PROMPT, "chat": True, "max_new_tokens": 32},
            system=QA_SYSTEM, sft_data={"format": "qa"},
            sft_cutoff=1024, quality=(("eval_f1", "F1"), ("eval_exact_match", "EM")))

    def run(self, cfg: Config, run: RunDir, resume: bool) -> dict:
        from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

        tokenizer = load_tokenizer(cfg.model)
        data = build_data(cfg, run)
        run.write_env(cfg)
        model = load_task_model(cfg, AutoModelForQuestionAnswering)
        max_len = max_input_len(cfg, tokenizer, model.config)
        train_feats = qa_features(data.train, tokenizer, max_len, cfg.task.doc_stride, with_labels=True)
        eval_feats = qa_features(data.eval, tokenizer, max_len, cfg.task.doc_stride, with_labels=True) if data.eval else None
        eval_ds = ListDataset(columns_to_rows(eval_feats.inputs)) if eval_feats else None
        model = prepare_task_model(model, cfg, self.peft_task_type)

        trainer = TuneforgeTrainer(
            model=model, args=task_training_args(cfg, run, has_eval=eval_ds is not None, select=self.selection(cfg)),
            train_dataset=ListDataset(columns_to_rows(train_feats.inputs)), eval_dataset=eval_ds,
            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=metrics_fn(cfg, data.eval, eval_feats) if eval_feats else None, callbacks=callbacks(cfg, run))
        metrics = fit(trainer, run, resume)
        metrics.update(train_windows=len(train_feats), eval_windows=len(eval_feats) if eval_feats else 0)
        save_final(trainer, tokenizer, run, cfg)
        if eval_ds is not None:
            t0 = time.perf_counter()
            start, end = trainer.predict(eval_ds).predictions[:2]
            decoded = decode_answers(data.eval, eval_feats, start, end, **decode_kwargs(cfg))
            metrics["eval_predict_s"] = round(time.perf_counter() - t0, 3)  # windows, forward, span decoding
            res, records = score(data.eval, decoded)
            run.write_json("eval_report.json", res)
            if cfg.task.write_predictions:
                run.write_jsonl("predictions.jsonl", records)
            metrics.update({f"eval_{k}": v for k, v in res.items()})
            print_summary("qa", metrics, ("eval_exact_match", "eval_f1"))
        return metrics


STAGE = QaStage()
