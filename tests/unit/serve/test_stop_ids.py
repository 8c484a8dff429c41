"""Generation stops at eos and at the template's end-of-turn token (any known one for the tokenizer's own template)."""

from __future__ import annotations

from tiny_models import build_tokenizer
from tuneforge.data.templates import stop_token_ids


def test_stop_ids_include_eos_and_known_end_of_turn_tokens():
    tok = build_tokenizer()  # ChatML tokens <|im_start|>, <|im_end|> as added special tokens
    ids = stop_token_ids(tok)
    assert tok.eos_token_id in ids and tok.convert_tokens_to_ids("<|im_end|>") in ids
    assert tok.convert_tokens_to_ids("<|im_start|>") not in ids
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    assert tok.convert_tokens_to_ids("<|eot_id|>") in stop_token_ids(tok)  # llama3's, from the template table


def test_named_template_stops_at_its_own_end_of_turn_only():
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    chatml = stop_token_ids(tok, "chatml")
    assert tok.convert_tokens_to_ids("<|im_end|>") in chatml
    assert tok.convert_tokens_to_ids("<|eot_id|>") not in chatml
