"""The evidence behind a decontamination decision: views of each record, benchmark boilerplate, pair features.

Each record is compared through several views (``Views``): the stem (question without lettered choices), its
*core* (the stem minus text that is boilerplate inside the benchmark), the choices, and the answer (a choice letter
resolved to its text; GSM8K's "#### N" reduced to N). ``BenchStats`` learns from the benchmark itself which word
n-grams, choices and answers are shared by several items: that text is a template or a shared passage, so a match
on it is not evidence that one particular item leaked. ``pair_features`` measures one (record, item) pair and
``decide`` turns the features into removed / kept and a Platypus category (rules in docs/decontam.md).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from tuneforge.data.qa_fields import QA, normalize
from tuneforge.errors import DataError

BOILER_N = 4  # word n-grams shared by >= BOILER_MIN_DF benchmark items are boilerplate (templates, passages)
BOILER_MIN_DF = 3
UNIQUE_N = 8  # word n-grams found in exactly one benchmark item are evidence for that item (copies in long text)
MIN_CORE_WORDS = 4  # a stem core shorter than this is generic ("Which of the following is true?")

# Decision thresholds, chosen on the `tune` planted set (bench/decontam_planted.py), confirmed on `holdout`.
SAME_STEM = 0.85  # rapidfuzz similarity of the cores: the same question, up to typos and small edits
UNIQUE_COVER = 0.5  # share of an item's unique n-grams found in the record
PARAPHRASE_COSINE = 0.75  # cosine of the cores that, with the same answer, makes a rewording
STRONG_COSINE = 0.92  # cosine that alone makes a rewording
SAME_CHOICES = 0.75  # share of the item's distinctive choices found in the record

# Words that turn a question into its opposite ("... did not confirm ...", "All of the following EXCEPT"); "t" is
# what "n't" becomes after normalisation
NEGATIONS = frozenset({"not", "no", "nor", "none", "never", "neither", "nothing", "nobody", "cannot", "except", "t"})

_LETTER_ANSWER = re.compile(r"^\s*(?:the\s+)?(?:answer|right option|option)?\s*(?:is)?\s*[:\-]?\s*\(?([A-Ha-h])\)?"
                            r"(?:[.):,]|\s*$)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_ABSTAIN = re.compile(r"\b(?:unanswerable|no answer|cannot be answered|can ?not answer|not (?:mentioned|stated|given|"
                      r"in the (?:passage|text|context))|does not say|doesn t say|unknown)\b")


def _numbers(text: str) -> tuple[str, ...]:
    return tuple(n.replace(",", "") for n in _NUMBER.findall(text))


@dataclass
class Views:
    """The normalised views of one record used for matching."""

    stem: str  # normalised stem
    core: str  # normalised stem minus benchmark boilerplate
    choices: tuple[str, ...]  # normalised choices
    answer: str  # normalised answer text (choice letter resolved)
    final: str | None  # the final number of the answer ("#### 18", or the last number)
    numeric: bool  # the answer is a number or a worked solution ending in "#### N" (compare final numbers)
    numbers: tuple[str, ...]  # numbers in the stem
    text: str  # normalised question + answer (for n-gram search)
    last_line: str | None  # the question after a passage (a multi-line stem's last line), else None
    unanswerable: bool = False  # a benchmark item whose right output is to abstain (SQuAD v2)


def resolve_answer(qa: QA) -> str:
    """The answer text, with a bare choice letter ("C", "(c)", "The answer is C.") replaced by that choice."""
    m = _LETTER_ANSWER.match(qa.answer)
    if qa.choices and m:
        idx = ord(m.group(1).upper()) - 65
        rest = qa.answer[m.end():].strip(" .:")
        if 0 <= idx < len(qa.choices):
            return f"{qa.choices[idx]} {rest}".strip() if rest and normalize(rest) != normalize(
                qa.choices[idx]) else qa.choices[idx]
    return qa.answer


def _final_number(answer: str) -> str | None:
    tail = answer.rsplit("####", 1)[1] if "####" in answer else answer
    nums = _numbers(tail)
    return nums[-1] if nums else None


class BenchStats:
    """Document frequencies inside the benchmark: boilerplate n-grams, generic choices and answers, and the
    n-grams unique to one item (the n-gram index)."""

    def __init__(self, bench: list[QA], unique_n: int = UNIQUE_N):
        self.unique_n = unique_n
        self.boiler: set[tuple[str, ...]] = set()
        df: Counter[tuple[str, ...]] = Counter()
        for q in bench:
            w = normalize(q.stem_text).split()
            df.update({tuple(w[i:i + BOILER_N]) for i in range(len(w) - BOILER_N + 1)})
        self.boiler = {g for g, c in df.items() if c >= BOILER_MIN_DF}
        self.choice_df = Counter(c for q in bench for c in {normalize(x) for x in q.choices})
        self.answer_df = Counter(normalize(resolve_answer(q)) for q in bench)
        self.views = [self.views_of(q) for q in bench]
        # unique n-grams of stem + choices: n-gram -> item (n-grams of two or more items are dropped)
        owner: dict[tuple[str, ...], int] = {}
        shared: set[tuple[str, ...]] = set()
        self.unique_total = []
        for j, v in enumerate(self.views):
            grams = _grams((v.stem + " " + " ".join(v.choices)).split(), unique_n)
            for g in grams:
                if g in owner and owner[g] != j:
                    shared.add(g)
                owner.setdefault(g, j)
        for g in shared:
            owner.pop(g, None)
        self.short_sizes = {len(g) for g in owner if len(g) < unique_n}  # whole short stems are n-grams too
        self.unique_owner = owner
        counts = Counter(owner.values())
        self.unique_total = [counts.get(j, 0) for j in range(len(bench))]

    def strip(self, words: list[str]) -> list[str]:
        """The words not covered by any boilerplate n-gram."""
        covered = [False] * len(words)
        for i in range(len(words) - BOILER_N + 1):
            if tuple(words[i:i + BOILER_N]) in self.boiler:
                covered[i:i + BOILER_N] = [True] * BOILER_N
        return [w for w, c in zip(words, covered) if not c]

    def views_of(self, qa: QA) -> Views:
        stem = normalize(qa.stem_text)
        answer = resolve_answer(qa)
        norm = normalize(answer)
        final = _final_number(answer)
        numeric = final is not None and ("####" in answer or norm == normalize(final))
        lines = [normalize(x) for x in qa.stem_text.splitlines() if normalize(x)]
        last = lines[-1] if len(lines) >= 2 and len(lines[-1].split()) >= 3 and \
            len(stem) >= 3 * len(lines[-1]) else None
        return Views(stem, " ".join(self.strip(stem.split())), tuple(normalize(c) for c in qa.choices),
                     norm, final, numeric, _numbers(qa.stem_text), normalize(qa.text), last, qa.unanswerable)

    def unique_hits(self, text: str) -> Counter[int]:
        """item -> number of its unique n-grams found in `text` (normalised)."""
        hits: Counter[int] = Counter()
        words = text.split()
        for g in _grams(words, self.unique_n) | {tuple(words[i:i + k]) for k in self.short_sizes
                                                for i in range(len(words) - k + 1)}:
            j = self.unique_owner.get(g)
            if j is not None:
                hits[j] += 1
        return hits


def _fuzz():
    try:
        from rapidfuzz import fuzz
    except ImportError:
        raise DataError("decontamination needs rapidfuzz", hint="pip install 'tuneforge[decontam]'") from None
    return fuzz


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    if len(words) < n:
        return {tuple(words)} if len(words) >= 5 else set()  # a short stem is one n-gram of its own length
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _same_number(a: str, b: str | None) -> bool:
    try:
        return b is not None and float(a) == float(b)
    except ValueError:
        return a == b


def _contains(haystack: str, needle: str) -> bool:
    return bool(needle) and f" {needle} " in f" {haystack} "


def core_similarity(train: Views, bench: Views) -> float | None:
    """Similarity of the cores (0-1, rapidfuzz Indel ratio); the best-aligned window when the record's core is
    longer (a prefix, instructions or a passage around the question). None when the item's core is generic."""
    words = bench.core.split()
    if len(words) < MIN_CORE_WORDS:
        return None
    if len(train.core) > 1.3 * len(bench.core):
        have = set(train.core.split())
        if sum(w in have for w in words) < 0.5 * len(words):  # cannot reach SAME_STEM: skip the window search
            return _fuzz().ratio(bench.core, train.core) / 100
        return _fuzz().partial_ratio(bench.core, train.core) / 100
    return _fuzz().ratio(bench.core, train.core) / 100


