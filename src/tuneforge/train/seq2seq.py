"""Seq2seq recipe (stage: seq2seq): translation / summarization with `AutoModelForSeq2SeqLM` (T5, BART, Marian...).

Training is teacher-forced cross-entropy on the target tokens; evaluation generates (greedy or beam search,
`task.max_new_tokens`, `task.num_beams`) and scores BLEU, chrF, TER (sacrebleu) and ROUGE against the references.
"""

from __future__ import annotations

import time
from typing import Any

from tuneforge.config.schema import Config
from tuneforge.data.task_data import (Seq2SeqExample, invalid_report, require_examples, seq2seq_examples, skip_list,
                                      skipped_warning)
from tuneforge.data.task_rows import task_splits, token_length_stats
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.metrics import bleu, chrf, rouge, ter
from tuneforge.models.generate import Sampling, generate_text
from tuneforge.models.load import load_tokenizer
from tuneforge.runs import RunDir
from tuneforge.train.common import TuneforgeTrainer, callbacks, fit, make_trainer_class, save_final
from tuneforge.train.compare_task import GenComparison, language
from tuneforge.train.stage import Stage
from tuneforge.train.task_common import (ListDataset, load_task_model, max_input_len, prepare_task_model,
                                         print_summary, task_training_args)


def build_data(cfg: Config, run: RunDir | None = None
               ) -> tuple[list[Seq2SeqExample], list[Seq2SeqExample], list[DataError]]:
    """(train, eval, rows `data.invalid: skip` left out); counts go to data_report.json."""
    skipped = skip_list(cfg)
    train_rows, eval_rows = task_splits(cfg, skipped)
    train = seq2seq_examples(train_rows, cfg.task, skipped=skipped)
    evals = seq2seq_examples(eval_rows, cfg.task, skipped=skipped)
    require_examples(train, skipped)
    if run is not None:
        run.write_json("data_report.json", {"train": {"samples": len(train)}, "eval": {"samples": len(evals)},
                                            **invalid_report(skipped or [])})
    return train, evals, skipped or []


def encode(examples: list[Seq2SeqExample], tokenizer, max_len: int, max_target_len: int) -> list[dict]:
    enc = tokenizer([e.source for e in examples], truncation=True, max_length=max_len)
    labels = tokenizer(text_target=[e.target or "" for e in examples], truncation=True, max_length=max_target_len)
    return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "labels": labels["input_ids"][i]} for i in range(len(examples))]


def generate(model, tokenizer, sources: list[str], max_len: int, max_new_tokens: int, num_beams: int,
             batch_size: int = 32) -> list[str]:
    """Generated text per source (the shared generation core; beams or greedy), in input order."""
    prompts = tokenizer(sources, truncation=True, max_length=max_len)["input_ids"]
    return generate_text(model, tokenizer, prompts, batch_size=batch_size,
                         sampling=Sampling(max_new_tokens=max_new_tokens, num_beams=num_beams))


def score(predictions: list[str], references: list[str]) -> dict:
    """BLEU / chrF / TER (0-100, sacrebleu) and ROUGE F-measures (0-1)."""
    refs = [[r] for r in references]
    return {"bleu": bleu(predictions, refs), "chrf": chrf(predictions, refs), "ter": ter(predictions, refs),
            **rouge(predictions, refs), "n": len(predictions)}


def metrics_fn(tokenizer, references: list[str]):
    """compute_metrics on generated ids (periodic evaluation with predict_with_generate, for early stopping)."""
    import numpy as np

    def compute(p):
        ids = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        ids = np.where(ids < 0, tokenizer.pad_token_id, ids)  # the eval loop pads generations with -100
        preds = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return {k: v for k, v in score(preds, references[:len(preds)]).items() if k != "n"}

    return compute


def trainer_for(cfg: Config, run: RunDir, evals: list[Seq2SeqExample], tokenizer, stage: Stage, **kwargs):
    """The plain guarded Trainer; with early stopping a Seq2SeqTrainer that generates at each evaluation, so the
    best checkpoint is chosen by the main metric (bleu by default) and not by the teacher-forced loss."""
    has_eval = bool(evals)
    if not (cfg.train.early_stopping_patience and has_eval):
        return TuneforgeTrainer(args=task_training_args(cfg, run, has_eval=has_eval), **kwargs)
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    t = cfg.task
    args = task_training_args(cfg, run, has_eval=True, args_class=Seq2SeqTrainingArguments,
                              select=stage.selection(cfg), predict_with_generate=True,
                              generation_max_length=t.max_new_tokens + 1, generation_num_beams=t.num_beams)
    return make_trainer_class(Seq2SeqTrainer)(
        args=args, compute_metrics=metrics_fn(tokenizer, [e.target or "" for e in evals]), **kwargs)


