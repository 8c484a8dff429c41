"""Reward sources for the online stages (grpo, rloo), named in `align.rewards`:

- `exact_number`        1 when the last number of the completion equals the reference's last number (GSM8K's
                        `#### 42` works as a reference), else 0.
- `contains_reference`  1 when the reference text occurs in the completion (case-insensitive), else 0.
- `format:<regex>`      1 when the regex matches somewhere in the completion (re.DOTALL), else 0.
- `length:<n>`          1 at n words, falling linearly to 0 at 0 or 2n words (a length target or penalty).
- `rm:<run dir>`        the score of a reward model trained with `stage: rm` (its adapter merged in).
- `module:function` or `path/to/file.py:function`: your own function, called as TRL calls reward functions:
  `f(prompts=[...], completions=[...], reference=[...], **kw) -> list[float | None]`.

Each function gets the batch's prompts and completions (text) plus the dataset's `reference` column.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

from tuneforge.errors import ConfigError

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str | None) -> float | None:
    """The last number written in `text` (thousands separators allowed), or None."""
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def exact_number(completions: list[str], reference: list[str] | None = None, **_) -> list[float]:
    refs = reference or [None] * len(completions)
    out = []
    for completion, ref in zip(completions, refs):
        want, got = last_number(ref), last_number(completion)
        out.append(1.0 if want is not None and got is not None and abs(want - got) < 1e-6 else 0.0)
    return out


def contains_reference(completions: list[str], reference: list[str] | None = None, **_) -> list[float]:
    refs = reference or [""] * len(completions)
    return [1.0 if ref and ref.strip().lower() in c.lower() else 0.0 for c, ref in zip(completions, refs)]


def format_reward(pattern: str) -> Callable:
    try:
        regex = re.compile(pattern, re.DOTALL)
    except re.error as e:
        raise ConfigError(f"align.rewards: format:{pattern} is not a valid regex ({e})") from None

    def format_match(completions: list[str], **_) -> list[float]:
        return [1.0 if regex.search(c) else 0.0 for c in completions]

    return format_match


def length_reward(target: str) -> Callable:
    try:
        n = int(target)
    except ValueError:
        n = 0
    if n <= 0:
        raise ConfigError(f"align.rewards: length:{target} needs a positive number of words")

    def length_target(completions: list[str], **_) -> list[float]:
        return [max(0.0, 1.0 - abs(len(c.split()) - n) / n) for c in completions]

    return length_target


BUILTINS: dict[str, Callable] = {"exact_number": exact_number, "contains_reference": contains_reference}
FACTORIES: dict[str, Callable[[str], Callable]] = {"format": format_reward, "length": length_reward}


def user_function(spec: str) -> Callable:
    """`module:function` (importable) or `path/to/file.py:function` (loaded from the file)."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ConfigError(f"align.rewards: '{spec}' is not a reward", hint=reward_hint())
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"align.rewards: reward file not found: {target}")
        module_spec = importlib.util.spec_from_file_location(f"tuneforge_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ConfigError(f"align.rewards: cannot import '{target}' ({e})", hint=reward_hint()) from None
    func = getattr(module, name, None)
    if not callable(func):
        raise ConfigError(f"align.rewards: '{target}' has no function '{name}'")
    return func


def reward_hint() -> str:
    return ("use exact_number, contains_reference, format:<regex>, length:<words>, rm:<run dir>, "
            "module:function or path/to/file.py:function")


def resolve_reward(spec: str, load_reward_model: Callable[[str], tuple]) -> tuple[Callable | object, object]:
    """(reward function or model, its tokenizer or None) for one `align.rewards` entry."""
    if spec in BUILTINS:
        return BUILTINS[spec], None
    kind, _, arg = spec.partition(":")
    if kind in FACTORIES and arg:
        return FACTORIES[kind](arg), None
    if kind == "rm" and arg:
        return load_reward_model(arg)
    if ":" not in spec:
        raise ConfigError(f"align.rewards: unknown reward '{spec}'", hint=reward_hint())
    return user_function(spec), None
