"""`task:` section: settings for the encoder / seq2seq task stages (cls, qa, seq2seq) and feature extraction.

Every field is defaulted, so configs without a `task:` section stay valid. Columns left at `None` are detected
from the data (see docs/tasks.md). Max input length is `data.cutoff_len` (capped at the model's limit).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- classification -------------------------------------------------------------------------------------
    text_column: str | None = Field(
        None, description="Input text field (auto: text, sentence, sentence1, content, review, premise, question).")
    text_pair_column: str | None = Field(
        None, description="Second text of a pair (auto: sentence2 / hypothesis when the first is sentence1 / premise).")
    label_column: str = Field("label", description="Label field: a string, an int id, or a list (multi-label).")
    label_text_column: str | None = Field(
        None, description="Human-readable names for int labels (auto: label_text when present).")
    labels: list[str] | None = Field(
        None, description="Fixed label order (ids = positions); default: labels found in the training data.")
    multi_label: bool | None = Field(
        None, description="Several labels per sample (sigmoid + BCE); auto: true when labels are lists.")
    multi_label_threshold: float = Field(0.5, gt=0, lt=1, description="Probability above which a label is predicted.")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="Loss weight per class for imbalanced data: none, balanced (n_samples / (n_classes * "
        "count), from the training data) or one positive number per label in label order (multi-label: BCE "
        "pos_weight). The weights used are recorded in config.yaml `resolved:`.")

    soft_label_column: str | None = Field(
        None, description="Training-row field with a teacher's class probabilities: {label: p} (a tuneforge run's "
        "predictions.jsonl `probs`, so that file can be the training data) or a list in label order. The loss "
        "becomes soft_label_weight * T^2 * KL(teacher || student) at temperature T = soft_label_temperature plus "
        "(1 - soft_label_weight) * the label loss: distillation from any teacher (another architecture or "
        "tokenizer, an ensemble, an LLM's label probabilities). Methods full / lora / freeze.")
    soft_label_weight: float = Field(0.5, ge=0, le=1, description="Weight of the soft-label (KD) term.")
    soft_label_temperature: float = Field(
        2.0, gt=0, description="Temperature applied to the teacher's probabilities and the student's logits in the "
        "KD term (p^(1/T), renormalised).")

    # --- feature extraction (method: features) --------------------------------------------------------------
    pooling: Literal["auto", "mean", "cls", "last"] = Field(
        "auto", description="How token states become one vector for the classifier (last: final non-pad token, "
        "for decoder LMs). auto: mean for method features; for fine-tuning, the model's own head (BERT: [CLS] + "
        "pooler, decoders: last token). Set with method full it trains the backbone under a pooled linear head "
        "instead, saved as <run>/model/ + head.json (models/pooled.py PooledClassifier): mean suits checkpoints "
        "trained for sentence embeddings (sentence-transformers).")
    head_init: Literal["random", "probe"] = Field(
        "random", description="Start of a pooled head (task.pooling set, method full): random, or probe = the "
        "features head (task.head linear or logreg) fitted on the frozen backbone's pooled embeddings of the "
        "training rows (linear probe, then fine-tune: LP-FT, Kumar et al. 2022).")
    head: Literal["linear", "mlp", "logreg"] = Field(
        "linear", description="Head trained on frozen embeddings: linear, small MLP, or scikit-learn logistic regression.")
    head_hidden: int = Field(256, gt=0, description="Hidden width of the MLP head.")
    head_epochs: int = Field(100, gt=0, description="Full-batch epochs for the linear/MLP head.")
    head_lr: float = Field(1e-2, gt=0, description="AdamW learning rate of the linear/MLP head.")
    head_weight_decay: float = Field(1e-4, ge=0, description="Weight decay of the head (C = 1/wd for logreg).")
    normalize_embeddings: bool = Field(False, description="L2-normalise pooled embeddings before the head.")

    # --- extractive QA ----------------------------------------------------------------------------------------
    question_column: str = Field("question", description="QA question field.")
    context_column: str = Field("context", description="QA context field.")
    answers_column: str = Field("answers", description="QA answers: {text: [...], answer_start: [...]} or a list of them.")
    doc_stride: int = Field(64, gt=0, description="Tokens of overlap between windows of a long context.")
    max_answer_len: int = Field(30, gt=0, description="Longest answer span in tokens at decoding time.")
    n_best: int = Field(20, gt=0, description="Start/end candidates considered per window when decoding spans.")
    allow_unanswerable: bool = Field(
        False, description="SQuAD v2: train and predict 'no answer'; off: unanswerable questions are skipped.")
    null_score_diff_threshold: float = Field(
        0.0, description="Predict 'no answer' when null score - best span score exceeds this.")

    # --- seq2seq ------------------------------------------------------------------------------------------------
    source_column: str | None = Field(None, description="Source text field (default: source_lang, else 'source').")
    target_column: str | None = Field(None, description="Target text field (default: target_lang, else 'target').")
    source_lang: str | None = Field(None, description="Source language code; also the column name when unset (en).")
    target_lang: str | None = Field(None, description="Target language code; also the column name when unset (de).")
    source_prefix: str = Field("", description="Text put before every source (T5 style 'translate English to German: ').")
    max_target_len: int = Field(128, gt=0, description="Max target tokens when training.")
    max_new_tokens: int = Field(64, gt=0, description="Max generated tokens at evaluation (predict-with-generate).")
    num_beams: int = Field(1, gt=0, description="Beam size at evaluation.")
    random_init: bool = Field(
        False, description="Build the model from its config.json with random weights (tiny demos and tests).")

    # --- shared -------------------------------------------------------------------------------------------------
    metric: str = Field(
        "auto", description="Main metric: auto (the stage's default: accuracy for cls, f1 for qa, bleu for seq2seq) "
                            "or one of the stage's metrics, e.g. f1_macro, exact_match, chrf (checked by the stage).")
    max_eval_samples: int | None = Field(None, gt=0, description="Evaluate on at most this many eval samples.")
    write_predictions: bool = Field(True, description="Write predictions.jsonl (one line per eval sample).")

    @field_validator("class_weights", mode="before")
    @classmethod
    def _class_weights_choice(cls, v: Any) -> Any:
        # One readable message instead of pydantic's per-union-member errors.
        if v is None:
            return "none"
        ok = v in ("none", "balanced") if isinstance(v, str) else (
            isinstance(v, list) and v and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0
                                              for w in v))
        if not ok:
            raise ValueError("must be none, balanced, or a list of positive numbers (one per label, in label order)")
        return v

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self
