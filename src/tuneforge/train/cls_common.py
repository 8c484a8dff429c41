"""What both classification recipes share (fine-tuning in cls.py, frozen features in features.py): validated examples
and the label map, predictions from logits, and the report (metrics, confusion matrix, predictions.jsonl)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tuneforge.config.schema import Config
from tuneforge.data.task_data import (ClsExample, LabelMap, build_label_map, class_counts, cls_examples,
                                      empty_text_report, invalid_report, passes, require_examples, skip_list)
from tuneforge.data.task_rows import split_holdout, task_splits
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.cls_metrics import classification_report, plot_confusion_matrix
from tuneforge.runs import RunDir


@dataclass
class ClsData:
    train: list[ClsExample]
    eval: list[ClsExample]
    label_map: LabelMap
    validation: list[ClsExample] = field(default_factory=list)  # train.validation_split: what selection watches
    skipped: list[DataError] = field(default_factory=list)  # rows `data.invalid: skip` left out


def build_data(cfg: Config, run: RunDir | None = None) -> ClsData:
    """Validated examples and the label map; class counts go to data_report.json."""
    skipped = skip_list(cfg)
    train_rows, eval_rows = task_splits(cfg, skipped)
    train = cls_examples(train_rows, cfg.task, skipped=skipped)
    evals = cls_examples(eval_rows, cfg.task, skipped=skipped)
    require_examples(train, skipped)
    label_map = build_label_map(train, cfg.task)
    evals = [ex for ex in evals if passes(lambda: label_map.encode(ex), skipped)]  # noqa: B023 - called at once
    if soft := cfg.task.soft_label_column:
        train = [ex for ex in train if passes(lambda: label_map.soft_target(ex, soft), skipped)]  # noqa: B023
        require_examples(train, skipped)
    # the label map comes from all training rows, so a label seen only in the validation part keeps its id
    train, validation = split_holdout(train, cfg.train.validation_split, cfg.data.mix_seed)
    if run is not None:
        parts = {"train": train, "eval": evals, **({"validation": validation} if validation else {})}
        run.write_json("data_report.json", {
            **{name: {"samples": len(exs), "classes": class_counts(exs, label_map) if exs else {}}
               for name, exs in parts.items()},
            "labels": label_map.names, "multi_label": label_map.multi_label,
            **empty_text_report(train + validation + evals), **invalid_report(skipped or [])})
    return ClsData(train, evals, label_map, validation, skipped or [])


def class_weights(cfg: Config, data: ClsData) -> list[float] | None:
    """task.class_weights as one number per label (None: unweighted). `balanced` is n_samples / (n_classes *
    count) from the training data; multi-label gets BCE pos_weight = negatives / positives per label."""
    spec, lm = cfg.task.class_weights, data.label_map
    if spec == "none":
        return None
    if isinstance(spec, list):
        if len(spec) != len(lm):
            raise ConfigError(f"task.class_weights has {len(spec)} values but there are {len(lm)} labels "
                              f"({', '.join(lm.names)})", hint="give one weight per label, in this order")
        return [float(w) for w in spec]
    counts = list(class_counts(data.train, lm).values())
    n = len(data.train)
    if lm.multi_label:  # a label never (or always) present gets weight 1: there is nothing to balance
        return [round((n - c) / c, 6) if 0 < c < n else 1.0 for c in counts]
    return [round(n / (len(lm) * c), 6) if c else 1.0 for c in counts]


def loss_fn(weights: list[float] | None, smoothing: float, multi_label: bool):
    """compute_loss_func for the Trainer: (weighted) cross-entropy with label smoothing, or BCE for multi-label.

    Per-sample losses are summed and divided by the Trainer's `num_items_in_batch` (labels in the whole accumulated
    batch), so gradient accumulation gives the same step as one big batch; without it (evaluation) the mean."""
    import torch
    import torch.nn.functional as F

    w = torch.tensor(weights, dtype=torch.float32) if weights else None

    def compute(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        wt = w.to(logits.device, logits.dtype) if w is not None else None
        if multi_label:
            target = labels.to(logits.dtype)
            if smoothing:  # each 0/1 target moves towards 0.5
                target = target * (1 - smoothing) + 0.5 * smoothing
            per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=wt, reduction="none")
        else:
            per = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), labels.view(-1),
                                  weight=None if wt is None else wt.float(), label_smoothing=smoothing,
                                  reduction="none")
        return per.sum() / num_items_in_batch if num_items_in_batch is not None else per.mean()

    return compute


def predict_labels(logits: np.ndarray, label_map: LabelMap, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, probabilities): argmax ids, or a 0/1 matrix for multi-label."""
    if label_map.multi_label:
        probs = 1 / (1 + np.exp(-logits))
    else:
        z = logits - logits.max(-1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return decide(probs, label_map.multi_label, threshold), probs


def decide(probs: np.ndarray, multi_label: bool, threshold: float) -> np.ndarray:
    """Predictions from class probabilities: argmax ids, or a 0/1 matrix (probability > threshold) for
    multi-label. Shared by one model's logits and a seed ensemble's averaged probabilities."""
    return (probs > threshold).astype(int) if multi_label else probs.argmax(-1)


def metrics_fn(label_map: LabelMap, threshold: float, main: str = "accuracy"):
    """compute_metrics for periodic evaluation during training (accuracy, macro F1 and the main metric, which
    early stopping watches)."""
    def compute(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        preds, _ = predict_labels(logits, label_map, threshold)
        rep = classification_report(p.label_ids.astype(int), preds, label_map.names)
        return {k: rep[k] for k in dict.fromkeys(("accuracy", "f1_macro", main))}

    return compute


def report(cfg: Config, run: RunDir, examples: list[ClsExample], logits: np.ndarray, label_map: LabelMap,
           prefix: str = "eval_") -> dict:
    """Metrics dict, eval_report.json, confusion-matrix PNG and predictions.jsonl for one set of logits."""
    preds, probs = predict_labels(logits, label_map, cfg.task.multi_label_threshold)
    truth = [label_map.encode(e) for e in examples]
    rep = classification_report(truth, preds, label_map.names)
    run.write_json("eval_report.json", rep)
    if "confusion_matrix" in rep and cfg.output.plot:
        plot_confusion_matrix(rep["confusion_matrix"], label_map.names, run.plots / "confusion_matrix.png")
    if cfg.task.write_predictions:
        run.write_jsonl("predictions.jsonl", [_pred_record(e, t, p, pr, label_map)
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
