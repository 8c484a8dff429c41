"""Knowledge distillation (stage: distill): a student learns from a teacher's logits and from the labels.

Read top to bottom: open the teacher (a run dir or a model path; safetensors only) → build the student (`model.path`,
or a copy of the teacher) and keep `distill.student_layers` of its blocks → the teacher's kind picks the data path:
a sequence classifier reuses the cls rows (train/cls.py), a causal LM the sft/pt rows (`distill.lm_samples`) →
train with the KD loss (train/distill_kd.py) → save the student like any full fine-tune (a plain transformers
model in model/) → report the student's eval metrics next to the teacher's.

Teacher and student shapes are recorded in config.yaml `resolved:` (`distill.teacher`, `distill.student`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.schema import Config, ModelConfig
from tuneforge.data.collate import make_collator
from tuneforge.errors import ConfigError, ModelLoadError
from tuneforge.models.adapters import count_parameters
from tuneforge.models.depth import keep_layers
from tuneforge.models.heads import refuse_pooled_classifier
from tuneforge.models.load import (
    check_model_source,
    load_model,
    load_tokenizer,
    resolve_model_path,
)
from tuneforge.models.registry import get_layers
from tuneforge.runs import RunDir, is_run_dir
from tuneforge.train import cls, pt, sft
from tuneforge.train.cls_common import build_data, metrics_fn, predict_labels
from tuneforge.train.common import callbacks, fit, save_final, training_args
from tuneforge.train.distill_kd import KDSettings, kd_trainer, token_loss_sums
from tuneforge.train.stage import Stage
from tuneforge.train.task_common import (
    ListDataset,
    max_input_len,
    prepare_task_model,
    print_summary,
)


@dataclass(frozen=True)
class Teacher:
    model: ModelConfig  # where its weights are: a model dir, or a base + adapter
    classifier: bool    # a sequence-classification head (KD over classes) vs a causal LM (KD per token)
    source: str         # what the user wrote in distill.teacher


def open_teacher(spec: str) -> Teacher:
    """The teacher's model config and kind, without loading weights (fails in milliseconds on a bad path)."""
    if is_run_dir(spec):
        mc, _, _ = RunDir(spec).model_config()
    elif Path(spec).is_dir() and (Path(spec) / "config.yaml").is_file():
        raise ConfigError(f"distill.teacher: run dir {spec} has neither adapter/ nor model/",
                          hint="did the teacher's training finish?")
    elif spec.startswith("builtin:") or Path(resolve_model_path(spec)).exists():
        mc = ModelConfig(path=spec)
    else:
        raise ModelLoadError(f"distill.teacher: not found: {spec}", hint="give a run dir or a model dir")
    adapter = _adapter_dir(mc)
    if adapter is not None and (adapter / "tokenizer_config.json").is_file():
        mc = mc.model_copy(update={"tokenizer": str(adapter)})  # saved next to the adapter: has template tokens
    return Teacher(mc, _is_classifier(mc, adapter), spec)


def _adapter_dir(mc: ModelConfig) -> Path | None:
    if not mc.adapter:
        return None
    p = Path(resolve_model_path(mc.adapter))
    return p / "adapter" if (p / "adapter").is_dir() else p


def _is_classifier(mc: ModelConfig, adapter: Path | None) -> bool:
    if adapter is not None and (adapter / "adapter_config.json").is_file():
        return json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("task_type") == "SEQ_CLS"
    refuse_pooled_classifier(resolve_model_path(mc.path), "a distillation teacher")
    conf = Path(resolve_model_path(mc.path)) / "config.json"
    if not conf.is_file():  # a .gguf file or a hub id: a causal LM
        return False
    archs = json.loads(conf.read_text(encoding="utf-8")).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def load_teacher(teacher: Teacher):
    """The teacher in eval mode with any adapter folded in and no gradients."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    model = load_model(teacher.model, auto_class=AutoModelForSequenceClassification if teacher.classifier
                       else AutoModelForCausalLM)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.config.use_cache = False
    return model.eval().requires_grad_(False)


def student_config(cfg: Config, teacher: Teacher) -> Config:
    """The config the student is built and its data read with: `model:` is the teacher's when model.path is unset
    (recorded as resolved model.path), and rows are never packed (teacher and student see the same padded batch)."""
    update: dict[str, Any] = {"data": cfg.data.model_copy(update={"packing": False})}
    if not cfg.model.path:
        update["model"] = teacher.model.model_copy(update={"adapter": None, "dtype": cfg.model.dtype})
    return cfg.model_copy(update=update)


def shrink(student, cfg: Config) -> list[int]:
    """Keep `distill.student_layers` of the student's blocks; the kept block indices (all of them when unset)."""
    _, blocks = get_layers(student)
    n = len(blocks) if blocks is not None else student.config.num_hidden_layers
    if cfg.distill.student_layers is None:
        return list(range(n))
    return keep_layers(student, cfg.distill.student_layers)


