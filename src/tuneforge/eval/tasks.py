"""Task specs: turn rows of a local benchmark file into prompts with choices/gold (MCQ) or references (generation).

A task is an `EvalTaskConfig` (config/evaluation.py): a preset for a known layout plus optional field overrides.
Prompts use Python format syntax over the row (`{question.stem}`, `{choices[0]}`); field paths use dots and map
over lists (`question.choices.text` → the list of choice texts). Every problem with a row raises `DataError` with
the file and line, before any model is loaded.

Few-shot prompts follow lm-eval's plain-text layout: description + k × (prompt + target_delimiter + answer +
fewshot_delimiter) + prompt; the choice is scored as target_delimiter + choice. A `chat: true` generation task gets
its examples as turns instead (user: prompt, assistant: answer; lm-eval's fewshot_as_multiturn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tuneforge.config.evaluation import PREF_METRICS, EvalTaskConfig
from tuneforge.data.readers import read_rows
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.fewshot import FewshotSampler
from tuneforge.eval.metrics import extract_number
from tuneforge.eval.pairs import PairSamples, load_pairs
from tuneforge.eval.presets import LETTERS, PRESETS


@dataclass
class McqSample:
    id: str
    file: str
    line: int
    context: str  # description + few-shot examples + prompt
    choices: list[str]
    gold: int
    gold_labels: list[int] | None = None  # several true answers (TruthfulQA MC2): 1 = true, 0 = false


@dataclass
class GenSample:
    id: str
    file: str
    line: int
    prompt: str
    references: list[str]  # acceptable answers ([""] = "no answer", SQuAD v2)
    chat: bool = False
    turns: list[tuple[str, str]] = field(default_factory=list)  # chat few-shot: (user, assistant) before `prompt`


@dataclass
class TaskSpec:
    """A resolved task: preset defaults merged with the user's fields."""

    name: str
    type: str  # mcq | generate | preference
    cfg: EvalTaskConfig
    prompt: str
    choices: str | list[str] | None = None
    gold: str | None = None
    labels: str | list[str] | None = None
    target: str | None = None
    metrics: list[str] = field(default_factory=list)
    extract: str = "none"
    stop: list[str] = field(default_factory=list)
    description: str = ""
    fewshot_match: str | None = None  # only draw few-shot rows whose field equals the sample's
    transform: Callable[[dict], dict] | None = None  # derive fields before templating (presets only)
    main_metric: str = "acc"
    fewshot: int = 0
    fewshot_sampler: str = "lm_eval"
    max_new_tokens: int | None = None


_OVERRIDABLE = ("prompt", "choices", "gold", "labels", "target", "metrics", "extract", "stop")
_PRESET_DEFAULTS = ("description", "fewshot", "fewshot_sampler", "max_new_tokens")  # None = the preset's


def overridden_fields(cfg: EvalTaskConfig) -> list[str]:
    """Spec fields the user gave a value. For prompt/choices/... null or empty means "keep the preset's" (so a
    dumped config round-trips); description/fewshot/sampler/max_new_tokens are overridden by any non-null
    value (`description: ""` switches the preset's description off)."""
    return ([k for k in _OVERRIDABLE if getattr(cfg, k) not in (None, "", [])]
            + [k for k in _PRESET_DEFAULTS if getattr(cfg, k) is not None])


