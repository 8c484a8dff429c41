"""Task data for the encoder / seq2seq stages: classification and seq2seq examples, the label map, class balance.

Rows come from `readers.read_rows`, so every error names the file and line. Field names are resolved per dataset in
this order: the dataset's `columns` map (canonical name → file column), the `task.*_column` setting, then the usual
names (see `TEXT_CANDIDATES`). QA data lives in `data/qa_data.py`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tuneforge.data.readers import Row, read_rows
from tuneforge.errors import ConfigError, DataError

TEXT_CANDIDATES = ("text", "sentence", "sentence1", "content", "review", "premise", "question1", "question",
                   "document", "input")
PAIR_OF = {"sentence1": "sentence2", "premise": "hypothesis", "question1": "question2"}
SOURCE_CANDIDATES = ("source", "src", "input", "document", "article", "text")
TARGET_CANDIDATES = ("target", "tgt", "output", "summary", "highlights", "label_text")


# ----------------------------------------------------------------------------------------------------------------
# reading
def load_rows(specs: Iterable[Any]) -> list[tuple[Row, Any]]:
    """Rows of every DatasetSpec (capped by its `max_samples`), each paired with its spec."""
    out: list[tuple[Row, Any]] = []
    for spec in specs:
        if not Path(spec.path).exists():
            raise DataError("data file or directory not found", file=spec.path,
                            hint="task stages read local json/jsonl/csv/parquet files")
        n = 0
        for row in read_rows(spec.path):
            if spec.max_samples is not None and n >= spec.max_samples:
                break
            out.append((row, spec))
            n += 1
        if n == 0:
            raise DataError("no records", file=spec.path)
    return out


def task_splits(cfg: Any) -> tuple[list[tuple[Row, Any]], list[tuple[Row, Any]]]:
    """(train, eval) rows: data.eval when given, else a seeded `data.eval_split` hold-out of train."""
    if not cfg.data.train:
        raise ConfigError("data.train is empty", hint="add data: {train: [path/to/train.jsonl]}")
    train = load_rows(cfg.data.train)
    if cfg.data.max_samples:
        train = train[: cfg.data.max_samples]
    if cfg.data.eval:
        evals = load_rows(cfg.data.eval)
    else:
        train, evals = split_holdout(train, cfg.data.eval_split, cfg.data.mix_seed)
    if cfg.task.max_eval_samples:
        evals = evals[: cfg.task.max_eval_samples]
    return train, evals


def split_holdout(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic (train, eval) split of a list; eval gets `fraction` of the items (at least one)."""
    if not 0 < fraction < 1:
        return items, []
    idx = list(range(len(items)))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, int(round(len(items) * fraction)))
    held = set(idx[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def column(row: Row, spec: Any, canonical: str, configured: str | None, candidates: tuple[str, ...] = ()) -> str | None:
    """The file's column for a canonical field: spec.columns, then the task setting, then the first candidate present."""
    cols = getattr(spec, "columns", None) or {}
    if canonical in cols:
        return cols[canonical]
    if configured:
        return configured
    return next((c for c in candidates if c in row.data), None)


def text_field(row: Row, key: str | None, what: str, required: bool = True) -> str | None:
    """A string field of a row, or a DataError naming file:line and the fields that are there."""
    val = row.data.get(key) if key else None
    if val is None:
        if not required:
            return None
        raise DataError(f"missing {what} field '{key or '?'}'", file=row.file, line=row.line,
                        hint=f"fields present: {sorted(row.data)}; set task.*_column or the dataset's columns")
    if not isinstance(val, str):
        raise DataError(f"{what} field '{key}' must be a string, got {type(val).__name__}", file=row.file, line=row.line)
    return val


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


def cls_examples(rows: list[tuple[Row, Any]], task: Any, need_label: bool = True) -> list[ClsExample]:
    """Classification examples with raw labels; missing text or label raise DataError with file:line."""
    out = []
    for row, spec in rows:
        tkey = column(row, spec, "text", task.text_column, TEXT_CANDIDATES)
        text = text_field(row, tkey, "text")
        pkey = column(row, spec, "text_pair", task.text_pair_column, (PAIR_OF.get(tkey or ""),) if tkey else ())
        pair = text_field(row, pkey, "text pair", required=bool(task.text_pair_column)) if pkey else None
        lkey = column(row, spec, "label", task.label_column)
        label = row.data.get(lkey)
        if label is None or label == "" or (isinstance(label, float) and label != label):
            if need_label:
                raise DataError(f"missing label field '{lkey}'", file=row.file, line=row.line,
                                hint=f"fields present: {sorted(row.data)}; set task.label_column")
            label = None
        ltkey = column(row, spec, "label_text", task.label_text_column, ("label_text",))
        ltext = row.data.get(ltkey) if ltkey else None
        out.append(ClsExample(text, pair, label, row.file, row.line, ltext if isinstance(ltext, str) else None))
    return out


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


def seq2seq_examples(rows: list[tuple[Row, Any]], task: Any, need_target: bool = True) -> list[Seq2SeqExample]:
    """(source, target) pairs; translation data can name columns by language code (source_lang: en)."""
    out = []
    for row, spec in rows:
        skey = column(row, spec, "source", task.source_column or task.source_lang, SOURCE_CANDIDATES)
        tkey = column(row, spec, "target", task.target_column or task.target_lang, TARGET_CANDIDATES)
        if skey == tkey:
            raise ConfigError(f"source and target are the same column '{skey}'",
                              hint="set task.source_lang/target_lang or task.source_column/target_column")
        src = text_field(row, skey, "source")
        tgt = text_field(row, tkey, "target", required=need_target)
        out.append(Seq2SeqExample(task.source_prefix + src, tgt, row.file, row.line))
    return out


# ----------------------------------------------------------------------------------------------------------------
# `tuneforge data check` for the task stages
def check_task_data(cfg: Any) -> dict:
    """Counts, class balance (cls), answerable/windows (qa), token lengths and truncation, without training."""
    from tuneforge.models.load import load_tokenizer

    tok = load_tokenizer(cfg.model)
    tml = getattr(tok, "model_max_length", None)
    max_len = min(cfg.data.cutoff_len, tml) if isinstance(tml, int) and 0 < tml < 1_000_000 else cfg.data.cutoff_len
    out: dict = {"stage": cfg.stage, "max_len": max_len}
    warnings: list[str] = []
    if cfg.stage == "qa":
        from tuneforge.data.qa_data import qa_features, qa_splits

        train, evals, report = qa_splits(cfg)
        out.update({f"{split}.{k}": v for split in ("train", "eval") for k, v in report[split].items()})
        out.update({f"used.{k}": v for k, v in report["used"].items()})
        feats = qa_features(train, tok, max_len, cfg.task.doc_stride, with_labels=True)
        out["train.windows"] = len(feats)
        out["train.windows_per_question"] = round(len(feats) / max(len(train), 1), 2)
        lengths = [len(e.context) for e in train]
        out["train.context_chars.p50/max"] = f"{_pct(lengths, 50)}/{max(lengths, default=0)}"
    elif cfg.stage == "cls":
        train_rows, eval_rows = task_splits(cfg)
        train, evals = cls_examples(train_rows, cfg.task), cls_examples(eval_rows, cfg.task)
        lm = build_label_map(train, cfg.task)
        out.update({"train_samples": len(train), "eval_samples": len(evals), "labels": ", ".join(lm.names),
                    "multi_label": lm.multi_label})
        for split, exs in (("train", train), ("eval", evals)):
            if exs:
                counts = class_counts(exs, lm)
                out[f"{split}.classes"] = "  ".join(f"{n}: {c} ({100 * c / max(len(exs), 1):.1f}%)"
                                                    for n, c in counts.items())
                warnings += [f"{split}: {w.strip()[9:]}" for w in balance_report(counts) if "warning" in w]
        pairs = [e.text_pair for e in train] if any(e.text_pair for e in train) else None
        _length_stats(out, warnings, tok, [e.text for e in train], pairs, max_len, "train.tokens")
    else:
        train_rows, eval_rows = task_splits(cfg)
        train = seq2seq_examples(train_rows, cfg.task)
        out.update({"train_samples": len(train), "eval_samples": len(eval_rows)})
        _length_stats(out, warnings, tok, [e.source for e in train], None, max_len, "train.source_tokens")
        _length_stats(out, warnings, tok, [e.target or "" for e in train], None, cfg.task.max_target_len,
                      "train.target_tokens")
    out["warnings"] = warnings
    return out


def _length_stats(out: dict, warnings: list, tok: Any, texts: list[str], pairs: list | None, limit: int,
                  key: str) -> None:
    lengths = [len(x) for x in tok(texts, pairs)["input_ids"]] if texts else []
    over = sum(n > limit for n in lengths)
    out[f"{key}.p50/p95/max"] = f"{_pct(lengths, 50)}/{_pct(lengths, 95)}/{max(lengths, default=0)}"
    out[f"{key}.truncated"] = over
    if over:
        warnings.append(f"{over} of {len(lengths)} samples exceed {limit} tokens ({key}) and will be truncated")


def _pct(values: list[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q / 100))]
