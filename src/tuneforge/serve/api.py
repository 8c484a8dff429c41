"""`tuneforge serve`: an OpenAI-compatible HTTP API (FastAPI + uvicorn) over the dynamic-batching engine.

Endpoints: `/v1/models`, `/v1/chat/completions`, `/v1/completions` (streaming as server-sent events in OpenAI's chunk
format, ending with a usage chunk and `[DONE]`), `/health` (no key needed) and `/metrics` (Prometheus text).
Safe by default: binds 127.0.0.1, an API key (`--api-key` or TUNEFORGE_API_KEY) is enforced with 401 on every
route but /health, and body size, prompt length, `max_tokens` and `n` are capped. Requests name a model by id; they
never carry file paths. A client that disconnects cancels its sequences at the next decoding step.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' `Request` annotations at runtime
import asyncio
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

from tuneforge.models.generate import Sampling
from tuneforge.data.templates import render_prompt
from tuneforge.serve.engine import Done, Engine, Failed, GenRequest, QueueFull, Token
from tuneforge.serve.metrics import Metrics
from tuneforge.serve.protocol import ApiError, ChatRequest, CompletionRequest, TextTracker, parse_body
from tuneforge.serve.served import ServedModel

API_KEY_ENV = "TUNEFORGE_API_KEY"


@dataclass(frozen=True)
class Limits:
    """Per-request caps (a request over one gets 413 or 422, never a silent truncation)."""

    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int = 4096
    max_tokens: int = 2048
    default_max_tokens: int = 512
    max_n: int = 8


def create_app(engine: Engine, models: list[ServedModel], *, api_key: str | None = None,
               limits: Limits = Limits()) -> Any:
    """The FastAPI app; `engine` decodes, `models` maps the `model` field to a tokenizer/template/adapter."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    app = FastAPI(title="tuneforge", docs_url=None, redoc_url=None, openapi_url=None)
    by_id = {m.id: m for m in models}
    metrics = Metrics()
    created = int(time.time())

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.monotonic()
        try:
            if request.url.path != "/health":
                _check_key(request.headers.get("authorization", ""), api_key)
            size = request.headers.get("content-length")
            if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
                raise ApiError(413, f"request body is {size} bytes; this server takes at most "
                                    f"{limits.max_body_bytes}", code="request_too_large")
            response = await call_next(request)
        except ApiError as e:
            response = JSONResponse(e.body(), status_code=e.status)
        metrics.request(request.url.path, response.status_code, time.monotonic() - start)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(404)
    async def not_found(_request: Request, _e: Exception):
        return JSONResponse(ApiError(404, "no such route", code="not_found").body(), status_code=404)

    @app.exception_handler(405)
    async def bad_method(request: Request, _e: Exception):
        return JSONResponse(ApiError(405, f"{request.method} is not allowed here").body(), status_code=405)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(by_id), "queue_depth": engine.queue_depth,
                "active_sequences": engine.active}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(engine), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": m.id, "object": "model", "created": created,
                                            "owned_by": "tuneforge"} for m in models]}

    async def read(request: Request, kind):
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > limits.max_body_bytes:  # chunked bodies carry no content-length
                raise ApiError(413, f"request body is over {limits.max_body_bytes} bytes", code="request_too_large")
        return parse_body(bytes(raw), kind)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = await read(request, ChatRequest)
        served = _model(by_id, req.model)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in req.messages]
        system = served.system
        if messages[0]["role"] == "system":
            system = messages.pop(0)["content"]
        if not messages:
            raise ApiError(422, "messages: need at least one user message", param="messages")
        prompt = render_prompt(served.tokenizer, messages, served.template, system=system)
        top = (req.top_logprobs or 0) if req.logprobs else 0
        job = _Job(served, [prompt], req, limits, top, chat=True, logprobs=req.logprobs)
        return await _answer(request, job, engine, metrics)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = await read(request, CompletionRequest)
        served = _model(by_id, req.model)
        prompts = [p if isinstance(p, list) else served.tokenizer(p)["input_ids"] for p in req.prompts()]
        if not prompts or any(not p for p in prompts):
            raise ApiError(422, "prompt: must not be empty", param="prompt")
        job = _Job(served, prompts, req, limits, req.logprobs or 0, chat=False, logprobs=req.logprobs is not None)
        return await _answer(request, job, engine, metrics)

    async def _answer(request: Request, job: "_Job", engine: Engine, metrics: Metrics):
        job.start(engine)
        metrics.prompt_tokens += job.prompt_tokens
        if job.stream:
            return StreamingResponse(job.sse(request, metrics), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        body = await job.collect(request, metrics)
        return JSONResponse(body)

    return app


def _check_key(header: str, api_key: str | None) -> None:
    if not api_key:
        return
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                       type="authentication_error", code="invalid_api_key")


