"""`tuneforge serve` as clients meet it: a real uvicorn server on 127.0.0.1 and the real `openai` client.

The server runs the real engine over a tiny random Llama with two LoRA adapters (random, so each changes the
output). Greedy answers are compared with the generation core called directly, so batching, streaming, adapters
and cancellation are checked against an independent reference, not against themselves.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

KEY = "test-key"
MAX_TOKENS = 12


def _fake_adapter_run(root, base: str, seed: int) -> str:
    """A run dir (config.yaml + adapter/) holding a random LoRA adapter over `base`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(root / "adapter")
    (root / "config.yaml").write_text(f"stage: sft\nmethod: lora\nmodel: {{path: {base}}}\ndata: {{template: chatml}}\n")
    return str(root)


@pytest.fixture(scope="module")
def server(tiny_llama, tmp_path_factory):
    from tuneforge.serve.api import Limits, create_app
    from tuneforge.serve.engine import Engine
    from tuneforge.serve.served import load_served

    runs = tmp_path_factory.mktemp("adapter-runs")
    (runs / "a").mkdir()
    (runs / "b").mkdir()
    specs = [tiny_llama, _fake_adapter_run(runs / "a", tiny_llama, 1), _fake_adapter_run(runs / "b", tiny_llama, 2)]
    model, served = load_served(specs)
    engine = Engine(model, served[0].tokenizer.pad_token_id, max_batch=8, max_queue=16, max_context=512)
    app = create_app(engine, served, api_key=KEY,
                     limits=Limits(max_body_bytes=20_000, max_prompt_tokens=200, max_tokens=64))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield {"url": f"http://127.0.0.1:{port}", "engine": engine, "model": model, "served": served}
    srv.should_exit = True
    thread.join(10)
    engine.close()


def client(server, key=KEY):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=key, max_retries=0, timeout=60)


def reference(server, index: int, text: str, max_tokens: int = MAX_TOKENS) -> str:
    """The greedy reply of served model `index` from the generation core directly (no server, no batching)."""
    from tuneforge.data.templates import render_prompt
    from tuneforge.models.generate import Sampling, generate_text

    m = server["served"][index]
    model = server["model"]
    ids = render_prompt(m.tokenizer, [{"role": "user", "content": text}], m.template)
    ctx = model.disable_adapter() if m.adapter is None else _Using(model, m.adapter)
    with ctx:
        return generate_text(model, m.tokenizer, [ids], sampling=Sampling(max_new_tokens=max_tokens),
                             stop_ids=sorted(m.stop_ids))[0]


class _Using:
    def __init__(self, model, name):
        self.model, self.name = model, name

    def __enter__(self):
        self.model.set_adapter(self.name)

    def __exit__(self, *exc):
        self.model.set_adapter("default")


def ask(c, model_id: str, text: str, **kw):
    return c.chat.completions.create(model=model_id, messages=[{"role": "user", "content": text}], temperature=0,
                                     max_tokens=kw.pop("max_tokens", MAX_TOKENS), **kw)


def test_chat_stream_and_not_match_the_generation_core_and_batch_across_adapters(server):
    c = client(server)
    ids = [m.id for m in c.models.list().data]
    assert ids == [m.id for m in server["served"]] and len(ids) == 3
    prompts = ["apple banana cherry", "one two three four", "Reverse the word"]
    jobs = [(i, p) for i in range(3) for p in prompts]
    expected = {(i, p): reference(server, i, p) for i, p in jobs}
    # all nine at once: base and both adapters share forward passes
    steps0 = server["engine"].steps
    results: dict = {}
    threads = [threading.Thread(target=lambda i=i, p=p: results.__setitem__((i, p), ask(c, ids[i], p)))
               for i, p in jobs]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    got = {k: r.choices[0].message.content.strip() for k, r in results.items()}
    assert got == expected
    assert len(set(expected.values())) > 3  # the adapters really change the replies
    assert server["engine"].steps - steps0 < len(jobs) * MAX_TOKENS  # batched, not one by one
    r = results[(0, prompts[0])]
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
    assert r.choices[0].finish_reason in ("stop", "length")
    stream = c.chat.completions.create(model=ids[1], messages=[{"role": "user", "content": prompts[1]}],
                                       temperature=0, max_tokens=MAX_TOKENS, stream=True)
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip() == expected[(1, prompts[1])]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) > 1  # really streamed


