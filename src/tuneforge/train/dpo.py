"""Direct preference optimisation (stage: dpo) on TRL's DPOTrainer, with its loss variants (`align.pref_loss`:
sigmoid, ipo, hinge, robust, ...), `align.pref_beta`, and an optional SFT term on the chosen answer (`pref_ftx`).

The reference policy is the frozen start: with LoRA, the same model with the adapter disabled (TRL does this when
it applies the adapter itself, so no second copy is held); with full fine-tuning a frozen copy, or none at all when
`align.precompute_ref` computes the reference log-probs once before training.
"""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.preference import PairReader
from tuneforge.data.preference_tokenize import tokenize_pairs
from tuneforge.models.load import grow_vocab, load_model
from tuneforge.runs import RunDir
from tuneforge.train.align_common import AlignStage, pretokenized
from tuneforge.train.common import callbacks, training_args
from tuneforge.train.shared_prompt import share_prompts


def reference_model(cfg: Config, model, peft_config, vocab: int):
    """A frozen copy of the start for full fine-tuning; None where TRL needs none (LoRA: adapter disabled;
    a continued adapter: TRL keeps a frozen copy of the adapter only; precompute_ref: log-probs computed up front)."""
    if peft_config is not None or hasattr(model, "peft_config") or cfg.align.precompute_ref:
        return None
    ref = load_model(cfg.model, apply_adapter=False)
    grow_vocab(ref, vocab)
    return ref.eval().requires_grad_(False)


class DpoStage(AlignStage):
    name = "dpo"
    description = "direct preference optimisation on chosen/rejected pairs (loss variants: align.pref_loss)"
    metrics = ("rewards/accuracies", "rewards/margins", "loss")
    reader = PairReader
    tokenize = staticmethod(tokenize_pairs)

    def make_trainer(self, cfg: Config, run: RunDir, model, peft_config, tokenizer, train_ds, eval_ds):
        from trl import DPOConfig, DPOTrainer

        a = cfg.align
        losses, weights = [a.pref_loss], [1.0]
        if a.pref_ftx > 0:
            losses, weights = losses + ["sft"], weights + [a.pref_ftx]
        args = training_args(cfg, run, has_eval=eval_ds is not None, args_class=DPOConfig, beta=a.pref_beta,
                             loss_type=losses, loss_weights=weights, label_smoothing=a.label_smoothing,
                             max_length=None,  # cutoff_len was applied (and counted) when tokenizing
                             precompute_ref_log_probs=a.precompute_ref)
        trainer = pretokenized(DPOTrainer)(
            model=model, ref_model=reference_model(cfg, model, peft_config, len(tokenizer)), args=args,
            train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer, peft_config=peft_config,
            callbacks=callbacks(cfg, run))
        if a.share_prompt:
            share_prompts(trainer)
        return trainer


STAGE = DpoStage()
