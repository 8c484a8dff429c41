"""`eval:` section: what `tuneforge eval` (and eval after training) runs.

Every field has a default, so a config without `eval:` stays valid (it just has no tasks). A task is either a
preset for a known file layout (`preset: mmlu`) or a small field spec (`prompt`, `choices`, `gold` / `target`);
explicit fields override the preset's. See docs/eval.md for the presets and examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GEN_METRICS = ("exact_match", "f1", "bleu", "chrf", "ter", "rouge", "accuracy", "strict_match", "flexible_extract")
MCQ_METRICS = ("acc", "acc_norm", "mc2")
PREF_METRICS = ("reward_acc", "reward_margin", "logp_acc")
PRESETS = ("mmlu", "arc", "openbookqa", "hellaswag", "hellaswag_obqa", "truthfulqa_mc1", "truthfulqa_mc2", "gsm8k",
           "generate_until", "squad", "translation")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EvalTaskConfig(_Strict):
    """One benchmark: a local JSONL/JSON/CSV file and how to turn a row into a prompt and an answer."""

    name: str = Field("", description="Task name in reports (default: the preset or the file stem).")
    file: str = Field(..., description="Local .jsonl/.json/.csv file with one sample per row.")
    type: Literal["auto", "mcq", "generate", "preference"] = Field(
        "auto", description="mcq: score choices by log-likelihood; generate: generate then score text; preference: "
                            "pairwise accuracy on chosen/rejected pairs, any layout the dpo stage reads (auto: "
                            "preset's).")
    preset: Literal[PRESETS] | None = Field(  # type: ignore[valid-type]
        None, description="Known layout that fills prompt/choices/gold/target/metrics: " + ", ".join(PRESETS) + ".")
    prompt: str | None = Field(
        None, description="Prompt template, Python format syntax over the row: 'Question: {question}\\nAnswer:'; "
                          "nested fields as {question.stem} or {choices[0]}.")
    choices: str | list[str] | None = Field(
        None, description="mcq: field path of the choice list ('choices', 'question.choices.text') or a literal list "
                          "(['A','B','C','D']).")
    gold: str | None = Field(
        None, description="mcq: field path of the answer: an int index, a label (see `labels`) or the choice text.")
    labels: str | list[str] | None = Field(
        None, description="mcq: field path or list of choice labels used to map a letter gold ('C') to an index "
                          "(default A, B, C, ...).")
    target: str | None = Field(None, description="generate: field path of the reference text (a string or a list).")
    metrics: list[str] = Field(
        default_factory=list, description="generate: any of " + ", ".join(GEN_METRICS) + " (default: preset's, else "
                                          "exact_match + f1); mcq: " + ", ".join(MCQ_METRICS) + " (default: "
                                          "preset's, else acc + acc_norm); preference: " + ", ".join(PREF_METRICS)
                                          + " (default: all that apply).")
    extract: Literal["none", "number", "choice"] | None = Field(
        None, description="generate: answer extraction before scoring (number: GSM8K final number; choice: A-D; "
                          "default: the preset's, else none).")
    chat: bool = Field(False, description="generate: wrap the prompt in the tokenizer's chat template.")
    stop: list[str] = Field(default_factory=list, description="generate: stop strings (cut from the output).")
    max_new_tokens: int | None = Field(None, gt=0, description="generate: override of eval.max_new_tokens.")
    description: str | None = Field(
        None, description="Text put before the few-shot examples, a template over the row (default: the preset's; "
                          "\"\" = none).")
    fewshot: int | None = Field(None, ge=0, description="Number of solved examples prepended to each prompt "
                                                         "(default: the preset's, as lm-eval: gsm8k 5, others 0).")
    fewshot_file: str | None = Field(None, description="File the few-shot examples come from (default: `file`, "
                                                         "never the sample itself).")
    fewshot_sampler: Literal["lm_eval", "random", "first_n"] | None = Field(
        None, description="lm_eval: lm-eval's default sampler (one RNG seeded with eval.seed, drawn in file order); "
                          "first_n: the first k rows (lm-eval's MMLU/GSM8K); random: seeded per sample, so a "
                          "sample's examples don't depend on limit or order. Default: the preset's, else lm_eval.")
    target_delimiter: str = Field(" ", description="Between a prompt and its answer (lm-eval's target_delimiter).")
    fewshot_delimiter: str = Field("\n\n", description="Between few-shot examples (lm-eval's fewshot_delimiter).")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N samples.")
    beta: float = Field(0.1, gt=0, description="preference: beta of the implicit reward beta * (log pi - log "
                                                "pi_ref), as the run's align.pref_beta.")
    reference: str | None = Field(
        None, description="preference: reference model (path, .gguf, hub id) for the implicit reward. Default: the "
                          "target's base with its adapter disabled; a target without adapter then reports logp_acc "
                          "only.")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        known = GEN_METRICS + MCQ_METRICS + PREF_METRICS
        bad = [m for m in v if m not in known]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {list(known)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"file": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _default_name(self) -> "EvalTaskConfig":
        if not self.name:
            self.name = self.preset or Path(self.file).stem
        return self


class EvalConfig(_Strict):
    tasks: list[EvalTaskConfig] = Field(default_factory=list, description="Benchmarks to run (empty: nothing).")
    batch_size: int = Field(8, gt=0, description="MCQ: questions per forward pass; generate: prompts per batch.")
    max_length: int | None = Field(None, gt=0, description="Max tokens per sequence (default: the model's limit); "
                                                             "longer prompts lose their left part, as in lm-eval.")
    max_new_tokens: int = Field(128, gt=0, description="generate: max tokens generated per sample (the gsm8k and "
                                                        "generate_until presets use lm-eval's 256).")
    do_sample: bool = Field(False, description="generate: sample instead of greedy decoding.")
    temperature: float = Field(1.0, gt=0, description="generate: sampling temperature (do_sample only).")
    top_p: float = Field(1.0, gt=0, le=1, description="generate: nucleus sampling mass (do_sample only).")
    seed: int = Field(1234, description="Seed for few-shot sampling (lm-eval's fewshot seed), sampled generation "
                                        "and bootstrap CIs.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice, all cores).")
    batch_tokens: int | None = Field(
        None, gt=0, description="MCQ: also cap a forward at this many padded tokens (rows x longest row); long "
                                "5-shot rows then batch fewer questions (default: batch_size alone).")
    progress: Literal["auto", "bar", "lines", "off"] = Field(
        "auto", description="Progress per task: a bar with ETA on a terminal, plain unwrapped lines otherwise "
                            "(auto), or off.")
    scoring: Literal["auto", "shared", "separate"] = Field(
        "auto", description="MCQ: shared = context encoded once, all choices in one row (tree attention mask); "
                            "separate = one row per choice (lm-eval's way); auto = shared, checked once against separate.")
    ci: Literal["bootstrap", "wilson"] = Field(
        "bootstrap", description="Confidence interval in reports: bootstrap over samples, or Wilson (binomial, 0/1 scores).")
    ci_level: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    bootstrap_samples: int = Field(1000, gt=0, description="Bootstrap resamples for CIs.")
    after_train: bool = Field(False, description="Run these tasks on the trained model at the end of `tuneforge train`.")
    output_dir: str | None = Field(None, description="Where results go (default: <run dir>/eval, or runs/eval-<time>).")

    @model_validator(mode="after")
    def _unique_names(self) -> "EvalConfig":
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names must be unique, {dupes} repeated; set `name:` on each task")
        return self
