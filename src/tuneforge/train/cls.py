"""Sequence classification (stage: cls): single texts or pairs; binary, multi-class or multi-label.

Encoders (BERT-style) and decoder LMs (sequence-classification head on the last token) both work; `method` picks
full fine-tuning, LoRA, freeze, or `features` (frozen backbone + a small head, see train/features.py).
Labels are mapped from the training data (saved as label_map.json and in the model's config id2label/label2id).
"""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.task_data import (ClsExample, LabelMap, balance_report, class_counts, empty_text_report,
                                      skipped_warning)
from tuneforge.data.task_rows import token_length_stats
from tuneforge.errors import ConfigError
from tuneforge.models.family import is_decoder_only
from tuneforge.models.heads import zero_new_score_head
from tuneforge.models.load import load_tokenizer
from tuneforge.runs import RunDir
from tuneforge.train import features
from tuneforge.train.cls_common import build_data, class_weights, loss_fn, metrics_fn, report
from tuneforge.train.cls_ensemble import seed_ensemble
from tuneforge.train.cls_pooled import build_pooled_model, check_pooled, wants_pooled_head
from tuneforge.train.cls_soft import SOFT_KEY, SoftLabelLoss, soft_label_trainer
from tuneforge.train.common import TuneforgeTrainer, callbacks, fit, save_final
from tuneforge.train.stage import Stage
from tuneforge.train.task_common import (ListDataset, load_task_model, max_input_len, prepare_task_model,
                                         print_summary, task_training_args)


