"""Presets: prompt / choices / gold / target / metrics for known benchmark file layouts (see docs/eval.md).

A preset is a dict of `TaskSpec` fields; `transform` derives fields from a row before templating (for layouts
that a field path can't express, e.g. TruthfulQA's `; `-separated answers).
"""

from __future__ import annotations

import re
import string
from typing import Any

from tuneforge.data.formats import QA_PROMPT

LETTERS = string.ascii_uppercase


def _mmlu_row(row: dict) -> dict:
    choices = row.get("choices")
    if not isinstance(choices, list):
        raise ValueError(f"field 'choices' must be a list of answer texts, got {type(choices).__name__}")
    return dict(row, question=str(row.get("question", "")).strip(),
                subject_name=str(row.get("subject", "")).replace("_", " "),
                choices_block="\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices[:26])),
                letters=list(LETTERS[: len(choices)]))


def _hellaswag_text(text: str) -> str:
    """HellaSwag's WikiHow clean-up, as in lm-eval's hellaswag task."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_row(row: dict) -> dict:
    """HF Rowan/hellaswag layout: activity_label, ctx_a, ctx_b, endings[4], label."""
    missing = [k for k in ("activity_label", "ctx_a", "ctx_b", "endings", "label") if k not in row]
    if missing:
        raise ValueError(f"hellaswag row needs {missing}")
    if not isinstance(row["endings"], list):
        raise ValueError("field 'endings' must be a list")
    ctx = str(row["ctx_a"]) + " " + str(row["ctx_b"]).capitalize()
    return dict(row, hs_query=_hellaswag_text(str(row["activity_label"]) + ": " + ctx),
                hs_choices=[_hellaswag_text(str(e)) for e in row["endings"]], hs_gold=row["label"])


def _split_answers(text: Any) -> list[str]:
    return [a.strip() for a in str(text or "").split(";") if a.strip()]


def _truthfulqa_row(row: dict) -> dict:
    """TruthfulQA MC1/MC2 choices from HF's multiple_choice layout (mc1_targets / mc2_targets) or the CSV layout
    (MC1: the best answer, gold 0, then the incorrect answers; MC2: the correct answers, then the incorrect)."""
    out = dict(row, question_text=str(row.get("question", row.get("Question", ""))).strip())
    if isinstance(row.get("mc1_targets"), dict):
        t1, t2 = row["mc1_targets"], row.get("mc2_targets") or row["mc1_targets"]
        out.update(mc1_choices=list(t1["choices"]), mc1_gold=list(t1["labels"]).index(1),
                   mc2_choices=list(t2["choices"]), mc2_labels=[int(x) for x in t2["labels"]])
        return out
    if "Best Answer" not in row or "Incorrect Answers" not in row:
        raise ValueError("truthfulqa row needs mc1_targets/mc2_targets or 'Best Answer' and 'Incorrect Answers'")
    best = str(row.get("Best Answer", "")).strip()
    wrong = _split_answers(row.get("Incorrect Answers"))
    right = _split_answers(row.get("Correct Answers")) or ([best] if best else [])
    out.update(mc1_choices=([best] if best else []) + wrong, mc1_gold=0,
               mc2_choices=right + wrong, mc2_labels=[1] * len(right) + [0] * len(wrong))
    return out


_TQA_PRIMER = (  # the 6-shot QA primer of the TruthfulQA paper (as in lm-eval's truthfulqa_mc1)
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\nA: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\nA: The 1992 Olympics were held in Barcelona, Spain.\n\n"
)

# Each benchmark preset reproduces lm-eval's standard task by default (prompt, choices, few-shot count and
# sampler, stop strings, generation length); a user's explicit field overrides the preset's.
_GSM8K_STOP = ["Question:", "</s>", "<|im_end|>"]

PRESETS: dict[str, dict[str, Any]] = {
    # MMLU JSONL (question, choices[4], answer index): the letter is scored, lm-eval's mmlu prompt; few-shot
    # examples are the first k of the same subject (lm-eval: first_n over the subject's dev split).
    "mmlu": dict(type="mcq", prompt="{question}\n{choices_block}\nAnswer:", choices="letters", gold="answer",
                 description="The following are multiple choice questions (with answers) about {subject_name}.\n\n",
                 fewshot_match="subject", fewshot_sampler="first_n", transform=_mmlu_row, metrics=["acc"]),
    # HF ai2_arc layout: question (str), choices{text,label}, answerKey.
    "arc": dict(type="mcq", prompt="Question: {question}\nAnswer:", choices="choices.text", gold="answerKey",
                labels="choices.label"),
    # OpenBookQA JSONL: question{stem, choices[{text,label}]}, answerKey — ARC-style prompt.
    "openbookqa": dict(type="mcq", prompt="Question: {question.stem}\nAnswer:", choices="question.choices.text",
                       gold="answerKey", labels="question.choices.label"),
    # HF Rowan/hellaswag layout, lm-eval's preprocessing; length-normalised accuracy is the headline number.
    "hellaswag": dict(type="mcq", prompt="{hs_query}", choices="hs_choices", gold="hs_gold",
                      transform=_hellaswag_row, main_metric="acc_norm"),
    # HellaSwag-style on an OpenBookQA file: the stem is a context, the choices are its continuations.
    "hellaswag_obqa": dict(type="mcq", prompt="{question.stem}", choices="question.choices.text", gold="answerKey",
                           labels="question.choices.label", main_metric="acc_norm"),
    "truthfulqa_mc1": dict(type="mcq", prompt=_TQA_PRIMER + "Q: {question_text}\nA:", choices="mc1_choices",
                           gold="mc1_gold", transform=_truthfulqa_row, metrics=["acc"]),
    # MC2: normalised probability mass of the true answers (lm-eval's truthfulqa_mc2 "acc")
    "truthfulqa_mc2": dict(type="mcq", prompt=_TQA_PRIMER + "Q: {question_text}\nA:", choices="mc2_choices",
                           gold="mc2_labels", transform=_truthfulqa_row, metrics=["mc2"], main_metric="mc2"),
    # lm-eval's gsm8k: 5 examples from lm-eval's default sampler (lm-eval draws them from the train split: set
    # fewshot_file), the full worked answer as target, strict ("#### N") and flexible (last number) exact match.
    "gsm8k": dict(type="generate", prompt="Question: {question}\nAnswer:", target="answer",
                  metrics=["strict_match", "flexible_extract"], stop=_GSM8K_STOP, main_metric="strict_match",
                  fewshot=5, max_new_tokens=256),
    # lm-eval's generic generate_until: `input` -> `target`, stop at the few-shot delimiter, 256 tokens.
    "generate_until": dict(type="generate", prompt="{input}", target="target", metrics=["exact_match"],
                           stop=["\n\n"], max_new_tokens=256),
    "squad": dict(type="generate", prompt=QA_PROMPT + "\nAnswer:", target="answers.text",
                  metrics=["exact_match", "f1"], stop=["\n"], main_metric="f1"),
    "translation": dict(type="generate", prompt="Translate English to German.\nEnglish: {en}\nGerman:", target="de",
                        metrics=["bleu", "chrf", "ter"], stop=["\n"], main_metric="chrf"),
}
