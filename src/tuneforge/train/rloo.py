"""REINFORCE leave-one-out (stage: rloo) on TRL's RLOOTrainer: like grpo (same prompts, rewards and settings),
but each answer's baseline is the mean reward of the other answers to its prompt."""

from __future__ import annotations

from tuneforge.train.grpo import GrpoStage


class RlooStage(GrpoStage):
    name = "rloo"
    description = "RLOO: online sampling with a leave-one-out baseline (rewards as in grpo)"
    trainer_name, config_name = "RLOOTrainer", "RLOOConfig"


STAGE = RlooStage()
