"""Chat templates: turn a conversation into ``input_ids`` + ``labels`` for SFT, or a prompt for generation.

Both kinds of template (our named ones and a tokenizer's own jinja) first render the conversation to one string
and record which character spans are trained; the string is then tokenized once and a token is trained when it
overlaps a trained span. Tokenizing the whole text at once gives exactly the ids of
``tokenizer.apply_chat_template`` (piecewise tokenization would differ where BPE merges across turn boundaries).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from tuneforge.data.template_specs import TEMPLATE_NAMES, TEMPLATES, Template
from tuneforge.errors import ConfigError, DataError

__all__ = [
    "IGNORE_INDEX",
    "JINJA",
    "encode_conversation",
    "ensure_template_tokens",
    "get_template",
    "render_prompt",
    "stop_token_ids",
    "suggest_template",
]

IGNORE_INDEX = -100
JINJA = "jinja"  # get_template's answer when the tokenizer's own chat_template is used

_PLACEHOLDER = re.compile(r"\{(bos|eos|content)\}")


@dataclass
class _Rendered:
    text: str
    answers: list[tuple[int, int]]  # trained char spans: assistant content + end-of-turn marker
    rounds: list[int]  # char offset where each round starts (end of the previous answer, or 0)


def suggest_template(name: str) -> str:
    """Return ``name`` if it is a known template, else raise ``ConfigError`` with a "did you mean" hint."""
    if name in TEMPLATE_NAMES:
        return name
    close = difflib.get_close_matches(name, TEMPLATE_NAMES, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(TEMPLATE_NAMES)}"
    raise ConfigError(f"unknown chat template {name!r}", hint=hint)


def get_template(name: str, tokenizer) -> Template | str:
    """Resolve a template name; ``"auto"`` gives ``JINJA`` if the tokenizer has a chat_template, else "default"."""
    if name == "auto":
        return JINJA if getattr(tokenizer, "chat_template", None) else TEMPLATES["default"]
    return TEMPLATES[suggest_template(name)]


def ensure_template_tokens(tokenizer, template: Template | str) -> int:
    """Add the template's control tokens the tokenizer lacks; return how many new ids (caller resizes embeddings)."""
    from tokenizers import AddedToken

    if isinstance(template, str):
        template = get_template(template, tokenizer)
    if not isinstance(template, Template):
        return 0
    # Also (re)register tokens that exist in the vocab only as plain BPE pieces, or text would split them.
    known = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    missing = [t for t in template.special_tokens if t not in known]
    if not missing:
        return 0
    before = len(tokenizer)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    return len(tokenizer) - before


