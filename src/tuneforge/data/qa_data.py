"""Extractive QA data: SQuAD records (flat HF style or nested v1/v2 JSON) → validated examples → token windows.

Every answer is checked against its context (`context[answer_start:answer_start+len(text)] == text`); a mismatch is a
DataError naming the file and line (for nested SQuAD JSON, the line of the question's id) and where the text really is.
Long contexts are split into overlapping windows (`doc_stride` tokens of overlap); each window is labelled with the
answer's token span, or with the [CLS] position when the answer is not inside it (no-answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tuneforge.data.readers import Row
from tuneforge.data.task_data import invalid_report, passes, require_examples, skip_list
from tuneforge.data.task_rows import column, load_rows, split_holdout, text_field
from tuneforge.errors import ConfigError, DataError


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[dict] = field(default_factory=list)  # [{"text": str, "answer_start": int}]
    file: str = ""
    line: int = 0
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


@dataclass
class QAFeatures:
    """Token windows ready for the model plus what decoding needs (window → example, token → char offsets)."""

    inputs: dict[str, list] = field(default_factory=dict)  # input_ids, attention_mask, [token_type_ids], [start/end_positions]
    example_index: list[int] = field(default_factory=list)
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)  # None outside the context

    def __len__(self) -> int:
        return len(self.example_index)


# ----------------------------------------------------------------------------------------------------------------
# reading + validation
def qa_examples(rows: list[tuple[Row, Any]], task: Any, skipped: list[DataError] | None = None) -> list[QAExample]:
    """Validated QA examples from flat rows (context, question, answers) or nested SQuAD articles (paragraphs).
    A bad row, question or repeated id raises DataError with file:line, or with `skipped` (`data.invalid: skip`)
    is appended there and left out (in an article, only the bad question or paragraph)."""
    out: list[QAExample] = []
    for row, spec in rows:
        if "paragraphs" in row.data:
            passes(lambda: out.extend(_from_article(row, task, skipped)), skipped)  # noqa: B023 - called at once
        else:
            passes(lambda: out.append(_from_flat(row, spec, task)), skipped)  # noqa: B023 - called at once
    seen: dict[str, QAExample] = {}
    unique = []
    for ex in out:
        if passes(lambda: _check_new_id(ex, seen), skipped):  # noqa: B023 - called at once
            seen[ex.id] = ex
            unique.append(ex)
    return unique


def _check_new_id(ex: QAExample, seen: dict[str, QAExample]) -> None:
    if ex.id in seen:
        raise DataError(f"duplicate question id '{ex.id}' (also at {seen[ex.id].file}:{seen[ex.id].line})",
                        file=ex.file, line=ex.line)


def _from_flat(row: Row, spec: Any, task: Any) -> QAExample:
    ctx = text_field(row, column(row, spec, "context", task.context_column), "context")
    q = text_field(row, column(row, spec, "question", task.question_column), "question")
    akey = column(row, spec, "answers", task.answers_column)
    if akey not in row.data:
        raise DataError(f"missing answers field '{akey}'", file=row.file, line=row.line,
                        hint='expected answers: {"text": [...], "answer_start": [...]}; set task.answers_column')
    answers = answer_list(row.data[akey], row.file, row.line)
    qid = str(row.data.get(column(row, spec, "id", None, ("id", "qid")) or "id", f"{row.file}:{row.line}"))
    ex = QAExample(qid, q, ctx, answers, row.file, row.line, str(row.data.get("title", "")))
    check_answers(ex, row.data.get("is_impossible"))
    return ex


def _from_article(row: Row, task: Any, skipped: list[DataError] | None = None) -> list[QAExample]:
    paragraphs = row.data.get("paragraphs")
    if not isinstance(paragraphs, list):
        raise DataError("'paragraphs' must be a list", file=row.file, line=row.line)
    out: list[QAExample] = []
    for p in paragraphs:
        if not passes(lambda: _check_paragraph(row, p), skipped):  # noqa: B023 - called at once
            continue
        for qa in p["qas"]:
            passes(lambda: out.append(_article_question(row, p["context"], qa)), skipped)  # noqa: B023 - called at once
    return out


def _check_paragraph(row: Row, p: Any) -> None:
    if not isinstance(p, dict) or not isinstance(p.get("context"), str) or not isinstance(p.get("qas"), list):
        raise DataError("each paragraph needs a string 'context' and a list 'qas'", file=row.file, line=row.line)


def _article_question(row: Row, context: str, qa: Any) -> QAExample:
    qid = str(qa.get("id", "")) if isinstance(qa, dict) else ""
    line = _id_line(row.file, qid) or row.line
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str):
        raise DataError(f"question '{qid}' has no string 'question'", file=row.file, line=line)
    answers = answer_list(qa.get("answers", []), row.file, line)
    ex = QAExample(qid or f"{row.file}:{line}", qa["question"], context, answers, row.file, line,
                   str(row.data.get("title", "")))
    check_answers(ex, qa.get("is_impossible"))
    return ex


@lru_cache(maxsize=8)
def _file_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _id_line(path: str, qid: str) -> int | None:
    """Line of a question id in a nested SQuAD file (errors should point at the question, not the article)."""
    if not qid:
        return None
    text = _file_text(path)
    pos = text.find(json.dumps(qid))
    return text.count("\n", 0, pos) + 1 if pos >= 0 else None


def answer_list(raw: Any, file: str, line: int) -> list[dict]:
    """Accept {"text": [...], "answer_start": [...]} (HF) or [{"text", "answer_start"}, ...] (SQuAD JSON)."""
    if isinstance(raw, dict):
        texts, starts = raw.get("text", []), raw.get("answer_start", [])
        if isinstance(texts, str):
            texts, starts = [texts], [starts]
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError("answers.text and answers.answer_start must be lists of the same length",
                            file=file, line=line)
        raw = [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]
    if not isinstance(raw, list):
        raise DataError(f"answers must be a dict or a list, got {type(raw).__name__}", file=file, line=line)
    out = []
    for a in raw:
        if not isinstance(a, dict) or "text" not in a or "answer_start" not in a:
            raise DataError("each answer needs 'text' and 'answer_start'", file=file, line=line)
        start = a["answer_start"]
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise DataError(f"answer_start must be a non-negative int, got {start!r}", file=file, line=line)
        if not isinstance(a["text"], str) or not a["text"]:
            raise DataError("answer text must be a non-empty string", file=file, line=line)
        out.append({"text": a["text"], "answer_start": start})
    return out


def check_answers(ex: QAExample, is_impossible: Any) -> None:
    if is_impossible is True and ex.answers:
        # SQuAD v2 keeps 'plausible_answers' separately; answers on an impossible question are contradictory
        raise DataError(f"question '{ex.id}' is marked is_impossible but has answers", file=ex.file, line=ex.line)
    for a in ex.answers:
        s, t = a["answer_start"], a["text"]
        if ex.context[s: s + len(t)] != t:
            found = ex.context.find(t)
            where = f"the text occurs at offset {found}" if found >= 0 else "the text does not occur in the context"
            raise DataError(f"answer_start {s} does not match the context for question '{ex.id}': context[{s}:"
                            f"{s + len(t)}] is {ex.context[s: s + len(t)]!r}, answer is {t!r}", file=ex.file,
                            line=ex.line, hint=where)


def qa_splits(cfg: Any) -> tuple[list[QAExample], list[QAExample], dict]:
    """(train, eval, report): data.eval when given, else held-out contexts (no paragraph in both splits);
    unanswerable questions dropped unless task.allow_unanswerable; with `data.invalid: skip` bad rows and questions
    are left out and counted (report `invalid`)."""
    if not cfg.data.train:
        raise ConfigError("data.train is empty", hint="add data: {train: [path/to/squad.jsonl]}")
    skipped = skip_list(cfg)
    train = qa_examples(load_rows(cfg.data.train, skipped), cfg.task, skipped)
    require_examples(train, skipped)
    if cfg.data.max_samples:
        train = train[: cfg.data.max_samples]
    if cfg.data.eval:
        evals = qa_examples(load_rows(cfg.data.eval, skipped), cfg.task, skipped)
    else:
        contexts = list(dict.fromkeys(e.context for e in train))
        held = set(split_holdout(contexts, cfg.data.eval_split, cfg.data.mix_seed)[1])
        train, evals = [e for e in train if e.context not in held], [e for e in train if e.context in held]
    report: dict = {"train": qa_counts(train), "eval": qa_counts(evals),
                    "allow_unanswerable": cfg.task.allow_unanswerable}
    if not cfg.task.allow_unanswerable:  # SQuAD v1 style: only questions with an answer
        train = [e for e in train if not e.is_impossible]
        evals = [e for e in evals if not e.is_impossible]
    if cfg.task.max_eval_samples:
        evals = evals[: cfg.task.max_eval_samples]
    if not train:
        raise ConfigError("no answerable training questions", hint="set task.allow_unanswerable: true for SQuAD v2 data")
    report["used"] = {"train": len(train), "eval": len(evals)}
    report.update(invalid_report(skipped or []))
    return train, evals, report


def qa_counts(examples: list[QAExample]) -> dict[str, int]:
    n_imp = sum(e.is_impossible for e in examples)
    return {"questions": len(examples), "answerable": len(examples) - n_imp, "unanswerable": n_imp,
            "contexts": len({e.context for e in examples})}


# ----------------------------------------------------------------------------------------------------------------
# token windows
def qa_features(examples: list[QAExample], tokenizer: Any, max_len: int, stride: int,
                with_labels: bool) -> QAFeatures:
    """Tokenize (question, context) into overlapping windows; labels = answer token span or [CLS] (index 0)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("extractive QA needs a fast tokenizer (offset mappings)")
    q_first = tokenizer.padding_side == "right"
    max_q = max_len - stride - 8  # room for special tokens and at least a few context tokens per window
    if max_q < 4:
        raise ConfigError(f"task.doc_stride ({stride}) leaves no room for the question with cutoff_len {max_len}",
                          hint="use doc_stride <= cutoff_len / 4")
    questions = [_clip_question(e.question.lstrip(), tokenizer, max_q) for e in examples]
    contexts = [e.context for e in examples]
    enc = tokenizer(questions if q_first else contexts, contexts if q_first else questions,
                    truncation="only_second" if q_first else "only_first", max_length=max_len, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    ctx_id = 1 if q_first else 0
    feats = QAFeatures()
    keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    feats.inputs = {k: [] for k in keep}
    if with_labels:
        feats.inputs.update(start_positions=[], end_positions=[])
    for i, offsets in enumerate(enc["offset_mapping"]):
        ex_idx = enc["overflow_to_sample_mapping"][i]
        seq_ids = enc.sequence_ids(i)
        for k in keep:
            feats.inputs[k].append(enc[k][i])
        feats.example_index.append(ex_idx)
        feats.offsets.append([tuple(o) if seq_ids[j] == ctx_id else None for j, o in enumerate(offsets)])
        if with_labels:
            s, e = _span_labels(examples[ex_idx], offsets, seq_ids, ctx_id, enc["input_ids"][i], tokenizer)
            feats.inputs["start_positions"].append(s)
            feats.inputs["end_positions"].append(e)
    return feats


def _clip_question(q: str, tokenizer: Any, max_tokens: int) -> str:
    enc = tokenizer(q, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return q
    return q[: enc["offset_mapping"][max_tokens - 1][1]]


def _span_labels(ex: QAExample, offsets, seq_ids, ctx_id: int, input_ids, tokenizer) -> tuple[int, int]:
    cls = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
    if ex.is_impossible:
        return cls, cls
    a = ex.answers[0]  # train on the first answer, as SQuAD training sets have exactly one
    start_char, end_char = a["answer_start"], a["answer_start"] + len(a["text"])
    ctx_tokens = [j for j, s in enumerate(seq_ids) if s == ctx_id]
    first, last = ctx_tokens[0], ctx_tokens[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return cls, cls  # the answer is not (wholly) inside this window
    ts = first
    while ts <= last and offsets[ts][1] <= start_char:
        ts += 1
    te = last
    while te >= first and offsets[te][0] >= end_char:
        te -= 1
    return ts, max(te, ts)
