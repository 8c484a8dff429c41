"""Text and label metrics shared by evaluation and the task heads.

All functions take plain Python lists and return floats in [0, 1] (BLEU/chrF/TER on sacrebleu's 0-100 scale,
as everyone reports them). Heavy libraries (sacrebleu, rouge_score) are imported inside the functions.

- `exact_match`, `token_f1`, `squad_scores`: SQuAD normalisation (lower-case, drop punctuation and articles,
  collapse whitespace); several references per prediction → best one counts.
- `bleu`, `chrf`, `ter`: corpus-level sacrebleu scores.
- `rouge`: mean rouge1/rouge2/rougeL/rougeLsum F-measure (rouge_score, with stemming).
- `accuracy`, `precision_recall_f1`, `classification_scores`: label metrics (micro / macro / binary).
- `extract_number`, `extract_choice`: pull a final answer out of generated text (GSM8K `#### 42`, "The answer is C").
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Hashable, Sequence

Refs = Sequence[str] | str

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, remove punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_refs(refs: Refs) -> list[str]:
    refs = [refs] if isinstance(refs, str) else list(refs)
    return refs or [""]  # SQuAD v2: an unanswerable question has the empty string as its answer


def _em_one(pred: str, ref: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(ref))


def _f1_one(pred: str, ref: str) -> float:
    p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
    if not p or not r:  # both empty → 1, one empty → 0 (SQuAD v2 rule for no-answer)
        return float(p == r)
    common = collections.Counter(p) & collections.Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def exact_match(predictions: Sequence[str], references: Sequence[Refs]) -> float:
    """Mean SQuAD exact match; each reference may be a string or a list of acceptable strings."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return sum(max(_em_one(p, r) for r in _as_refs(rs)) for p, rs in zip(predictions, references)) / len(predictions)


def token_f1(predictions: Sequence[str], references: Sequence[Refs]) -> float:
    """Mean SQuAD token-overlap F1 (best reference per sample)."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return sum(max(_f1_one(p, r) for r in _as_refs(rs)) for p, rs in zip(predictions, references)) / len(predictions)


def per_sample_em_f1(prediction: str, references: Refs) -> tuple[float, float]:
    """(EM, F1) of one prediction against its references."""
    refs = _as_refs(references)
    return max(_em_one(prediction, r) for r in refs), max(_f1_one(prediction, r) for r in refs)


def squad_scores(predictions: Sequence[str], references: Sequence[Refs]) -> dict[str, float]:
    """{"exact_match", "f1"} as fractions in [0, 1]."""
    return {"exact_match": exact_match(predictions, references), "f1": token_f1(predictions, references)}


def _ref_streams(references: Sequence[Refs]) -> list[list[str]]:
    """sacrebleu wants one stream per reference slot; pad ragged reference lists by repeating the first."""
    refs = [_as_refs(r) for r in references]
    width = max((len(r) for r in refs), default=1)
    return [[r[i] if i < len(r) else r[0] for r in refs] for i in range(width)]


def bleu(predictions: Sequence[str], references: Sequence[Refs], tokenize: str = "13a") -> float:
    """Corpus BLEU (sacrebleu, 0-100)."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), _ref_streams(references), tokenize=tokenize).score)


def chrf(predictions: Sequence[str], references: Sequence[Refs]) -> float:
    """Corpus chrF (sacrebleu, 0-100)."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_chrf(list(predictions), _ref_streams(references)).score)


def ter(predictions: Sequence[str], references: Sequence[Refs]) -> float:
    """Corpus translation edit rate (sacrebleu, 0-100+, lower is better)."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_ter(list(predictions), _ref_streams(references)).score)


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge(predictions: Sequence[str], references: Sequence[Refs],
          types: Sequence[str] = ROUGE_TYPES) -> dict[str, float]:
    """Mean ROUGE F-measure per type (best reference per sample), fractions in [0, 1]."""
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    totals = dict.fromkeys(types, 0.0)
    for pred, refs in zip(predictions, references):
        # rougeLsum splits summaries on newlines; keep that behaviour explicit
        scores = [scorer.score(r, pred) for r in _as_refs(refs)]
        for t in types:
            totals[t] += max(s[t].fmeasure for s in scores)
    n = max(len(predictions), 1)
    return {t: v / n for t, v in totals.items()}


