"""What a generation stage (qa, seq2seq) hands `compare-approaches`: its training and held-out rows in one layout,
and how a decoder is asked the same task (prompt, system turn, SFT data format) and scored (the eval preset)."""

from __future__ import annotations

from dataclasses import dataclass, field

# language codes the translation prompt names in words; other codes are used as they are
LANGUAGES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
             "nl": "Dutch", "cs": "Czech", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ro": "Romanian"}


@dataclass
class GenComparison:
    kind: str  # "extractive QA", "translation": the report's title
    own_route: str  # the config's own model and stage, as a route name (span_head, seq2seq)
    train: list[dict]  # training rows in the eval preset's layout, as the config's stage selected them
    heldout: list[dict]  # the held-out rows every route is scored on
    shots: list[dict]  # rows few-shot examples are drawn from (training rows with a reference)
    own_task: dict  # task keys that point the config's own stage at the written rows
    eval_task: dict  # EvalTaskConfig fields for the decoder routes (preset, prompt, target, chat, max_new_tokens)
    system: str  # the decoder's system turn, in prompting and in SFT alike
    sft_data: dict  # DatasetSpec fields (format, columns) that read the training rows as chat turns
    sft_cutoff: int  # data.cutoff_len of the SFT route: the longest prompt + reply fits
    quality: tuple = field(default=())  # ((result key, header), ...): the score columns, main first


def language(code: str | None) -> str:
    return LANGUAGES.get(code or "", code or "")