TYPO_SIMILARITY = 80  # rapidfuzz ratio at which a word counts as another word with a typo ("nveer" for "never")


def _typo_free_missing(word: str, words: list[str]) -> bool:
    """`word` is not among `words`, not even with a typo."""
    from rapidfuzz import process

    return word not in words and process.extractOne(word, words, scorer=_fuzz().ratio,
                                                    score_cutoff=TYPO_SIMILARITY) is None


def reworded_words(train: Views, bench: Views) -> int:
    """Words of the item's core (numbers aside) that the record's core lacks, not even with a typo: replaced
    words (synonyms, a reworded frame) tell a rewording from a copy."""
    have = set(train.core.split())
    candidates = list(have)
    return sum(1 for w in set(bench.core.split()) - have if not w.isdigit() and _typo_free_missing(w, candidates))


def negated(train: Views, bench: Views) -> bool:
    """The record asks the item's question the other way round: a negation of the item is missing from the record,
    or (when the record is about the item's length, so no surrounding instructions) the record adds one. SQuAD v2
    built its unanswerable questions this way ("What would create..." -> "What would not create...")."""
    def missing(a: str, b: str) -> bool:
        have = b.split()
        # short words must match exactly ("not" is 80 % like "no"); longer ones may carry a typo ("nveer")
        return any(w not in have if len(w) <= 4 else _typo_free_missing(w, have)
                   for w in set(a.split()) & NEGATIONS)

    return missing(bench.core, train.core) or (
        len(train.core) <= 1.3 * len(bench.core) and missing(train.core, bench.core))


