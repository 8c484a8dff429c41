"""Kahneman-Tversky optimisation (stage: kto) on TRL's KTOTrainer: unpaired answers labelled desirable or not
(LLaMA-Factory `kto_tag`, TRL `label`; a preference pair gives one of each). `align.pref_beta`,
`align.kto_desirable_weight` / `kto_undesirable_weight` balance the two kinds. Reference as in dpo.py."""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.preference import FeedbackReader
from tuneforge.data.preference_tokenize import tokenize_feedback
from tuneforge.runs import RunDir
from tuneforge.train.align_common import AlignStage, pretokenized
from tuneforge.train.common import callbacks, training_args
from tuneforge.train.dpo import reference_model


class KtoStage(AlignStage):
    name = "kto"
    description = "KTO on answers labelled desirable / undesirable (unpaired feedback)"
    metrics = ("rewards/margins", "kl", "loss")
    reader = FeedbackReader
    tokenize = staticmethod(tokenize_feedback)

    def make_trainer(self, cfg: Config, run: RunDir, model, peft_config, tokenizer, train_ds, eval_ds):
        from trl import KTOConfig, KTOTrainer

        a = cfg.align
        args = training_args(cfg, run, has_eval=eval_ds is not None, args_class=KTOConfig, beta=a.pref_beta,
                             desirable_weight=a.kto_desirable_weight, undesirable_weight=a.kto_undesirable_weight,
                             max_length=None, precompute_ref_log_probs=a.precompute_ref,
                             train_sampling_strategy="sequential")  # KL pairs rows with their batch neighbours
        return pretokenized(KTOTrainer)(
            model=model, ref_model=reference_model(cfg, model, peft_config, len(tokenizer)), args=args,
            train_dataset=train_ds.shuffle(seed=cfg.train.seed),  # shuffled once: the order must stay fixed
            eval_dataset=eval_ds, processing_class=tokenizer, peft_config=peft_config,
            callbacks=callbacks(cfg, run))


STAGE = KtoStage()
