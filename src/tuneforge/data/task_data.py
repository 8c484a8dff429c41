"""Task data for the classification and seq2seq stages: examples, the label map, class balance.

Rows come from `data/task_rows.py`, so every error names the file and line (QA data lives in `data/qa_data.py`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.data.readers import Row
from tuneforge.data.task_rows import column, text_field
from tuneforge.errors import ConfigError, DataError

TEXT_CANDIDATES = ("text", "sentence", "sentence1", "content", "review", "premise", "question1", "question",
                   "document", "input")
PAIR_OF = {"sentence1": "sentence2", "premise": "hypothesis", "question1": "question2"}
SOURCE_CANDIDATES = ("source", "src", "input", "document", "article", "text")
TARGET_CANDIDATES = ("target", "tgt", "output", "summary", "highlights", "label_text")


# ----------------------------------------------------------------------------------------------------------------
# classification
@dataclass
class ClsExample:
    text: str
    text_pair: str | None
    label: Any  # raw label value(s) from the file; encoded by LabelMap
    file: str
    line: int
    label_text: str | None = None
    soft: Any = None  # raw task.soft_label_column value (a teacher's probabilities); checked by LabelMap.soft_target


def cls_examples(rows: list[tuple[Row, Any]], task: Any, need_label: bool = True,
                 skipped: list[DataError] | None = None) -> list[ClsExample]:
    """Classification examples with raw labels; missing text or label raise DataError with file:line, or with
    `skipped` (`data.invalid: skip`) are appended there and left out."""
    out: list[ClsExample] = []
    for row, spec in rows:
        passes(lambda: out.append(_cls_example(row, spec, task, need_label)), skipped)  # noqa: B023 - called at once
    return out


def _cls_example(row: Row, spec: Any, task: Any, need_label: bool) -> ClsExample:
    tkey = column(row, spec, "text", task.text_column, TEXT_CANDIDATES)
    text = text_field(row, tkey, "text")
    pkey = column(row, spec, "text_pair", task.text_pair_column, (PAIR_OF.get(tkey or ""),) if tkey else ())
    pair = text_field(row, pkey, "text pair", required=bool(task.text_pair_column)) if pkey else None
    lkey = column(row, spec, "label", task.label_column)
    label = row.data.get(lkey)
    if label is None or label == "" or (isinstance(label, float) and label != label):
        if need_label:
            what = "empty label in field" if lkey in row.data else "missing label field"
            raise DataError(f"{what} '{lkey}'", file=row.file, line=row.line,
                            hint=f"fields present: {sorted(row.data)}; set task.label_column")
        label = None
    ltkey = column(row, spec, "label_text", task.label_text_column, ("label_text",))
    ltext = row.data.get(ltkey) if ltkey else None
    soft = row.data.get(task.soft_label_column) if task.soft_label_column else None
    return ClsExample(text, pair, label, row.file, row.line, ltext if isinstance(ltext, str) else None, soft)


def skip_list(cfg: Any) -> list[DataError] | None:
    """Where rows that `data.invalid: skip` leaves out are collected; None (the default `error`): they raise."""
    return [] if cfg.data.invalid == "skip" else None


def passes(step, skipped: list[DataError] | None) -> bool:
    """Run one row's step (read, check, append): a DataError raises, or with `skipped` (`data.invalid: skip`) is
    counted there and the row left out (False)."""
    try:
        step()
    except DataError as e:
        if skipped is None:
            raise
        skipped.append(e)
        return False
    return True


def require_examples(train: list, skipped: list[DataError] | None) -> None:
    """One line when skipping left no training example at all (instead of an empty-data error further on)."""
    if skipped and not train:
        raise DataError(f"no usable training rows: all {len(skipped)} were invalid and skipped",
                        hint=f"first: {skipped[0].message}")


def invalid_report(skipped: list[DataError]) -> dict:
    """{"invalid": {count, first messages}} for the rows `data.invalid: skip` left out, else {}."""
    if not skipped:
        return {}
    return {"invalid": {"count": len(skipped), "first": [e.message for e in skipped[:5]]}}


def skipped_warning(skipped: list[DataError]) -> str:
    """The `tuneforge data check` warning for rows `data.invalid: skip` leaves out."""
    return invalid_warning(invalid_report(skipped)["invalid"])


def invalid_warning(invalid: dict) -> str:
    """The same warning from a report's `invalid` entry (what `invalid_report` wrote)."""
    return f"invalid rows skipped (data.invalid: skip): {invalid['count']}; first: {invalid['first'][0]}"


