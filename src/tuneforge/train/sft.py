"""Supervised fine-tuning (stage: sft): chats → template + label mask → model → trainer → train → save → demo.

`pt` (train/pt.py) is this recipe on documents instead of chats; the difference is the stage's `sample_kind`.
"""

from __future__ import annotations

from typing import Any

from tuneforge.config.schema import Config
from tuneforge.data.collate import make_collator
from tuneforge.data.formats import SampleKind
from tuneforge.data.load import load_datasets
from tuneforge.data.templates import ensure_template_tokens, get_template
from tuneforge.data.tokenize import TokenizedData, tokenize_samples
from tuneforge.errors import ConfigError
from tuneforge.models.adapters import apply_method
from tuneforge.models.attention import use_varlen_attention
from tuneforge.models.load import attach_adapter, grow_vocab, load_model, load_tokenizer, resolved_dtype
from tuneforge.models.registry import packing_blockers
from tuneforge.runs import RunDir
from tuneforge.train import dry_run
from tuneforge.train.common import callbacks, fit, save_final, training_args
from tuneforge.train.demo import demo_replies, print_demo
from tuneforge.train.sft_trainer import sft_trainer
from tuneforge.train.stage import Stage


class SftStage(Stage):
    name = "sft"
    description = "supervised fine-tuning on chats (loss on the assistant turns)"
    sample_kind: SampleKind = "chat"
    uses_chat_template = True  # adds the template's control tokens to the tokenizer before tokenizing

    # ------------------------------------------------------------------ building blocks (also used by dry_run)
    def load_tokenizer(self, cfg: Config):
        """The model's tokenizer plus any special tokens the chat template needs (added before tokenizing data)."""
        tokenizer = load_tokenizer(cfg.model)
        if self.uses_chat_template:
            ensure_template_tokens(tokenizer, cfg.data.template)
        return tokenizer

    def build_data(self, cfg: Config, tokenizer, run: RunDir | None = None
                   ) -> tuple[TokenizedData, TokenizedData | None, dict]:
        """Validated, templated, tokenized (cached) train/eval data and the report of what was kept or dropped."""
        train_samples, eval_samples, report = load_datasets(cfg, self.sample_kind,
                                                            report_dir=run.root if run else None)
        train = tokenize_samples(train_samples, tokenizer, cfg.data, self.sample_kind)
        evals = tokenize_samples(eval_samples, tokenizer, cfg.data, self.sample_kind) if eval_samples else None
        full = {**report.as_dict(), "train": train.stats, "eval": evals.stats if evals else None}
        return train, evals, full

    def build_model(self, cfg: Config, tokenizer):
        """(model, ids of tokens that got new embedding rows): template tokens the base model did not know."""
        model = load_model(cfg.model, apply_adapter=False)
        model.config.use_cache = False
        return model, grow_vocab(model, len(tokenizer))

    def prepare_model(self, model, cfg: Config, new_token_ids: list[int] = ()) -> tuple[Any, bool]:
        """(model ready for cfg.method, packing as resolved for this model)."""
        if cfg.model.adapter:  # continue training an existing adapter
            model = attach_adapter(model, cfg.model.adapter, trainable=True)
        else:
            model = apply_method(model, cfg, new_token_ids=new_token_ids)
        if cfg.train.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()  # frozen embeddings + checkpointing still need grads to flow
        packing = resolve_packing(model, cfg.data.packing) if cfg.data.packing else False
        return model, packing

    # ------------------------------------------------------------------ commands
    def check_data(self, cfg: Config) -> dict:
        tokenizer = self.load_tokenizer(cfg)
        train, evals, report = self.build_data(cfg, tokenizer)
        out = {"train_samples": report["train"]["samples_in"],
               "eval_samples": report["eval"]["samples_in"] if report["eval"] else 0,
               **{k: v for k, v in report.items() if k not in ("train", "eval")}}
        out.update({f"tokens.{k}": v for k, v in train.stats.items() if k != "warnings"})
        out["warnings"] = report["warnings"] + train.stats.get("warnings", [])
        return out

    def dry_run(self, cfg: Config) -> dict:
        return dry_run.dry_run(self, cfg)

    def run(self, cfg: Config, run: RunDir, resume: bool) -> dict:
        tokenizer = self.load_tokenizer(cfg)
        train_data, eval_data, report = self.build_data(cfg, tokenizer, run)
        run.write_json("data_report.json", report)
        run.write_env(cfg)

        model, new_token_ids = self.build_model(cfg, tokenizer)
        before = demo_replies(model, tokenizer, cfg) if cfg.demo_prompts and not resume else None
        model, packing = self.prepare_model(model, cfg, new_token_ids)
        run.record_resolved(**{"data.packing": packing, "model.dtype": resolved_dtype(model),
                               "data.template": template_name(cfg, tokenizer)})

        trainer = sft_trainer(
            cfg,
            packing=packing,
            model=model,
            args=training_args(cfg, run, has_eval=eval_data is not None),
            train_dataset=train_data,
            eval_dataset=eval_data,
            data_collator=make_collator(packing, tokenizer),
            callbacks=callbacks(cfg, run),
        )
        metrics = fit(trainer, run, resume)
        metrics["packing"] = packing
        if eval_data is not None:
            metrics.update(trainer.evaluate())
        save_final(trainer, tokenizer, run, cfg)

        if cfg.demo_prompts:
            after = demo_replies(trainer.model, tokenizer, cfg)
            run.write_json("demo.json", [{"prompt": p, "before": b, "after": a}
                                         for p, b, a in zip(cfg.demo_prompts, before or [None] * len(after), after)])
            if run.main:
                print_demo(cfg.demo_prompts, before, after)
        return metrics


def template_name(cfg: Config, tokenizer) -> str:
    """The template actually used: `auto` becomes the tokenizer's own (jinja) or our default."""
    t = get_template(cfg.data.template, tokenizer)
    return t if isinstance(t, str) else t.name


def resolve_packing(model, asked: bool | str) -> bool:
    """Per-sample attention for packed rows; False (padded batches) where `auto` packing is not possible."""
    explicit = asked is True
    blockers = packing_blockers(model)
    if blockers and explicit:
        raise ConfigError(f"data.packing: samples would see each other in this model ({'; '.join(blockers)})",
                          hint="set data.packing=false")
    if blockers:
        print(f"data.packing=auto: padded batches ({'; '.join(blockers)})", flush=True)
        return False
    if use_varlen_attention(model):  # per-sample attention inside packed rows
        return True
    if explicit:  # still isolated: transformers derives a block-diagonal mask from the position ids (slower)
        return True
    print("data.packing=auto: padded batches (this model cannot switch to per-sample attention)", flush=True)
    return False


STAGE = SftStage()