def passage_only(train: Views, bench: Views) -> bool:
    """The record shares the item's passage but asks another question (the item's last line is not in it)."""
    if bench.last_line is None:
        return False
    return _fuzz().partial_ratio(bench.last_line, train.stem) < 100 * SAME_STEM


def answer_agreement(train: Views, bench: Views) -> bool | None:
    """Do the answers agree? None when either is empty. Numeric items compare final numbers; others containment
    of the benchmark answer in the record's answer, or token F1 >= 0.5."""
    if not train.answer or not bench.answer:
        return None
    if bench.numeric:
        return train.final is not None and _same_number(train.final, bench.final)
    if _contains(train.answer, bench.answer):
        return True
    a, b = train.answer.split(), bench.answer.split()
    common = sum((Counter(a) & Counter(b)).values())
    return common > 0 and 2 * common / (len(a) + len(b)) >= 0.5


def choice_overlap(train: Views, bench: Views, stats: BenchStats) -> float | None:
    """Share of the item's distinctive choices (not shared by >= 3 items, 2+ words or 4+ characters) found in the
    record's question; None when it has fewer than two."""
    own = [c for c in bench.choices if stats.choice_df[c] < BOILER_MIN_DF and len(c) >= 4]
    if len(own) < 2:
        return None
    return sum(_contains(train.stem + " " + " ".join(train.choices), c) for c in own) / len(own)


@dataclass
class Decision:
    removed: bool
    category: str | None
    evidence: list[str]  # which views matched: stem, ngram, choices, answer, embedding
    score: float  # 0-1 strength of the strongest evidence


