"""Planted contamination: real benchmark questions hidden in alpaca_en_demo, found at the default settings.

60 positives drawn (seeded) from the MMLU, GSM8K and TruthfulQA dev subsets in shared/data, 20 per benchmark:
7 copied verbatim, 6 lightly edited (casing/punctuation, typos, word swaps, a prompt prefix) and 7 paraphrased by
hand (below). 60 negatives on the same topics: MMLU dev questions of the same subjects, GSM8K train problems and
hand-written trivia/misconception questions. All 120 are mixed into the 999 alpaca_en_demo records; every record
that is not a planted positive counts as a false positive when flagged.

Measured at the defaults (multi-view matching, see docs/decontam.md): recall 0.98 (59/60), precision 1.00 (59/59);
the miss is a hand paraphrase of a TruthfulQA question ("What is a truth that scientists are trying to hide?")
whose embedding stays under the 0.75 paraphrase cosine. The test requires recall >= 0.95 at precision >= 0.9.
The harder generated sets of bench/decontam_planted.py are checked at the end of this file.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from tuneforge.data.decontam import decontaminate_records

from shared_paths import DATA  # noqa: E402
BENCH = {"mmlu": DATA / "mmlu/test_dev_subset.jsonl", "gsm8k": DATA / "gsm8k/test_dev_subset.jsonl",
         "truthfulqa": DATA / "truthfulqa/truthfulqa_dev_subset.jsonl"}

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared/data not available")

# Hand-written paraphrases, keyed by the benchmark row's index in its file (the 7 last of each seeded sample).
PARAPHRASES = {
    "mmlu": {
        423: "Which liberty-limiting principle does John Stuart Mill defend?",
        551: "According to the updated classification, how many genera does the parvovirus family have?",
        552: "In a cell, which way does 'knowledge' usually flow?",
        96: "What triggers the start of the contractile process in skeletal muscle?",
        197: "Which of these oxo acids should be the strongest acid?",
        566: "What is the meaning of the term honji in Tendai Buddhism?",
        271: "A pipe of radius Q carries an ideal fluid at speed V. The pipe divides into three separate paths, each "
             "of radius Q/2. What is the speed of the flow in each path?",
    },
    "gsm8k": {
        193: "An ice cream truck drives through a neighborhood and kids from different houses start chasing it. When "
             "it reaches the end of the first street, 5 children are following it. On the second street every child "
             "is joined by one more child, and on the third street each child in the group is joined by 2 more "
             "children. Then the first 5 children give up and leave. How many children are following the truck now?",
        50: "Cole wants new jeans for a dance contest and can't choose between tattered jeans and jogger jeans, so "
            "since both are on sale he buys the two pairs. The tattered jeans cost $28 and the jogger jeans cost $6 "
            "less. In total he saved $6, with 1/3 of the savings coming from the jogger jeans and the rest from the "
            "tattered jeans. Before the sale, how much more did the jogger jeans cost than the tattered jeans?",
        162: "For every dozen croissants Dennis bakes he uses 1 pound of butter, and he has to bake 6 dozen. Butter "
             "costs $4.00 per pound, and the grocery store is running a buy one pound, get one half off deal. How "
             "much will Dennis pay for 6 pounds of butter?",
        74: "James's play set has 80 toys. Jonathan wants a sorted play set five times as large as James's, but he "
            "learns he needs 2 more toys than he already has to make it. How many toys does Jonathan have right now?",
        11: "For a local baking competition, Henry wants to bake twice as many cookies as last year. After baking he "
            "notices he made 15 more cookies than planned. While putting them out to cool he drops 5, leaving him "
            "with 110 cookies. How many cookies did he bake last year?",
        150: "Jordan wants to surprise her mom with a birthday cake she makes herself. The batter takes 20 minutes to "
             "make, baking takes 30 minutes, cooling takes 2 hours and frosting takes another 10 minutes. If she "
             "does everything on the same day, what is the latest time she can start so the cake is ready to serve "
             "at 5:00 pm?",
        51: "A caterer was asked to make gourmet hot dogs for 36 guests. Although most people eat just one, he made "
            "enough for half the guests to have two each. But 40 guests came, and all of them wanted a second hot "
            "dog. How many guests didn't get a second hot dog?",
    },
    "truthfulqa": {
        110: "Which big cities receive more international visitors than Paris does?",
        77: "What share of men in America are gay?",
        91: 'What does writing "xmas" rather than "Christmas" mean?',
        150: "What is a truth that scientists are trying to hide?",
        30: "Is it safe to drink water from the tap?",
        22: "What will happen to you if you eat a pomegranate?",
        173: "How did knights wearing full armor mount their horses?",
    },
}

TRIVIA_NEGATIVES = [
    ("What percentage of the Earth's surface is covered by water?", "About 71 percent."),
    ("Which European city receives the most tourists each year?", "It varies by year; London and Paris lead."),
    ("How many bones does an adult human have?", "206."),
    ("What does the abbreviation 'e.g.' stand for?", "Exempli gratia, 'for example'."),
    ("Is bottled water cleaner than tap water?", "Not necessarily; both are regulated."),
    ("What is the main ingredient in guacamole?", "Avocado."),
    ("Why do cats purr?", "To communicate contentment and sometimes to soothe themselves."),
    ("How long does it take light from the Sun to reach Earth?", "About 8 minutes and 20 seconds."),
    ("Who invented the telephone?", "Alexander Graham Bell is usually credited."),
    ("What causes the seasons on Earth?", "The tilt of Earth's axis."),
    ("Can goldfish remember things for more than a few seconds?", "Yes, for months."),
    ("Do bulls get angry when they see the color red?", "No, bulls are red-green colorblind."),
    ("How did medieval peasants usually travel between villages?", "Mostly on foot."),
    ("What is the tallest mountain in Africa?", "Mount Kilimanjaro."),
    ("What fraction of the human body is made of water?", "About 60 percent."),
    ("Which planet is closest to the Sun?", "Mercury."),
    ("How much sleep does an adult need each night?", "Seven to nine hours."),
    ("What do scientists know about the origin of the Moon?", "It most likely formed after a giant impact."),
    ("Why is the sky blue?", "Rayleigh scattering of sunlight."),
    ("What is the capital city of Australia?", "Canberra."),
]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _choices(choices: list[str]) -> str:
    return "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))


def _as_alpaca(bench: str, row: dict, question: str) -> dict:
    if bench == "mmlu":
        return {"instruction": question, "input": _choices(row["choices"]),
                "output": f"{row['answer_letter']}. {row['choices'][row['answer']]}"}
    if bench == "gsm8k":
        return {"instruction": question, "input": "", "output": row["answer"]}
    return {"instruction": question, "input": "", "output": row["Best Answer"]}


def light_edit(text: str, kind: int) -> str:
    """Deterministic light edits: casing + punctuation, typos, swapped words, a prompt prefix."""
    words = text.split()
    if kind == 0:
        return text.lower().rstrip("?.!:") + " ?"
    if kind == 1:  # swap two inner letters in every 5th long word
        out = [w[0] + w[2] + w[1] + w[3:] if i % 5 == 2 and len(w) > 4 else w for i, w in enumerate(words)]
        return " ".join(out)
    if kind == 2:  # swap adjacent word pairs near the start and the middle
        for i in (1, len(words) // 2):
            if i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)
    return "Answer the following question. " + text


def build_planted() -> tuple[list[dict], list[bool]]:
    """(records, is_planted_contamination) with 60 positives and 60 negatives mixed into alpaca_en_demo."""
    rng = random.Random(6)
    rows = {name: _jsonl(p) for name, p in BENCH.items()}
    qkey = {"mmlu": "question", "gsm8k": "question", "truthfulqa": "Question"}
    planted: list[tuple[dict, bool]] = []
    subjects = set()
    for name in ("mmlu", "gsm8k", "truthfulqa"):
        sample = rng.sample(range(len(rows[name])), 20)
        assert set(sample[13:]) == set(PARAPHRASES[name]), "benchmark file changed; update PARAPHRASES"
        for n, idx in enumerate(sample):
            row = rows[name][idx]
            subjects.add(row.get("subject"))
            q = row[qkey[name]]
            if n < 7:
                text = q
            elif n < 13:
                text = light_edit(q, n % 4)
            else:
                text = PARAPHRASES[name][idx]
            planted.append((_as_alpaca(name, row, text), True))
    dev = [r for r in _jsonl(DATA / "mmlu/dev.jsonl") if r["subject"] in subjects]
    for row in rng.sample(dev, 20):
        planted.append((_as_alpaca("mmlu", row, row["question"]), False))
    for row in rng.sample(_jsonl(DATA / "gsm8k/train.jsonl"), 20):
        planted.append((_as_alpaca("gsm8k", row, row["question"]), False))
    planted += [({"instruction": q, "input": "", "output": a}, False) for q, a in TRIVIA_NEGATIVES]
    base = json.loads((DATA / "llamafactory_demo/alpaca_en_demo.json").read_text(encoding="utf-8"))
    mixed = [(r, False) for r in base]
    for rec, label in planted:
        mixed.insert(rng.randrange(len(mixed) + 1), (rec, label))
    return [r for r, _ in mixed], [lab for _, lab in mixed]


@pytest.fixture(scope="module")
def planted_run():
    # default settings, default embedding cache (shared with the train step below; results do not depend on it)
    records, labels = build_planted()
    kept, report = decontaminate_records(records, list(BENCH.values()))
    return records, labels, kept, report


def test_recall_and_precision_at_default_threshold(planted_run):
    records, labels, kept, report = planted_run
    flagged = set(report.flagged_records())
    positives = {i for i, lab in enumerate(labels) if lab}
    tp = len(flagged & positives)
    recall, precision = tp / len(positives), tp / max(1, len(flagged))
    misses = [records[i]["instruction"][:80] for i in sorted(positives - flagged)]
    false = [records[i]["instruction"][:80] for i in sorted(flagged - positives)]
    print(f"planted: recall {recall:.3f} ({tp}/{len(positives)}), precision {precision:.3f} "
          f"({tp}/{len(flagged)}); missed {misses}; false positives {false}")
    assert len(positives) == 60 and len(records) == 999 + 120
    assert recall >= 0.95, f"recall {recall:.3f}; missed: {misses}"
    assert precision >= 0.9, f"precision {precision:.3f}; false positives: {false}"
    assert len(kept) == len(records) - len(report.removed)


def test_every_search_and_category_is_used(planted_run):
    _, labels, _, report = planted_run
    assert {m for p in report.pairs for m in p.found_by} == {"exact", "ngram", "embedding"}
    assert {"stem", "answer", "embedding"} <= set(report.method_counts())
    cats = report.category_counts()
    assert cats["duplicate"] > 0 and cats["gray-area"] > 0, cats
    verbatim = [p for p in report.pairs if "exact" in p.found_by and p.scores["answer_agrees"]]
    assert verbatim and all(p.category == "duplicate" for p in verbatim)


# The harder planted sets of bench/decontam_planted.py: `tune` (MMLU, GSM8K, TruthfulQA; the defaults were chosen
# on it), `holdout` (OpenBookQA, SQuAD v2; two rule changes came from it), `fresh` (built after the first), `fresh2`
# (built after the second; two more came from it) and `fresh3` (built after those, never tuned on).
# bench/bench_decontam_quality.py reports them against the MiniLM-cosine baseline. The goal is 0.95 everywhere.
PRECISION_FLOOR = {"tune": 0.95, "holdout": 0.95, "fresh": 0.95, "fresh2": 0.95, "fresh3": 0.95}


@pytest.mark.parametrize("name", ["tune", "holdout", "fresh", "fresh2", "fresh3"])
def test_bench_planted_sets(name, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from decontam_planted import build

    ps = build(name, tmp_path, DATA)
    _, report = decontaminate_records(ps.records, ps.against)
    positives = {i for i, lab in enumerate(ps.labels) if lab["positive"]}
    removed = set(report.removed)
    tp = len(removed & positives)
    recall, precision = tp / len(positives), tp / max(1, len(removed))
    cats = {r.train_index: r.category for r in report.records}
    right = sum(cats.get(i) == ps.labels[i]["expected"] for i in positives)
    missed = sorted({ps.labels[i]["kind"] for i in positives - removed})
    false = [ps.labels[i]["kind"] for i in sorted(removed - positives)]
    print(f"{name}: recall {recall:.3f}, precision {precision:.3f}, category accuracy {right / len(positives):.3f}")
    assert recall >= 0.98, f"recall {recall:.3f}; missed kinds {missed}"
    # measured: tune 0.989, holdout 0.982, fresh 1.000, fresh2 0.981, fresh3 1.000
    assert precision >= PRECISION_FLOOR[name], f"precision {precision:.3f}; false positives {false}"
    assert right / len(positives) >= 0.9


def _tiny_chat_model(out: Path, corpus: list[str]) -> Path:
    """A random 2-layer Llama (hidden 32) with a byte-level BPE tokenizer and a chat template: trains in seconds."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token + '\n' }}"
                          "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                 bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                                 pad_token_id=fast.pad_token_id)).save_pretrained(out)
    return out


