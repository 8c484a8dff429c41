"""Record layouts → one canonical sample: a chat (`messages`) or plain `text`, validated with file:line errors.

Formats
- alpaca:   instruction, input, output, [system], [history: [[user, assistant], ...]]
- sharegpt: conversations: [{from, value}], roles human/gpt/system (keys and role names configurable via `tags`)
- openai:   messages: [{role, content}]
- text:     text (continued pre-training)
- qa:       context, question, answers (SQuAD, flat): the user turn asks the question about the context, the reply is
            the first answer span; unanswerable questions (no answer) are skipped and counted
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tuneforge.data.qa_data import QAExample, answer_list, check_answers
from tuneforge.data.readers import Row
from tuneforge.errors import DataError

# Canonical field names per format; user-supplied `columns` map these to the file's own names.
ALPACA_ALIASES = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_DEFAULT_TAGS = {
    "role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
    "system_tag": "system", "observation_tag": "observation", "function_tag": "function_call",
}
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                "model": "assistant", "system": "system"}


# The question-answering prompt; eval's `squad` preset appends "\nAnswer:" so a plain prompt ends where the reply starts.
QA_PROMPT = "Context: {context}\nQuestion: {question}"

SampleKind = Literal["chat", "text"]  # what a stage trains on: conversations, or documents (pre-training)


@dataclass
class Sample:
    """A validated training sample; `messages` for chat stages, `text` for pre-training."""

    file: str
    line: int
    messages: list[dict] = field(default_factory=list)
    text: str | None = None


def detect_format(row: Row) -> str:
    keys = set(row.data)
    if "messages" in keys:
        return "openai"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys or "output" in keys:
        return "alpaca"
    if {"context", "question", "answers"} <= keys:
        return "qa"
    if "text" in keys and len(keys) <= 3:
        return "text"
    raise DataError(f"cannot detect the data format from fields {sorted(keys)}", file=row.file, line=row.line,
                    hint="set format: alpaca | sharegpt | openai | text, and columns: {...} if names differ")


def _col(columns: dict[str, str], name: str) -> str:
    """File column for a canonical field, honouring both our and LLaMA-Factory's column names."""
    if name in columns:
        return columns[name]
    for lf_name, ours in ALPACA_ALIASES.items():
        if ours == name and lf_name in columns:
            return columns[lf_name]
    return name


def _text(row: Row, key: str, required: bool, what: str) -> str:
    val = row.data.get(key)
    if val is None:
        if required:
            raise DataError(f"missing field '{key}' ({what})", file=row.file, line=row.line,
                            hint=f"fields present: {sorted(row.data)}; map names with columns: {{...}}")
        return ""
    if not isinstance(val, str):
        raise DataError(f"field '{key}' must be a string, got {type(val).__name__}", file=row.file, line=row.line)
    return val


def from_alpaca(row: Row, columns: dict[str, str]) -> list[dict]:
    instruction = _text(row, _col(columns, "instruction"), True, "the user prompt")
    extra = _text(row, _col(columns, "input"), False, "")
    output = _text(row, _col(columns, "output"), True, "the assistant answer")
    system = _text(row, _col(columns, "system"), False, "")
    msgs = [{"role": "system", "content": system}] if system else []
    history = row.data.get(_col(columns, "history")) or []
    if not isinstance(history, list) or any(not isinstance(h, (list, tuple)) or len(h) != 2 for h in history):
        raise DataError("'history' must be a list of [user, assistant] pairs", file=row.file, line=row.line)
    for user, assistant in history:
        msgs += [{"role": "user", "content": str(user)}, {"role": "assistant", "content": str(assistant)}]
    user = instruction + ("\n" + extra if extra else "")
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


def from_qa(row: Row, columns: dict[str, str]) -> list[dict] | None:
    """A SQuAD row as a chat: the reply is the first answer's text; None for an unanswerable question."""
    context = _text(row, _col(columns, "context"), True, "the passage")
    question = _text(row, _col(columns, "question"), True, "the question")
    key = _col(columns, "answers")
    if key not in row.data:
        raise DataError(f"missing field '{key}' (the answers)", file=row.file, line=row.line,
                        hint='expected answers: {"text": [...], "answer_start": [...]}; map names with columns: {...}')
    # the qa stage's own checks: each answer's layout, and its text found at answer_start in the context
    answers = answer_list(row.data[key], row.file, row.line)
    qid = str(row.data.get(_col(columns, "id")) or row.where)
    check_answers(QAExample(qid, question, context, answers, row.file, row.line), row.data.get("is_impossible"))
    if not answers:
        return None
    return [{"role": "user", "content": QA_PROMPT.format(context=context, question=question)},
            {"role": "assistant", "content": answers[0]["text"]}]


