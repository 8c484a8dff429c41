"""A classifier trained end to end under a pooled linear head (stage cls, `method: full` with `task.pooling` set).

Its own module because it subclasses torch.nn.Module: models/heads.py keeps torch a lazy import.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from tuneforge.models.heads import make_head, pool, save_head


class PooledClassifier(torch.nn.Module):
    """A backbone (transformers AutoModel) under pooling + dropout + one linear layer, trained end to end
    (`method: full` with `task.pooling` set). transformers' sequence-classification heads read BERT's [CLS] through
    its pooler or a decoder's last token; a sentence-transformers checkpoint was trained to be read by mean pooling.

    `save_pretrained` writes the backbone as a plain transformers model plus `head.safetensors` / `head.json` in
    the same folder (head.json's backbone ".": this folder), the features-head format `FeatureClassifier` loads.
    Trainer checkpoints hold the whole state dict (backbone.* and head.*), so resume and best-checkpoint reloads
    work as for any model.
    """

    def __init__(self, backbone, pooling: str, n_labels: int, multi_label: bool, labels: list[str], max_len: int,
                 dropout: float = 0.1):
        super().__init__()
        if isinstance(getattr(backbone, "pooler", None), torch.nn.Module):
            # BERT-style [CLS] pooler: no pooling mode here reads it, and a parameter without gradients would stop
            # multi-process (DDP) training; BertModel / RobertaModel skip a pooler set to None
            backbone.pooler = None
        self.backbone, self.pooling, self.multi_label = backbone, pooling, multi_label
        self.labels, self.max_len = list(labels), max_len
        self.config = backbone.config  # what the Trainer and our callbacks read (dtype, model_type)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = make_head("linear", backbone.config.hidden_size, n_labels, 1)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **_):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        logits = self.head(self.dropout(pool(hidden, attention_mask, self.pooling)))
        loss = None
        if labels is not None:
            if self.multi_label:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def meta(self) -> dict:
        return {"backbone": ".", "pooling": self.pooling, "head": "linear", "hidden": 0,
                "dim": int(self.backbone.config.hidden_size), "labels": self.labels, "multi_label": self.multi_label,
                "max_len": self.max_len, "normalize": False, "trained": "end to end"}

    def save_pretrained(self, path, safe_serialization: bool = True, state_dict: dict | None = None, **_) -> None:
        """`state_dict`: the whole weights gathered from FSDP / DeepSpeed shards (the modules then hold shards)."""
        assert safe_serialization, "safetensors only"
        parts = None if state_dict is None else {
            part: {k[len(part) + 1:]: v for k, v in state_dict.items() if k.startswith(part + ".")}
            for part in ("backbone", "head")}
        self.backbone.save_pretrained(path, safe_serialization=True, state_dict=parts and parts["backbone"])
        save_head(self.head, Path(path), self.meta(), weights=parts and parts["head"])