def empty_text_report(examples: list[ClsExample]) -> dict:
    """{"empty_text": {count, first file:lines}} when some examples have a blank text, else {}. They are kept (a
    real dataset may have a few) but reported, since many of them usually mean the wrong text column."""
    where = [f"{e.file}:{e.line}" for e in examples if not e.text.strip()]
    return {"empty_text": {"count": len(where), "first": where[:5]}} if where else {}


def _key(value: Any) -> str:
    """Labels are matched by their string form: 1, "1" and True→"1" name the same class."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


@dataclass
class LabelMap:
    """Label names (ids = positions) plus aliases (int ids and label_text names) that map to the same id."""

    names: list[str]
    multi_label: bool = False
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, value: Any, ex: ClsExample) -> int:
        k = _key(value)
        if k in self.aliases:
            return self.aliases[k]
        if k in self.label2id:
            return self.label2id[k]
        shown = ", ".join(self.names[:20]) + (" ..." if len(self.names) > 20 else "")
        raise DataError(f"unknown label '{value}' (labels from the training data: {shown})", file=ex.file, line=ex.line,
                        hint="fix the label, or list every class in task.labels")

    def encode(self, ex: ClsExample) -> int | list[float]:
        """Class id, or a multi-hot vector for multi-label data."""
        if self.multi_label:
            values = ex.label if isinstance(ex.label, list) else [ex.label]
            vec = [0.0] * len(self.names)
            for v in values:
                vec[self.lookup(v, ex)] = 1.0
            return vec
        if isinstance(ex.label, list):
            raise DataError("label is a list but task.multi_label is false", file=ex.file, line=ex.line)
        return self.lookup(ex.label, ex)

    def soft_target(self, ex: ClsExample, column: str) -> list[float]:
        """A teacher's probabilities in label order: {name or alias: p} or a list. Single-label rows must sum to
        1 (within 1 %, then renormalised); multi-label values are per-label probabilities."""
        value, n = ex.soft, len(self.names)
        if value is None:
            raise DataError(f"missing soft-label field '{column}'", file=ex.file, line=ex.line,
                            hint="every training row needs the teacher's probabilities (task.soft_label_column)")
        if isinstance(value, dict):
            vec: list = [None] * n
            for k, p in value.items():
                vec[self.lookup(k, ex)] = p
            missing = [self.names[i] for i, p in enumerate(vec) if p is None]
            if missing:
                raise DataError(f"'{column}' has no probability for {', '.join(missing)}", file=ex.file, line=ex.line)
        elif isinstance(value, list) and len(value) == n:
            vec = list(value)
        else:
            raise DataError(f"'{column}' must be {{label: probability}} or a list of {n} probabilities in label "
                            f"order ({', '.join(self.names)}), got {str(value)[:60]}", file=ex.file, line=ex.line)
        if not all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in vec):
            raise DataError(f"'{column}' values must be probabilities in [0, 1], got {str(value)[:60]}",
                            file=ex.file, line=ex.line)
        if self.multi_label:
            return [float(p) for p in vec]
        total = float(sum(vec))
        if abs(total - 1) > 0.01:
            raise DataError(f"'{column}' sums to {total:.4f}, not 1", file=ex.file, line=ex.line,
                            hint="single-label probabilities must sum to 1 (a softmax)")
        return [float(p) / total for p in vec]

    def to_json(self) -> dict:
        return {"names": self.names, "multi_label": self.multi_label, "aliases": self.aliases}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LabelMap:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["names"], d.get("multi_label", False), d.get("aliases", {}))


def build_label_map(examples: list[ClsExample], task: Any) -> LabelMap:
    """Label names from task.labels, else from the training data (int ids keep their order, strings are sorted)."""
    multi = task.multi_label
    if multi is None:
        multi = any(isinstance(e.label, list) for e in examples)
    values = [v for e in examples for v in (e.label if isinstance(e.label, list) else [e.label])]
    if not values:
        raise DataError("no labelled training examples", hint="check task.label_column")
    if task.labels:
        names = [str(n) for n in task.labels]
        # int labels in the data index into the given list
        aliases = {str(i): i for i in range(len(names)) if str(i) not in names}
        lm = LabelMap(names, multi, aliases)
        for e in examples:  # fail early on labels outside the list
            lm.encode(e)
        return lm
    keys = {_key(v) for v in values}
    if all(k.lstrip("-").isdigit() for k in keys):
        ints = sorted(int(k) for k in keys)
        if ints[0] == 0 and ints[-1] < 2 * len(ints):
            ints = list(range(ints[-1] + 1))  # 0-based ids: an id missing from a small sample keeps its slot
        names = _names_for_ints(ints, examples)
        aliases = {str(v): i for i, v in enumerate(ints)}
        aliases.update({n: i for i, n in enumerate(names)})
        return LabelMap(names, multi, aliases)
    return LabelMap(sorted(keys), multi, {})


def _names_for_ints(ints: list[int], examples: list[ClsExample]) -> list[str]:
    """Use label_text names when every int id has exactly one; otherwise the ids as strings."""
    seen: dict[str, set[str]] = {}
    for e in examples:
        if e.label_text is not None and not isinstance(e.label, list):
            seen.setdefault(_key(e.label), set()).add(e.label_text)
    names = []
    for v in ints:
        texts = seen.get(str(v), set())
        names.append(next(iter(texts)) if len(texts) == 1 else str(v))
    return names if len(set(names)) == len(names) else [str(v) for v in ints]


def class_counts(examples: list[ClsExample], label_map: LabelMap) -> dict[str, int]:
    """Samples per class (multi-label: samples carrying the class)."""
    counts: Counter = Counter()
    for e in examples:
        enc = label_map.encode(e)
        if isinstance(enc, list):
            counts.update(label_map.names[i] for i, x in enumerate(enc) if x)
        else:
            counts[label_map.names[enc]] += 1
    return {n: counts.get(n, 0) for n in label_map.names}


def balance_report(counts: dict[str, int]) -> list[str]:
    """Readable class-balance lines; flags imbalance (largest/smallest > 3) and empty classes."""
    total = sum(counts.values()) or 1
    width = max((len(n) for n in counts), default=5)
    lines = [f"  {n:<{width}}  {c:>7}  {100 * c / total:5.1f}%" for n, c in counts.items()]
    nonzero = [c for c in counts.values() if c]
    if len(nonzero) < len(counts):
        lines.append(f"  warning: {len(counts) - len(nonzero)} class(es) have no samples")
    if nonzero and max(nonzero) / min(nonzero) > 3:
        lines.append(f"  warning: imbalanced classes (largest/smallest = {max(nonzero) / min(nonzero):.1f}); "
                     "watch f1_macro, not only accuracy")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# seq2seq
@dataclass
class Seq2SeqExample:
    source: str
    target: str | None
    file: str
    line: int


def seq2seq_examples(rows: list[tuple[Row, Any]], task: Any, need_target: bool = True,
                     skipped: list[DataError] | None = None) -> list[Seq2SeqExample]:
    """(source, target) pairs; translation data can name columns by language code (source_lang: en). A row without
    them raises DataError with file:line, or with `skipped` (`data.invalid: skip`) is appended there and left out."""
    out = []
    for row, spec in rows:
        skey = column(row, spec, "source", task.source_column or task.source_lang, SOURCE_CANDIDATES)
        tkey = column(row, spec, "target", task.target_column or task.target_lang, TARGET_CANDIDATES)
        if skey == tkey:
            raise ConfigError(f"source and target are the same column '{skey}'",
                              hint="set task.source_lang/target_lang or task.source_column/target_column")
        try:
            src = text_field(row, skey, "source")
            tgt = text_field(row, tkey, "target", required=need_target)
        except DataError as e:
            if skipped is None:
                raise
            skipped.append(e)
            continue
        out.append(Seq2SeqExample(task.source_prefix + src, tgt, row.file, row.line))
    return out
