"""Continuous batching (`DecodeBatch`): rows joining a running batch, and rows leaving it, decode exactly what the
plain generation loop decodes for each prompt alone."""

from __future__ import annotations

from tuneforge.models.generate import DecodeBatch, Sampling, generate_ids, pick_tokens

STEPS = 10


def _load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_staggered_joins_and_early_leavers_match_each_prompt_alone(tiny_llama):
    model, tok = _load(tiny_llama)
    texts = ["apple banana", "one two three four five six seven", "Reverse the word", "0 1 2 3 + - = ?", "lemon"]
    prompts = [tok.encode(t) for t in texts]
    alone = [generate_ids(model, [p], pad_id=tok.pad_token_id, sampling=Sampling(max_new_tokens=STEPS))[0]
             for p in prompts]
    budget = [STEPS, 4, STEPS, STEPS, 6]  # rows 1 and 4 leave early, the others keep decoding after them
    joins = {0: [0, 1], 2: [2, 3], 5: [4]}  # step -> prompts that join before it
    batch, rows, got, step = DecodeBatch(model, tok.pad_token_id), [], {}, 0
    while rows or any(s >= step for s in joins):
        if step in joins:
            batch.join([prompts[i] for i in joins[step]])
            rows += joins[step]
        tokens, logprobs, _ = pick_tokens(batch.logits, [Sampling()] * len(rows), [None] * len(rows))
        assert all(lp <= 0 for lp in logprobs)
        keep = []
        for r, (i, t) in enumerate(zip(rows, tokens)):
            got.setdefault(i, []).append(t)
            if len(got[i]) < budget[i]:
                keep.append(r)
        batch.keep(keep)
        rows = [rows[r] for r in keep]
        if rows:
            batch.step([got[i][-1] for i in rows])
        step += 1
    for i in range(len(prompts)):
        assert got[i] == alone[i][: budget[i]], i


def test_seeded_sampling_does_not_depend_on_batch_neighbours(tiny_llama):
    import torch

    model, tok = _load(tiny_llama)
    s = Sampling(temperature=1.0, top_p=0.9, top_k=50)

    def sample(prompts):
        batch = DecodeBatch(model, tok.pad_token_id)
        batch.join([tok.encode(p) for p in prompts])
        gens = [torch.Generator().manual_seed(3) for _ in prompts]
        out = []
        for _ in range(5):
            tokens, _, _ = pick_tokens(batch.logits, [s] * len(prompts), gens)
            out.append(tokens[0])
            batch.step(tokens)
        return out

    assert sample(["apple banana"]) == sample(["apple banana", "one two three four five"])