def decide(f: dict[str, float | bool | None], threshold: float = PARAPHRASE_COSINE) -> Decision:
    """Removed / kept and the category of a pair from its features (see docs/decontam.md for the table)."""
    core, ngram, cos = f.get("core_similarity"), f.get("unique_ngrams"), f.get("cosine") or 0.0
    answer, choices = f.get("answer_agrees"), f.get("choice_overlap")
    evidence = []
    same_stem = not f.get("passage_only") and ((core is not None and core >= SAME_STEM) or bool(
        f.get("exact_stem") and (answer or (choices or 0) >= 0.5)))
    if same_stem:
        evidence.append("stem")
    if ngram is not None and ngram >= UNIQUE_COVER:
        evidence.append("ngram")
    if choices is not None and choices >= SAME_CHOICES:
        evidence.append("choices")
    if answer and f.get("answer_distinctive", True):
        evidence.append("answer")
    if cos >= threshold:
        evidence.append("embedding")
    # a shared passage with another question is neither a copy nor, by its (passage-dominated) cosine, a rewording
    passage = bool(f.get("passage_only"))
    copied = not passage and (same_stem or "ngram" in evidence)
    # a very close neighbour counts alone only when no answer says otherwise (a same-topic question with another
    # answer, e.g. "Who sold the rights?" vs "Who bought the rights?", stays)
    strong = cos >= STRONG_COSINE and not passage and answer is not False
    reworded = ("embedding" in evidence and "answer" in evidence) or strong or (
        "choices" in evidence and "answer" in evidence)
    if f.get("negated") and answer is not True and "choices" not in evidence and (copied or reworded):
        # the same words asking the opposite, with neither the item's answer nor its choices: nothing of the item's
        # solution is in the record (a negated multiple-choice stem with the same choices still leaks them)
        return Decision(False, None, evidence + ["negated"], _score(f))
    if f.get("answers_unanswerable") and (f.get("reworded_words") or f.get("numbers_changed") or not copied):
        # SQuAD v2 wrote its unanswerable items by changing a word or number of an answerable question about the same
        # passage: a record that answers a question a word away from one is that answerable question (or another),
        # and holds nothing of the item's solution, which is to abstain. A verbatim copy stays removed.
        return Decision(False, None, evidence + ["answers-unanswerable"], _score(f))
    changed = answer is False or bool(f.get("numbers_changed"))
    if (copied and answer is False and f.get("reworded_words") and not f.get("numbers_changed")
            and "choices" not in evidence):  # (a disagreeing answer already rules out "reworded")
        # the same frame with a content word swapped and another answer ("the second busiest airport" vs "... container
        # port"): another question about the same topic; a numeric edit (same words, new numbers) stays removed, as
        # its item's solution template leaked
        return Decision(False, None, evidence + ["other-question"], _score(f))
    if copied:
        category = "similar-but-different" if changed else "gray-area" if f.get("reworded_words") else "duplicate"
    elif reworded:
        category = "similar-but-different" if changed and answer is not True else "gray-area"
    else:
        return Decision(False, None, evidence, _score(f))
    return Decision(True, category, evidence, _score(f))


def _score(f: dict) -> float:
    return round(max(f.get("core_similarity") or 0.0, f.get("unique_ngrams") or 0.0, f.get("cosine") or 0.0), 4)


def pair_features(train: Views, bench: Views, stats: BenchStats, j: int, unique_hits: int,
                  cosine: float | None) -> dict[str, float | bool | None]:
    """Every feature of one (record, benchmark item) pair, as written to report.jsonl."""
    answer = answer_agreement(train, bench)
    total = stats.unique_total[j]
    return {"exact_stem": bool(bench.stem) and train.stem == bench.stem,
            "core_similarity": _round(core_similarity(train, bench)),
            "reworded_words": reworded_words(train, bench),
            "negated": negated(train, bench),
            "passage_only": passage_only(train, bench),
            "unique_ngrams": round(unique_hits / total, 4) if total else None,
            "cosine": _round(cosine),
            "choice_overlap": _round(choice_overlap(train, bench, stats)),
            "answer_agrees": answer,
            "answer_distinctive": stats.answer_df[bench.answer] < BOILER_MIN_DF,
            "numbers_changed": bool(bench.numbers) and sorted(train.numbers) != sorted(bench.numbers),
            "answers_unanswerable": bench.unanswerable and bool(train.answer) and not _ABSTAIN.search(train.answer)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)
