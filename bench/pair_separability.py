"""How much of a preference file can a small model learn to tell apart? Cross-validated linear classifiers over the
pairs give a yardstick for the held-out accuracy DPO can be expected to reach on the same pairs.

    python bench/pair_separability.py --data ../shared/data/llamafactory_demo/dpo_en_demo.json   # ~20 CPU-min

For each pair, a classifier sees features(chosen) - features(rejected) and must say which answer was preferred; it
is trained on 9/10 of the pairs and scored on the other tenth (10 folds, 3 shuffles, every pair scored once per
shuffle). Features: TF-IDF of words and word pairs; four surface cues (log length, line breaks, a greeting opener,
an apology / "As an AI"); and the policy's own representation — SmolLM2-135M-Instruct's last hidden layer, and
separately its middle one, averaged over the answer tokens (prompt and answer through the chat template). The base model's own preference
(higher log-likelihood, summed or per token) is reported too. Writes bench/results/pair_separability.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def load_pairs(path: str) -> list[dict]:
    """LLaMA-Factory's sharegpt ranking layout: conversations[{from, value}], chosen{value}, rejected{value}."""
    rows = json.loads(Path(path).read_text())
    return [{"messages": [{"role": ROLES[t["from"]], "content": t["value"]} for t in r["conversations"]],
             "chosen": r["chosen"]["value"], "rejected": r["rejected"]["value"]} for r in rows]


