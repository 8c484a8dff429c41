"""Soft labels for stage cls (`task.soft_label_column`): the student learns from a teacher's class probabilities
stored in the training rows, next to the labels.

loss = w * T^2 * KL(teacher_T || student_T) + (1 - w) * the label loss (class weights, label smoothing)

The teacher is never loaded: its probabilities are data, so it can be any model — a decoder LM with another
tokenizer, a seed ensemble, an API model's label probabilities — which stage distill (teacher and student share the
padded batch, so one tokenizer) cannot take. The probabilities p become logits log p (multi-label: log p/(1-p)),
so the temperature acts on them as on a loaded teacher's logits (train/distill_kd.py kd_divergence).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuneforge.train.common import make_trainer_class
from tuneforge.train.distill_kd import kd_divergence

SOFT_KEY = "soft_labels"  # the encoded rows' field; popped before the model's forward


@dataclass(frozen=True)
class SoftLabelLoss:
    weight: float
    temperature: float
    multi_label: bool

    def teacher_logits(self, probs: torch.Tensor) -> torch.Tensor:
        p = probs.float().clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p) if self.multi_label else torch.log(p)

    def kd_sum(self, logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """T^2 * KL summed over the batch (multi-label: BCE summed over rows and labels)."""
        return kd_divergence(logits, self.teacher_logits(probs), self.temperature, self.multi_label, reduction="sum")


class SoftLabelMixin:
    """compute_loss on training batches that carry soft labels; evaluation batches (no soft labels) keep the plain
    label loss, so eval_loss stays comparable with a run trained without a teacher."""

    def __init__(self, *args, soft_loss: SoftLabelLoss, **kwargs):
        super().__init__(*args, **kwargs)
        self.tf_soft = soft_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        probs = inputs.pop(SOFT_KEY, None)
        if probs is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        # the label loss (compute_loss_func, always set with soft labels) divides its sum by num_items_in_batch,
        # the labels of the whole accumulated step; the KD sum gets the same divisor, so accumulation matches one
        # big batch
        hard = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        kd = self.tf_soft.kd_sum(logits, probs.to(logits.device))
        kd = kd / num_items_in_batch if num_items_in_batch is not None else kd / labels.numel()
        w = self.tf_soft.weight
        loss = w * kd + (1 - w) * hard
        return (loss, outputs) if return_outputs else loss


def soft_label_trainer(**kwargs):
    """The guarded Trainer with the soft-label loss; `soft_loss=` goes to SoftLabelMixin."""
    from transformers import Trainer

    return make_trainer_class(type("SoftLabelTrainer", (SoftLabelMixin, Trainer), {}))(**kwargs)
