"""The server's wire format without a server: request validation errors and the streaming text tracker."""

from __future__ import annotations

import pytest

from tuneforge.serve.protocol import ApiError, ChatRequest, CompletionRequest, TextTracker, parse_body


class _CharTokenizer:
    """Token id = a character's code point; 0xFFFD marks half a character (as byte-level BPE decodes it)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def feed_all(tracker: TextTracker, text: str) -> str:
    out = "".join(tracker.feed(ord(ch)) for ch in text if not tracker.stopped)
    return out + tracker.flush()


def test_stop_string_is_cut_and_never_half_sent():
    t = TextTracker(_CharTokenizer(), ["END"])
    sent = [t.feed(ord(c)) for c in "abcE"]
    assert "".join(sent) == "ab"  # "cE" could still become "END": held back
    assert t.feed(ord("N")) == "c" and t.feed(ord("D")) == "" and t.stopped
    assert t.flush() == "" and t.text == "abc"


def test_earliest_of_several_stops_wins_and_no_stop_sends_everything():
    assert feed_all(TextTracker(_CharTokenizer(), ["yz", "b"]), "abcxyz") == "a"
    assert feed_all(TextTracker(_CharTokenizer(), []), "hello") == "hello"


def test_partial_character_waits_then_is_sent_at_the_end():
    t = TextTracker(_CharTokenizer(), [])
    assert t.feed(ord("a")) == "a" and t.feed(0xFFFD) == ""
    assert t.flush() == "\ufffd"


@pytest.mark.parametrize("raw, status, needle", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"model": "m", "messages": []}', 422, "messages"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}', 422, "max_tokens"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 5}', 422, "temperature"),
    (b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}', 422, "role"),
])
def test_bad_bodies_get_a_status_and_a_message_naming_the_field(raw, status, needle):
    with pytest.raises(ApiError) as e:
        parse_body(raw, ChatRequest)
    assert e.value.status == status and needle in e.value.message
    assert set(e.value.body()["error"]) == {"message", "type", "param", "code"}


def test_prompt_forms_and_unknown_fields():
    req = parse_body(b'{"model": "m", "prompt": [1, 2, 3], "user": "ignored", "presence_penalty": 0}',
                     CompletionRequest)
    assert req.prompts() == [[1, 2, 3]] and req.max_tokens == 16
    assert parse_body(b'{"model": "m", "prompt": ["a", "b"]}', CompletionRequest).prompts() == ["a", "b"]
    with pytest.raises(ApiError, match="at most 4"):
        parse_body(b'{"model": "m", "prompt": "a", "stop": ["1","2","3","4","5"]}', CompletionRequest).stop_list()
