"""What the alignment stages (rm, dpo, orpo, simpo, kto, grpo, rloo) share: reading and tokenizing their records,
the policy model (LoRA as a peft config handed to TRL, so a reference is the base with the adapter disabled), and
the run: held-out metrics before and after, plots of the reward curves, the saved model.

A stage subclasses `AlignStage` and says which reader/tokenizer its records need and which TRL trainer it builds
(`make_trainer`); `run` reads top to bottom: data → model → trainer → held-out start → train → held-out end → save.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneforge.config.schema import Config
from tuneforge.data.load import load_datasets
from tuneforge.data.preference import flatten
from tuneforge.models.adapters import apply_method, lora_config
from tuneforge.models.load import attach_adapter, grow_vocab, load_model, resolved_dtype
from tuneforge.runs import RunDir
from tuneforge.train.align_plots import plot_align_metrics
from tuneforge.train.common import fit, save_final
from tuneforge.train.sft import STAGE as SFT
from tuneforge.train.sft import template_name
from tuneforge.train.stage import Stage


class AlignStage(Stage):
    """Base of the TRL-backed alignment stages."""

    methods = ("lora", "full")
    reader: Callable[[], Any]  # a data/preference.py reader class (PairReader, FeedbackReader, PromptReader)
    tokenize: Callable  # the matching data/preference_tokenize.py function
    use_cache = False  # KV cache: only the online stages generate during training

    # ------------------------------------------------------------------ building blocks
    def load_tokenizer(self, cfg: Config):
        return SFT.load_tokenizer(cfg)

    def build_data(self, cfg: Config, tokenizer, run: RunDir | None = None) -> tuple[list, list | None, dict]:
        """Validated, templated, tokenized train/eval rows and the report of what was kept, dropped and cut."""
        reader = type(self).reader()
        train, evals, report = load_datasets(cfg, "chat", report_dir=run.root if run else None, convert=reader)
        train_rows, train_stats = type(self).tokenize(flatten(train), tokenizer, cfg.data)
        eval_rows, eval_stats = type(self).tokenize(flatten(evals), tokenizer, cfg.data) if evals else (None, None)
        full = {**report.as_dict(), **reader.counts.as_dict(), "train": train_stats, "eval": eval_stats}
        full["warnings"] = report.warnings + reader.counts.warnings
        return train_rows, eval_rows, full

    def build_policy(self, cfg: Config, tokenizer, task_type: str = "CAUSAL_LM", auto_class=None, **kwargs):
        """(model, peft_config): LoRA comes back as a config for the TRL trainer to apply; a continued adapter and
        full fine-tuning come back as the model itself."""
        model = load_model(cfg.model, auto_class, apply_adapter=False, **kwargs)
        model.config.use_cache = self.use_cache
        new_ids = grow_vocab(model, len(tokenizer))
        if cfg.model.adapter:
            return attach_adapter(model, cfg.model.adapter, trainable=True), None
        if cfg.method == "lora":
            return model, lora_config(model, cfg, task_type, new_ids)
        return apply_method(model, cfg, task_type, new_ids), None

    def make_trainer(self, cfg: Config, run: RunDir, model, peft_config, tokenizer, train_ds, eval_ds):
        raise NotImplementedError

    # ------------------------------------------------------------------ commands
    def check_data(self, cfg: Config) -> dict:
        tokenizer = self.load_tokenizer(cfg)
        _, _, report = self.build_data(cfg, tokenizer)
        out = {k: v for k, v in report.items() if k not in ("train", "eval", "warnings")}
        for split in ("train", "eval"):
            for k, v in (report[split] or {}).items():
                if k != "warnings":
                    out[f"{split}.{k}"] = v
        out["warnings"] = report["warnings"] + report["train"]["warnings"] + \
            (report["eval"]["warnings"] if report["eval"] else [])
        return out

    def run(self, cfg: Config, run: RunDir, resume: bool) -> dict:
        from datasets import Dataset

        tokenizer = self.load_tokenizer(cfg)
        train_rows, eval_rows, report = self.build_data(cfg, tokenizer, run)
        run.write_json("data_report.json", report)
        run.write_env(cfg)

        model, peft_config = self.build_policy(cfg, tokenizer)
        run.record_resolved(**{"model.dtype": resolved_dtype(model), "data.template": template_name(cfg, tokenizer)})
        train_ds = Dataset.from_list(train_rows)
        eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
        trainer = self.make_trainer(cfg, run, model, peft_config, tokenizer, train_ds, eval_ds)

        start = self.held_out_metrics(trainer) if eval_ds is not None and not resume else {}
        metrics = fit(trainer, run, resume)
        if eval_ds is not None:
            end = self.held_out_metrics(trainer)
            metrics.update(end)
            metrics.update({f"start_{k}": v for k, v in start.items()})
        if trainer.args.should_save and cfg.output.plot:
            plot_align_metrics(run.metrics, run.plots)
        save_final(trainer, tokenizer, run, cfg)
        return metrics

    def held_out_metrics(self, trainer) -> dict:
        """The trainer's eval metrics (TRL logs rewards/margins/accuracies under eval_*)."""
        out = trainer.evaluate()
        return {k: v for k, v in out.items() if isinstance(v, (int, float))}


class PretokenizedPairs:
    """Mixin for TRL's CPO/ORPO trainers, which tokenize `prompt`/`chosen`/`rejected` strings themselves: their
    documented per-row hook `tokenize_row` instead lays out the ids we built with the SFT template code."""

    def tokenize_row(self, feature, model=None) -> dict:
        prompt = list(feature["prompt_ids"])
        out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
        for side in ("chosen", "rejected"):
            ids = prompt + list(feature[f"{side}_ids"])
            out[f"{side}_input_ids"] = ids
            out[f"{side}_attention_mask"] = [1] * len(ids)
            out[f"{side}_labels"] = [-100] * len(prompt) + list(feature[f"{side}_ids"])
        return out


class PretokenizedDataset:
    """Mixin for TRL's DPO/KTO trainers. Private upstream API, overridden on purpose: `_prepare_dataset` would
    re-tokenize from strings with its own prompt/answer split and truncation; our rows already hold `prompt_ids`
    and the answer ids from the SFT template code, cut and counted (data/preference_tokenize.py), so they pass
    through. tests/unit/train/test_align_rewards.py (upstream hooks) fails loudly if TRL renames it or changes its
    signature."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" not in dataset.column_names:
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if getattr(self, "calculate_KL", False) and "KL_completion_ids" not in dataset.column_names:
            # KTO's KL estimate: each prompt paired with the previous row's answer, as TRL builds it per batch.
            batch = args.per_device_train_batch_size

            def shifted(rows):
                rows["KL_completion_ids"] = [rows["completion_ids"][-1]] + rows["completion_ids"][:-1]
                return rows

            dataset = dataset.map(shifted, batched=True, batch_size=batch)
        return dataset


def pretokenized(trainer_class, mixin=PretokenizedDataset):
    """TRL `trainer_class` that takes our pre-tokenized rows, wrapped with the NaN guard + atomic checkpoints."""
    from tuneforge.train.common import make_trainer_class

    return make_trainer_class(type(f"Pretokenized{trainer_class.__name__}", (mixin, trainer_class), {}))
