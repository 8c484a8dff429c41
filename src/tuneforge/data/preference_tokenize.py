"""Preference / feedback / prompt samples → token ids with the SFT template code, plus the counts users need.

The prompt/response boundary comes from `encode_conversation` (the same code and label mask as SFT): the response
is exactly the tokens SFT would train for the last assistant turn (its content + end-of-turn marker), the prompt is
everything before them. A pair whose response is cut away entirely by `data.cutoff_len`, or whose two answers are
the same tokens after the cut, is dropped and counted (it would be a zero-loss sample), never kept silently.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tuneforge.config.schema import DataConfig
from tuneforge.data.preference import FeedbackSample, PairSample, PromptSample
from tuneforge.data.templates import IGNORE_INDEX, encode_conversation, render_prompt
from tuneforge.errors import DataError


def split_response(tokenizer, prompt: list[dict], answer: str, d: DataConfig) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) of `prompt` + one assistant answer, split where SFT's label mask starts."""
    ids, labels = encode_conversation(tokenizer, [*prompt, {"role": "assistant", "content": answer}], d.template,
                                      mask_history=True, system=d.system)
    trained = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    if not trained:
        raise DataError("the template left no response tokens to train")
    # Tokens after the end-of-turn marker (a trailing newline, a suffix) are not part of the answer.
    return ids[: trained[0]], ids[trained[0]: trained[-1] + 1]


def _percentiles(values: list[int]) -> dict:
    if not values:
        return {}
    return {f"p{q}": int(np.percentile(values, q)) for q in (0, 50, 90, 100)}


class TokenStats:
    """Counts (kept, truncated, dropped by reason), token-length percentiles and the first warnings."""

    def __init__(self, n: int):
        self.c: Counter = Counter(samples_in=n)
        self.prompt_lens: list[int] = []
        self.resp_lens: dict[str, list[int]] = {}
        self.warnings: list[str] = []

    def warn(self, key: str, s, msg: str) -> None:
        self.c[key] += 1
        if len(self.warnings) < 50:
            self.warnings.append(f"{s.file}:{s.line}: {msg}")

    def as_dict(self) -> dict:
        out = {k: int(v) for k, v in self.c.items()}
        out["prompt_tokens"] = _percentiles(self.prompt_lens)
        out.update({f"{k}_tokens": _percentiles(v) for k, v in self.resp_lens.items()})
        out["warnings"] = self.warnings
        return out


def _fit(prompt: list[int], responses: list[list[int]], d: DataConfig, s, st: TokenStats) -> list[list[int]] | None:
    """Apply data.cutoff_len to prompt + each response: truncate the responses, or drop (counted) when nothing
    of a response would be left, or error / drop per data.overlong."""
    longest = len(prompt) + max(len(r) for r in responses)
    if longest <= d.cutoff_len:
        return responses
    if d.overlong == "error":
        raise DataError(f"sample has {longest} tokens > data.cutoff_len={d.cutoff_len}", file=s.file, line=s.line,
                        hint="raise data.cutoff_len or set data.overlong: truncate | drop")
    if d.overlong == "drop":
        st.warn("dropped_overlong", s, f"dropped, {longest} tokens > {d.cutoff_len}")
        return None
    room = d.cutoff_len - len(prompt)
    if room <= 0:
        st.warn("dropped_response_cut_away", s, f"dropped, the prompt alone has {len(prompt)} tokens >= "
                f"data.cutoff_len={d.cutoff_len}: no response token would be left")
        return None
    st.c["truncated"] += 1
    return [r[:room] for r in responses]


