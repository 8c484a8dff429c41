"""The config tree. Each section is a small model; each stage reads only the sections it needs.

Every field has a type, a default and a one-line description (used by ``tuneforge config --help``-style docs).
Unknown keys are rejected (``extra="forbid"``); the loader turns that into "did you mean" messages.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneforge.config.align import AlignConfig
from tuneforge.config.distill import DistillConfig
from tuneforge.config.evaluation import EvalConfig
from tuneforge.config.task import TaskConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(Section):
    path: str = Field("", description="Local model dir, a .gguf file, or a hub id (hub needs network).")
    gguf_file: str | None = Field(None, description="GGUF file name inside `path` when `path` is a directory.")
    tokenizer: str | None = Field(None, description="Tokenizer dir/id if different from `path`.")
    adapter: str | None = Field(None, description="A trained LoRA adapter dir to load on top (chat/eval).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = float32 on CPU, bfloat16 on GPUs that support it.")
    trust_remote_code: bool = Field(False, description="Allow model code from the model dir (off: safe default).")
    attn_implementation: str | None = Field(None, description="eager | sdpa | flash_attention_2 | None (library default).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")


class DatasetSpec(Section):
    path: str = Field(..., description="File, directory, dataset_info.json entry name, or hub dataset id.")
    format: Literal["auto", "alpaca", "sharegpt", "openai", "text", "cls", "qa", "seq2seq"] = Field(
        "auto", description="Record layout; auto detects from the first record's fields.")
    weight: float = Field(1.0, gt=0, description="Relative sampling weight when mixing several datasets.")
    max_samples: int | None = Field(None, gt=0, description="Keep at most this many records of this dataset.")
    split: str = Field("train", description="Split name for hub / datasets-dir loading.")
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="Map our field names to the file's, e.g. {instruction: question}.")
    tags: dict[str, str] = Field(default_factory=dict,
                                 description="sharegpt keys/roles: role_tag, content_tag, user_tag, assistant_tag, ...")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v


class DataConfig(Section):
    train: list[DatasetSpec] = Field(default_factory=list, description="Training datasets (mixed by weight).")
    eval: list[DatasetSpec] = Field(default_factory=list, description="Evaluation datasets.")
    eval_split: float = Field(0.0, ge=0, lt=1, description="Hold out this fraction of train as eval when `eval` is empty.")
    dataset_dir: str | None = Field(None, description="Dir with a LLaMA-Factory dataset_info.json registry.")
    template: str = Field("auto", description="Chat template: auto (tokenizer's own) or a named one (llama3, chatml, ...).")
    system: str | None = Field(None, description="Default system prompt when a sample has none.")
    cutoff_len: int = Field(1024, gt=0, description="Max tokens per sample.")
    overlong: Literal["truncate", "drop", "error"] = Field("truncate", description="What to do with samples over cutoff_len.")
    invalid: Literal["error", "skip"] = Field("error", description="Invalid rows: stop with file:line, or skip and count them.")
    train_on_prompt: bool = Field(False, description="Also compute loss on prompt/user tokens.")
    mask_history: bool = Field(False, description="Train only on the last assistant turn of multi-turn samples.")
    max_samples: int | None = Field(None, gt=0, description="Cap on the mixed training set size.")
    mix_seed: int = Field(0, description="Seed for mixing / eval split.")
    packing: bool | Literal["auto"] = Field(
        "auto", description="Padding-free batches: samples back to back in one row, never attending to each other "
        "(auto: on for sft/pt when the model supports per-sample attention, else padded).")
    cache_dir: str | None = Field(None, description="Tokenized-data cache dir (default ~/.cache/tuneforge/data).")
    decontaminate_against: list[str] = Field(default_factory=list,
                                             description="Benchmark files to decontaminate training data against.")

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, dict)) else v

    @field_validator("packing", mode="before")
    @classmethod
    def _packing_choice(cls, v: Any) -> Any:
        # One readable message instead of pydantic's per-union-member errors.
        if isinstance(v, str) and v != "auto" and v.strip().lower() not in {"true", "false", "yes", "no", "on", "off",
                                                                             "1", "0", "t", "f", "y", "n"}:
            raise ValueError("must be true, false or auto")
        return v


class LoraConfig(Section):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA alpha (scale = alpha / r, or alpha / sqrt(r) with rslora).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target: str | list[str] = Field("all-linear", description="all-linear (q,k,v,o,gate,up,down) or module names.")
    dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r).")
    modules_to_save: list[str] = Field(default_factory=list, description="Extra modules trained fully and saved.")
    fast_path: bool = Field(True, description="Faster plain-LoRA matmuls on CPU (same math; docs/performance.md).")


class FreezeConfig(Section):
    trainable_layers: int = Field(2, ge=0, description="Train the last N decoder layers (negative counts not allowed).")
    modules: list[str] = Field(default_factory=list, description="Extra parameter-name substrings to train (e.g. lm_head).")


class TrainConfig(Section):
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(1.0, gt=0, description="Training epochs (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(4, gt=0, description="Per-device micro-batch size.")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    scheduler: str = Field("cosine", description="LR schedule (transformers names: linear, cosine, constant, ...).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps used for LR warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping (0 disables).")
    optim: str = Field("adamw_torch_fused", description="Optimizer name understood by transformers (fused AdamW: transformers' own default).")
    seed: int = Field(42, description="Seed for init, shuffling and dropout.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (off by default on CPU).")
    logging_steps: int = Field(1, gt=0, description="Log metrics every N steps.")
    save_steps: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    save_total_limit: int = Field(2, gt=0, description="Keep at most N checkpoints.")
    eval_steps: int = Field(0, ge=0, description="Evaluate every N steps (0: only at the end).")
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: physical cores).")
    group_by_length: bool = Field(False, description="Batch samples of similar length together (less padding).")
    batch_tokens: int = Field(0, ge=0, description="Token budget per micro-batch instead of batch_size samples (0: off).")
    loss_chunk_size: int = Field(0, ge=0, description="Chunked output head + loss, N positions at a time (large vocabularies; 0: off).")
    compile: bool = Field(False, description="torch.compile the model.")
    keep_sparsity: bool = Field(False, description="Weights of Linear layers that are exactly zero when training "
                                "starts (an unstructured `tuneforge prune`) stay zero: recovery fine-tuning keeps "
                                "the sparsity. Full / freeze methods.")
    report_to: list[str] = Field(default_factory=list, description="Trackers: tensorboard, mlflow, wandb.")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON config (LLaMA-Factory layout; \"auto\" values filled "
                                  "from this section). Set by `--launch-config F.json`; needs the deepspeed extra.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy (cls, "
                                   "seq2seq): the target keeps 1 - x, the rest is spread over all classes / tokens.")
    early_stopping_patience: int = Field(
        0, ge=0, description="Stop when the stage's main metric (task.metric: cls accuracy, qa f1, seq2seq bleu) "
        "has not improved for N evaluations (every eval_steps, else every epoch); the best checkpoint is reloaded "
        "and saved as the final model (results.json: best_step). 0: off. Task stages; needs eval data.")
    validation_split: float = Field(
        0.0, ge=0, lt=1, description="cls: hold out this fraction of the training rows (seeded by data.mix_seed) as "
        "a validation set that early stopping and the best checkpoint watch, so the eval set (data.eval or "
        "data.eval_split) is scored once, at the end, by a model not selected on it. 0: they watch the eval set.")
    early_stopping_threshold: float = Field(0.0, ge=0, description="Smallest change of the main metric that "
                                            "counts as an improvement for early stopping.")
    seeds: list[int] = Field(default_factory=list, description="Train once per seed into <run>/seed-<s>/ and write "
                             "seeds.json / seeds.md with mean and std of the eval metrics (`--seeds N`: seed, "
                             "seed+1, ...). Empty: one run with train.seed.")
    on_divergence: Literal["stop", "warn"] = Field(
        "stop", description="Loss spike far above its running median or collapse (grad-norm 0, loss at ln(vocab)): "
        "stop naming a checkpoint that resumes, or only warn. A non-finite loss always stops.")


class OutputConfig(Section):
    dir: str = Field("runs", description="Parent dir of run directories.")
    name: str | None = Field(None, description="Run name (default: <stage>-<timestamp>): one directory name inside "
                             "`dir`, or a/b subfolders; never absolute, never `..`.")
    overwrite: bool = Field(False, description="Allow writing into an existing run dir that is not being resumed.")
    plot: bool = Field(True, description="Write loss plot PNGs.")
    save_merged: bool = Field(False, description="Also save a merged (adapter folded in) model.")

    @field_validator("name")
    @classmethod
    def _name_inside_dir(cls, v: str | None) -> str | None:
        # The run dir must stay inside output.dir: with overwrite=true an escaping name would clobber other files.
        if v is None:
            return v
        parts = v.replace("\\", "/").split("/")
        if not v.strip() or v.startswith(("/", "~")) or (len(v) > 1 and v[1] == ":") or \
                any(p in ("", ".", "..") for p in parts) or any(c in v for c in "\0\n\r"):
            raise ValueError("must be a run name inside output.dir (letters, digits, '-', '_', '.'; a/b for "
                             "subfolders; no absolute path, '..', '~' or empty parts)")
        return v


class Config(Section):
    stage: str = Field("sft", description="Training stage: pt | sft | cls | qa | seq2seq | rm | dpo | orpo | "
                       "simpo | kto | grpo | rloo | ppo | distill (the stage table, train/stages.py, checks the "
                       "name and which methods apply).")
    method: Literal["lora", "full", "freeze", "features"] = Field(
        "lora", description="What to train: LoRA adapters, all weights, the last layers, or a head on frozen features.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    demo_prompts: list[str] = Field(default_factory=list,
                                    description="Prompts answered before and after training (shows the change).")
