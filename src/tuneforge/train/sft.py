"""Supervised fine-tuning recipe (also used by `pt`): data → model → trainer → train → save → show the change."""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.train.common import RunDir


def build_data(cfg: Config, tokenizer, run: RunDir):
    """Validated, templated, tokenized (cached) train/eval data; counts go to data_report.json."""
    from tuneforge.data.load import load_datasets
    from tuneforge.data.tokenize import tokenize_samples

    train_samples, eval_samples, report = load_datasets(cfg, report_dir=run.root)
    train = tokenize_samples(train_samples, tokenizer, cfg)
    evals = tokenize_samples(eval_samples, tokenizer, cfg) if eval_samples else None
    run.write_json("data_report.json", {**report.as_dict(), "train": train.stats,
                                        "eval": evals.stats if evals else None})
    return train, evals


def build_model(cfg: Config, tokenizer):
    """(model, ids of tokens that got new embedding rows): template tokens the base model did not know."""
    from tuneforge.models.load import grow_vocab, load_model

    model = load_model(cfg.model, apply_adapter=False)
    model.config.use_cache = False
    # Template tokens added by `load_sft_tokenizer` (e.g. <|im_end|> on a base model) need embedding rows.
    return model, grow_vocab(model, len(tokenizer))


def load_sft_tokenizer(cfg: Config):
    """The model's tokenizer plus any special tokens the chat template needs (added before tokenizing data)."""
    from tuneforge.data.templates import ensure_template_tokens
    from tuneforge.models.load import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    if cfg.stage == "sft":
        ensure_template_tokens(tokenizer, cfg.data.template)
    return tokenizer


def prepare_for_training(model, cfg: Config, new_token_ids: list[int] = ()):
    from tuneforge.models.adapters import apply_method
    from tuneforge.models.load import attach_adapter

    if cfg.model.adapter:  # continue training an existing adapter
        model = attach_adapter(model, cfg.model.adapter, trainable=True)
    else:
        model = apply_method(model, cfg, new_token_ids=new_token_ids)
    if cfg.train.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # frozen embeddings + checkpointing still need grads to flow
    if cfg.data.packing:
        cfg.data.packing = _switch_to_packing(model, explicit=cfg.data.packing is True)
    return model


def _switch_to_packing(model, explicit: bool) -> bool:
    """Per-sample attention for packed rows; False (padded batches) where `auto` packing is not possible."""
    from tuneforge.errors import ConfigError
    from tuneforge.models.attention import use_varlen_attention
    from tuneforge.models.registry import packing_blockers

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


def run(cfg: Config, run: RunDir, resume: bool) -> dict:
    from tuneforge.data.collate import make_collator
    from tuneforge.serve.generate import demo_replies, print_demo
    from tuneforge.train import environment
    from tuneforge.train.common import callbacks, fit, save_final, training_args
    from tuneforge.train.sft_trainer import sft_trainer

    tokenizer = load_sft_tokenizer(cfg)
    train_data, eval_data = build_data(cfg, tokenizer, run)
    data_files = [s.path for s in [*cfg.data.train, *cfg.data.eval]]
    run.write_json("env.json", environment.collect(data_files, cfg.train.seed))

    model, new_token_ids = build_model(cfg, tokenizer)
    before = demo_replies(model, tokenizer, cfg) if cfg.demo_prompts and not resume else None
    model = prepare_for_training(model, cfg, new_token_ids)

    trainer = sft_trainer(
        cfg,
        model=model,
        args=training_args(cfg, run, has_eval=eval_data is not None),
        train_dataset=train_data,
        eval_dataset=eval_data,
        data_collator=make_collator(cfg, tokenizer),
        callbacks=callbacks(cfg, run),
    )
    metrics = fit(trainer, run, resume)
    metrics["packing"] = cfg.data.packing  # as resolved for this model (`auto` -> true/false)
    if eval_data is not None:
        metrics.update(trainer.evaluate())
    save_final(trainer.model, tokenizer, run, cfg)

    if cfg.demo_prompts:
        after = demo_replies(trainer.model, tokenizer, cfg)
        run.write_json("demo.json", [{"prompt": p, "before": b, "after": a}
                                     for p, b, a in zip(cfg.demo_prompts, before or [None] * len(after), after)])
        print_demo(cfg.demo_prompts, before, after)
    return metrics