def _model(by_id: dict[str, ServedModel], name: str) -> ServedModel:
    if name not in by_id:
        raise ApiError(404, f"model '{name}' does not exist; this server has: {', '.join(by_id)}",
                       param="model", code="model_not_found")
    return by_id[name]


class _Job:
    """One request: its sequences (prompts x n) in the engine, and how their events become an OpenAI answer."""

    def __init__(self, served: ServedModel, prompts: list[list[int]], req: Any, limits: Limits, top: int, *,
                 chat: bool, logprobs: bool):
        longest = max(len(p) for p in prompts)
        if longest > limits.max_prompt_tokens:
            raise ApiError(413, f"prompt is {longest} tokens; this server takes at most {limits.max_prompt_tokens}",
                           param="messages" if chat else "prompt", code="context_length_exceeded")
        new = req.new_tokens(limits.default_max_tokens)
        if new > limits.max_tokens:
            raise ApiError(422, f"max_tokens: {new} is over this server's limit of {limits.max_tokens}",
                           param="max_tokens", code="invalid_value")
        if req.n > limits.max_n:
            raise ApiError(422, f"n: {req.n} is over this server's limit of {limits.max_n}", param="n")
        self.served, self.chat, self.logprobs, self.stream = served, chat, logprobs, req.stream
        self.model_id, self.id = req.model, ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.prompt_tokens = sum(len(p) for p in prompts) * req.n
        stops = req.stop_list()
        self.trackers = [TextTracker(served.tokenizer, stops) for _ in range(len(prompts) * req.n)]
        self.finish: list[str | None] = [None] * len(self.trackers)
        self.token_logprobs: list[list[dict]] = [[] for _ in self.trackers]
        self.events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.requests = []
        for i in range(len(self.trackers)):
            seed = None if req.seed is None else req.seed + i % req.n
            sampling = Sampling(max_new_tokens=new, temperature=req.temperature, top_p=req.top_p, seed=seed)
            self.requests.append(GenRequest(
                prompts[i // req.n], sampling, served.stop_ids, adapter=served.adapter, top_logprobs=top,
                on_event=lambda ev, i=i: loop.call_soon_threadsafe(self.events.put_nowait, (i, ev))))
        self.started = time.monotonic()

    def start(self, engine: Engine) -> None:
        try:
            engine.submit(self.requests)
        except QueueFull as e:
            raise ApiError(429, f"server busy: {e}; retry later", type="rate_limit_error",
                           code="queue_full") from None

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()

    @property
    def completion_tokens(self) -> int:
        return sum(len(t.tokens) for t in self.trackers)

    async def events_until_done(self, request: Any) -> AsyncIterator[tuple[int, str, bool]]:
        """(choice, new text, finished) as tokens arrive; cancels everything if the client goes away."""
        open_ = len(self.trackers)
        try:
            while open_:
                try:
                    i, ev = await asyncio.wait_for(self.events.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                if self.finish[i] is not None:
                    continue  # events after a stop string ended the choice
                tracker = self.trackers[i]
                if isinstance(ev, Token):
                    piece = tracker.feed(ev.id)
                    self._record_logprob(i, ev)
                    if tracker.stopped:
                        self.requests[i].cancel()
                        self.finish[i], open_ = "stop", open_ - 1
                    yield i, piece, tracker.stopped
                elif isinstance(ev, Done):
                    self.finish[i], open_ = ("stop" if ev.finish_reason == "cancelled" else ev.finish_reason), open_ - 1
                    yield i, tracker.flush(), True
                elif isinstance(ev, Failed):
                    self.cancel()
                    raise ApiError(500, ev.message, type="server_error")
        finally:
            if open_:
                self.cancel()

    def _record_logprob(self, i: int, ev: Token) -> None:
        if not self.logprobs:
            return
        tok = self.served.tokenizer
        top = [{"token": tok.decode([t]), "logprob": lp} for t, lp in ev.top]
        self.token_logprobs[i].append({"token": tok.decode([ev.id]), "logprob": ev.logprob, "top_logprobs": top})

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def _logprobs_field(self, i: int, entries: list[dict]) -> Any:
        if not self.logprobs:
            return None
        if self.chat:
            return {"content": [dict(e, bytes=list(e["token"].encode())) for e in entries]}
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [_top_dict(e["top_logprobs"]) for e in entries],
                "text_offset": []}

    async def collect(self, request: Any, metrics: Any) -> dict:
        async for _ in self.events_until_done(request):
            pass
        metrics.done(self.completion_tokens, time.monotonic() - self.started)
        choices = []
        for i, t in enumerate(self.trackers):
            lp = self._logprobs_field(i, self.token_logprobs[i])
            if self.chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": t.text},
                                "logprobs": lp, "finish_reason": self.finish[i]})
            else:
                choices.append({"index": i, "text": t.text, "logprobs": lp, "finish_reason": self.finish[i]})
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model_id, "choices": choices, "usage": self.usage()}

    def _chunk(self, choices: list[dict], usage: dict | None = None) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model_id, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def sse(self, request: Any, metrics: Any) -> AsyncIterator[str]:
        sent_lp = [0] * len(self.trackers)
        if self.chat:
            yield self._chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                "finish_reason": None} for i in range(len(self.trackers))])
        try:
            async for i, piece, finished in self.events_until_done(request):
                entries = self.token_logprobs[i][sent_lp[i]:]
                sent_lp[i] = len(self.token_logprobs[i])
                if not piece and not finished and not entries:
                    continue
                lp = self._logprobs_field(i, entries)
                reason = self.finish[i] if finished else None
                if self.chat:
                    yield self._chunk([{"index": i, "delta": {"content": piece} if piece else {}, "logprobs": lp,
                                        "finish_reason": reason}])
                else:
                    yield self._chunk([{"index": i, "text": piece, "logprobs": lp, "finish_reason": reason}])
        except ApiError as e:
            yield f"data: {json.dumps(e.body())}\n\n"
            return
        metrics.done(self.completion_tokens, time.monotonic() - self.started)
        yield self._chunk([], usage=self.usage())
        yield "data: [DONE]\n\n"


