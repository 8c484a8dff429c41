"""The Ollama `Modelfile` next to a GGUF file: FROM, the chat TEMPLATE in Ollama's Go-template syntax, stop
parameters and the system prompt.

Ollama does not run jinja, so the template is chosen by family (read from the tokenizer's control tokens); an
unknown family gets no TEMPLATE line and Ollama falls back to the chat template stored in the GGUF metadata.
"""

from __future__ import annotations

GO_TEMPLATES = {
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
        ["<|im_start|>", "<|im_end|>"],
    ),
    "llama3": (
        ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
         "<|start_header_id|>assistant<|end_header_id|>\n\n"),
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    ),
    "mistral": (
        ("{{- range .Messages }}{{ if eq .Role \"user\" }}[INST] {{ .Content }} [/INST]"
         "{{ else if eq .Role \"assistant\" }}{{ .Content }}</s>{{ end }}{{ end }}"),
        ["[INST]", "[/INST]"],
    ),
}

# Marker strings that identify a family in a jinja chat template (or a named tuneforge template).
MARKERS = {"chatml": "<|im_start|>", "llama3": "<|start_header_id|>", "mistral": "[INST]"}


def template_family(template_name: str, jinja: str | None) -> str | None:
    """chatml / llama3 / mistral when recognisable from the run's template name or the jinja text, else None."""
    if template_name in GO_TEMPLATES:
        return template_name
    for family, marker in MARKERS.items():
        if jinja and marker in jinja:
            return family
    return None


def _quote(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile(gguf_name: str, family: str | None, system: str | None, stop_tokens: list[str],
              num_ctx: int | None = None) -> str:
    """Text of the Modelfile (FROM a relative path, so the directory can be moved as a whole)."""
    lines = [f"FROM ./{gguf_name}", ""]
    if family:
        template, stops = GO_TEMPLATES[family]
        lines += [f"# chat template: {family}", f"TEMPLATE {_quote(template)}", ""]
        stop_tokens = [*stops[-1:], *stop_tokens]
    else:
        lines += ["# chat template: not a known family; Ollama uses tokenizer.chat_template from the GGUF", ""]
    for stop in dict.fromkeys(s for s in stop_tokens if s):
        lines.append(f"PARAMETER stop {json_string(stop)}")
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    if system:
        lines += ["", f"SYSTEM {_quote(system)}"]
    return "\n".join(lines) + "\n"


def json_string(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)
