"""Odds-ratio preference optimisation (stage: orpo) on TRL's ORPOTrainer: SFT on the chosen answer plus an
odds-ratio term (weight `align.pref_beta`, the paper's lambda) against the rejected one. No reference model."""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.preference import PairReader
from tuneforge.data.preference_tokenize import tokenize_pairs
from tuneforge.runs import RunDir
from tuneforge.train.align_common import AlignStage, PretokenizedPairs, pretokenized
from tuneforge.train.common import callbacks, training_args


class OrpoStage(AlignStage):
    name = "orpo"
    description = "odds-ratio preference optimisation (SFT + odds-ratio loss; no reference model)"
    metrics = ("rewards/accuracies", "rewards/margins", "loss")
    reader = PairReader
    tokenize = staticmethod(tokenize_pairs)

    def make_trainer(self, cfg: Config, run: RunDir, model, peft_config, tokenizer, train_ds, eval_ds):
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        args = training_args(cfg, run, has_eval=eval_ds is not None, args_class=ORPOConfig,
                             beta=cfg.align.pref_beta, max_length=cfg.data.cutoff_len)
        trainer_class = pretokenized(ORPOTrainer, PretokenizedPairs)
        return trainer_class(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks(cfg, run))


STAGE = OrpoStage()