def accuracy(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Fraction of predictions equal to their label."""
    _check_lengths(predictions, labels)
    if not labels:
        return 0.0
    return sum(p == y for p, y in zip(predictions, labels)) / len(labels)


def precision_recall_f1(predictions: Sequence[Hashable], labels: Sequence[Hashable], average: str = "macro",
                        positive: Hashable = 1) -> dict[str, float]:
    """Precision / recall / F1 with `average` = "macro" | "micro" | "weighted" | "binary" (sklearn semantics,
    zero_division=0). Macro averages over the labels present in either predictions or labels."""
    _check_lengths(predictions, labels)
    if average not in {"macro", "micro", "weighted", "binary"}:
        raise ValueError(f"average must be macro, micro, weighted or binary, not {average!r}")
    classes = [positive] if average == "binary" else sorted(set(labels) | set(predictions), key=repr)
    tp = collections.Counter(p for p, y in zip(predictions, labels) if p == y)
    pred_n, true_n = collections.Counter(predictions), collections.Counter(labels)
    if average == "micro":
        t, pn, yn = sum(tp[c] for c in classes), sum(pred_n[c] for c in classes), sum(true_n[c] for c in classes)
        p, r = _div(t, pn), _div(t, yn)
        return {"precision": p, "recall": r, "f1": _div(2 * p * r, p + r)}
    per = []
    for c in classes:
        p, r = _div(tp[c], pred_n[c]), _div(tp[c], true_n[c])
        per.append((p, r, _div(2 * p * r, p + r), true_n[c]))
    if average == "weighted":
        w = sum(x[3] for x in per)
        return {k: _div(sum(x[i] * x[3] for x in per), w) for i, k in enumerate(("precision", "recall", "f1"))}
    n = max(len(per), 1)
    return {k: sum(x[i] for x in per) / n for i, k in enumerate(("precision", "recall", "f1"))}


def classification_scores(predictions: Sequence[Hashable], labels: Sequence[Hashable],
                          average: str = "macro") -> dict[str, float]:
    """{"accuracy", "precision", "recall", "f1"} in one call."""
    return {"accuracy": accuracy(predictions, labels), **precision_recall_f1(predictions, labels, average)}


_NUMBER = re.compile(r"-?[$]?\d[\d,]*(?:\.\d+)?")


def extract_number(text: str) -> str | None:
    """Final numeric answer: the number after the last `####` if present, else the last number in the text.
    Commas and `$` are dropped and trailing `.0`s removed, so "1,000.00" → "1000"."""
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        found = _NUMBER.findall(tail)
        if found:
            return _clean_number(found[0])
    found = _NUMBER.findall(text)
    return _clean_number(found[-1]) if found else None


def _clean_number(s: str) -> str:
    s = s.replace(",", "").replace("$", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in {"-0", ""} else s


_CHOICE_SAID = re.compile(r"answer(?:\s+is)?\s*:?\s*\(?([A-Za-z])\b", re.IGNORECASE)
_CHOICE_LEAD = re.compile(r"^\s*\(?([A-Z])(?:[.):]|\s*$)")  # "C. Paris", "(B)", "D" — not "A man ..."


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    """A choice letter from text like "The answer is (B)" or "C. Paris"; None when none is found."""
    for m in _CHOICE_SAID.finditer(text):
        if m.group(1).upper() in letters:
            return m.group(1).upper()
    m = _CHOICE_LEAD.match(text)
    return m.group(1) if m and m.group(1) in letters else None


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions but {len(b)} references")


# lm-eval's gsm8k answer filters and exact_match settings (task gsm8k, version 3): "strict-match" takes the number
# after "#### ", "flexible-extract" the last number-like span; both are compared after removing commas, "$", a
# trailing "." and everything up to "#### " (which turns the worked reference answer into its final number).
GSM8K_FILTERS = {
    "strict_match": (re.compile(r"#### (\-?[0-9\.\,]+)"), 0),
    "flexible_extract": (re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)"), -1),
}
_GSM8K_IGNORE = [re.compile(r) for r in (",", "\\$", "(?s).*#### ", "\\.$")]


def regex_filter(text: str, pattern: re.Pattern, group_select: int = 0, fallback: str = "[invalid]") -> str:
    """lm-eval's RegexFilter: the `group_select`-th match (first non-empty group of a multi-group pattern)."""
    found = pattern.findall(text)
    if not found:
        return fallback
    match = found[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), fallback)
    return match.strip()


def lmeval_exact_match(prediction: str, reference: str, ignore: Sequence[re.Pattern] = _GSM8K_IGNORE,
                       ignore_case: bool = True) -> float:
    """lm-eval's exact_match (HF `evaluate` semantics): regexes removed from both sides, optional lower-casing."""
    for r in ignore:
        prediction, reference = r.sub("", prediction), r.sub("", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    return float(prediction == reference)


def gsm8k_score(name: str, output: str, references: Refs) -> float:
    """strict_match / flexible_extract of one generated answer against its reference answers (any may match)."""
    pattern, group = GSM8K_FILTERS[name]
    pred = regex_filter(output, pattern, group)
    return max(lmeval_exact_match(pred, r) for r in _as_refs(references))
