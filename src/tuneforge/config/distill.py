"""`distill:` section: knowledge distillation (stage: distill) from a teacher into a student.

The student is `model.path` when set, else a copy of the teacher; `student_layers` then keeps some of its blocks
(e.g. 3 of a 6-layer MiniLM), so distilling needs no second pretrained model. Every field is defaulted, so
configs without a `distill:` section stay valid; stage distill checks that `teacher` is set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    teacher: str | None = Field(
        None, description="Teacher: a run dir (its model/, or base + adapter/) or a model dir / builtin: name "
        "(safetensors only). A sequence classifier is distilled on its logits, a causal LM token by token.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of teacher and student in the KD term "
                               "(the KD loss is multiplied by T^2 so its gradients keep their size).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KD loss; 1 - alpha weighs the hard-label loss "
                         "(0: no teacher forward at all, the same run without KD as a baseline).")
    student_layers: int | list[int] | None = Field(
        None, description="Build the student by keeping N evenly spaced blocks (first and last kept: 6 -> 3 keeps "
        "0, 2, 5) or these block indices; None: the student keeps all its blocks.")
    lm_samples: Literal["chat", "text"] = Field(
        "chat", description="Causal-LM teachers: distil on chats (sft data, loss on assistant turns) or on plain "
        "text documents (pt data, every token).")

    @field_validator("student_layers")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a positive block count or a list of block indices")
        if isinstance(v, list) and (not v or any(i < 0 for i in v)):
            raise ValueError("must list at least one block index (0-based, non-negative)")
        return v