def encode_conversation(
    tokenizer,
    messages: list[dict],
    template_name: str | Template = "auto",
    *,
    train_on_prompt: bool = False,
    mask_history: bool = False,
    system: str | None = None,
) -> tuple[list[int], list[int]]:
    """Tokenize a conversation ending with an assistant turn; labels are ``IGNORE_INDEX`` except trained tokens.

    Trained: each assistant content + its end-of-turn token (not the newline after it). ``mask_history``: only
    the last assistant turn. ``train_on_prompt``: every token but a leading BOS (with ``mask_history``: the
    whole last round). ``system`` is used when ``messages`` has no system message (for a jinja template it is
    sent as a system message, so an empty string renders an empty system turn; named templates skip it).
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise DataError("a training conversation must end with an assistant message")
    rendered = _render(tokenizer, messages, template_name, system, add_generation_prompt=False)
    if train_on_prompt:
        start = rendered.rounds[-1] if mask_history else 0
        spans = [(start, len(rendered.text))]
    else:
        spans = rendered.answers[-1:] if mask_history else rendered.answers
    ids, trained = _tokenize(tokenizer, rendered.text, spans)
    labels = [i if t else IGNORE_INDEX for i, t in zip(ids, trained)]
    if ids and ids[0] == tokenizer.bos_token_id:
        labels[0] = IGNORE_INDEX
    return ids, labels


def render_prompt(
    tokenizer, messages: list[dict], template_name: str | Template = "auto", system: str | None = None
) -> list[int]:
    """Token ids of all turns followed by the generation prompt (assistant header)."""
    rendered = _render(tokenizer, messages, template_name, system, add_generation_prompt=True)
    return _tokenize(tokenizer, rendered.text, [])[0]


def stop_token_ids(tokenizer, template_name: str | Template = "auto") -> list[int]:
    """Ids that end a generated reply: eos plus the template's end-of-turn token.

    For a tokenizer's own (jinja) template the end-of-turn token is not named anywhere we can read, so every
    known template's end-of-turn that this tokenizer has as a single token counts (``<|im_end|>``, ``<|eot_id|>``...).
    """
    template = template_name if isinstance(template_name, Template) else get_template(template_name, tokenizer)
    eots = {template.eot} if isinstance(template, Template) else {t.eot for t in TEMPLATES.values()}
    ids = {tokenizer.eos_token_id}
    for tok in sorted(e for e in eots if e and "{" not in e):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


def _render(tokenizer, messages, template_name, system, add_generation_prompt) -> _Rendered:
    if not messages:
        raise DataError("empty conversation")
    template = template_name if isinstance(template_name, Template) else get_template(template_name, tokenizer)
    if isinstance(template, str):  # JINJA: the tokenizer's own chat_template
        if system is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]
        return _render_jinja(tokenizer, messages, add_generation_prompt)
    return _render_named(template, tokenizer, messages, system, add_generation_prompt)


def _render_named(t: Template, tokenizer, messages, system, add_generation_prompt) -> _Rendered:
    values = {"bos": tokenizer.bos_token or "", "eos": tokenizer.eos_token}

    def fill(fmt: str, content: str = "") -> str:
        def sub(m: re.Match) -> str:
            value = content if m.group(1) == "content" else values[m.group(1)]
            if value is None:
                raise ConfigError(f"chat template {t.name!r} needs an eos token but the tokenizer has none")
            return value

        # One pass, so braces or "{eos}" inside message content are left alone.
        return _PLACEHOLDER.sub(sub, fmt)

    if messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    elif system is None:
        system = t.default_system
    # An empty system prompt means none (Phi-3 and the alpaca layout skip it too).
    system_text = fill(t.system, system.strip() if t.trim and not t.system_in_user else system) if system else ""

    text = fill(t.prefix) + ("" if t.system_in_user else system_text)
    answers, rounds = [], []
    for i, m in enumerate(messages):
        content = m["content"].strip() if t.trim else m["content"]
        if m["role"] == "user":
            text += fill(t.user, (system_text if t.system_in_user and i == 0 else "") + content)
        elif m["role"] == "assistant":
            rounds.append(answers[-1][1] if answers else 0)
            text += fill(t.assistant)
            start = len(text)
            text += content + fill(t.eot)
            answers.append((start, len(text)))
            text += fill(t.sep)
        else:
            raise DataError(f"unsupported role {m['role']!r} at message {i}")
    text += fill(t.assistant) if add_generation_prompt else fill(t.suffix)
    return _Rendered(text, answers, rounds)


def _render_jinja(tokenizer, messages, add_generation_prompt) -> _Rendered:
    """Trained spans from prefix renderings: answer i lies between render(msgs[:i], gen) and render(msgs[:i+1])."""

    def render(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    text = render(messages, add_generation_prompt)
    specials = _special_strings(tokenizer)
    answers, rounds = [], []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or add_generation_prompt:
            continue
        rounds.append(answers[-1][1] if answers else 0)
        prompt = render(messages[:i], True)
        turn = render(messages[: i + 1], False)
        # A template may end a finished conversation differently (Phi-3 adds eos), so the turn ends where the
        # rendering that stops after it parts from the full text.
        end = _common_prefix(turn, text)
        start = len(prompt) if text.startswith(prompt) else (answers[-1][1] if answers else 0)
        answers.append(_answer_span(text, start, end, m["content"], specials, i, end < len(turn)))
    return _Rendered(text, answers, rounds)


def _answer_span(text, start, end, content, specials, index, diverged) -> tuple[int, int]:
    """Content (as the template wrote it, maybe trimmed) plus the end-of-turn marker right after it."""
    region = text[start:end]
    wanted = content
    at = region.find(wanted)
    if at < 0:  # templates that trim content (``| trim``)
        wanted = content.strip()
        at = region.find(wanted)
    if at < 0:
        raise DataError(f"chat template rewrites assistant message {index}; cannot locate it to build labels")
    begin = start + at
    stop = begin + len(wanted)
    rest = text[stop:end]
    # Some templates end the final turn differently (eos instead of <|im_end|>); then the marker of this turn as
    # rendered in the full text is only found past ``end``, and only a control token may count as one.
    words_ok = bool(rest.strip()) or not diverged
    if not words_ok:
        rest = text[stop:]
    # The marker is the first control token after the content ("<|im_end|>", " </s>"); the "\n" that follows
    # belongs to the next prompt. Without a control token, fall back to the first word (a textual stop string).
    stripped = rest.lstrip()
    marker = next((s for s in specials if stripped.startswith(s)), None)
    if marker is None:
        marker = stripped.split(maxsplit=1)[0] if words_ok and stripped.strip() else ""
    if marker:
        stop += len(rest) - len(stripped) + len(marker)
    return begin, stop


def _special_strings(tokenizer) -> list[str]:
    found = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    found.update(tokenizer.all_special_tokens)
    return sorted(found, key=len, reverse=True)  # longest first: a token that prefixes another never wins


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _tokenize(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[bool]]:
    """Token ids of ``text`` (no added special tokens, like apply_chat_template) and per-token "trained" flags."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
        trained = [any(_overlaps(s, e, a, b) for a, b in spans) for s, e in offsets]
    else:
        # No offsets: locate span edges by tokenizing the text up to them (exact when edges fall on token edges,
        # which control tokens guarantee for every layout we ship).
        ids = tokenizer.encode(text, add_special_tokens=False)
        trained = [False] * len(ids)
        for a, b in spans:
            lo = len(tokenizer.encode(text[:a], add_special_tokens=False))
            hi = len(tokenizer.encode(text[:b], add_special_tokens=False))
            trained[lo:hi] = [True] * (hi - lo)
    bos = tokenizer.bos_token_id
    # Don't double BOS: a template writing bos_token in front of text that already starts with it.
    if bos is not None and len(ids) > 1 and ids[0] == ids[1] == bos:
        ids, trained = ids[1:], trained[1:]
    return ids, trained


def _overlaps(s: int, e: int, a: int, b: int) -> bool:
    # Zero-width tokens (some sentencepiece pieces) count when they sit inside the span.
    return s < b and (e > a if e > s else s >= a)