def tokenize_pair(s: PairSample, tokenizer, d: DataConfig, st: TokenStats) -> dict | None:
    """One pair → {prompt_ids, chosen_ids, rejected_ids}, or None when it is dropped (counted in `st`)."""
    p1, chosen = split_response(tokenizer, s.prompt, s.chosen, d)
    p2, rejected = split_response(tokenizer, s.prompt, s.rejected, d)
    if p1 != p2:  # BPE merged across the boundary differently: keep the shared prompt, the rest is response
        n = next((i for i, (a, b) in enumerate(zip(p1, p2)) if a != b), min(len(p1), len(p2)))
        chosen, rejected, p1 = p1[n:] + chosen, p2[n:] + rejected, p1[:n]
        st.c["prompt_boundary_merged"] += 1
    fitted = _fit(p1, [chosen, rejected], d, s, st)
    if fitted is None:
        return None
    chosen, rejected = fitted
    if chosen == rejected:
        st.warn("dropped_identical_after_cutoff", s, "dropped, chosen and rejected are the same tokens "
                f"within data.cutoff_len={d.cutoff_len} (zero-loss pair)")
        return None
    st.prompt_lens.append(len(p1))
    st.resp_lens.setdefault("chosen", []).append(len(chosen))
    st.resp_lens.setdefault("rejected", []).append(len(rejected))
    return {"prompt_ids": p1, "chosen_ids": chosen, "rejected_ids": rejected}


def tokenize_pairs(samples: list[PairSample], tokenizer, d: DataConfig) -> tuple[list[dict], dict]:
    """Rows {prompt_ids, chosen_ids, rejected_ids} (TRL's pre-tokenized layout) and their report."""
    st = TokenStats(len(samples))
    rows = [r for r in (tokenize_pair(s, tokenizer, d, st) for s in samples) if r is not None]
    st.c["kept"] = len(rows)
    if not rows:
        raise DataError("no preference pairs left after tokenization", hint=str(st.as_dict()))
    return rows, st.as_dict()


def tokenize_feedback(samples: list[FeedbackSample], tokenizer, d: DataConfig) -> tuple[list[dict], dict]:
    """Rows {prompt_ids, completion_ids, label} (TRL KTO's pre-tokenized layout) and their report."""
    st = TokenStats(len(samples))
    rows = []
    for s in samples:
        prompt, completion = split_response(tokenizer, s.prompt, s.completion, d)
        fitted = _fit(prompt, [completion], d, s, st)
        if fitted is None:
            continue
        rows.append({"prompt_ids": prompt, "completion_ids": fitted[0], "label": bool(s.label)})
        st.prompt_lens.append(len(prompt))
        st.resp_lens.setdefault("completion", []).append(len(fitted[0]))
    st.c["kept"] = len(rows)
    st.c["desirable"] = sum(r["label"] for r in rows)
    st.c["undesirable"] = len(rows) - st.c["desirable"]
    if not rows:
        raise DataError("no feedback samples left after tokenization", hint=str(st.as_dict()))
    return rows, st.as_dict()


def tokenize_prompts(samples: list[PromptSample], tokenizer, d: DataConfig) -> tuple[list[dict], dict]:
    """Rows {prompt (rendered text), reference} for online sampling, prompts over cutoff_len dropped and counted."""
    st = TokenStats(len(samples))
    rows = []
    for s in samples:
        ids = render_prompt(tokenizer, s.prompt, d.template, system=d.system)
        if len(ids) >= d.cutoff_len:
            st.warn("dropped_overlong", s, f"dropped, the prompt has {len(ids)} tokens >= "
                    f"data.cutoff_len={d.cutoff_len}: no room to sample an answer")
            continue
        rows.append({"prompt": prompt_text(tokenizer, ids), "reference": s.reference or ""})
        st.prompt_lens.append(len(ids))
    st.c["kept"] = len(rows)
    st.c["with_reference"] = sum(bool(r["reference"]) for r in rows)
    if not rows:
        raise DataError("no prompts left after tokenization", hint=str(st.as_dict()))
    return rows, st.as_dict()


def prompt_text(tokenizer, ids: list[int]) -> str:
    """The rendered prompt as text for TRL's online trainers, which tokenize it again with the tokenizer's own
    special tokens: a leading BOS is left out when the tokenizer adds one itself (no doubled BOS)."""
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    if adds_bos and ids[:1] == [tokenizer.bos_token_id]:
        ids = ids[1:]
    return tokenizer.decode(ids, skip_special_tokens=False)
