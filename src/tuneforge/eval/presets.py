"""Presets: prompt / choices / gold / target / metrics for known benchmark file layouts (see docs/eval.md).

A preset is a dict of `TaskSpec` fields; `transform` derives fields from a row before templating (for layouts
that a field path can't express, e.g. TruthfulQA's `; `-separated answers).
"""

from __future__ import annotations

import string
from typing import Any

LETTERS = string.ascii_uppercase


def _mmlu_row(row: dict) -> dict:
    choices = row.get("choices")
    out = dict(row, question=str(row.get("question", "")).strip(),
               subject_name=str(row.get("subject", "")).replace("_", " "))
    if isinstance(choices, list):
        out["choices_block"] = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices[:26]))
        out["letters"] = list(LETTERS[: len(choices)])
    return out


def _truthfulqa_row(row: dict) -> dict:
    """CSV-derived TruthfulQA → MC1: the best answer first (gold 0), then the incorrect answers."""
    best = str(row.get("Best Answer", "")).strip()
    wrong = [a.strip() for a in str(row.get("Incorrect Answers", "")).split(";") if a.strip()]
    return dict(row, mc1_choices=([best] if best else []) + wrong, mc1_gold=0)


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

PRESETS: dict[str, dict[str, Any]] = {
    # MMLU JSONL (question, choices[4], answer index): the letter is scored, lm-eval's mmlu prompt.
    "mmlu": dict(type="mcq", prompt="{question}\n{choices_block}\nAnswer:", choices="letters", gold="answer",
                 description="The following are multiple choice questions (with answers) about {subject_name}.\n\n",
                 fewshot_match="subject", transform=_mmlu_row),
    # HF ai2_arc layout: question (str), choices{text,label}, answerKey.
    "arc": dict(type="mcq", prompt="Question: {question}\nAnswer:", choices="choices.text", gold="answerKey",
                labels="choices.label"),
    # OpenBookQA JSONL: question{stem, choices[{text,label}]}, answerKey — ARC-style prompt.
    "openbookqa": dict(type="mcq", prompt="Question: {question.stem}\nAnswer:", choices="question.choices.text",
                       gold="answerKey", labels="question.choices.label"),
    # HellaSwag-style: the stem is a context, the choices are its continuations (no Question/Answer frame);
    # length-normalised accuracy is the headline number, as for HellaSwag.
    "hellaswag_obqa": dict(type="mcq", prompt="{question.stem}", choices="question.choices.text", gold="answerKey",
                           labels="question.choices.label", main_metric="acc_norm"),
    "truthfulqa_mc1": dict(type="mcq", prompt=_TQA_PRIMER + "Q: {Question}\nA:", choices="mc1_choices",
                           gold="mc1_gold", transform=_truthfulqa_row),
    "gsm8k": dict(type="generate", prompt="Question: {question}\nAnswer:", target="answer", extract="number",
                  metrics=["accuracy"], stop=["Question:", "\n\n\n"], main_metric="accuracy"),
    "squad": dict(type="generate", prompt="Context: {context}\nQuestion: {question}\nAnswer:", target="answers.text",
                  metrics=["exact_match", "f1"], stop=["\n"], main_metric="f1"),
    "translation": dict(type="generate", prompt="Translate English to German.\nEnglish: {en}\nGerman:", target="de",
                        metrics=["bleu", "chrf", "ter"], stop=["\n"], main_metric="chrf"),
}
