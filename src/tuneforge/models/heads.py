"""Task heads and pooling: which modules of a transformers task model are its head, how token states become one
vector, and the small heads trained on frozen features (`method: features`).

A features classifier is saved as `features_head/head.safetensors` + `head.json` (pooling, head type, labels,
backbone path) rather than as a transformers model: transformers has no class for "AutoModel + mean/cls/last pooling
+ linear/MLP head", and folding it into `AutoModelForSequenceClassification` would only fit BERT's [CLS]-pooler
layout. `FeatureClassifier` loads it back in three lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError
from tuneforge.safe_weights import from_pretrained, load_tensors

# Top-level module names of freshly initialised task heads in transformers models (+ BERT's pooler): trained even
# when the rest of the model is frozen.
TASK_HEAD_MODULES = ("classifier", "score", "qa_outputs", "lm_head", "pre_classifier")


def unfreeze_task_head(model) -> None:
    """Freeze tuning trains the last layers; a new task head (and BERT's pooler) must train too."""
    for name, p in model.named_parameters():
        if name.split(".")[0] in TASK_HEAD_MODULES or ".pooler." in name:
            p.requires_grad_(True)


def zero_new_score_head(model) -> bool:
    """Zero a decoder LM's freshly initialised `score` head (the checkpoint was a causal LM, not a classifier).

    A decoder's last-token state is large (norm ~50 on SmolLM2-135M, a few dimensions ~20 on every input), so the
    default N(0, 0.02) head starts with logits of about +-1 that carry no signal. From zero the logits start equal
    (loss = ln K), as LoRA's zero-initialised B keeps the start equal to the pretrained model. (The chance-level
    runs that prompted this were caused by the GGUF cache's missing embeddings, fixed in models/load.py; the zero
    head's own effect was not measured separately.) Returns True if zeroed.
    """
    import torch

    head = getattr(model, "score", None)
    archs = getattr(model.config, "architectures", None) or []
    if head is None or any(a.endswith("ForSequenceClassification") for a in archs):
        return False  # no such head, or a trained classifier's head that was loaded
    with torch.no_grad():
        head.weight.zero_()
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()
    return True


def pool(hidden, mask, how: str):
    """One vector per sequence from token states [B, T, H] and the attention mask [B, T]."""
    import torch

    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        idx = mask.sum(1).clamp(min=1) - 1  # right padding: last real token
        return hidden[torch.arange(hidden.shape[0]), idx]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def embed(backbone, tokenizer, texts: list[str], pairs: list[str] | None, max_len: int, pooling: str,
          batch_size: int = 64, normalize: bool = False) -> np.ndarray:
    """Pooled embeddings, computed in length-sorted batches (less padding) and returned in input order."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + len(pairs[i] if pairs else ""))
    out = np.zeros((len(texts), 0), dtype=np.float32)
    chunks = []
    backbone.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            enc = tokenizer([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None, truncation=True,
                            max_length=max_len, padding=True, return_tensors="pt")
            enc = {k: v.to(backbone.device) for k, v in enc.items()}
            hidden = backbone(**enc).last_hidden_state
            vec = pool(hidden.float(), enc["attention_mask"], pooling)
            if normalize:
                vec = torch.nn.functional.normalize(vec, dim=-1)
            chunks.append((idx, vec.cpu().numpy()))
    if chunks:
        out = np.zeros((len(texts), chunks[0][1].shape[1]), dtype=np.float32)
        for idx, vec in chunks:
            out[idx] = vec
    return out


def make_head(kind: str, dim: int, n_out: int, hidden: int):
    import torch

    if kind == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Dropout(0.1),
                                   torch.nn.Linear(hidden, n_out))
    return torch.nn.Sequential(torch.nn.Linear(dim, n_out))


def head_logits(head, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return head(torch.from_numpy(x)).numpy()


def save_head(head, out: Path, meta: dict, weights: dict | None = None) -> Path:
    """Write `head.safetensors` + `head.json`; `weights`: the head's tensors when its module holds only shards."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = head.state_dict() if weights is None else weights
    save_file({k: v.detach().contiguous() for k, v in weights.items()}, str(out / "head.safetensors"))
    (out / "head.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out


class FeatureClassifier:
    """A saved feature-extraction classifier: backbone + pooling + head, for `predict(texts)`."""

    def __init__(self, head_dir: str | Path):
        from transformers import AutoModel, AutoTokenizer

        d = Path(head_dir)
        self.meta = json.loads((d / "head.json").read_text(encoding="utf-8"))
        # "." (a pooled fine-tune, PooledClassifier): the backbone was saved next to the head
        backbone = d if self.meta["backbone"] == "." else self.meta["backbone"]
        self.tokenizer = AutoTokenizer.from_pretrained(backbone)
        self.backbone = from_pretrained(AutoModel, backbone, what="backbone")
        self.head = make_head(self.meta["head"] if self.meta["head"] == "mlp" else "linear", self.meta["dim"],
                              len(self.meta["labels"]), self.meta.get("hidden", 0) or 1)
        self.head.load_state_dict(load_tensors(d / "head.safetensors", "classifier head"))
        self.head.eval()

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        m = self.meta
        x = embed(self.backbone, self.tokenizer, texts, pairs, m["max_len"], m["pooling"], normalize=m["normalize"])
        return head_logits(self.head, x)

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list:
        logits = self.logits(texts, pairs)
        names = self.meta["labels"]
        if self.meta["multi_label"]:
            return [[names[j] for j in np.flatnonzero(row > 0)] for row in logits]  # sigmoid(z) > 0.5 ⇔ z > 0
        return [names[i] for i in logits.argmax(-1)]


def saved_score_outputs(model_path: str, adapter: str | None = None) -> int | None:
    """Outputs of the sequence-classification head a saved model or adapter carries (an rm run's: 1), else None.

    A merged model says so in config.json; a peft SEQ_CLS adapter only through its saved head weight (peft keeps
    the new head in the adapter file), read from the safetensors header without loading tensors."""
    if adapter:
        a = Path(adapter) / "adapter" if (Path(adapter) / "adapter").is_dir() else Path(adapter)
        conf = _json_file(a / "adapter_config.json")
        if conf.get("task_type") != "SEQ_CLS" or not (a / "adapter_model.safetensors").is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(a / "adapter_model.safetensors"), "pt") as f:
            shapes = [f.get_slice(k).get_shape() for k in f.keys()  # noqa: SIM118 (a safe_open handle, not a dict); the head, not a LoRA factor
                      if k.endswith(".weight") and "lora_" not in k and {"score", "classifier"} & set(k.split("."))]
        return shapes[0][0] if shapes else None
    conf = _json_file(Path(model_path) / "config.json")
    if not any(str(x).endswith("ForSequenceClassification") for x in conf.get("architectures") or []):
        return None
    return len(conf.get("id2label") or {}) or conf.get("num_labels") or 2


def _json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def refuse_pooled_classifier(model_dir: str | Path, use: str) -> None:
    """A pooled-head classifier (stage cls with task.pooling set) saves a plain backbone + head.json, which
    transformers would load without its head: say so instead of quietly dropping the head."""
    if (Path(model_dir) / "head.json").is_file():
        raise ConfigError(f"{model_dir} is a pooled-head classifier (head.json + a plain backbone): {use} does not "
                          "take it", hint="load it with tuneforge.models.heads.FeatureClassifier; or train with "
                          "task.pooling=auto for a transformers classification model")