def build_model(cfg: Config, tokenizer) -> Any:
    from transformers import AutoModelForSeq2SeqLM

    model = load_task_model(cfg, AutoModelForSeq2SeqLM)
    if model.config.decoder_start_token_id is None:
        raise ConfigError("the model config has no decoder_start_token_id (needed to start generation)",
                          hint="set it in config.json (T5: the pad id)")
    if getattr(model.generation_config, "decoder_start_token_id", None) is None:
        model.generation_config.decoder_start_token_id = model.config.decoder_start_token_id
    return model


class Seq2SeqStage(Stage):
    name = "seq2seq"
    description = "translation / summarization with an encoder-decoder (T5, BART, Marian...)"
    metrics = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum")
    peft_task_type = "SEQ_2_SEQ_LM"
    recipe_keys = frozenset({"train.label_smoothing", "train.early_stopping_patience"})  # smoothing: the Trainer's
    lower_is_better = ("ter",)

    def check_data(self, cfg: Config) -> dict:
        """Counts and source / target token lengths (truncation counted)."""
        tok = load_tokenizer(cfg.model)
        max_len = max_input_len(cfg, tok)
        train, evals, skipped = build_data(cfg)
        out: dict = {"stage": self.name, "max_len": max_len, "train_samples": len(train),
                     "eval_samples": len(evals)}
        warnings: list[str] = []
        if skipped:
            out["invalid_skipped"] = len(skipped)
            warnings.append(skipped_warning(skipped))
        token_length_stats(out, warnings, tok, [e.source for e in train], None, max_len, "train.source_tokens")
        token_length_stats(out, warnings, tok, [e.target or "" for e in train], None, cfg.task.max_target_len,
                           "train.target_tokens")
        out["warnings"] = warnings
        return out

    def comparison(self, cfg: Config) -> GenComparison:
        """The encoder-decoder vs a decoder asked to translate (or to follow `task.source_prefix`)."""
        train, evals, _ = build_data(cfg)
        if not evals:
            raise ConfigError("compare-approaches: no held-out rows", hint="set data.eval or data.eval_split > 0")
        t, prefix = cfg.task, cfg.task.source_prefix

        def row(e: Seq2SeqExample) -> dict:  # the source as written: seq2seq_examples put the prefix before it
            return {"source": e.source[len(prefix):], "target": e.target}

        if t.source_lang and t.target_lang:
            kind, system = "translation", f"Translate {language(t.source_lang)} to {language(t.target_lang)}."
        else:
            kind, system = "text to text", prefix.strip().rstrip(":") or "Rewrite the text as the examples do."
        rows = [row(e) for e in train]
        return GenComparison(
            kind=kind, own_route="seq2seq", train=rows, heldout=[row(e) for e in evals], shots=rows,
            own_task={"source_column": "source", "target_column": "target", "max_eval_samples": None},
            eval_task={"preset": "translation", "prompt": "{source}", "target": "target", "chat": True,
                       "max_new_tokens": t.max_new_tokens},
            system=system, sft_data={"format": "alpaca", "columns": {"instruction": "source", "output": "target"}},
            sft_cutoff=256 + t.max_target_len, quality=(("eval_bleu", "BLEU"), ("eval_chrf", "chrF")))

    def run(self, cfg: Config, run: RunDir, resume: bool) -> dict:
        from transformers import DataCollatorForSeq2Seq

        tokenizer = load_tokenizer(cfg.model)
        train, evals, _ = build_data(cfg, run)
        run.write_env(cfg)
        model = build_model(cfg, tokenizer)
        t = cfg.task
        max_len = max_input_len(cfg, tokenizer, None)
        eval_ds = ListDataset(encode(evals, tokenizer, max_len, t.max_target_len)) if evals else None
        base = model
        model = prepare_task_model(model, cfg, self.peft_task_type)

        trainer = trainer_for(
            cfg, run, evals, tokenizer, self, model=model,
            train_dataset=ListDataset(encode(train, tokenizer, max_len, t.max_target_len)), eval_dataset=eval_ds,
            processing_class=tokenizer, data_collator=DataCollatorForSeq2Seq(tokenizer, model=base, padding=True),
            callbacks=callbacks(cfg, run))
        metrics = fit(trainer, run, resume)
        save_final(trainer, tokenizer, run, cfg)
        if evals:
            metrics.update(trainer.evaluate())  # teacher-forced eval loss
            t0 = time.perf_counter()
            preds = generate(trainer.model, tokenizer, [e.source for e in evals], max_len, t.max_new_tokens,
                             t.num_beams, batch_size=max(cfg.train.batch_size, 16))
            metrics["eval_predict_s"] = round(time.perf_counter() - t0, 3)
            res = score(preds, [e.target for e in evals])
            run.write_json("eval_report.json", res)
            if t.write_predictions:
                run.write_jsonl("predictions.jsonl", [
                    {"file": e.file, "line": e.line, "source": e.source, "reference": e.target, "prediction": p}
                    for e, p in zip(evals, preds)])
            metrics.update({f"eval_{k}": v for k, v in res.items()})
            print_summary("seq2seq", metrics, ("eval_bleu", "eval_chrf", "eval_ter", "eval_rougeL", "eval_loss"))
        return metrics


STAGE = Seq2SeqStage()
