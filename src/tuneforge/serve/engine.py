"""Dynamic batching for the API server: one thread owns the model and decodes every live request in one batch.

Requests wait in a bounded queue (`QueueFull` when it is full: the server answers 429). Between decoding steps the
engine admits waiting requests into the running batch (`models.generate.DecodeBatch`: prefill, then the new rows
share every later forward pass and the KV cache), and drops rows that finished (stop id, `max_tokens`) or were
cancelled (the client went away, a stop string matched). So throughput grows with the number of concurrent clients
instead of queueing them one by one. `max_batch=1` gives the one-by-one baseline the benchmark compares against.

Events reach the caller through `on_event`, called on the engine thread: `Token(id, logprob, top)` per new token,
then exactly one `Done(finish_reason)` ("stop", "length", "cancelled") or `Failed(message)`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

from tuneforge.models.generate import DecodeBatch, Sampling, pick_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Token:
    id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(frozen=True)
class Done:
    finish_reason: str


@dataclass(frozen=True)
class Failed:
    message: str


Event = Union[Token, Done, Failed]


class QueueFull(Exception):
    """More requests are waiting than the server accepts."""


@dataclass
class GenRequest:
    """One sequence to generate (a request with `n` choices submits `n` of these)."""

    prompt: Sequence[int]
    sampling: Sampling
    stop_ids: frozenset[int]
    on_event: Callable[[Event], None]
    adapter: str | None = None
    top_logprobs: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: int = 0
    generator: Any = None

    def cancel(self) -> None:
        """Stop generating this sequence at the next step (thread-safe)."""
        self.cancelled.set()


class Engine:
    """The decoding thread plus its queue. `submit` from any thread; `close` to stop."""

    def __init__(self, model: Any, pad_id: int, *, max_batch: int = 32, max_queue: int = 256,
                 max_context: int | None = None):
        self.model, self.pad_id = model, pad_id
        self.max_batch, self.max_queue = max(1, max_batch), max_queue
        self.max_context = max_context
        self._waiting: collections.deque[GenRequest] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self.active = 0
        self.steps = 0
        self.generated_tokens = 0
        self._thread = threading.Thread(target=self._loop, name="tuneforge-engine", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    def submit(self, requests: Sequence[GenRequest]) -> None:
        """Queue all of `requests` or none of them (QueueFull)."""
        with self._wake:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if len(self._waiting) + len(requests) > self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are waiting (limit {self.max_queue})")
            self._waiting.extend(requests)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------------------------------- the thread

    def _admit(self, batch: DecodeBatch, rows: list[GenRequest]) -> None:
        """Move waiting requests into the batch while there is room (all at once: one prefill)."""
        with self._wake:
            while not rows and not self._waiting and not self._closed:
                self._wake.wait()
            if rows and not batch.can_join_running:
                return
            new: list[GenRequest] = []
            while self._waiting and len(rows) + len(new) < self.max_batch:
                req = self._waiting.popleft()
                if req.cancelled.is_set():
                    req.on_event(Done("cancelled"))
                else:
                    new.append(req)
        if not new:
            return
        import torch

        for req in new:
            if req.sampling.seed is not None and not req.sampling.greedy:
                req.generator = torch.Generator(device=batch.model.device).manual_seed(req.sampling.seed)
        batch.join([r.prompt for r in new], [r.adapter for r in new])
        rows.extend(new)

    def _loop(self) -> None:
        batch = DecodeBatch(self.model, self.pad_id)
        rows: list[GenRequest] = []
        while not self._closed:
            try:
                self._admit(batch, rows)
                if not rows:
                    continue
                self.active = len(rows)
                self._step(batch, rows)
            except Exception as e:  # a failed forward pass fails the rows in it, not the server
                log.exception("generation failed")
                for req in rows:
                    req.on_event(Failed(f"generation failed: {type(e).__name__}: {e}"))
                rows.clear()
                batch = DecodeBatch(self.model, self.pad_id)
            self.active = len(rows)
        for req in rows + list(self._waiting):
            req.on_event(Failed("the server is shutting down"))

    def _step(self, batch: DecodeBatch, rows: list[GenRequest]) -> None:
        top = max(r.top_logprobs for r in rows)
        tokens, logprobs, alts = pick_tokens(batch.logits, [r.sampling for r in rows], [r.generator for r in rows],
                                             top_logprobs=top)
        keep: list[int] = []
        for i, req in enumerate(rows):
            if req.cancelled.is_set():
                req.on_event(Done("cancelled"))
                continue
            tok = tokens[i]
            if tok in req.stop_ids:
                req.on_event(Done("stop"))
                continue
            req.generated += 1
            self.generated_tokens += 1
            req.on_event(Token(tok, logprobs[i], alts[i][: req.top_logprobs]))
            if req.generated >= req.sampling.max_new_tokens or (self.max_context and len(req.prompt) + req.generated >= self.max_context):
                req.on_event(Done("length"))
                continue
            keep.append(i)
        next_tokens = [tokens[i] for i in keep]
        rows[:] = [rows[i] for i in keep]
        batch.keep(keep)
        if rows:
            batch.step(next_tokens)
            self.steps += 1


def wait_idle(engine: Engine, timeout: float = 10.0) -> bool:
    """True once nothing is queued or decoding (tests and shutdown use it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if engine.queue_depth == 0 and engine.active == 0:
            return True
        time.sleep(0.01)
    return False
