"""Simple quality filters: empty or too short/long records, garbled text, wrong language.

Garbled means any of: the Unicode replacement character (a decoding error upstream), two or more mojibake
sequences (UTF-8 read as Latin-1, e.g. "Ã©", "â€™"), control characters, a letter repeated 20+ times in a row,
or a long text (>= 50 words) whose distinct-word ratio is below 0.1 (degenerate repetition).
Language id uses py3langid (a small pure-numpy model) when `lang` is set; texts under 20 letters are not judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tuneforge.data.qa_fields import QA
from tuneforge.errors import DataError

_MOJIBAKE = re.compile(r"Ã[\x80-\xbf]|Â[\x80-\xbf\xa0]|â€[\x80-\xbf™œ“”˜]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LETTER_RUN = re.compile(r"([^\W\d_])\1{19,}")
LANG_MIN_LETTERS = 20


@dataclass
class QualityRules:
    """Thresholds of `filter_quality`; None disables a rule."""

    min_answer_chars: int = 1  # 1 = drop empty answers
    min_question_chars: int = 1
    max_chars: int | None = None  # question + answer
    min_words: int | None = None  # question + answer
    garbled: bool = True
    lang: str | None = None  # ISO 639-1 code, e.g. "en"


@dataclass
class QualityResult:
    kept: list[int]
    dropped: list[tuple[int, list[str]]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, reasons in self.dropped:
            for r in reasons:
                key = r.split(" ")[0]
                out[key] = out.get(key, 0) + 1
        return out


def garbled_reason(text: str) -> str | None:
    """Why `text` looks garbled, or None."""
    if "\ufffd" in text:
        return "replacement character U+FFFD"
    if len(_MOJIBAKE.findall(text)) >= 2:
        return "mojibake (UTF-8 decoded as Latin-1)"
    if _CONTROL.search(text):
        return "control characters"
    if _LETTER_RUN.search(text):
        return "a letter repeated 20+ times"
    toks = text.lower().split()
    if len(toks) >= 50 and len(set(toks)) / len(toks) < 0.1:
        return "degenerate repetition"
    return None


def _lang_classifier():
    try:
        import py3langid
    except ImportError:
        raise DataError("language filtering needs py3langid", hint="pip install py3langid (in tuneforge[decontam])") \
            from None
    return py3langid.classify


def check(qa: QA, rules: QualityRules, answers_expected: bool = True, classify=None) -> list[str]:
    """Reasons to drop one record (empty list = keep)."""
    reasons = []
    q, a = qa.question.strip(), qa.answer.strip()
    if rules.min_question_chars and len(q) < rules.min_question_chars:
        reasons.append("empty question" if not q else f"short question ({len(q)} chars)")
    if answers_expected and rules.min_answer_chars and len(a) < rules.min_answer_chars:
        reasons.append("empty answer" if not a else f"short answer ({len(a)} chars)")
    text = qa.text
    if rules.max_chars is not None and len(text) > rules.max_chars:
        reasons.append(f"long ({len(text)} chars > {rules.max_chars})")
    if rules.min_words is not None and len(text.split()) < rules.min_words:
        reasons.append(f"few words ({len(text.split())} < {rules.min_words})")
    if rules.garbled:
        why = garbled_reason(qa.question) or garbled_reason(qa.answer)
        if why:
            reasons.append(f"garbled ({why})")
    if rules.lang and classify is not None and sum(c.isalpha() for c in text) >= LANG_MIN_LETTERS:
        got = classify(text)[0]
        if got != rules.lang:
            reasons.append(f"language {got} (want {rules.lang})")
    return reasons


def filter_quality(qas: list[QA], rules: QualityRules | None = None) -> QualityResult:
    """Indices that pass every rule, and the dropped ones with their reasons."""
    rules = rules or QualityRules()
    if not qas:
        raise DataError("no records to filter (empty input)")
    classify = _lang_classifier() if rules.lang else None
    # Plain-text datasets (pre-training) have no answers at all: do not call every record "empty answer".
    answers_expected = any(q.answer.strip() for q in qas)
    result = QualityResult([])
    for i, qa in enumerate(qas):
        reasons = check(qa, rules, answers_expected, classify)
        if reasons:
            result.dropped.append((i, reasons))
        else:
            result.kept.append(i)
    return result