def describe(model, kept: list[int] | None = None) -> dict:
    out = {"model_type": model.config.model_type, "layers": model.config.num_hidden_layers,
           "parameters": count_parameters(model)[0]}
    return {**out, "kept_layers": kept} if kept is not None else out


def check_labels(teacher_model, label_map) -> None:
    """The teacher's classes must be the data's, in the same order (its logits are compared column by column)."""
    names = [str(teacher_model.config.id2label[i]) for i in range(teacher_model.config.num_labels)]
    if names == label_map.names:
        return
    if len(names) == len(label_map) and names == [f"LABEL_{i}" for i in range(len(names))]:
        return  # an unnamed head: its ids are taken to be the data's label ids
    raise ConfigError(f"distill.teacher predicts labels {names}, the data has {label_map.names}",
                      hint="set task.labels to the teacher's label order, or distil on data with its labels")


def _logits(model, rows: list[dict], collator, batch_size: int = 64):
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            batch = collator([{k: v for k, v in r.items() if k != "labels"} for r in rows[i:i + batch_size]])
            out.append(model(**batch.to(model.device)).logits.float().cpu())
    return torch.cat(out).numpy()


def distill_classifier(cfg: Config, run: RunDir, resume: bool, teacher: Teacher) -> dict:
    """KD over the classes of a sequence-classification teacher, on the cls data path."""
    from transformers import DataCollatorWithPadding

    scfg = student_config(cfg, teacher)
    tokenizer = load_tokenizer(scfg.model)
    data = build_data(scfg, run)
    run.write_env(cfg)
    teacher_model = load_teacher(teacher)
    check_labels(teacher_model, data.label_map)
    student = cls.build_model(scfg, tokenizer, data.label_map) if cfg.model.path else copy.deepcopy(teacher_model)
    student.requires_grad_(True)
    kept = shrink(student, cfg)
    _record(run, cfg, teacher, teacher_model, student, kept)
    max_len = max_input_len(scfg, tokenizer, student.config)
    train_ds = ListDataset(cls.encode(data.train, tokenizer, max_len, data.label_map))
    eval_ds = ListDataset(cls.encode(data.eval, tokenizer, max_len, data.label_map)) if data.eval else None
    student = prepare_task_model(student, scfg, cls.STAGE.peft_task_type)
    collator = DataCollatorWithPadding(tokenizer)
    kd = KDSettings(cfg.distill.temperature, cfg.distill.alpha, token_level=False,
                    multi_label=data.label_map.multi_label)
    trainer = kd_trainer(
        model=student, args=training_args(scfg, run, has_eval=eval_ds is not None,
                                          per_device_eval_batch_size=max(cfg.train.batch_size, 32)),
        train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer, data_collator=collator,
        compute_metrics=metrics_fn(data.label_map, cfg.task.multi_label_threshold), callbacks=callbacks(cfg, run),
        teacher=teacher_model, kd=kd)
    metrics = cls.fit_save_report(trainer, tokenizer, run, cfg, data, eval_ds, resume)
    if eval_ds is not None:
        preds, _ = predict_labels(_logits(teacher_model, eval_ds.rows, collator), data.label_map,
                                  cfg.task.multi_label_threshold)
        truth = [data.label_map.encode(e) for e in data.eval]  # exact match for multi-label rows
        metrics["teacher_eval_accuracy"] = sum(p == t for p, t in zip(preds.tolist(), truth)) / len(truth)
        print_summary("distill", metrics, ("eval_accuracy", "eval_f1_macro", "teacher_eval_accuracy"))
    return metrics


