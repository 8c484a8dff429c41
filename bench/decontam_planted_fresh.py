"""The planted sets built after rule changes, never tuned on: `fresh` and `fresh2` (see decontam_planted.py)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from decontam_planted import (MCQ_KINDS, OPEN_KINDS, TRIVIA_NEGATIVES, PlantedSet, _jsonl, _lettered, _messages,
                              _mix, _neg, _norm, _pos, mcq_record, open_record)


def build_fresh(data: Path, out: Path, seed: int = 41) -> PlantedSet:
    """Built after the one rule change that `holdout` prompted, and not tuned on: MMLU's dev split and 300 GSM8K
    train problems as the benchmark, MMLU test items of the same subjects and other GSM8K train problems as
    same-topic negatives, alpaca_en_demo as ShareGPT conversations."""
    rng = random.Random(seed)
    mmlu_dev, mmlu_test = _jsonl(data / "mmlu/dev.jsonl"), _jsonl(data / "mmlu/test_dev_subset.jsonl")
    gsm = _jsonl(data / "gsm8k/train.jsonl")
    rng.shuffle(gsm)
    gsm_bench, gsm_neg = gsm[:300], gsm[300:380]
    out.mkdir(parents=True, exist_ok=True)
    against = [data / "mmlu/dev.jsonl", out / "gsm8k_train_bench.jsonl"]
    against[1].write_text("".join(json.dumps(r) + "\n" for r in gsm_bench), encoding="utf-8")
    planted = []
    for n, i in enumerate(rng.sample(range(len(mmlu_dev)), 84)):
        kind = MCQ_KINDS[n % len(MCQ_KINDS)]
        r = mmlu_dev[i]
        planted.append(_pos(mcq_record(kind, r["question"], r["choices"], r["answer"], rng, n), kind,
                            f"dev-{i}", r["question"]))
    kinds = OPEN_KINDS + ("numeric_edit",)
    for n, r in enumerate(gsm_bench[:48]):
        kind = kinds[n % len(kinds)]
        planted.append(_pos(open_record(kind, r["question"], r["answer"], rng, n), kind, "gsm-train", r["question"]))
    dev_stems = {_norm(r["question"]) for r in mmlu_dev}
    for r in rng.sample(mmlu_test, 200):
        if _norm(r["question"]) not in dev_stems:
            planted.append(_neg({"instruction": r["question"], "input": _lettered(r["choices"]),
                                 "output": r["choices"][r["answer"]]}, "same_topic_mmlu"))
    for r in gsm_neg:
        planted.append(_neg({"instruction": r["question"], "input": "", "output": r["answer"]}, "same_topic_gsm8k"))
    planted += [_neg({"instruction": q, "input": "", "output": a}, "trivia") for q, a in TRIVIA_NEGATIVES]
    base = json.loads((data / "llamafactory_demo/alpaca_en_demo.json").read_text(encoding="utf-8"))
    records, labels = _mix(base, planted, rng)
    share = [{"conversations": [{"from": "human", "value": r["instruction"] + ("\n" + r["input"] if r.get("input")
                                                                               else "")},
                                {"from": "gpt", "value": r["output"]}]} for r in records]
    return PlantedSet("fresh", share, labels, against)


def build_fresh2(data: Path, out: Path, seed: int = 53) -> PlantedSet:
    """Built after the second rule change (a negated question is not a copy), which `holdout`'s SQuAD v2 false
    positives prompted, and not tuned on: the SQuAD v2 questions `holdout` left unused (other unanswerable and
    answerable questions about the same passages) and the MMLU test questions that contain a negation ("NOT",
    "EXCEPT": the planted copies must still be found), hidden in LLaMA-Factory's DPO demo data (ShareGPT
    preference records)."""
    rng = random.Random(seed)
    squad = _jsonl(data / "squad_v2_subset/squad_v2_shared.jsonl")
    holdout_rng = random.Random(29)  # holdout's order (it shuffles OpenBookQA first): skip the questions it used
    holdout_rng.shuffle(_jsonl(data / "openbookqa/openbookqa_dev_subset.jsonl"))
    holdout_rng.shuffle(squad)
    answerable = [r for r in squad if not r["is_impossible"]]
    squad_bench = [r for r in squad if r["is_impossible"]][100:300] + answerable[250:380]
    squad_neg = answerable[380:]
    negations = re.compile(r"\b(not|NOT|EXCEPT|except|never|cannot)\b|n't\b")
    mmlu = [r for r in _jsonl(data / "mmlu/test_dev_subset.jsonl") if negations.search(r["question"])]
    out.mkdir(parents=True, exist_ok=True)
    against = [out / "squad_bench.jsonl", out / "mmlu_negated_bench.jsonl"]
    for path, rows in zip(against, (squad_bench, mmlu)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    planted = []
    for n, r in enumerate(answerable[250:310]):
        kind = OPEN_KINDS[n % len(OPEN_KINDS)]
        planted.append(_pos(open_record(kind, r["question"], r["answers"]["text"][0], rng, n, r["context"]), kind,
                            f"squad-{r['id']}", r["question"]))
    for n, i in enumerate(rng.sample(range(len(mmlu)), 42)):
        kind = MCQ_KINDS[n % len(MCQ_KINDS)]
        r = mmlu[i]
        planted.append(_pos(mcq_record(kind, r["question"], r["choices"], r["answer"], rng, n), kind,
                            r.get("id", f"mmlu-{i}"), r["question"]))
    for r in squad_neg:
        planted.append(_neg({"instruction": r["question"], "input": "", "output": r["answers"]["text"][0]},
                            "same_topic_squad"))
    subjects = {r["subject"] for r in mmlu}
    test_stems = {_norm(r["question"]) for r in mmlu}
    for r in _jsonl(data / "mmlu/dev.jsonl"):
        if r["subject"] in subjects and _norm(r["question"]) not in test_stems:
            planted.append(_neg({"instruction": r["question"], "input": _lettered(r["choices"]),
                                 "output": r["choices"][r["answer"]]}, "same_topic_mmlu"))
    return _hide("fresh2", planted, data / "llamafactory_demo/dpo_en_demo.json", _preference, rng, against)


def _hide(name: str, planted: list, host: Path, layout, rng: random.Random, against: list[Path]) -> PlantedSet:
    """The planted records (+ the trivia negatives) in the host file's layout, mixed into its records."""
    planted = planted + [_neg({"instruction": q, "input": "", "output": a}, "trivia") for q, a in TRIVIA_NEGATIVES]
    base = json.loads(host.read_text(encoding="utf-8"))
    records, labels = _mix(base, [(layout(r), lab) for r, lab in planted], rng)
    return PlantedSet(name, records, labels, against)