def from_turns(row: Row, key: str, tags: dict[str, str]) -> list[dict]:
    turns = row.data.get(key)
    if turns is None:
        raise DataError(f"missing field '{key}' (the list of turns)", file=row.file, line=row.line,
                        hint=f"fields present: {sorted(row.data)}")
    if not isinstance(turns, list):
        raise DataError(f"'{key}' must be a list of turns", file=row.file, line=row.line)
    role_key, content_key = tags["role_tag"], tags["content_tag"]
    names = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["system_tag"]: "system"}
    msgs = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise DataError(f"turn {i} needs '{role_key}' and '{content_key}' keys", file=row.file, line=row.line)
        raw_role = turn[role_key]
        role = names.get(raw_role) or ROLE_ALIASES.get(str(raw_role).lower())
        if role is None:
            raise DataError(f"turn {i} has unknown role '{raw_role}'", file=row.file, line=row.line,
                            hint=f"expected one of {sorted(names)}; set tags: {{user_tag: ..., assistant_tag: ...}}")
        content = turn[content_key]
        if not isinstance(content, str):
            raise DataError(f"turn {i} content must be a string", file=row.file, line=row.line)
        msgs.append({"role": role, "content": content})
    system = row.data.get("system")
    if isinstance(system, str) and system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def check_roles(msgs: list[dict], row: Row) -> None:
    """System (optional) first, then user/assistant strictly alternating, ending with a non-empty assistant turn."""
    body = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
    if not body:
        raise DataError("conversation has no user/assistant turns", file=row.file, line=row.line)
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise DataError(f"wrong role order: turn {i + (len(msgs) - len(body))} is '{m['role']}', "
                            f"expected '{expected}'", file=row.file, line=row.line,
                            hint="turns must alternate user/assistant after an optional system message")
    if body[-1]["role"] != "assistant":
        raise DataError("conversation must end with an assistant turn", file=row.file, line=row.line)
    if not body[-1]["content"].strip():
        raise DataError("empty assistant response", file=row.file, line=row.line)


def to_sample(row: Row, fmt: str, columns: dict[str, str], tags: dict[str, str],
              kind: SampleKind = "chat") -> Sample | None:
    """Convert one row (already read) into a validated Sample; raise DataError naming file:line. None: a `qa` row
    with no answer (unanswerable), which the loader counts.

    `kind="text"` (pre-training) reads a document from any layout: its text field, else content / output."""
    if fmt == "auto":
        fmt = detect_format(row)
    if fmt == "text" or kind == "text":
        key = _col(columns, "text")
        if kind == "text" and key not in row.data and fmt != "text":
            key = next((k for k in ("text", "content", "output") if k in row.data), key)
        text = _text(row, key, True, "the document text")
        if not text.strip():
            raise DataError("empty text", file=row.file, line=row.line)
        return Sample(row.file, row.line, text=text)
    if fmt == "alpaca":
        msgs = from_alpaca(row, columns)
    elif fmt == "sharegpt":
        msgs = from_turns(row, _col(columns, "messages") if "messages" in columns else "conversations",
                          {**SHAREGPT_DEFAULT_TAGS, **tags})
    elif fmt == "qa":
        msgs = from_qa(row, columns)
        if msgs is None:
            return None
    elif fmt == "openai":
        msgs = from_turns(row, _col(columns, "messages"),
                          {**SHAREGPT_DEFAULT_TAGS, "role_tag": "role", "content_tag": "content",
                           "user_tag": "user", "assistant_tag": "assistant", **tags})
    else:
        raise DataError(f"format '{fmt}' is not a chat/text format", file=row.file, line=row.line)
    check_roles(msgs, row)
    return Sample(row.file, row.line, messages=msgs)
