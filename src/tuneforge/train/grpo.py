"""Group-relative policy optimisation (stage: grpo) on TRL's GRPOTrainer: for each prompt, sample
`align.num_generations` answers, score them with `align.rewards` (built-ins, your functions, or a trained rm run),
and push the policy towards the answers that beat their group's mean. Held-out metric: mean reward of one greedy
answer per eval prompt (train/online_eval.py).

This is also where LLaMA-Factory's `stage: ppo` goes (TRL 1.16 has no PPO trainer): online RLHF with a reward
model is `stage: grpo` (or `rloo`) with `align.rewards: [rm:<rm run dir>]`.
"""

from __future__ import annotations

from tuneforge.config.schema import Config
from tuneforge.data.preference import PromptReader
from tuneforge.data.preference_tokenize import tokenize_prompts
from tuneforge.data.templates import stop_token_ids
from tuneforge.errors import ConfigError
from tuneforge.runs import RunDir
from tuneforge.train.align_common import AlignStage
from tuneforge.train.common import callbacks, make_trainer_class, training_args
from tuneforge.train.online_eval import GreedyHeldOutReward
from tuneforge.train.rewards import resolve_reward
from tuneforge.train.rm import load_reward_model


def reward_sources(cfg: Config) -> tuple[list, list]:
    """(reward functions / models, their tokenizers) from `align.rewards`, checked before any model is loaded."""
    a = cfg.align
    if not a.rewards:
        raise ConfigError("align.rewards is empty: an online stage needs at least one reward",
                          hint="e.g. align.rewards=[exact_number] or [rm:runs/my-rm]")
    if a.reward_weights and len(a.reward_weights) != len(a.rewards):
        raise ConfigError(f"align.reward_weights has {len(a.reward_weights)} values for {len(a.rewards)} rewards")
    funcs, tokenizers = [], []
    for spec in a.rewards:
        func, tok = resolve_reward(spec, load_reward_model)
        funcs.append(func)
        tokenizers.append(tok)
    return funcs, tokenizers


class GrpoStage(AlignStage):
    name = "grpo"
    description = "GRPO: sample a group of answers per prompt, reward them, learn from the group-relative advantage"
    metrics = ("reward", "loss")
    reader = PromptReader
    tokenize = staticmethod(tokenize_prompts)
    use_cache = True  # the rollouts generate
    trainer_name, config_name = "GRPOTrainer", "GRPOConfig"

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        a = cfg.align
        if (cfg.train.batch_size * cfg.train.grad_accum) % a.num_generations:
            raise ConfigError(f"train.batch_size x train.grad_accum ({cfg.train.batch_size * cfg.train.grad_accum}) "
                              f"must be a multiple of align.num_generations ({a.num_generations})",
                              hint="each batch holds whole groups of answers to one prompt")

    def online_args(self, cfg: Config) -> dict:
        a = cfg.align
        return {"num_generations": a.num_generations, "max_completion_length": a.max_completion_length,
                "temperature": a.temperature, "beta": a.kl_beta, "epsilon": a.epsilon,
                "reward_weights": a.reward_weights or None, "steps_per_generation": cfg.train.grad_accum,
                "shuffle_dataset": True, "remove_unused_columns": False}

    def make_trainer(self, cfg: Config, run: RunDir, model, peft_config, tokenizer, train_ds, eval_ds):
        import trl

        funcs, reward_tokenizers = reward_sources(cfg)
        # Rollouts end at the template's end-of-turn token, as chat and eval replies do (not only at eos).
        stops = stop_token_ids(tokenizer, cfg.data.template)
        model.generation_config.eos_token_id = stops
        args = training_args(cfg, run, has_eval=eval_ds is not None, args_class=getattr(trl, self.config_name),
                             generation_kwargs={"eos_token_id": stops}, **self.online_args(cfg))
        args.include_num_input_tokens_seen = "no"  # rollouts are generated inside the step: no input tokens to count
        base = getattr(trl, self.trainer_name)
        trainer_class = make_trainer_class(type(f"Greedy{base.__name__}", (GreedyHeldOutReward, base), {}))
        return trainer_class(
            model=model, reward_funcs=funcs, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
            processing_class=tokenizer, reward_processing_classes=reward_tokenizers, peft_config=peft_config,
            callbacks=callbacks(cfg, run))


STAGE = GrpoStage()