def resolve_task(cfg: EvalTaskConfig) -> TaskSpec:
    """Merge the preset with the fields the user set; check the spec is complete for its type."""
    if cfg.type == "preference":
        return preference_spec(cfg)
    base = dict(PRESETS[cfg.preset]) if cfg.preset else {}
    for key in overridden_fields(cfg):
        base[key] = getattr(cfg, key)
    ttype = cfg.type if cfg.type != "auto" else base.get("type") or ("generate" if base.get("target") else "mcq")
    base["type"] = ttype
    base["extract"] = base.get("extract") or "none"
    where = f"eval task '{cfg.name}'"
    if not base.get("prompt"):
        raise ConfigError(f"{where}: no `prompt` template", hint="set prompt: or a preset: (" + ", ".join(PRESETS) + ")")
    if ttype == "mcq":
        missing = [k for k in ("choices", "gold") if base.get(k) in (None, [])]
        if missing:
            raise ConfigError(f"{where}: an mcq task needs {' and '.join(missing)}", hint="or use a preset")
        base.setdefault("main_metric", "acc")
    else:
        if not base.get("target"):
            raise ConfigError(f"{where}: a generate task needs `target` (field with the reference answer)")
        base["metrics"] = base.get("metrics") or ["exact_match", "f1"]
        if base.get("main_metric", "acc") == "acc":
            base["main_metric"] = base["metrics"][0]
    base.setdefault("description", "")
    base.setdefault("fewshot", 0)
    base.setdefault("fewshot_sampler", "lm_eval")
    if ttype == "mcq":
        base["metrics"] = base.get("metrics") or ["acc", "acc_norm"]
        bad = [m for m in base["metrics"] if m not in ("acc", "acc_norm", "mc2")]
        if bad:
            raise ConfigError(f"{where}: {bad} are generation metrics; an mcq task reports acc, acc_norm or mc2")
        if base["main_metric"] not in base["metrics"]:
            base["main_metric"] = base["metrics"][0]
    return TaskSpec(name=cfg.name, cfg=cfg, **base)


def preference_spec(cfg: EvalTaskConfig) -> TaskSpec:
    """A preference task: its rows are pairs, so the prompt/choice/few-shot fields have nothing to fill."""
    unused = [k for k in ("preset", *overridden_fields(cfg)) if k != "metrics" and getattr(cfg, k) not in (None, "")]
    bad = [m for m in cfg.metrics if m not in PREF_METRICS]
    if unused or bad:
        raise ConfigError(f"eval task '{cfg.name}': a preference task reads prompt/chosen/rejected from its rows "
                          f"and reports {list(PREF_METRICS)}; {', '.join(unused + bad)} do not apply")
    metrics = cfg.metrics or list(PREF_METRICS)
    return TaskSpec(name=cfg.name, type="preference", cfg=cfg, prompt="", metrics=metrics, main_metric=metrics[0])


# ------------------------------------------------------------------------------------------------ field access

class _Missing(KeyError):
    pass


def get_field(row: Any, path: str) -> Any:
    """Follow a dotted path; a list on the way is mapped over ('question.choices.text'), digits index lists."""
    node = row
    for part in path.split("."):
        if isinstance(node, list):
            if part.lstrip("-").isdigit():
                try:
                    node = node[int(part)]
                except IndexError:
                    raise _Missing(path) from None
            else:
                node = [_step(x, part, path) for x in node]
        else:
            node = _step(node, part, path)
    return node


def _step(node: Any, key: str, path: str) -> Any:
    if isinstance(node, dict) and key in node:
        return node[key]
    raise _Missing(path)


class _View:
    """Row wrapper for str.format: `{a.b}` and `{a[b]}` / `{a[0]}` both work."""

    def __init__(self, node: Any):
        self._node = node

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return _wrap(_step(self._node, key, key))

    def __getitem__(self, key: Any) -> Any:
        try:
            return _wrap(self._node[key])
        except (KeyError, IndexError, TypeError):
            raise _Missing(str(key)) from None

    def __format__(self, spec: str) -> str:
        return format(self._node, spec)

    def __str__(self) -> str:
        return str(self._node)


def _wrap(v: Any) -> Any:
    return _View(v) if isinstance(v, (dict, list)) else v


class _RowMap(dict):
    def __missing__(self, key: str) -> Any:
        raise _Missing(key)


def render(template: str, row: dict) -> str:
    """Fill a `{field}` template from a row (KeyError names the missing field)."""
    return template.format_map(_RowMap({k: _wrap(v) for k, v in row.items()}))


# --------------------------------------------------------------------------------------------- row → sample

@dataclass
class _Parsed:
    id: str
    file: str
    line: int
    row: dict
    prompt: str
    raw: dict = field(default_factory=dict)
    choices: list[str] = field(default_factory=list)
    gold: int = -1
    gold_labels: list[int] | None = None
    references: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str:
        """Text used when this row is a few-shot example."""
        return self.choices[self.gold] if self.choices else (self.references[0] if self.references else "")


def _fail(msg: str, row_file: str, line: int) -> DataError:
    return DataError(msg, file=row_file, line=line)