def cross_validated(fold_features, n: int, c_values=(0.01, 0.1, 1, 10), keep: float = 1.0) -> dict:
    """Accuracy of a logistic regression on feature differences, per inverse regularisation strength C.
    `fold_features(train_idx, test_idx)` returns (train chosen, train rejected, test chosen, test rejected);
    `keep` < 1 trains on that fraction of each training fold (a learning curve; the test folds stay whole)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    out = {}
    for c in c_values:
        accs = []
        for seed in range(3):
            right = 0
            for tr, te in KFold(10, shuffle=True, random_state=seed).split(np.arange(n)):
                tr = np.random.default_rng(seed).permutation(tr)[:int(len(tr) * keep)]
                tr_c, tr_r, te_c, te_r = fold_features(tr, te)
                x = np.vstack([tr_c - tr_r, tr_r - tr_c])  # both orders: no bias towards either side
                y = np.r_[np.ones(len(tr_c)), np.zeros(len(tr_c))]
                model = LogisticRegression(C=c, max_iter=5000, fit_intercept=False).fit(x, y)
                right += int((model.decision_function(te_c - te_r) > 0).sum())
            accs.append(right / n)
        out[str(c)] = {"mean": round(float(np.mean(accs)), 3), "per_shuffle": [round(a, 3) for a in accs]}
    return out


def fixed(chosen: np.ndarray, rejected: np.ndarray):
    return lambda tr, te: (chosen[tr], rejected[tr], chosen[te], rejected[te])


def tfidf_features(pairs: list[dict]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    chosen, rejected = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]

    def fold(tr, te):  # the vocabulary is fitted on the training fold only
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        vec.fit([chosen[i] for i in tr] + [rejected[i] for i in tr])
        f = lambda idx, texts: vec.transform([texts[i] for i in idx]).toarray()  # noqa: E731
        return f(tr, chosen), f(tr, rejected), f(te, chosen), f(te, rejected)
    return fold


def surface(text: str) -> list[float]:
    return [np.log(len(text) + 1), text.count("\n") / (len(text) + 1) * 100,
            float(text.startswith(("Sure", "Hello", "Hey", "Hi"))), float("I apologize" in text or "As an AI" in text)]


def model_features(pairs: list[dict], model_path: str, prompt_tokens: int, answer_tokens: int) -> list[list[dict]]:
    """Per answer: summed and mean log-likelihood under the model, and mean hidden states (last, middle layer)."""
    import torch

    from tuneforge.config.schema import ModelConfig
    from tuneforge.models.load import load_model, load_tokenizer

    torch.set_num_threads(2)
    cfg = ModelConfig(path=model_path, dtype="float32")
    tok, model = load_tokenizer(cfg), load_model(cfg).eval()
    end = tok.eos_token or ""
    out = []
    with torch.no_grad():
        for p in pairs:
            prompt = tok.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True)
            pid = tok(prompt, add_special_tokens=False)["input_ids"][-prompt_tokens:]
            row = []
            for key in ("chosen", "rejected"):
                rid = tok(p[key] + end, add_special_tokens=False)["input_ids"][:answer_tokens]
                ids = torch.tensor([pid + rid])
                o = model(ids, output_hidden_states=True)
                logp = torch.log_softmax(o.logits[0, len(pid) - 1:-1], -1).gather(-1, ids[0, len(pid):, None])[:, 0]
                hs = o.hidden_states
                row.append({"sum": logp.sum().item(), "mean": logp.mean().item(), "n": len(rid),
                             "h": hs[-1][0, len(pid):].mean(0).tolist(),
                             "hm": hs[len(hs) // 2][0, len(pid):].mean(0).tolist()})
            out.append(row)
    return out


def standardised(feats: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
    c, r = np.array([a[key] for a, _ in feats]), np.array([b[key] for _, b in feats])
    both = np.vstack([c, r])
    mu, sd = both.mean(0), both.std(0) + 1e-6
    return (c - mu) / sd, (r - mu) / sd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO / "examples/data/dpo_en_demo.jsonl"))
    ap.add_argument("--model", default="builtin:smollm2")
    ap.add_argument("--prompt-tokens", type=int, default=640, help="keep the last N prompt tokens")
    ap.add_argument("--answer-tokens", type=int, default=384, help="keep the first N answer tokens")
    ap.add_argument("--features", help="features JSON (~15 MB): reused when it exists (skips the ~17 CPU-min model pass), else written")
    ap.add_argument("--out", default=str(REPO / "bench/results/pair_separability.json"))
    args = ap.parse_args()
    pairs = load_pairs(args.data)
    t0 = time.time()
    res: dict = {"args": vars(args), "pairs": len(pairs),
                 "chosen_longer": round(float(np.mean([len(p["chosen"]) > len(p["rejected"]) for p in pairs])), 3)}
    res["tfidf"] = cross_validated(tfidf_features(pairs), len(pairs), c_values=(0.1, 1, 10))
    sc, sr = (np.array([surface(p[k]) for p in pairs]) for k in ("chosen", "rejected"))
    res["surface"] = cross_validated(fixed(sc, sr), len(pairs), c_values=(0.1, 1, 10))
    if args.features and Path(args.features).is_file():
        feats = json.loads(Path(args.features).read_text())
    else:
        feats = model_features(pairs, args.model, args.prompt_tokens, args.answer_tokens)
        if args.features:
            Path(args.features).write_text(json.dumps(feats))
    res["base_model_prefers_chosen"] = {
        "summed_logp": round(float(np.mean([c["sum"] > r["sum"] for c, r in feats])), 3),
        "mean_logp": round(float(np.mean([c["mean"] > r["mean"] for c, r in feats])), 3)}
    res["hidden_last"] = cross_validated(fixed(*standardised(feats, "h")), len(pairs))
    res["hidden_middle"] = cross_validated(fixed(*standardised(feats, "hm")), len(pairs))
    # Learning curve at each feature set's best C above: does accuracy still climb with more pairs?
    curve_sets = {"tfidf": (tfidf_features(pairs), 0.1), "hidden_middle": (fixed(*standardised(feats, "hm")), 0.01)}
    res["learning_curve"] = {
        str(int(0.9 * len(pairs) * keep)): {name: cross_validated(fn, len(pairs), (c,), keep)[str(c)]["mean"]
                                            for name, (fn, c) in curve_sets.items()}
        for keep in (0.25, 0.5, 0.75, 1.0)}
    res["seconds"] = round(time.time() - t0, 1)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "args"}, indent=1))


if __name__ == "__main__":
    main()
