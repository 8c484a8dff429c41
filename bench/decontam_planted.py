"""Planted contamination sets for `tuneforge decontam`: benchmark items hidden in training data, with labels.

Five independent sets, built from the shared benchmarks (../shared/data, or $TUNEFORGE_SHARED_DATA):
- ``tune``:    MMLU (570 test items), GSM8K (200 test), TruthfulQA (200) vs alpaca_en_demo. The defaults of
               tuneforge.data.decontam were chosen on this set.
- ``holdout``: OpenBookQA (60 of its 100 items) and SQuAD v2 (250 questions of 3 articles) vs alpaca_en_demo +
               identity.json written as OpenAI `messages`. Built with the same transforms, neither benchmark family
               appears in ``tune``. Its first run (untuned) prompted one rule change (a very close embedding
               neighbour with a *different* answer is kept), so it is no longer untouched; hence:
- ``fresh``:   built after that change and never tuned on: MMLU dev + 300 GSM8K train problems as the benchmark,
               MMLU test items of the same subjects and other GSM8K train problems as negatives, ShareGPT records.
- ``fresh2``:  built after the second rule change (negated questions, prompted by holdout) and never tuned on:
               the SQuAD v2 questions holdout left unused + MMLU test questions with a negation, in DPO demo data.
               Its first run prompted the third rule change (a content word swapped, another answer), hence:
- ``fresh3``:  built after that change and never tuned on: TruthfulQA, OpenBookQA and unused GSM8K train problems
               in KTO demo data (messages + label), with copies answered by another accepted TruthfulQA answer.

Positives (the record must be removed), with the category a reviewer would give them:
  verbatim        question (+ lettered choices) and the right answer                        duplicate
  stem_only       the question without its choices, answered with the right choice's text   duplicate
  choice_shuffle  choices reordered and relettered "(a)" style, answer letter follows        duplicate
  light_edit      casing/punctuation, typos, swapped words, or a prompt prefix               duplicate
  with_context    the question inside a longer prompt (instructions, a passage)              duplicate
  paraphrase      rule-based rewrite (synonym swaps, reworded frames, reordered sentences)   gray-area
  numeric_edit    the numbers in the question changed (answer changes with them)             similar-but-different
  alt_answer      (fresh3) the question with another of the benchmark's accepted answers     duplicate
Negatives (must be kept): same-topic questions (MMLU dev of the same subjects, incl. template siblings such as
moral_scenarios; GSM8K train problems; other questions about the same SQuAD passages; the OpenBookQA items left
out of the benchmark file; hand-written trivia) and the unrelated training rows.

    PYTHONPATH=src python bench/decontam_planted.py --set tune --out /tmp/planted   # writes train.json + labels
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUPLICATE, GRAY, SIMILAR = "duplicate", "gray-area", "similar-but-different"
EXPECTED = {"verbatim": DUPLICATE, "stem_only": DUPLICATE, "choice_shuffle": DUPLICATE, "light_edit": DUPLICATE,
            "with_context": DUPLICATE, "paraphrase": GRAY, "numeric_edit": SIMILAR, "alt_answer": DUPLICATE}


def shared_data() -> Path:
    env = os.environ.get("TUNEFORGE_SHARED_DATA")
    for c in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", Path("/work/shared/data")]:
        if c.is_dir():
            return c
    raise SystemExit("shared data not found: set TUNEFORGE_SHARED_DATA")


@dataclass
class PlantedSet:
    """Training records (alpaca or messages dicts), one label per record, and the benchmark files."""

    name: str
    records: list[dict]
    labels: list[dict]  # {"positive": bool, "kind": str, "expected": category | None, "bench": str}
    against: list[Path]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- rule-based rewrites --------------------------------------------------------------------------------------
SYNONYMS = {
    "following": "listed", "bought": "purchased", "buys": "purchases", "total": "overall", "each": "every",
    "wants": "would like", "needs": "requires", "begins": "starts", "large": "big", "small": "little",
    "correct": "right", "statement": "claim", "describes": "characterizes", "approximately": "roughly",
    "example": "instance", "person": "individual", "important": "significant", "increase": "rise",
    "decrease": "drop", "show": "demonstrate", "find": "determine", "calculate": "work out", "because": "since",
    "However": "But", "most": "mainly", "usually": "typically", "called": "known as", "many": "numerous",
    "happens": "occurs", "happen": "occur", "makes": "produces", "gets": "receives", "started": "began",
    "quickly": "rapidly", "answer": "response", "people": "folks", "used": "employed", "uses": "employs",
    "likely": "probable", "true": "accurate", "made": "produced", "different": "distinct", "help": "assist",
}
FRAMES = [(r"^Which of the following\b", "Which one of these options"), (r"^What is\b", "Tell me: what is"),
          (r"^How many\b", "What number of"), (r"^How much\b", "What amount"), (r"^Why\b", "For what reason"),
          (r"^What\b", "Say what"), (r"^Who\b", "Which person"), (r"^Where\b", "In which place")]


def paraphrase(text: str, rng: random.Random) -> str:
    """Synonym swaps, a reworded question frame, and (3+ sentences) the question moved to the front."""
    out = re.sub(r"\b(" + "|".join(map(re.escape, SYNONYMS)) + r")\b", lambda m: SYNONYMS[m.group(1)], text)
    for pat, rep in FRAMES:
        if re.search(pat, out):
            out = re.sub(pat, rep, out, count=1)
            break
    sents = re.split(r"(?<=[.?!])\s+", out.strip())
    if len(sents) >= 3:
        body = sents[:-1]
        i = rng.randrange(len(body) - 1)
        body[i], body[i + 1] = body[i + 1], body[i]
        out = sents[-1] + " Here is the situation: " + " ".join(body)
    return out


def light_edit(text: str, kind: int) -> str:
    """Casing + punctuation, typos, swapped words, or a prompt prefix."""
    words = text.split()
    if kind == 0:
        return text.lower().rstrip("?.!:") + " ?"
    if kind == 1:
        return " ".join(w[0] + w[2] + w[1] + w[3:] if i % 5 == 2 and len(w) > 4 else w for i, w in enumerate(words))
    if kind == 2:
        for i in (1, len(words) // 2):
            if i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)
    return "Answer the following question. " + text


def numeric_edit(text: str, rng: random.Random) -> tuple[str, dict[str, str]]:
    """Every number replaced by another one; returns the text and the replacements (to edit the answer too)."""
    repl: dict[str, str] = {}

    def swap(m: re.Match) -> str:
        n = m.group(0)
        if n not in repl:
            repl[n] = str(int(n) + rng.randint(1, 9)) if n.isdigit() else n
        return repl[n]

    return re.sub(r"\d+", swap, text), repl


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def has_numbers(text: str) -> bool:
    return len(re.findall(r"\d+", text)) >= 2


# ---- per-benchmark record builders ----------------------------------------------------------------------------
def _lettered(choices: list[str], style: str = "A. ") -> str:
    if style == "(a) ":
        return "\n".join(f"({chr(97 + i)}) {c}" for i, c in enumerate(choices))
    return "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))


def mcq_record(kind: str, stem: str, choices: list[str], answer: int, rng: random.Random, n: int) -> dict:
    """An alpaca record planting one multiple-choice item."""
    right = choices[answer]
    if kind == "verbatim":
        return {"instruction": stem, "input": _lettered(choices), "output": f"{chr(65 + answer)}. {right}"}
    if kind == "stem_only":
        return {"instruction": stem, "input": "", "output": right}
    if kind == "choice_shuffle":
        order = list(range(len(choices)))
        while order == sorted(order):
            rng.shuffle(order)
        new = [choices[i] for i in order]
        return {"instruction": stem, "input": _lettered(new, "(a) "), "output": f"({chr(97 + order.index(answer))})"}
    if kind == "light_edit":
        return {"instruction": light_edit(stem, n % 4), "input": _lettered(choices), "output": right}
    if kind == "with_context":
        return {"instruction": "You are taking a quiz. Read the question carefully, think step by step, and "
                               "finish with the letter of the right option.\n\n" + stem + "\n" + _lettered(choices),
                "input": "", "output": f"The right option is {chr(65 + answer)}: {right}."}
    if kind == "paraphrase":
        keep = n % 2 == 0  # half keep the choices, half ask the reworded stem alone
        return {"instruction": paraphrase(stem, rng), "input": _lettered(choices) if keep else "", "output": right}
    if kind == "numeric_edit":
        text, repl = numeric_edit(stem, rng)
        edited = [re.sub(r"\d+", lambda m: repl.get(m.group(0), m.group(0)), c) for c in choices]
        return {"instruction": text, "input": _lettered(edited), "output": edited[answer]}
    raise ValueError(kind)


def open_record(kind: str, question: str, answer: str, rng: random.Random, n: int, context: str = "") -> dict:
    """An alpaca record planting one open question (GSM8K, TruthfulQA, SQuAD)."""
    if kind == "verbatim":
        return {"instruction": question, "input": "", "output": answer}
    if kind == "stem_only":  # only the final answer (GSM8K "#### 18" -> "18")
        return {"instruction": question, "input": "", "output": answer.split("####")[-1].strip()}
    if kind == "light_edit":
        return {"instruction": light_edit(question, n % 4), "input": "", "output": answer}
    if kind == "with_context":
        prefix = (f"Read the passage and answer the question.\n\nPassage: {context}\n\nQuestion: " if context else
                  "Solve the following problem. Explain your reasoning, then give the final answer.\n\n")
        return {"instruction": prefix + question, "input": "", "output": answer}
    if kind == "paraphrase":
        return {"instruction": paraphrase(question, rng), "input": "", "output": answer}
    if kind == "numeric_edit":
        text, repl = numeric_edit(question, rng)
        return {"instruction": text, "input": "",
                "output": re.sub(r"\d+", lambda m: repl.get(m.group(0), str(int(m.group(0)) + 3)), answer)}
    raise ValueError(kind)


def _mix(base: list[dict], planted: list[tuple[dict, dict]], rng: random.Random) -> tuple[list[dict], list[dict]]:
    mixed = [(r, {"positive": False, "kind": "base", "expected": None, "bench": ""}) for r in base]
    for item in planted:
        mixed.insert(rng.randrange(len(mixed) + 1), item)
    return [r for r, _ in mixed], [lab for _, lab in mixed]


def _pos(rec: dict, kind: str, bench: str, original: str = "") -> tuple[dict, dict]:
    if kind == "paraphrase" and set(_norm(rec["instruction"]).split()) >= set(_norm(original).split()):
        kind = "light_edit"  # no rule applied to this question (no synonym, frame or 3 sentences): not reworded
    return rec, {"positive": True, "kind": kind, "expected": EXPECTED[kind], "bench": bench}


def _neg(rec: dict, kind: str) -> tuple[dict, dict]:
    return rec, {"positive": False, "kind": kind, "expected": None, "bench": ""}


TRIVIA_NEGATIVES = [
    ("What percentage of the Earth's surface is covered by water?", "About 71 percent."),
    ("Which European city receives the most tourists each year?", "It varies by year; London and Paris lead."),
    ("How many bones does an adult human have?", "206."),
    ("What does the abbreviation 'e.g.' stand for?", "Exempli gratia, 'for example'."),
    ("Is bottled water cleaner than tap water?", "Not necessarily; both are regulated."),
    ("Why do cats purr?", "To communicate contentment and sometimes to soothe themselves."),
    ("Can goldfish remember things for more than a few seconds?", "Yes, for months."),
    ("Do bulls get angry when they see the color red?", "No, bulls are red-green colorblind."),
    ("What fraction of the human body is made of water?", "About 60 percent."),
    ("What do scientists know about the origin of the Moon?", "It most likely formed after a giant impact."),
]

MCQ_KINDS = ("verbatim", "stem_only", "choice_shuffle", "light_edit", "with_context", "paraphrase")
OPEN_KINDS = ("verbatim", "stem_only", "light_edit", "with_context", "paraphrase")


def build_tune(data: Path, seed: int = 13) -> PlantedSet:
    rng = random.Random(seed)
    mmlu, gsm, tqa = (_jsonl(data / p) for p in ("mmlu/test_dev_subset.jsonl", "gsm8k/test_dev_subset.jsonl",
                                                   "truthfulqa/truthfulqa_dev_subset.jsonl"))
    planted = []
    order = rng.sample(range(len(mmlu)), len(mmlu))
    numeric = [i for i in order if has_numbers(mmlu[i]["question"])][:12]
    rest = [i for i in order if i not in numeric]
    for n, i in enumerate(rest[:15 * len(MCQ_KINDS)]):
        kind = MCQ_KINDS[n % len(MCQ_KINDS)]
        r = mmlu[i]
        planted.append(_pos(mcq_record(kind, r["question"], r["choices"], r["answer"], rng, n), kind, r["id"],
                            r["question"]))
    for n, i in enumerate(numeric):
        r = mmlu[i]
        planted.append(_pos(mcq_record("numeric_edit", r["question"], r["choices"], r["answer"], rng, n),
                            "numeric_edit", r["id"]))
    for n, i in enumerate(rng.sample(range(len(gsm)), 8 * len(OPEN_KINDS) + 12)):
        kind = OPEN_KINDS[n % len(OPEN_KINDS)] if n < 8 * len(OPEN_KINDS) else "numeric_edit"
        planted.append(_pos(open_record(kind, gsm[i]["question"], gsm[i]["answer"], rng, n), kind, gsm[i]["id"],
                            gsm[i]["question"]))
    tqa_kinds = ("verbatim", "light_edit", "paraphrase", "with_context")
    for n, i in enumerate(rng.sample(range(len(tqa)), 8 * len(tqa_kinds))):
        kind = tqa_kinds[n % len(tqa_kinds)]
        planted.append(_pos(open_record(kind, tqa[i]["Question"], tqa[i]["Best Answer"], rng, n), kind,
                            f"tqa-{tqa[i]['id']}", tqa[i]["Question"]))
    test_stems = {_norm(r["question"]) for r in mmlu}
    for r in _jsonl(data / "mmlu/dev.jsonl"):  # same subjects, incl. template siblings (moral_scenarios, passages)
        if _norm(r["question"]) in test_stems:  # MMLU's dev split repeats a few test questions: real leaks
            continue
        planted.append(_neg({"instruction": r["question"], "input": _lettered(r["choices"]),
                             "output": r["choices"][r["answer"]]}, "same_topic_mmlu"))
    for r in rng.sample(_jsonl(data / "gsm8k/train.jsonl"), 100):
        planted.append(_neg({"instruction": r["question"], "input": "", "output": r["answer"]}, "same_topic_gsm8k"))
    planted += [_neg({"instruction": q, "input": "", "output": a}, "trivia") for q, a in TRIVIA_NEGATIVES]
    base = json.loads((data / "llamafactory_demo/alpaca_en_demo.json").read_text(encoding="utf-8"))
    records, labels = _mix(base, planted, rng)
    against = [data / "mmlu/test_dev_subset.jsonl", data / "gsm8k/test_dev_subset.jsonl",
               data / "truthfulqa/truthfulqa_dev_subset.jsonl"]
    return PlantedSet("tune", records, labels, against)


def _messages(rec: dict) -> dict:
    user = rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": rec["output"]}]}


def build_holdout(data: Path, out: Path, seed: int = 29) -> PlantedSet:
    rng = random.Random(seed)
    obqa = _jsonl(data / "openbookqa/openbookqa_dev_subset.jsonl")
    squad = _jsonl(data / "squad_v2_subset/squad_v2_shared.jsonl")
    rng.shuffle(obqa)
    rng.shuffle(squad)
    obqa_bench, obqa_neg = obqa[:60], obqa[60:]
    answerable = [r for r in squad if not r["is_impossible"]]
    squad_bench = [r for r in squad if r["is_impossible"]][:100] + answerable[:150]
    squad_neg = answerable[150:250]
    out.mkdir(parents=True, exist_ok=True)
    against = [out / "openbookqa_bench.jsonl", out / "squad_bench.jsonl"]
    for path, rows in zip(against, (obqa_bench, squad_bench)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    planted = []
    for n, r in enumerate(obqa_bench[:48]):
        kind = MCQ_KINDS[n % len(MCQ_KINDS)]
        q = r["question"]
        choices = [c["text"] for c in q["choices"]]
        answer = [c["label"] for c in q["choices"]].index(r["answerKey"])
        planted.append(_pos(mcq_record(kind, q["stem"], choices, answer, rng, n), kind, f"obqa-{r['id']}",
                            q["stem"]))
    for n, r in enumerate(answerable[:60]):
        kind = OPEN_KINDS[n % len(OPEN_KINDS)]
        planted.append(_pos(open_record(kind, r["question"], r["answers"]["text"][0], rng, n, r["context"]), kind,
                            f"squad-{r['id']}", r["question"]))
    for r in obqa_neg:
        q = r["question"]
        choices = [c["text"] for c in q["choices"]]
        answer = [c["label"] for c in q["choices"]].index(r["answerKey"])
        planted.append(_neg(mcq_record("verbatim", q["stem"], choices, answer, rng, 0), "same_topic_obqa"))
    for r in squad_neg:
        planted.append(_neg({"instruction": r["question"], "input": "", "output": r["answers"]["text"][0]},
                            "same_topic_squad"))
    base = json.loads((data / "llamafactory_demo/alpaca_en_demo.json").read_text(encoding="utf-8"))
    base += json.loads((data / "llamafactory_demo/identity.json").read_text(encoding="utf-8"))
    records, labels = _mix(base, planted, rng)
    return PlantedSet("holdout", [_messages(r) for r in records], labels, against)


FRESH = ("fresh", "fresh2", "fresh3")
SETS = ("tune", "holdout", *FRESH)


def build(name: str, out: Path, data: Path | None = None) -> PlantedSet:
    data = data or shared_data()
    if name == "tune":
        return build_tune(data)
    if name == "holdout":
        return build_holdout(data, out)
    if name in FRESH:
        import decontam_planted_fresh  # its builders reuse this module's

        return getattr(decontam_planted_fresh, f"build_{name}")(data, out)
    raise SystemExit(f"unknown set {name!r} ({' | '.join(SETS)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="tune", choices=SETS)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    ps = build(a.set, a.out)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "train.json").write_text(json.dumps(ps.records, ensure_ascii=False), encoding="utf-8")
    (a.out / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in ps.labels), encoding="utf-8")
    print(f"{ps.name}: {len(ps.records)} records, {sum(x['positive'] for x in ps.labels)} planted, "
          f"against {', '.join(map(str, ps.against))}")


if __name__ == "__main__":
    main()