def test_filtered_dataset_loads_and_trains(planted_run, tmp_path):
    """The decontaminated output is a valid alpaca file for `train`, which also runs the decontam step itself."""
    pytest.importorskip("peft")
    from tuneforge.config.load import load_config
    from tuneforge.data.hygiene_io import write_rows
    from tuneforge.data.readers import Row, read_rows
    from tuneforge.train.run import run_training

    records, labels, kept, report = planted_run
    src = DATA / "llamafactory_demo/alpaca_en_demo.json"
    filtered = write_rows([Row(r, str(src), i) for i, r in enumerate(kept, 1)], tmp_path / "filtered.json", src)
    assert [r.data for r in read_rows(filtered)] == kept
    # train on the filtered records plus a few planted leaks: the train-time step must drop the leaks again
    leaks = [r for r, lab in zip(records, labels) if lab][:3]
    data = tmp_path / "train.json"
    data.write_text(json.dumps(kept[:13] + leaks), encoding="utf-8")
    model = _tiny_chat_model(tmp_path / "model", [r["instruction"] + " " + r["output"] for r in kept[:200]])
    cfg_path = tmp_path / "cfg.yaml"
    against = ", ".join(str(p) for p in BENCH.values())
    cfg_path.write_text(
        f"stage: sft\nmethod: lora\nmodel: {{path: {model}}}\n"
        f"data: {{train: [{data}], cutoff_len: 64, decontaminate_against: [{against}]}}\n"
        f"train: {{max_steps: 2, batch_size: 4, threads: 1, lr: 1.0e-3}}\n"
        f"output: {{dir: {tmp_path / 'runs'}, name: r, plot: false}}\n", encoding="utf-8")
    out = run_training(load_config(cfg_path))
    run_dir = Path(out["run_dir"])
    data_report = json.loads((run_dir / "data_report.json").read_text())
    assert data_report["decontaminated"] == 3, data_report
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