def _preference(rec: dict) -> dict:
    user = rec["instruction"] + ("\n" + rec["input"] if rec.get("input") else "")
    return {"conversations": [{"from": "human", "value": user}], "chosen": {"from": "gpt", "value": rec["output"]},
            "rejected": {"from": "gpt", "value": "I am not sure."}}


SCIENCE = ("astronomy", "anatomy", "college_biology", "conceptual_physics", "high_school_biology",
           "high_school_chemistry", "high_school_physics", "nutrition")


def _alt_answer(r: dict) -> str | None:
    """Another of TruthfulQA's accepted answers than the best one (a leak that words the answer differently)."""
    others = [a.strip() for a in r["Correct Answers"].split(";") if a.strip() and a.strip() != r["Best Answer"]]
    return others[0] if others else None


def build_fresh3(data: Path, out: Path, seed: int = 71) -> PlantedSet:
    """Built after the third rule change (a copied frame with a content word swapped and another answer is another
    question), which `fresh2`'s SQuAD v2 false positives prompted, and not tuned on: TruthfulQA (150 items as the
    benchmark, the other 50 as same-topic negatives; copies answered with another of its accepted answers),
    OpenBookQA (all 100; MMLU science questions as negatives) and 300 GSM8K train problems not used before (numeric
    edits; the next 100 problems as negatives), hidden in LLaMA-Factory's KTO demo data (OpenAI messages + label)."""
    rng = random.Random(seed)
    tqa = _jsonl(data / "truthfulqa/truthfulqa_dev_subset.jsonl")
    rng.shuffle(tqa)
    tqa_bench, tqa_neg = tqa[:150], tqa[150:]
    obqa = _jsonl(data / "openbookqa/openbookqa_dev_subset.jsonl")
    gsm = _jsonl(data / "gsm8k/train.jsonl")
    gsm_bench, gsm_neg = gsm[3000:3300], gsm[3300:3400]
    out.mkdir(parents=True, exist_ok=True)
    against = [out / "truthfulqa_bench.jsonl", out / "openbookqa_bench.jsonl", out / "gsm8k_train_bench.jsonl"]
    for path, rows in zip(against, (tqa_bench, obqa, gsm_bench)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    planted = []
    for n, r in enumerate(tqa_bench[:48]):
        kind = (OPEN_KINDS + ("alt_answer",))[n % (len(OPEN_KINDS) + 1)]
        alt = _alt_answer(r)
        if kind == "alt_answer" and alt:
            rec = {"instruction": r["Question"], "input": "", "output": alt}
        else:
            kind = "verbatim" if kind == "alt_answer" else kind
            rec = open_record(kind, r["Question"], r["Best Answer"], rng, n)
        planted.append(_pos(rec, kind, f"tqa-{r['id']}", r["Question"]))
    for n, i in enumerate(rng.sample(range(len(obqa)), 48)):
        kind = MCQ_KINDS[n % len(MCQ_KINDS)]
        q = obqa[i]["question"]
        choices = [c["text"] for c in q["choices"]]
        answer = [c["label"] for c in q["choices"]].index(obqa[i]["answerKey"])
        planted.append(_pos(mcq_record(kind, q["stem"], choices, answer, rng, n), kind, f"obqa-{obqa[i]['id']}",
                            q["stem"]))
    kinds = OPEN_KINDS + ("numeric_edit",)
    for n, r in enumerate(gsm_bench[:48]):
        kind = kinds[n % len(kinds)]
        planted.append(_pos(open_record(kind, r["question"], r["answer"], rng, n), kind, "gsm-train", r["question"]))
    for r in tqa_neg:
        planted.append(_neg({"instruction": r["Question"], "input": "", "output": r["Best Answer"]},
                            "same_topic_truthfulqa"))
    for r in (r for r in _jsonl(data / "mmlu/test_dev_subset.jsonl") if r["subject"] in SCIENCE):
        planted.append(_neg({"instruction": r["question"], "input": _lettered(r["choices"]),
                             "output": r["choices"][r["answer"]]}, "same_topic_mmlu"))
    for r in gsm_neg:
        planted.append(_neg({"instruction": r["question"], "input": "", "output": r["answer"]}, "same_topic_gsm8k"))
    return _hide("fresh3", planted, data / "llamafactory_demo/kto_en_demo.json", _kto, rng, against)


def _kto(rec: dict) -> dict:
    return {**_messages(rec), "label": True}