def _top_dict(top: list[dict]) -> dict[str, float]:
    """Completions' {token text: logprob}; two ids that decode alike keep the likelier one (the list is sorted)."""
    out: dict[str, float] = {}
    for t in top:
        out.setdefault(t["token"], t["logprob"])
    return out


def serve_cli(specs: list[str], host: str, port: int, api_key: str | None, max_batch: int, max_queue: int,
              limits: Limits, dtype: str = "auto", threads: int = 0) -> None:
    """Load the models, start the engine and run uvicorn until interrupted."""
    import torch
    import uvicorn

    if threads:  # on a CPU shared with other jobs, fewer threads than cores stop OpenMP spinning for descheduled peers
        torch.set_num_threads(threads)

    from tuneforge.serve.served import load_served

    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    model, served = load_served(specs, dtype=dtype)
    tok = served[0].tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    context = getattr(model.config, "max_position_embeddings", None)
    engine = Engine(model, pad, max_batch=max_batch, max_queue=max_queue, max_context=context)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(f"warning: serving on {host} without an API key (set --api-key or {API_KEY_ENV})")
    app = create_app(engine, served, api_key=api_key, limits=limits)
    print(f"serving {', '.join(m.id for m in served)} on http://{host}:{port}/v1 (batch {max_batch}, queue "
          f"{max_queue}{', key required' if api_key else ''})", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        engine.close()
