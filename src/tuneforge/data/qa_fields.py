"""The question and answer text of a record, for comparing records (decontamination, dedup, quality filters).

Each record layout has one rule (see ``LAYOUTS``): training formats (alpaca, sharegpt, openai, text) and the
benchmark files in shared/data (mmlu, gsm8k, truthfulqa, openbookqa, squad). A ``FieldSpec`` overrides the rule
with dotted paths (``question.stem``). A file's layout is detected from its first row; later rows that match a
different layout, or lack the layout's fields, raise ``DataError`` naming file:line.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable

from tuneforge.data.readers import Row
from tuneforge.errors import DataError


@dataclass(frozen=True)
class QA:
    """What a record asks and answers. `question` includes any input/context/choices shown with it; `stem` is the
    question without its lettered choices and `choices` those choices (empty when the record has none)."""

    question: str
    answer: str
    file: str = ""
    line: int = 0
    stem: str = ""
    choices: tuple[str, ...] = ()
    unanswerable: bool = False  # a SQuAD v2 item with no answer: the right output is to abstain

    @property
    def text(self) -> str:
        return f"{self.question}\n{self.answer}".strip()

    @property
    def stem_text(self) -> str:
        return self.stem or self.question


@dataclass(frozen=True)
class FieldSpec:
    """User override: dotted paths to the question and (optionally) answer fields."""

    question: str
    answer: str | None = None

    @classmethod
    def parse(cls, spec: str | None) -> "FieldSpec | None":
        """``"question.stem"`` or ``"Question:Best Answer"`` (question path, then answer path after ':')."""
        if not spec:
            return None
        q, _, a = spec.partition(":")
        return cls(q.strip(), a.strip() or None)


def _get(data: dict, path: str) -> object:
    cur: object = data
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def _as_text(val: object) -> str:
    """Strings as is; message content parts ([{type, text|value}]) and lists joined; numbers as strings."""
    if val is None:
        return ""
    if isinstance(val, str):
        return val
    if isinstance(val, dict):
        return _as_text(val.get("text", val.get("value", val.get("content", ""))))
    if isinstance(val, (list, tuple)):
        return "\n".join(t for t in (_as_text(v) for v in val) if t)
    return str(val)


def _turn(turns: object, roles: tuple[str, ...]) -> str:
    """Content of the first turn whose role is one of `roles` (sharegpt `from/value` or openai `role/content`)."""
    if not isinstance(turns, list):
        return ""
    for t in turns:
        if isinstance(t, dict) and str(t.get("role", t.get("from", ""))).lower() in roles:
            return _as_text(t.get("content", t.get("value")))
    return ""


_USER, _ASSISTANT = ("user", "human"), ("assistant", "gpt", "bot", "model")


def _alpaca(d: dict) -> tuple[str, str]:
    q = _as_text(d.get("instruction"))
    extra = _as_text(d.get("input"))
    return (q + "\n" + extra if extra else q), _as_text(d.get("output"))


def _chat(key: str) -> Callable[[dict], tuple[str, str]]:
    def extract(d: dict) -> tuple[str, str]:
        answer = _turn(d[key], _ASSISTANT)
        if not answer and isinstance(d.get("chosen"), (dict, str)):  # sharegpt preference data
            answer = _as_text(d["chosen"])
        return _turn(d[key], _USER), answer
    return extract


def _with_choices(stem: str, choices: Iterable[str]) -> str:
    # MMLU-style stems are often generic ("Which of the following is true?"); the choices carry the content.
    return stem + "\n" + "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))


def _mmlu(d: dict) -> tuple[str, str, str, tuple[str, ...]]:
    choices = [_as_text(c) for c in d["choices"]]
    ans = d.get("answer")
    answer = choices[ans] if isinstance(ans, int) and 0 <= ans < len(choices) else _as_text(ans)
    stem = _as_text(d["question"])
    return _with_choices(stem, choices), answer, stem, tuple(choices)


def _openbookqa(d: dict) -> tuple[str, str, str, tuple[str, ...]]:
    q = d["question"]
    choices = q.get("choices") or []
    texts = [_as_text(c.get("text")) if isinstance(c, dict) else _as_text(c) for c in choices]
    answer = next((_as_text(c.get("text")) for c in choices
                   if isinstance(c, dict) and c.get("label") == d.get("answerKey")), "")
    stem = _as_text(q.get("stem"))
    return _with_choices(stem, texts), answer, stem, tuple(texts)


# A lettered choice on its own line: "A. text", "(b) text", "C) text", "D: text".
_CHOICE_LINE = re.compile(r"^\s*\(?([A-Ha-h])[.):]\s+(\S.*)$")


def split_choices(text: str) -> tuple[str, tuple[str, ...]]:
    """(stem, choices) of a question written with lettered choice lines (A, B, C... in order, at least two);
    (text, ()) when it has none. Lines after the choices (e.g. "Answer:") stay in the stem."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        m = _CHOICE_LINE.match(line)
        if not m or m.group(1).upper() != "A":
            continue
        choices = []
        for nxt in lines[start:]:
            c = _CHOICE_LINE.match(nxt)
            if not c or c.group(1).upper() != chr(65 + len(choices)):
                break
            choices.append(c.group(2).strip())
        if len(choices) >= 2:
            rest = lines[:start] + lines[start + len(choices):]
            return "\n".join(rest).strip(), tuple(choices)
    return text, ()


