"""Reward model (stage: rm) on TRL's RewardTrainer: a one-logit sequence-classification head scores prompt +
answer; trained so chosen scores above rejected (Bradley-Terry). Held-out metric: pairwise accuracy.

A finished rm run is a reward source for grpo/rloo (`align.rewards: [rm:<run dir>]`, `load_reward_model`).
"""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.preference import PairReader
from tuneforge.data.preference_tokenize import tokenize_pairs
from tuneforge.data.templates import ensure_template_tokens
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.runs import RunDir
from tuneforge.train.align_common import AlignStage
from tuneforge.train.common import callbacks, make_trainer_class, training_args


def tokenize_scored_pairs(samples, tokenizer, d) -> tuple[list[dict], dict]:
    """Whole sequences (prompt + answer, as the SFT template renders them) for the chosen and rejected side."""
    rows, stats = tokenize_pairs(samples, tokenizer, d)
    return [{"chosen_ids": r["prompt_ids"] + r["chosen_ids"], "rejected_ids": r["prompt_ids"] + r["rejected_ids"]}
            for r in rows], stats


def seq_cls_class():
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def load_reward_model(run_dir: str):
    """(merged reward model in eval mode, its tokenizer) from a finished rm run."""
    mc, template, _ = RunDir(run_dir).model_config()
    tokenizer = load_tokenizer(mc)
    ensure_template_tokens(tokenizer, template)
    model = load_model(mc, seq_cls_class(), num_labels=1)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval().requires_grad_(False), tokenizer


class RmStage(AlignStage):
    name = "rm"
    description = "reward model: a scalar head trained so chosen answers score above rejected ones"
    metrics = ("accuracy", "margin", "loss")
    peft_task_type = "SEQ_CLS"
    reader = PairReader
    tokenize = staticmethod(tokenize_scored_pairs)

    def build_policy(self, cfg: Config, tokenizer, task_type: str = "CAUSAL_LM", auto_class=None, **kwargs):
        model, peft_config = super().build_policy(cfg, tokenizer, self.peft_task_type, seq_cls_class(),
                                                  num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
        return model, peft_config

    def make_trainer(self, cfg: Config, run: RunDir, model, peft_config, tokenizer, train_ds, eval_ds):
        from trl import RewardConfig, RewardTrainer

        args = training_args(cfg, run, has_eval=eval_ds is not None, args_class=RewardConfig, max_length=None)
        return make_trainer_class(RewardTrainer)(
            model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
            peft_config=peft_config, callbacks=callbacks(cfg, run))


STAGE = RmStage()
