"""The web UI in a real headless Debian chromium (Playwright driving /usr/bin/chromium; nothing is downloaded):
fill a tiny training config, start the run, watch the loss plot fill from the run's metrics, chat with the result.
Screenshots go to $TUNEFORGE_TEST_ARTIFACTS (default: the test's tmp dir) for CI to keep."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from run_helpers import write_copy_task

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (scripts/install.sh)"),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_value(page, selector: str, ok, *, timeout: float, shots: Path, log: Path) -> str:
    """Poll a field until `ok(value)`; on timeout, leave a screenshot and fail with the field and the run log."""
    deadline = time.monotonic() + timeout
    value = ""
    while time.monotonic() < deadline:
        value = page.locator(selector).first.input_value()
        if ok(value):
            return value
        page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "webui-timeout.png"), full_page=True)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise AssertionError(f"{selector} stayed {value!r}; run log tail:\n{tail}")


def test_train_plot_and_chat_in_a_real_browser(tiny_llama, tmp_path):
    pytest.importorskip("gradio")
    playwright = pytest.importorskip("playwright.sync_api")
    from tuneforge.serve.webui import build_ui

    shots = Path(os.environ.get("TUNEFORGE_TEST_ARTIFACTS") or tmp_path / "artifacts")
    shots.mkdir(parents=True, exist_ok=True)
    work = tmp_path / "work"
    work.mkdir()
    write_copy_task(work / "copy.json", n=32)
    port = _port()
    ui = build_ui(work)
    ui.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with playwright.sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 1800})
            page = ctx.new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)

            def fill(elem_id: str, value: str) -> None:
                box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
                box.fill(value)
                box.press("Tab")

            fill("model", tiny_llama)
            fill("data", "copy.json")
            fill("name", "browser-run")
            fill("template", "chatml")
            fill("lr", "0.003")
            fill("max_steps", "3")
            fill("batch_size", "8")
            fill("cutoff_len", "64")
            page.locator("#start").click()
            page.wait_for_function("() => document.querySelector('#train_status')?.innerText.startsWith('started')",
                                   timeout=60_000)  # not "not started: <error>"
            # the plot's points come from the run's metrics.jsonl: wait until the run has finished its steps
            progress = wait_for_value(page, "#progress textarea, #progress input",
                                      lambda v: v.startswith("finished: step 3,"), timeout=400, shots=shots, log=work / "runs/browser-run.log")
            assert "loss" in progress
            page.wait_for_timeout(1500)  # one more timer tick so the plot has drawn the last points
            plot = page.locator("#loss_plot")
            assert plot.locator("canvas, svg").count() > 0
            page.screenshot(path=str(shots / "webui-train-loss.png"), full_page=True)
            assert (work / "browser-run.yaml").exists() and (work / "runs/browser-run/adapter").is_dir()

            page.get_by_role("tab", name="Chat").click()
            assert page.locator("#chat_model textarea, #chat_model input").first.input_value().endswith("browser-run")
            page.locator("#chat_load").click()
            deadline = time.monotonic() + 300
            while not page.locator("#chat_status").inner_text().startswith("loaded") and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            assert page.locator("#chat_status").inner_text().startswith("loaded")
            box = page.locator("#chat_input textarea, #chat_input input").first
            box.fill("Repeat after me: apple banana cherry")
            box.press("Enter")
            bot = page.locator("#chatbot .message.bot, #chatbot [data-testid='bot']").last
            bot.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => { const m = document.querySelectorAll('#chatbot [data-testid=\"bot\"], #chatbot .message.bot');"
                " return m.length && m[m.length - 1].innerText.trim().length > 0; }", timeout=60_000)
            reply = bot.inner_text().strip()
            page.screenshot(path=str(shots / "webui-chat.png"), full_page=True)
            ctx.close()
        assert reply and "Load a model first" not in reply
    finally:
        ui.close()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