def test_completions_n_seed_stop_and_logprobs(server):
    c = client(server)
    mid = server["served"][0].id
    a = c.completions.create(model=mid, prompt="one two", max_tokens=8, n=2, temperature=1.0, seed=7)
    b = c.completions.create(model=mid, prompt="one two", max_tokens=8, n=2, temperature=1.0, seed=7)
    assert [x.text for x in a.choices] == [x.text for x in b.choices] and len(a.choices) == 2
    greedy = c.completions.create(model=mid, prompt="one two", max_tokens=8, temperature=0, logprobs=2)
    lp = greedy.choices[0].logprobs
    assert len(lp.token_logprobs) == greedy.usage.completion_tokens
    assert all(v <= 0 for v in lp.token_logprobs)
    # greedy: the chosen token is the most likely one (two ids may decode to one string, so <= 2 keys)
    assert all(1 <= len(t) <= 2 and abs(v - max(t.values())) < 1e-5 for v, t in zip(lp.token_logprobs, lp.top_logprobs))
    text = greedy.choices[0].text
    if len(text.strip()) > 2:
        stop = text.strip()[1:3]
        cut = c.completions.create(model=mid, prompt="one two", max_tokens=8, temperature=0, stop=[stop])
        assert stop not in cut.choices[0].text and cut.choices[0].finish_reason == "stop"
        assert text.startswith(cut.choices[0].text)


def test_auth_and_bad_requests_get_openai_errors_and_the_server_keeps_serving(server):
    mid = server["served"][0].id
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").models.list()
    assert httpx.get(server["url"] + "/v1/models").status_code == 401
    assert httpx.get(server["url"] + "/health").json()["status"] == "ok"
    c = client(server)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        ask(c, "no-such-model", "hi")
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens"):
        ask(c, mid, "hi", max_tokens=-1)
    with pytest.raises(openai.UnprocessableEntityError, match="limit of 64"):
        ask(c, mid, "hi", max_tokens=1000)
    with pytest.raises(openai.APIStatusError, match="at most 200") as long_prompt:
        ask(c, mid, "apple " * 300)
    assert long_prompt.value.status_code == 413
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad = httpx.post(server["url"] + "/v1/chat/completions", content=b"{not json", headers=headers)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    big = httpx.post(server["url"] + "/v1/chat/completions", content=b"x" * 30_000, headers=headers)
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    path = httpx.post(server["url"] + "/v1/chat/completions", headers=headers,
                      json={"model": "/etc/passwd", "messages": [{"role": "user", "content": "x"}]})
    assert path.status_code == 404
    metrics = httpx.get(server["url"] + "/metrics", headers=headers).text
    assert 'status="422"' in metrics and "tuneforge_queue_depth" in metrics
    assert ask(c, mid, "apple banana").choices[0].message.content is not None  # still serving


def test_disconnect_cancels_and_a_full_queue_answers_429(server):
    engine = server["engine"]
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": server["served"][0].id, "max_tokens": 64, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "count"}]}
    # make the tiny model never stop on its own: the stream only ends by cancellation or max_tokens
    for m in server["served"]:
        m.stop_ids = frozenset()
    before = engine.generated_tokens
    with httpx.Client(timeout=60) as h:
        with h.stream("POST", server["url"] + "/v1/chat/completions", json=body, headers=headers) as r:
            lines = r.iter_lines()
            got = [next(lines) for _ in range(4)]
    assert any(line.startswith("data: ") for line in got)
    from tuneforge.serve.engine import wait_idle

    assert wait_idle(engine, 30)
    assert engine.generated_tokens - before < 64  # the dropped client's sequence stopped early
    # a full queue: fill it with placeholders (the engine thread sleeps until a submit wakes it), then one more
    with engine._wake:
        engine._waiting.extend([_Dummy()] * engine.max_queue)
    try:
        r = httpx.post(server["url"] + "/v1/completions", headers=headers,
                       json={"model": body["model"], "prompt": "x", "max_tokens": 1})
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error", r.text
    finally:
        with engine._wake:
            engine._waiting.clear()


class _Dummy:
    """Stands in for waiting requests so the queue is full without any generation going on."""