def encode(examples: list[ClsExample], tokenizer, max_len: int, label_map: LabelMap | None,
           soft_column: str | None = None) -> list[dict]:
    """Token ids (+ labels, + a teacher's probabilities with soft_column) per example; padding happens per batch
    in the collator."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if any(e.text_pair for e in examples) else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_len)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    rows = [{k: enc[k][i] for k in keys} for i in range(len(examples))]
    if label_map is not None:
        for row, ex in zip(rows, examples):
            row["labels"] = label_map.encode(ex)
            if soft_column:
                row[SOFT_KEY] = label_map.soft_target(ex, soft_column)
    return rows


def build_model(cfg: Config, tokenizer, label_map: LabelMap):
    from transformers import AutoModelForSequenceClassification

    model = load_task_model(
        cfg, AutoModelForSequenceClassification, num_labels=len(label_map), id2label=label_map.id2label,
        label2id=label_map.label2id,
        problem_type="multi_label_classification" if label_map.multi_label else "single_label_classification")
    if model.config.pad_token_id is None:  # decoder LMs: the head reads the last non-pad token
        model.config.pad_token_id = tokenizer.pad_token_id
    if not cfg.task.random_init and is_decoder_only(cfg.model):
        zero_new_score_head(model)
    return model


def fine_tune(cfg: Config, run: RunDir, resume: bool, stage: Stage) -> dict:
    """Full / LoRA / freeze fine-tuning of a sequence-classification model."""
    from transformers import DataCollatorWithPadding

    tokenizer = load_tokenizer(cfg.model)
    data = build_data(cfg, run)
    weights = class_weights(cfg, data)  # a wrong count fails here, before the model is loaded
    if weights is not None:
        run.record_resolved(**{"task.class_weights": dict(zip(data.label_map.names, weights))})
    run.write_env(cfg)
    if wants_pooled_head(cfg):
        model = build_pooled_model(cfg, tokenizer, data.label_map, data.train, run)
    else:
        model = build_model(cfg, tokenizer, data.label_map)
    max_len = max_input_len(cfg, tokenizer, model.config)
    soft = cfg.task.soft_label_column
    train_ds = ListDataset(encode(data.train, tokenizer, max_len, data.label_map, soft))
    eval_ds = ListDataset(encode(data.eval, tokenizer, max_len, data.label_map)) if data.eval else None
    # what evaluations during training (early stopping, the best checkpoint) watch: the validation part when there
    # is one, so the eval set is only scored at the end
    watch_ds = ListDataset(encode(data.validation, tokenizer, max_len, data.label_map)) if data.validation else eval_ds
    model = prepare_task_model(model, cfg, stage.peft_task_type)

    multi = data.label_map.multi_label
    kwargs = dict(
        model=model, train_dataset=train_ds, eval_dataset=watch_ds, processing_class=tokenizer,
        # label smoothing is applied by our loss (with the class weights), not by the Trainer's smoother
        args=task_training_args(cfg, run, has_eval=watch_ds is not None, select=stage.selection(cfg),
                                label_smoothing_factor=0.0),
        data_collator=DataCollatorWithPadding(tokenizer),
        # only when asked: the default stays the model's own loss (bit-identical to a plain Trainer run)
        compute_loss_func=loss_fn(weights, cfg.train.label_smoothing, multi)
        if weights is not None or cfg.train.label_smoothing or soft else None,
        compute_metrics=metrics_fn(data.label_map, cfg.task.multi_label_threshold, stage.main_metric(cfg)),
        callbacks=callbacks(cfg, run))
    trainer = soft_label_trainer(**kwargs, soft_loss=SoftLabelLoss(
        cfg.task.soft_label_weight, cfg.task.soft_label_temperature, multi)) if soft else TuneforgeTrainer(**kwargs)
    metrics = fit_save_report(trainer, tokenizer, run, cfg, data, eval_ds, resume)
    if data.validation:  # the best checkpoint was chosen on the validation part: say so in the names
        metrics = {k.replace("best_eval_", "best_validation_"): v for k, v in metrics.items()}
    if eval_ds is not None:
        print_summary("cls", metrics, ("eval_accuracy", "eval_f1_macro", "eval_f1_micro"))
    return metrics


def fit_save_report(trainer, tokenizer, run: RunDir, cfg: Config, data, eval_ds, resume: bool) -> dict:
    """Train, save the model with its label map, and report on the eval split (also used by stage: distill)."""
    metrics = fit(trainer, run, resume)
    saved = save_final(trainer, tokenizer, run, cfg)
    run.write_json(f"{saved.name}/label_map.json", data.label_map.to_json())
    run.write_json("label_map.json", data.label_map.to_json())
    if eval_ds is not None:
        logits = trainer.predict(eval_ds).predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        metrics.update(report(cfg, run, data.eval, logits, data.label_map))
    return metrics


class ClsStage(Stage):
    name = "cls"
    description = "sequence classification (single texts or pairs; binary, multi-class, multi-label)"
    methods = ("lora", "full", "freeze", "features")
    metrics = ("accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro")
    peft_task_type = "SEQ_CLS"
    # bench/results/tasks.md (MiniLM-L6, SST-2 2000 rows, 1 epoch): full 1e-4 -> 0.846; LoRA 5e-4 did not learn
    # in 32 steps (0.514), 2e-3 -> 0.830. To be re-measured per model family with `tuneforge compare-approaches`.
    lr_defaults = {"full": 1e-4, "freeze": 1e-4, "lora": 2e-3}
    # SmolLM2-135M, last-token head (zero-initialised, models/heads.py), LoRA, SST-2 with 1,024 training examples
    # (compare-approaches --decoder-examples 1000; docs/compare.md): 2e-4 -> 0.588, 1e-3 -> 0.833 (the only two
    # rates tried); AG News, not tuned on, is the check (bench/results/compare_agnews.md).
    lr_defaults_decoder = {"lora": 1e-3}
    recipe_keys = frozenset({"task.class_weights", "train.label_smoothing", "train.early_stopping_patience",
                             "train.validation_split", "task.soft_label_column"})

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        check_pooled(cfg)
        asked = [k for k in self.asked_recipe_keys(cfg) if k != "task.class_weights"]  # features weighs classes
        if cfg.method == "features" and asked:
            raise ConfigError(f"{asked[0]} does not apply to method features (a head on frozen embeddings)",
                              hint="use method full / lora / freeze, or remove the key")

    def check_data(self, cfg: Config) -> dict:
        """Counts, labels, class balance and token lengths."""
        tok = load_tokenizer(cfg.model)
        max_len = max_input_len(cfg, tok)
        data = build_data(cfg)
        train, evals, lm = data.train, data.eval, data.label_map
        out: dict = {"stage": self.name, "max_len": max_len, "train_samples": len(train),
                     "eval_samples": len(evals), "labels": ", ".join(lm.names), "multi_label": lm.multi_label}
        if data.validation:
            out["validation_samples"] = len(data.validation)
        warnings: list[str] = []
        for split, exs in (("train", train), ("eval", evals)):
            if exs:
                counts = class_counts(exs, lm)
                out[f"{split}.classes"] = "  ".join(f"{n}: {c} ({100 * c / max(len(exs), 1):.1f}%)"
                                                    for n, c in counts.items())
                warnings += [f"{split}: {w.strip()[9:]}" for w in balance_report(counts) if "warning" in w]
        blank = empty_text_report(train + data.validation + evals).get("empty_text")
        if blank:
            out["empty_text"] = blank["count"]
            warnings.append(f"samples with an empty text: {blank['count']} (first: {', '.join(blank['first'])}); "
                            "they are kept — check task.text_column")
        if data.skipped:
            out["invalid_skipped"] = len(data.skipped)
            warnings.append(skipped_warning(data.skipped))
        pairs = [e.text_pair for e in train] if any(e.text_pair for e in train) else None
        token_length_stats(out, warnings, tok, [e.text for e in train], pairs, max_len, "train.tokens")
        out["warnings"] = warnings
        return out

    def seed_ensemble(self, cfg: Config, parent: RunDir, roots: list) -> dict:
        """The seeds' class probabilities averaged per eval row (train/cls_ensemble.py); none without the
        predictions files it averages (task.write_predictions: false)."""
        if not cfg.task.write_predictions:
            return {}
        return seed_ensemble(parent, roots, cfg.task.multi_label_threshold)

    def run(self, cfg: Config, run: RunDir, resume: bool) -> dict:
        if cfg.method == "features":
            return features.run(cfg, run, resume)
        return fine_tune(cfg, run, resume, self)


STAGE = ClsStage()