def distill_lm(cfg: Config, run: RunDir, resume: bool, teacher: Teacher) -> dict:
    """Token-level KD from a causal-LM teacher, on the sft (chat) or pt (text) data path."""
    recipe = sft.STAGE if cfg.distill.lm_samples == "chat" else pt.STAGE
    scfg = student_config(cfg, teacher)
    tokenizer = recipe.load_tokenizer(scfg)
    train_data, eval_data, data_report = recipe.build_data(scfg, tokenizer, run)
    run.write_json("data_report.json", data_report)
    run.write_env(cfg)
    teacher_model = load_teacher(teacher)
    teacher_vocab = teacher_model.get_output_embeddings().weight.shape[0]
    if len(tokenizer) > teacher_vocab:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens, the teacher knows {teacher_vocab} (chat "
                          "template tokens it was not trained with?)", hint="use the teacher's data.template")
    if cfg.model.path:
        student, new_ids = recipe.build_model(scfg, tokenizer)
    else:
        student, new_ids = copy.deepcopy(teacher_model).requires_grad_(True), []
    kept = shrink(student, cfg)
    _record(run, cfg, teacher, teacher_model, student, kept)
    student, _ = recipe.prepare_model(student, scfg, new_ids)
    vocab = min(teacher_vocab, student.get_output_embeddings().weight.shape[0])
    kd = KDSettings(cfg.distill.temperature, cfg.distill.alpha, token_level=True, vocab=vocab)
    trainer = kd_trainer(
        model=student, args=training_args(scfg, run, has_eval=eval_data is not None), train_dataset=train_data,
        eval_dataset=eval_data, data_collator=make_collator(False, tokenizer), callbacks=callbacks(cfg, run),
        teacher=teacher_model, kd=kd)
    metrics = fit(trainer, run, resume)
    if eval_data is not None:
        metrics.update(trainer.evaluate())
        metrics["teacher_eval_loss"] = _teacher_loss(trainer, teacher_model, kd)
        print_summary("distill", metrics, ("eval_loss", "teacher_eval_loss"))
    save_final(trainer, tokenizer, run, cfg)
    return metrics


def _teacher_loss(trainer, teacher_model, kd: KDSettings) -> float:
    """The teacher's hard-label loss on the eval rows (per target token), next to the student's eval_loss."""
    import torch

    total, count = 0.0, 0
    teacher_model.to(trainer.args.device)
    with torch.inference_mode():
        for batch in trainer.get_eval_dataloader():
            batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
            labels = batch.pop("labels")
            hard, _, n = token_loss_sums(teacher_model(**batch).logits, None, labels, kd)
            total, count = total + float(hard), count + int(n)
    return total / max(count, 1)


def _record(run: RunDir, cfg: Config, teacher: Teacher, teacher_model, student, kept: list[int]) -> None:
    t, s = describe(teacher_model), describe(student, kept)
    resolved: dict[str, Any] = {"distill.teacher": {"source": teacher.source, "path": teacher.model.path,
                                                    "adapter": teacher.model.adapter, **t},
                                "distill.student": {"source": cfg.model.path or "teacher", **s},
                                "data.packing": False}
    if not cfg.model.path:
        resolved["model.path"] = teacher.model.path
    run.record_resolved(**resolved)
    if run.main:
        print(f"teacher {t['layers']} layers ({t['parameters'] / 1e6:.1f}M params) -> student {s['layers']} layers "
              f"({s['parameters'] / 1e6:.1f}M), blocks {kept}; alpha {cfg.distill.alpha}, T "
              f"{cfg.distill.temperature}", flush=True)


class DistillStage(Stage):
    name = "distill"
    description = "knowledge distillation from a teacher (run dir or model) into a smaller student"
    methods = ("full", "freeze", "lora")
    metrics = ("accuracy", "f1_macro", "f1_micro", "loss")
    lr_defaults = {"full": 1e-4, "freeze": 1e-4, "lora": 2e-3}

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        if not cfg.distill.teacher:
            raise ConfigError("distill.teacher is not set", hint="a teacher run dir or model dir, e.g. "
                              "distill.teacher=runs/sentiment-minilm")
        if cfg.task.pooling != "auto" or cfg.task.head_init != "random":
            # the student is transformers' own classification model (or a causal LM): a pooled head would be ignored
            raise ConfigError("task.pooling / task.head_init do not apply to stage distill: the student keeps its "
                              "model's own classification head", hint="remove them (they belong to stage cls)")
        if cfg.method == "lora" and (cfg.distill.student_layers is not None or not cfg.model.path):
            raise ConfigError("method: lora needs a student saved on disk (model.path, all its layers); a student "
                              "built from the teacher is trained fully", hint="set method: full")

    def preflight(self, cfg: Config) -> None:
        check_model_source(open_teacher(cfg.distill.teacher).model)
        if cfg.model.path:
            super().preflight(cfg)

    def check_data(self, cfg: Config) -> dict:
        teacher = open_teacher(cfg.distill.teacher)
        recipe = cls.STAGE if teacher.classifier else sft.STAGE if cfg.distill.lm_samples == "chat" else pt.STAGE
        out = recipe.check_data(student_config(cfg, teacher))
        return {**out, "stage": self.name, "teacher": teacher.source,
                "teacher.kind": "sequence classifier" if teacher.classifier else "causal LM"}

    def run(self, cfg: Config, run: RunDir, resume: bool) -> dict:
        teacher = open_teacher(cfg.distill.teacher)
        if teacher.classifier:
            return distill_classifier(cfg, run, resume, teacher)
        return distill_lm(cfg, run, resume, teacher)


STAGE = DistillStage()
