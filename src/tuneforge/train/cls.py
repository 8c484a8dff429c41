"""Sequence classification recipe (stage: cls): single texts or pairs; binary, multi-class or multi-label.

Encoders (BERT-style) and decoder LMs (sequence-classification head on the last token) both work; `method` picks
full fine-tuning, LoRA, freeze, or `features` (frozen backbone + a small head, see train/features.py).
Labels are mapped from the training data (saved as label_map.json and in the model's config id2label/label2id).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuneforge.config.schema import Config
from tuneforge.data.task_data import ClsExample, LabelMap
from tuneforge.train.common import RunDir


@dataclass
class ClsData:
    train: list[ClsExample]
    eval: list[ClsExample]
    label_map: LabelMap


def build_data(cfg: Config, run: RunDir | None = None) -> ClsData:
    """Validated examples and the label map; class counts go to data_report.json."""
    from tuneforge.data.task_data import build_label_map, class_counts, cls_examples, task_splits

    train_rows, eval_rows = task_splits(cfg)
    train = cls_examples(train_rows, cfg.task)
    evals = cls_examples(eval_rows, cfg.task)
    label_map = build_label_map(train, cfg.task)
    for ex in evals:  # unknown labels at eval fail here, before any training time is spent
        label_map.encode(ex)
    if run is not None:
        run.write_json("data_report.json", {
            "train": {"samples": len(train), "classes": class_counts(train, label_map)},
            "eval": {"samples": len(evals), "classes": class_counts(evals, label_map) if evals else {}},
            "labels": label_map.names, "multi_label": label_map.multi_label})
    return ClsData(train, evals, label_map)


def encode(examples: list[ClsExample], tokenizer, max_len: int, label_map: LabelMap | None) -> list[dict]:
    """Token ids (+ labels) per example; padding happens per batch in the collator."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if any(e.text_pair for e in examples) else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_len)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    rows = [{k: enc[k][i] for k in keys} for i in range(len(examples))]
    if label_map is not None:
        for row, ex in zip(rows, examples):
            row["labels"] = label_map.encode(ex)
    return rows


def build_model(cfg: Config, tokenizer, label_map: LabelMap):
    from transformers import AutoModelForSequenceClassification

    from tuneforge.train.task_common import load_task_model

    model = load_task_model(
        cfg, AutoModelForSequenceClassification, num_labels=len(label_map), id2label=label_map.id2label,
        label2id=label_map.label2id,
        problem_type="multi_label_classification" if label_map.multi_label else "single_label_classification")
    if model.config.pad_token_id is None:  # decoder LMs: the head reads the last non-pad token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def predict_labels(logits: np.ndarray, label_map: LabelMap, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, probabilities): argmax ids, or a 0/1 matrix for multi-label."""
    if label_map.multi_label:
        probs = 1 / (1 + np.exp(-logits))
        return (probs > threshold).astype(int), probs
    z = logits - logits.max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return probs.argmax(-1), probs


def metrics_fn(label_map: LabelMap, threshold: float):
    """compute_metrics for periodic evaluation during training (accuracy + macro F1)."""
    from tuneforge.eval.cls_metrics import classification_report

    def compute(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        preds, _ = predict_labels(logits, label_map, threshold)
        rep = classification_report(p.label_ids.astype(int), preds, label_map.names)
        return {"accuracy": rep["accuracy"], "f1_macro": rep["f1_macro"]}

    return compute


def report(cfg: Config, run: RunDir, examples: list[ClsExample], logits: np.ndarray, label_map: LabelMap,
           prefix: str = "eval_") -> dict:
    """Metrics dict, eval_report.json, confusion-matrix PNG and predictions.jsonl for one set of logits."""
    from tuneforge.eval.cls_metrics import classification_report, plot_confusion_matrix
    from tuneforge.train.task_common import write_predictions

    preds, probs = predict_labels(logits, label_map, cfg.task.multi_label_threshold)
    truth = [label_map.encode(e) for e in examples]
    rep = classification_report(truth, preds, label_map.names)
    run.write_json("eval_report.json", rep)
    if "confusion_matrix" in rep and cfg.output.plot:
        plot_confusion_matrix(rep["confusion_matrix"], label_map.names, run.plots / "confusion_matrix.png")
    if cfg.task.write_predictions:
        write_predictions(run.root / "predictions.jsonl", [_pred_record(e, t, p, pr, label_map)
                                                          for e, t, p, pr in zip(examples, truth, preds, probs)])
    return {f"{prefix}{k}": v for k, v in rep.items() if isinstance(v, (int, float))}


def _pred_record(ex: ClsExample, truth, pred, probs, label_map: LabelMap) -> dict:
    names = label_map.names
    if label_map.multi_label:
        label = [names[i] for i, x in enumerate(truth) if x]
        prediction = [names[i] for i, x in enumerate(pred) if x]
    else:
        label, prediction = names[truth], names[int(pred)]
    rec = {"file": ex.file, "line": ex.line, "text": ex.text}
    if ex.text_pair is not None:
        rec["text_pair"] = ex.text_pair
    rec.update(label=label, prediction=prediction, correct=label == prediction,
               probs={n: round(float(p), 5) for n, p in zip(names, probs)})
    return rec


def run(cfg: Config, run: RunDir, resume: bool) -> dict:
    if cfg.method == "features":
        from tuneforge.train.features import run as run_features

        return run_features(cfg, run, resume)

    from transformers import DataCollatorWithPadding

    from tuneforge.models.load import load_tokenizer
    from tuneforge.train.common import TuneforgeTrainer, callbacks, fit, save_final
    from tuneforge.train.task_common import (ListDataset, max_input_len, prepare_task_model, print_summary,
                                             task_training_args, write_env)

    tokenizer = load_tokenizer(cfg.model)
    data = build_data(cfg, run)
    write_env(cfg, run)
    model = build_model(cfg, tokenizer, data.label_map)
    max_len = max_input_len(cfg, tokenizer, model.config)
    train_ds = ListDataset(encode(data.train, tokenizer, max_len, data.label_map))
    eval_ds = ListDataset(encode(data.eval, tokenizer, max_len, data.label_map)) if data.eval else None
    model = prepare_task_model(model, cfg)

    trainer = TuneforgeTrainer(
        model=model, args=task_training_args(cfg, run, has_eval=eval_ds is not None),
        train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_fn(data.label_map, cfg.task.multi_label_threshold), callbacks=callbacks(cfg, run))
    metrics = fit(trainer, run, resume)
    saved = save_final(trainer.model, tokenizer, run, cfg)
    data.label_map.save(saved / "label_map.json")
    data.label_map.save(run.root / "label_map.json")
    if eval_ds is not None:
        logits = trainer.predict(eval_ds).predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        metrics.update(report(cfg, run, data.eval, logits, data.label_map))
        print_summary("cls", metrics, ("eval_accuracy", "eval_f1_macro", "eval_f1_micro"))
    return metrics
