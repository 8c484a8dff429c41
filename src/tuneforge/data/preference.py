"""Preference pairs, feedback (KTO) and prompt-only rows → validated samples, with file:line errors and counts.

Layouts read (auto-detected per row from its fields; `columns` / `tags` rename them as for SFT data):
- pairs:     LLaMA-Factory `ranking: true` (sharegpt `conversations` + `chosen`/`rejected` turns, or alpaca
             `instruction`/`input` + `chosen`/`rejected` strings); TRL `prompt` + `chosen` + `rejected` (strings or
             message lists), or implicit prompt (`chosen`/`rejected` whole conversations sharing the prompt turns).
- feedback:  LLaMA-Factory `kto_tag` (a conversation ending with the answer + a boolean column); TRL `prompt` +
             `completion` + `label`; a preference pair also counts as one desirable + one undesirable sample.
- prompts:   `prompt` (string or messages), alpaca `instruction`/`input`, or a conversation ending with a user turn;
             an optional reference answer (`answer`, `solution`, `reference`, `output`) for reward functions.

Rows that would train nothing (chosen == rejected, an empty response) are dropped and counted, never kept as a
silent zero-loss sample; rows with a missing field are invalid (data.invalid decides: error or skip + count).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tuneforge.config.schema import DatasetSpec
from tuneforge.data.formats import SHAREGPT_DEFAULT_TAGS, _col, check_roles, from_turns
from tuneforge.data.readers import Row
from tuneforge.errors import DataError

OPENAI_TAGS = {**SHAREGPT_DEFAULT_TAGS, "role_tag": "role", "content_tag": "content", "user_tag": "user",
               "assistant_tag": "assistant"}
REFERENCE_KEYS = ("answer", "solution", "reference", "output", "ground_truth")


@dataclass
class PairSample:
    """A prompt (chat turns ending with a user turn) and two answers, the first preferred."""

    file: str
    line: int
    prompt: list[dict]
    chosen: str
    rejected: str


@dataclass
class FeedbackSample:
    """A prompt, one answer, and whether the answer is desirable (KTO)."""

    file: str
    line: int
    prompt: list[dict]
    completion: str
    label: bool


@dataclass
class PromptSample:
    """A prompt for online sampling (GRPO/RLOO) and an optional reference answer for reward functions."""

    file: str
    line: int
    prompt: list[dict]
    reference: str | None = None


@dataclass
class RowCounts:
    """Rows a reader dropped on purpose (they would train nothing), with the first few locations."""

    dropped: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def drop(self, why: str, row: Row) -> None:
        self.dropped[why] += 1
        if len(self.warnings) < 50:
            self.warnings.append(f"{row.where}: dropped, {why.replace('_', ' ')}")

    def as_dict(self) -> dict:
        return {"dropped_identical_pair": self.dropped["identical_pair"],
                "dropped_empty_response": self.dropped["empty_response"], "warnings": list(self.warnings)}


# ---------------------------------------------------------------------------------------------- field readers
def _tags_for(row: Row, spec: DatasetSpec, key: str) -> dict[str, str]:
    turns = row.data.get(key)
    first = turns[0] if isinstance(turns, list) and turns and isinstance(turns[0], dict) else {}
    base = OPENAI_TAGS if "role" in first or spec.format == "openai" else SHAREGPT_DEFAULT_TAGS
    return {**base, **spec.tags}


def _turns(row: Row, key: str, spec: DatasetSpec) -> list[dict]:
    return from_turns(row, key, _tags_for(row, spec, key))


def _answer(row: Row, key: str, spec: DatasetSpec, what: str) -> str:
    """An answer given as a string, one turn ({from, value} / {role, content}) or a list of turns (last one)."""
    if key not in row.data or row.data[key] is None:
        raise DataError(f"missing field '{key}' ({what})", file=row.file, line=row.line,
                        hint=f"fields present: {sorted(row.data)}; map names with columns: {{...}}")
    val = row.data[key]
    if isinstance(val, str):
        return val
    if isinstance(val, dict):
        val = [val]
    if isinstance(val, list) and val:
        msgs = from_turns(Row({key: val}, row.file, row.line), key, _tags_for(Row({key: val}, row.file, row.line),
                                                                               spec, key))
        if msgs[-1]["role"] != "assistant":
            raise DataError(f"'{key}' must end with an assistant turn", file=row.file, line=row.line)
        return msgs[-1]["content"]
    raise DataError(f"field '{key}' must be a string or assistant turn(s), got {type(val).__name__}",
                    file=row.file, line=row.line)


def _alpaca_prompt(row: Row, columns: dict[str, str]) -> list[dict]:
    instruction = row.data.get(_col(columns, "instruction"))
    if not isinstance(instruction, str):
        raise DataError(f"missing field '{_col(columns, 'instruction')}' (the user prompt)", file=row.file,
                        line=row.line)
    extra = row.data.get(_col(columns, "input")) or ""
    system = row.data.get(_col(columns, "system")) or ""
    msgs = [{"role": "system", "content": str(system)}] if system else []
    for pair in row.data.get(_col(columns, "history")) or []:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise DataError("'history' must be a list of [user, assistant] pairs", file=row.file, line=row.line)
        msgs += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
    return msgs + [{"role": "user", "content": instruction + ("\n" + str(extra) if extra else "")}]


def _conversation_key(row: Row, spec: DatasetSpec) -> str | None:
    if "messages" in spec.columns:
        return spec.columns["messages"]
    return next((k for k in ("conversations", "messages") if k in row.data), None)


def read_prompt(row: Row, spec: DatasetSpec, allow_answer_last: bool = False) -> tuple[list[dict], str | None]:
    """(prompt turns ending with a user turn, the trailing assistant answer when the row's conversation has one)."""
    cols = spec.columns
    prompt_key = cols.get("prompt", "prompt")
    if prompt_key in row.data and "instruction" not in cols:
        val = row.data[prompt_key]
        if isinstance(val, str):
            msgs, answer = [{"role": "user", "content": val}], None
        else:
            msgs, answer = _turns(row, prompt_key, spec), None
    elif _col(cols, "instruction") in row.data:
        msgs, answer = _alpaca_prompt(row, cols), None
    else:
        key = _conversation_key(row, spec)
        if key is None:
            raise DataError(f"cannot find the prompt in fields {sorted(row.data)}", file=row.file, line=row.line,
                            hint="expected prompt, instruction, conversations or messages (map with columns: {...})")
        msgs, answer = _turns(row, key, spec), None
        system = row.data.get(cols.get("system", "system"))
        if isinstance(system, str) and system and msgs and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": system})
    if allow_answer_last and msgs and msgs[-1]["role"] == "assistant":
        answer, msgs = msgs[-1]["content"], msgs[:-1]
    check_roles([*msgs, {"role": "assistant", "content": "x"}], row)  # system?, user/assistant alternating, user last
    return msgs, answer


def _implicit_prompt(row: Row, spec: DatasetSpec, ck: str, rk: str) -> tuple[list[dict], str, str]:
    """TRL's implicit-prompt layout: chosen/rejected are whole conversations; the prompt is their shared start."""
    chosen, rejected = _turns(row, ck, spec), _turns(row, rk, spec)
    if chosen[:-1] != rejected[:-1]:
        raise DataError("'chosen' and 'rejected' conversations differ before their last turn", file=row.file,
                        line=row.line, hint="give the shared turns as 'prompt' and one answer each")
    for msgs in (chosen, rejected):
        if msgs[-1]["role"] != "assistant":
            raise DataError("'chosen'/'rejected' must end with an assistant turn", file=row.file, line=row.line)
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


# ---------------------------------------------------------------------------------------------- row converters
class PairReader:
    """`convert` for data/load.py: a row → PairSample, or None for a pair dropped and counted."""

    def __init__(self) -> None:
        self.counts = RowCounts()

    def __call__(self, row: Row, spec: DatasetSpec) -> PairSample | None:
        ck, rk = spec.columns.get("chosen", "chosen"), spec.columns.get("rejected", "rejected")
        for key, what in ((ck, "the preferred answer"), (rk, "the dispreferred answer")):
            if key not in row.data:
                raise DataError(f"missing field '{key}' ({what}) in a preference pair", file=row.file,
                                line=row.line, hint=f"fields present: {sorted(row.data)}; a pair needs "
                                f"'{ck}' and '{rk}' (map names with columns: {{chosen: ..., rejected: ...}})")
        implicit = (spec.columns.get("prompt", "prompt") not in row.data and _conversation_key(row, spec) is None
                    and _col(spec.columns, "instruction") not in row.data and isinstance(row.data[ck], list)
                    and len(row.data[ck]) > 1)
        if implicit:
            prompt, chosen, rejected = _implicit_prompt(row, spec, ck, rk)
            check_roles([*prompt, {"role": "assistant", "content": "x"}], row)
        else:
            prompt, _ = read_prompt(row, spec)
            chosen = _answer(row, ck, spec, "the preferred answer")
            rejected = _answer(row, rk, spec, "the dispreferred answer")
        if not chosen.strip() or not rejected.strip():
            self.counts.drop("empty_response", row)
            return None
        if chosen.strip() == rejected.strip():
            self.counts.drop("identical_pair", row)
            return None
        return PairSample(row.file, row.line, prompt, chosen, rejected)


class FeedbackReader:
    """`convert` for KTO: a row → FeedbackSample(s); a preference pair gives one desirable + one undesirable."""

    def __init__(self) -> None:
        self.counts = RowCounts()
        self._pairs = PairReader()
        self._pairs.counts = self.counts

    def __call__(self, row: Row, spec: DatasetSpec) -> list[FeedbackSample] | None:
        label_key = spec.columns.get("kto_tag") or spec.columns.get("label") or "label"
        if label_key not in row.data and ("chosen" in row.data or "chosen" in spec.columns):
            pair = self._pairs(row, spec)
            if pair is None:
                return None
            return [FeedbackSample(row.file, row.line, pair.prompt, pair.chosen, True),
                    FeedbackSample(row.file, row.line, pair.prompt, pair.rejected, False)]
        if label_key not in row.data:
            raise DataError(f"missing field '{label_key}' (true: desirable answer, false: undesirable)",
                            file=row.file, line=row.line, hint=f"fields present: {sorted(row.data)}; "
                            "LLaMA-Factory: columns: {kto_tag: <name>}")
        label = row.data[label_key]
        if isinstance(label, str) and label.lower() in ("true", "false"):
            label = label.lower() == "true"
        if not isinstance(label, bool) and label not in (0, 1):
            raise DataError(f"'{label_key}' must be true or false, got {label!r}", file=row.file, line=row.line)
        ck = spec.columns.get("completion") or spec.columns.get("response") or "completion"
        if ck in row.data:
            prompt, _ = read_prompt(row, spec)
            completion = _answer(row, ck, spec, "the answer")
        else:
            prompt, completion = read_prompt(row, spec, allow_answer_last=True)
            if completion is None:
                raise DataError("the conversation must end with the assistant answer that the label rates",
                                file=row.file, line=row.line)
        if not completion.strip():
            self.counts.drop("empty_response", row)
            return None
        return [FeedbackSample(row.file, row.line, prompt, completion, bool(label))]


class PromptReader:
    """`convert` for GRPO/RLOO: a row → PromptSample with its reference answer (when the row has one)."""

    def __init__(self) -> None:
        self.counts = RowCounts()

    def __call__(self, row: Row, spec: DatasetSpec) -> PromptSample:
        prompt, answer = read_prompt(row, spec, allow_answer_last=True)
        ref_key = spec.columns.get("reference") or next((k for k in REFERENCE_KEYS if k in row.data), None)
        if ref_key is not None and ref_key in row.data and row.data[ref_key] is not None:
            answer = str(row.data[ref_key])
        return PromptSample(row.file, row.line, prompt, answer)


def flatten(samples: list) -> list:
    """FeedbackReader returns lists (a pair gives two samples): one flat list."""
    out = []
    for s in samples:
        out.extend(s if isinstance(s, list) else [s])
    return out