def _squad(d: dict) -> tuple[str, str]:
    answers = d.get("answers")
    texts = answers.get("text") if isinstance(answers, dict) else answers
    return _as_text(d["question"]), (_as_text(texts[0]) if texts else "")


def _field(key: str, answer_key: str | None) -> Callable[[dict], tuple[str, str]]:
    return lambda d: (_as_text(d[key]), _as_text(d.get(answer_key)) if answer_key else "")


# (name, required keys, extractor); the first layout whose test passes wins, so specific ones come first.
# Extractors return (question, answer) or, for multiple-choice layouts, (question, answer, stem, choices).
LAYOUTS: list[tuple[str, Callable[[dict], bool], Callable[[dict], tuple]]] = [
    ("openai", lambda d: isinstance(d.get("messages"), list), _chat("messages")),
    ("sharegpt", lambda d: isinstance(d.get("conversations"), list), _chat("conversations")),
    ("alpaca", lambda d: "instruction" in d, _alpaca),
    ("openbookqa", lambda d: isinstance(d.get("question"), dict) and "stem" in d["question"], _openbookqa),
    ("mmlu", lambda d: "question" in d and isinstance(d.get("choices"), list), _mmlu),
    ("squad", lambda d: "question" in d and "answers" in d, _squad),
    ("truthfulqa", lambda d: "Question" in d, _field("Question", "Best Answer")),
    ("qa", lambda d: "question" in d, _field("question", "answer")),
    ("prompt", lambda d: "prompt" in d, lambda d: (_as_text(d["prompt"]), _as_text(
        d.get("response", d.get("completion", d.get("chosen")))))),
    ("text", lambda d: "text" in d, _field("text", None)),
]
LAYOUT_NAMES = [name for name, _, _ in LAYOUTS]


def detect_layout(row: Row) -> str:
    for name, test, _ in LAYOUTS:
        if test(row.data):
            return name
    raise DataError(f"no question/answer text field found in fields {sorted(row.data)}", file=row.file,
                    line=row.line, hint=f"known layouts: {', '.join(LAYOUT_NAMES)}; or pass --field QUESTION[:ANSWER]")


def extract_qa(row: Row, layout: str, spec: FieldSpec | None = None) -> QA:
    """The QA of one row under a layout (or a FieldSpec); DataError when the fields are missing."""
    if spec is not None:
        q = _get(row.data, spec.question)
        if q is None:
            raise DataError(f"missing text field '{spec.question}'", file=row.file, line=row.line,
                            hint=f"fields present: {sorted(row.data)}")
        a = _get(row.data, spec.answer) if spec.answer else ""
        if a is None:
            raise DataError(f"missing answer field '{spec.answer}'", file=row.file, line=row.line,
                            hint=f"fields present: {sorted(row.data)}")
        question = _as_text(q)
        return QA(question, _as_text(a), row.file, row.line, *split_choices(question))
    test, fn = next((t, f) for n, t, f in LAYOUTS if n == layout)
    if not test(row.data):
        other = next((n for n, t, _ in LAYOUTS if t(row.data)), None)
        if other:
            raise DataError(f"mismatched formats: this record looks like '{other}' but the file's first record "
                            f"is '{layout}'", file=row.file, line=row.line, hint="keep one record layout per file")
        raise DataError(f"missing text field for layout '{layout}' (fields present: {sorted(row.data)})",
                        file=row.file, line=row.line, hint="pass --field QUESTION[:ANSWER] to name the fields")
    try:
        parts = fn(row.data)
    except (KeyError, TypeError, AttributeError) as e:
        raise DataError(f"malformed '{layout}' record ({type(e).__name__}: {e})", file=row.file,
                        line=row.line) from None
    q, a = parts[0], parts[1]
    stem, choices = (parts[2], parts[3]) if len(parts) == 4 else split_choices(q)
    return QA(q, a, row.file, row.line, stem, choices, unanswerable=layout == "squad" and not a)


def rows_to_qas(rows: list[Row], spec: FieldSpec | None = None) -> list[QA]:
    """QAs of rows, detecting the layout once per file; raise on an empty list."""
    if not rows:
        raise DataError("no records to compare (empty input)")
    layouts: dict[str, str] = {}
    out = []
    for row in rows:
        if spec is None and row.file not in layouts:
            layouts[row.file] = detect_layout(row)
        out.append(extract_qa(row, layouts.get(row.file, ""), spec))
    return out


_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case-, whitespace- and punctuation-insensitive form used for exact matching and n-grams."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def words(text: str) -> list[str]:
    return normalize(text).split()
