"""Generation stops at eos and at the end-of-turn token of whichever known template the tokenizer speaks."""

from __future__ import annotations

from tiny_models import build_tokenizer
from tuneforge.serve.generate import _stop_ids


def test_stop_ids_include_eos_and_known_end_of_turn_tokens():
    tok = build_tokenizer()  # ChatML tokens <|im_start|>, <|im_end|> as added special tokens
    ids = _stop_ids(tok)
    assert tok.eos_token_id in ids and tok.convert_tokens_to_ids("<|im_end|>") in ids
    assert tok.convert_tokens_to_ids("<|im_start|>") not in ids
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    assert tok.convert_tokens_to_ids("<|eot_id|>") in _stop_ids(tok)  # llama3's, from the template table
