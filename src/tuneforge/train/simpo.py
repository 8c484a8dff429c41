"""Simple preference optimisation (stage: simpo) on TRL's CPOTrainer with the SimPO loss: length-normalised
log-probs as the implicit reward (scale `align.pref_beta`), target margin `align.simpo_gamma`, no reference model;
`align.pref_ftx` adds the CPO NLL term on the chosen answer (cpo_alpha)."""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.preference import PairReader
from tuneforge.data.preference_tokenize import tokenize_pairs
from tuneforge.runs import RunDir
from tuneforge.train.align_common import AlignStage, PretokenizedPairs, pretokenized
from tuneforge.train.common import callbacks, training_args


class SimpoStage(AlignStage):
    name = "simpo"
    description = "SimPO: reference-free, length-normalised preference optimisation (TRL CPO trainer)"
    metrics = ("rewards/accuracies", "rewards/margins", "loss")
    reader = PairReader
    tokenize = staticmethod(tokenize_pairs)

    def make_trainer(self, cfg: Config, run: RunDir, model, peft_config, tokenizer, train_ds, eval_ds):
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        a = cfg.align
        args = training_args(cfg, run, has_eval=eval_ds is not None, args_class=CPOConfig, loss_type="simpo",
                             beta=a.pref_beta, simpo_gamma=a.simpo_gamma, cpo_alpha=a.pref_ftx,
                             label_smoothing=a.label_smoothing, max_length=cfg.data.cutoff_len)
        trainer_class = pretokenized(CPOTrainer, PretokenizedPairs)
        return trainer_class(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks(cfg, run))


STAGE = SimpoStage()