def _parse(spec: TaskSpec, data: dict, file: str, line: int, index: int) -> _Parsed:
    try:
        row = spec.transform(data) if spec.transform else data
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _fail(f"preset '{spec.cfg.preset}': {e}", file, line) from None
    if spec.type == "mcq" and not isinstance(spec.choices, list) and "." not in spec.choices:
        value = row.get(spec.choices)
        if value is not None and not isinstance(value, list):
            raise _fail(f"choices field '{spec.choices}' must be a list, got {type(value).__name__}", file, line)
    try:
        prompt = render(spec.prompt, row)
    except _Missing as e:
        raise _fail(f"prompt template needs field '{e.args[0]}' (row has: {_keys(data)})", file, line) from None
    except (ValueError, AttributeError, TypeError) as e:
        raise ConfigError(f"eval task '{spec.name}': bad prompt template {spec.prompt!r}: {e}") from None
    sid = str(data.get("id", index))
    out = _Parsed(sid, file, line, row, prompt, raw=data)
    if spec.type == "mcq":
        out.choices = _choices(spec, row, data, file, line)
        labels = _gold_labels(spec, row, len(out.choices), file, line)
        if labels is not None:
            out.gold_labels, out.gold = labels, labels.index(1)
        else:
            out.gold = _gold(spec, row, data, out.choices, file, line)
    else:
        out.references = _references(spec, row, data, file, line)
    return out


def _keys(data: dict) -> str:
    return ", ".join(list(data)[:12]) or "no fields"


def _choices(spec: TaskSpec, row: dict, data: dict, file: str, line: int) -> list[str]:
    if isinstance(spec.choices, list):  # literal list; entries may be templates ('{choice0}')
        try:
            choices = [render(c, row) for c in spec.choices]
        except _Missing as e:
            raise _fail(f"choice template needs field '{e.args[0]}' (row has: {_keys(data)})", file, line) from None
    else:
        try:
            choices = get_field(row, spec.choices)
        except _Missing:
            raise _fail(f"missing choices field '{spec.choices}' (row has: {_keys(data)})", file, line) from None
    if not isinstance(choices, list):
        raise _fail(f"choices field '{spec.choices}' must be a list, got {type(choices).__name__}", file, line)
    if not choices:
        raise _fail(f"empty choices ('{spec.choices}' is an empty list)", file, line)
    for i, c in enumerate(choices):
        if not isinstance(c, (str, int, float)) or isinstance(c, bool) or str(c).strip() == "":
            raise _fail(f"choice {i} is empty or not text: {c!r}", file, line)
    return [str(c) for c in choices]


def _gold(spec: TaskSpec, row: dict, data: dict, choices: list[str], file: str, line: int) -> int:
    try:
        value = get_field(row, spec.gold)
    except _Missing:
        raise _fail(f"missing gold field '{spec.gold}' (row has: {_keys(data)})", file, line) from None
    if value is None or value == "" or isinstance(value, bool):
        raise _fail(f"missing gold: field '{spec.gold}' is {value!r}", file, line)
    labels = _labels(spec, row, len(choices), file, line)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        v = value.strip()
        if v.lstrip("-").isdigit():
            value = int(v)
        elif v in labels:
            value = labels.index(v)
        elif v in choices:
            value = choices.index(v)
        else:
            raise _fail(f"gold {value!r} is not an index, a label ({', '.join(labels)}) or one of the choices",
                        file, line)
    if not isinstance(value, int):
        raise _fail(f"gold must be an int, a label or a choice text, got {type(value).__name__}", file, line)
    if not 0 <= value < len(choices):
        raise _fail(f"gold index {value} out of range for {len(choices)} choices", file, line)
    return value


def _gold_labels(spec: TaskSpec, row: dict, n: int, file: str, line: int) -> list[int] | None:
    """A gold field holding one 0/1 label per choice (several true answers), else None."""
    try:
        value = get_field(row, spec.gold)
    except _Missing:
        return None
    if not isinstance(value, list):
        return None
    if len(value) != n or any(v not in (0, 1) or isinstance(v, float) for v in value) or 1 not in value:
        raise _fail(f"gold '{spec.gold}' is a list: it must hold one 0/1 label per choice ({n}), at least one 1",
                    file, line)
    return [int(v) for v in value]


