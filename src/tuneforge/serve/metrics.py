"""Prometheus text for `/metrics`: requests by route and status, tokens, queue depth, batch size, latency.

Written by hand (the exposition format is a few lines of text) so the server needs no metrics library.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """Counters updated by the request handlers (the event loop) and read by `render`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.latency_counts = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_n = 0

    def request(self, path: str, status: int, _seconds: float) -> None:
        with self._lock:
            self.requests[(path if path.startswith("/v1/") or path in ("/health", "/metrics") else "other",
                           status)] += 1

    def done(self, completion_tokens: int, seconds: float) -> None:
        """A generation finished: count its tokens and its latency (whole request, streamed or not)."""
        with self._lock:
            self.completion_tokens += completion_tokens
            self.latency_sum += seconds
            self.latency_n += 1
            for b, edge in enumerate(LATENCY_BUCKETS):
                if seconds <= edge:
                    self.latency_counts[b] += 1

    def render(self, engine: Any) -> str:
        with self._lock:
            lines = ["# HELP tuneforge_requests_total HTTP requests by route and status code.",
                     "# TYPE tuneforge_requests_total counter"]
            for (path, status), n in sorted(self.requests.items()):
                lines.append(f'tuneforge_requests_total{{path="{path}",status="{status}"}} {n}')
            lines += [
                "# TYPE tuneforge_prompt_tokens_total counter", f"tuneforge_prompt_tokens_total {self.prompt_tokens}",
                "# TYPE tuneforge_generation_tokens_total counter",
                f"tuneforge_generation_tokens_total {self.completion_tokens}",
                "# HELP tuneforge_queue_depth Sequences waiting to join the batch.",
                "# TYPE tuneforge_queue_depth gauge", f"tuneforge_queue_depth {engine.queue_depth}",
                "# HELP tuneforge_active_sequences Sequences in the decoding batch.",
                "# TYPE tuneforge_active_sequences gauge", f"tuneforge_active_sequences {engine.active}",
                "# TYPE tuneforge_decode_steps_total counter", f"tuneforge_decode_steps_total {engine.steps}",
                "# HELP tuneforge_request_latency_seconds Time from request to last token.",
                "# TYPE tuneforge_request_latency_seconds histogram",
            ]
            for edge, n in zip(LATENCY_BUCKETS, self.latency_counts):
                lines.append(f'tuneforge_request_latency_seconds_bucket{{le="{edge}"}} {n}')
            lines += [f'tuneforge_request_latency_seconds_bucket{{le="+Inf"}} {self.latency_n}',
                      f"tuneforge_request_latency_seconds_sum {self.latency_sum:.6f}",
                      f"tuneforge_request_latency_seconds_count {self.latency_n}"]
        return "\n".join(lines) + "\n"
