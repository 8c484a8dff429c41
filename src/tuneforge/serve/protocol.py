"""The OpenAI wire format the server speaks: request bodies (validated), errors, and the streaming text tracker.

Requests are validated here rather than by FastAPI so every failure gets OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`) with the status a client library maps to the right exception:
400 bad JSON, 401 key, 404 model, 413 too large, 422 bad field, 429 queue full.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with `status`."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Body(BaseModel):
    # unknown fields (user, presence_penalty, ...) are accepted and ignored, as OpenAI-compatible servers do
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if len(stops) > 4:
            raise ApiError(422, "at most 4 stop sequences", param="stop")
        return [s for s in stops if s]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = "text"
    text: str = ""


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[_Part], None] = None

    def text(self) -> str:
        if isinstance(self.content, list):
            if any(p.type != "text" for p in self.content):
                raise ApiError(422, "only text content parts are supported", param="messages")
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatRequest(_Body):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)

    def new_tokens(self, default: int) -> Optional[int]:
        return self.max_completion_tokens or self.max_tokens or default


class CompletionRequest(_Body):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    max_tokens: Optional[int] = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: Optional[int] = Field(None, ge=0, le=20)
    echo: bool = False

    def prompts(self) -> list[Union[str, list[int]]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]

    def new_tokens(self, default: int) -> Optional[int]:
        return self.max_tokens or default


def parse_body(raw: bytes, kind: type[BaseModel]) -> Any:
    """Bytes -> a validated request, or ApiError 400 (not JSON) / 422 (a bad field, named)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise ApiError(422, f"{param}: {err['msg']}" if param else err["msg"], param=param,
                       code="invalid_value") from None


class TextTracker:
    """Turns one sequence's tokens into text pieces that are safe to send: whole characters only, cut at a stop
    string, and holding back text that could still become the start of a stop string."""

    def __init__(self, tokenizer: Any, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, stops
        self.tokens: list[int] = []
        self.sent = 0
        self.text = ""
        self.stopped = False

    def feed(self, token: int) -> str:
        """Add a token; the new text that can be sent now (sets `stopped` when a stop string matched)."""
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half a multi-byte character: wait for the next token
            return ""
        cuts = [i for i in (text.find(s) for s in self.stops) if i != -1]
        self.text, self.stopped = (text[: min(cuts)], True) if cuts else (text, False)
        hold = 0 if self.stopped else max((len(s) - 1 for s in self.stops), default=0)
        return self._take(len(self.text) - hold)

    def flush(self) -> str:
        """The rest of the text once the sequence has ended (a trailing partial character included, as decoded)."""
        if not self.stopped and self.tokens:
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
            cuts = [i for i in (text.find(s) for s in self.stops) if i != -1]
            self.text, self.stopped = (text[: min(cuts)], True) if cuts else (text, False)
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        piece = self.text[self.sent: upto]
        self.sent = upto
        return piece