def _labels(spec: TaskSpec, row: dict, n: int, file: str, line: int) -> list[str]:
    if spec.labels is None:
        return list(LETTERS[:n])
    if isinstance(spec.labels, list):
        labels = list(spec.labels)
    else:
        try:
            labels = get_field(row, spec.labels)
        except _Missing:
            raise _fail(f"missing labels field '{spec.labels}'", file, line) from None
    if not isinstance(labels, list) or len(labels) != n:
        raise _fail(f"labels '{spec.labels}' must be a list as long as the choices ({n})", file, line)
    return [str(x).strip() for x in labels]


def _references(spec: TaskSpec, row: dict, data: dict, file: str, line: int) -> list[str]:
    try:
        value = get_field(row, spec.target)
    except _Missing:
        raise _fail(f"missing target field '{spec.target}' (row has: {_keys(data)})", file, line) from None
    if value is None:
        raise _fail(f"missing target: field '{spec.target}' is null", file, line)
    refs = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if spec.extract == "number":
        nums = [extract_number(r) for r in refs]
        if not refs or any(n is None for n in nums):
            raise _fail(f"target '{spec.target}' has no number to extract (extract: number)", file, line)
    return refs or [""]


# --------------------------------------------------------------------------------------------------- loading

def read_task_rows(path: str, what: str = "eval task file") -> list[tuple[dict, str, int]]:
    """(data, file, line) for every row of a task file."""
    if not Path(path).is_file():
        raise DataError(f"{what} not found", file=path)
    rows = [(r.data, r.file, r.line) for r in read_rows(path)]
    if not rows:
        raise DataError(f"{what} has no rows", file=path)
    return rows


def load_samples(spec: TaskSpec, seed: int = 1234) -> list[McqSample | GenSample] | PairSamples:
    """Validate every row, build few-shot contexts (deterministic for a seed), return the samples."""
    cfg = spec.cfg
    if spec.type == "preference":
        return load_pairs(cfg.file, cfg.limit)
    parsed = [_parse(spec, d, f, ln, i) for i, (d, f, ln) in enumerate(read_task_rows(cfg.file))]
    if spec.fewshot and cfg.fewshot_file:
        rows = read_task_rows(cfg.fewshot_file, "few-shot file (fewshot_file)")
        pool, same_file = [_parse(spec, d, f, ln, i) for i, (d, f, ln) in enumerate(rows)], False
    else:
        pool, same_file = parsed, True
    sampler = FewshotSampler(spec.name, spec.fewshot, spec.fewshot_sampler, pool, same_file, seed,
                             spec.fewshot_match)
    targets = parsed[: cfg.limit] if cfg.limit else parsed
    out: list[McqSample | GenSample] = []
    for p in targets:
        shots = sampler.draw(p) if spec.fewshot else []
        if spec.type == "mcq":
            out.append(McqSample(p.id, p.file, p.line, _context(spec, p, shots), p.choices, p.gold, p.gold_labels))
        elif cfg.chat and shots:  # a chat model sees each solved example as a user turn and its reply (lm-eval's
            # fewshot_as_multiturn); the description opens the first turn
            turns = [(s.prompt, s.answer) for s in shots]
            turns[0] = (_description(spec, p) + turns[0][0], turns[0][1])
            out.append(GenSample(p.id, p.file, p.line, p.prompt, p.references, chat=True, turns=turns))
        else:
            out.append(GenSample(p.id, p.file, p.line, _context(spec, p, shots), p.references, chat=cfg.chat))
    return out


def _description(spec: TaskSpec, sample: _Parsed) -> str:
    try:
        return render(spec.description, sample.row) if spec.description else ""
    except _Missing as e:
        raise _fail(f"description template needs field '{e.args[0]}'", sample.file, sample.line) from None


def _context(spec: TaskSpec, sample: _Parsed, shots: list[_Parsed]) -> str:
    cfg = spec.cfg
    parts = [_description(spec, sample)]
    for s in shots:
        parts.append(s.prompt + cfg.target_delimiter + s.answer + cfg.fewshot_delimiter)
    parts.append(sample.prompt)
    return "".join(parts)
