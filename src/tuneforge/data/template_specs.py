"""Named chat templates: our format strings plus each family's reference jinja (for parity tests and export).

Placeholders in format strings: ``{bos}``, ``{eos}`` (the tokenizer's tokens) and ``{content}``.
A conversation renders as::

    prefix + system + (user + assistant + <content> + eot + sep)* + suffix

``assistant`` is the header before an answer, so it is also the generation prompt. Only ``<content> + eot`` is
trained. ``suffix`` is only emitted for training text, not for generation prompts (Phi-3 appends eos there).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    """A chat layout, written as format strings (see module docstring)."""

    name: str
    user: str
    assistant: str
    eot: str
    system: str = ""
    prefix: str = ""
    sep: str = ""
    suffix: str = ""
    default_system: str | None = None
    # Families without a system role (Mistral v0.1, Gemma) fold it into the first user message:
    # ``system`` then formats the text put in front of that message's content.
    system_in_user: bool = False
    # Llama 3 and Gemma strip each message's content (jinja ``| trim``).
    trim: bool = False
    # Literal control tokens the tokenizer must know (see ``ensure_template_tokens``); bos/eos excluded.
    special_tokens: tuple[str, ...] = ()
    jinja: str = ""


# LLaMA-Factory's "default" layout: "Human: ...</s>\nAssistant:...</s>\n".
_DEFAULT_JINJA = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ 'System: ' + m['content'] + eos_token + '\\n' }}"
    "{% elif m['role'] == 'user' %}{{ 'Human: ' + m['content'] + eos_token + '\\n' }}"
    "{% else %}{{ 'Assistant:' + m['content'] + eos_token + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

_ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)
_ALPACA_JINJA = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system = '" + _ALPACA_SYSTEM + "' %}{% set loop_messages = messages %}{% endif %}"
    "{% if system %}{{ system + '\\n\\n' }}{% endif %}"
    "{% for m in loop_messages %}"
    "{% if m['role'] == 'user' %}{{ '### Instruction:\\n' + m['content'] + '\\n\\n' }}"
    "{% else %}{{ '### Response:\\n' + m['content'] + eos_token + '\\n\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
)

# ChatML as used by Qwen2 / SmolLM2 (without their default system prompts).
_CHATML_JINJA = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Meta-Llama-3-Instruct's template.
_LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Mistral-Instruct v0.1 layout; that template has no system role, so (like Mistral's later templates) the system
# text goes in front of a user message, here the first one so that turns render the same in any prefix.
_MISTRAL_JINJA = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] + '\\n\\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set loop_messages = messages %}{% endif %}"
    "{{ bos_token }}"
    "{% for m in loop_messages %}"
    "{% if m['role'] == 'user' %}"
    "{{ '[INST] ' + (system if loop.first else '') + m['content'] + ' [/INST]' }}"
    "{% else %}{{ m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)

# Gemma 3's layout: role "model", content trimmed, system text prepended to the first user turn.
_GEMMA_JINJA = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for m in loop_messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ m['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

# Phi-3.5-mini-instruct's template: empty system skipped, eos after a finished conversation.
_PHI_JINJA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and message['content'] %}"
    "{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

_CHATML = Template(
    name="chatml",
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n",
    assistant="<|im_start|>assistant\n",
    eot="<|im_end|>",
    sep="\n",
    special_tokens=("<|im_start|>", "<|im_end|>"),
    jinja=_CHATML_JINJA,
)

TEMPLATES: dict[str, Template] = {
    "default": Template(
        name="default",
        system="System: {content}{eos}\n",
        user="Human: {content}{eos}\n",
        assistant="Assistant:",
        eot="{eos}",
        sep="\n",
        jinja=_DEFAULT_JINJA,
    ),
    "alpaca": Template(
        name="alpaca",
        system="{content}\n\n",
        user="### Instruction:\n{content}\n\n",
        assistant="### Response:\n",
        eot="{eos}",
        sep="\n\n",
        default_system=_ALPACA_SYSTEM,
        jinja=_ALPACA_JINJA,
    ),
    "chatml": _CHATML,
    "qwen": _CHATML,
    "llama3": Template(
        name="llama3",
        prefix="{bos}",
        system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
        user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
        assistant="<|start_header_id|>assistant<|end_header_id|>\n\n",
        eot="<|eot_id|>",
        trim=True,
        special_tokens=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        jinja=_LLAMA3_JINJA,
    ),
    "mistral": Template(
        name="mistral",
        prefix="{bos}",
        system="{content}\n\n",
        user="[INST] {content} [/INST]",
        assistant="",
        eot="{eos}",
        system_in_user=True,
        jinja=_MISTRAL_JINJA,
    ),
    "gemma": Template(
        name="gemma",
        prefix="{bos}",
        system="{content}\n\n",
        user="<start_of_turn>user\n{content}<end_of_turn>\n",
        assistant="<start_of_turn>model\n",
        eot="<end_of_turn>",
        sep="\n",
        system_in_user=True,
        trim=True,
        special_tokens=("<start_of_turn>", "<end_of_turn>"),
        jinja=_GEMMA_JINJA,
    ),
    "phi": Template(
        name="phi",
        system="<|system|>\n{content}<|end|>\n",
        user="<|user|>\n{content}<|end|>\n",
        assistant="<|assistant|>\n",
        eot="<|end|>",
        sep="\n",
        suffix="{eos}",
        special_tokens=("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
        jinja=_PHI_JINJA,
    ),
}

TEMPLATE_NAMES: tuple[str, ...] = ("auto", *TEMPLATES)
