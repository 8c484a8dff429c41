"""`tuneforge webui`: a Gradio UI over the same configs, commands and run dirs as the CLI.

Tabs: Train (form -> YAML preview -> `tuneforge train` subprocess, live loss plot and log tail, stop / resume),
Evaluate (`tuneforge eval` on a run dir), Chat (streaming replies from a run dir or model through the generation
core), Export (`tuneforge export` on a run dir). Every action shows the terminal command it ran, and the YAML it
wrote sits in the work dir, so anything started here can be rerun from a shell. Binds 127.0.0.1 by default.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from tuneforge.data.templates import render_prompt, stop_token_ids
from tuneforge.errors import TuneforgeError
from tuneforge.models.generate import Sampling, stream_text
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.serve.chat import resolve_chat_model
from tuneforge.serve.train_jobs import TrainJob, build_config, stage_methods, to_yaml

FORM = ("model", "data", "stage", "method", "template", "lr", "max_steps", "batch_size", "lora_r", "cutoff_len",
        "name")


class _ChatModel:
    """The model loaded in the Chat tab (one at a time; loading another replaces it)."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.parts: tuple[Any, Any, str, str | None, list[int]] | None = None

    def load(self, spec: str) -> str:
        mc, template, system = resolve_chat_model(spec.strip(), None, None, None)
        tok = load_tokenizer(mc)
        self.parts = (load_model(mc), tok, template, system, stop_token_ids(tok, template))
        self.key = spec.strip()
        return f"loaded {self.key}"


def _run_command(args: list[str], cwd: Path) -> Iterator[str]:
    """Run `tuneforge ARGS` and yield its growing output (the first line is the command itself)."""
    shown = "$ tuneforge " + " ".join(args) + "\n"
    yield shown
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace")
    for line in proc.stdout:
        shown += line.rsplit("\r", 1)[-1]
        yield shown
    proc.wait()
    yield shown + f"\n[exit {proc.returncode}]"


def build_ui(workdir: str | Path) -> Any:
    """The gr.Blocks app (not launched)."""
    import gradio as gr
    import pandas as pd

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    job, chat_model = TrainJob(workdir), _ChatModel()
    methods = stage_methods()

    def form_config(*values):
        return build_config(**dict(zip(FORM, values)))

    def preview(*values):
        try:
            return to_yaml(form_config(*values))
        except (TypeError, ValueError) as e:
            return f"# invalid form: {e}"

    def start(resume: bool, *values):
        try:
            cfg = form_config(*values)
            command = job.start(cfg, resume=resume)
            return to_yaml(cfg), f"started: `{command}` (run dir `{job.run_dir}`)"
        except TuneforgeError as e:
            return gr.update(), f"**not started**: {e}"
        except (TypeError, ValueError) as e:
            return gr.update(), f"**not started**: invalid form value ({e})"

    def poll():
        points = job.losses()
        frame = pd.DataFrame(points, columns=["step", "loss"])
        last = f"step {points[-1][0]}, loss {points[-1][1]:.4f}" if points else "no loss logged yet"
        run = str(job.run_dir) if job.run_dir else ""
        return frame, job.log_tail(), f"{job.status()}: {last}", run

    def load_chat(spec: str):
        try:
            return chat_model.load(spec), []
        except TuneforgeError as e:
            return f"**could not load**: {e}", []

    def respond(message: str, history: list[dict]):
        if not message.strip():
            yield history, ""
            return
        if chat_model.parts is None:
            yield history + [{"role": "assistant", "content": "Load a model first."}], ""
            return
        model, tok, template, system, stops = chat_model.parts
        history = history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        prompt = render_prompt(tok, [{"role": m["role"], "content": m["content"]} for m in history[:-1]],
                               template, system=system)
        pieces: queue.Queue = queue.Queue()
        worker = threading.Thread(target=lambda: (stream_text(model, tok, prompt, sampling=Sampling(max_new_tokens=128),
                                                              stop_ids=stops, on_text=pieces.put), pieces.put(None)),
                                  daemon=True)
        worker.start()
        text = ""
        while True:
            piece = pieces.get()
            if piece is None:
                break
            text += piece
            history[-1] = {"role": "assistant", "content": text.lstrip()}
            yield history, ""
        history[-1] = {"role": "assistant", "content": text.strip() or "(empty reply)"}
        yield history, ""

    with gr.Blocks(title="tuneforge") as ui:
        gr.Markdown("# tuneforge\nConfigs and run dirs are the CLI's: every action shows the command it ran.")
        with gr.Tab("Train"):
            with gr.Row():
                model = gr.Textbox("builtin:smollm2", label="Model (dir, .gguf, builtin:smollm2)", elem_id="model")
                data = gr.Textbox("", label="Training data (files, comma separated)", elem_id="data")
                name = gr.Textbox(f"ui-{time.strftime('%Y%m%d-%H%M%S')}", label="Run name", elem_id="name")
            with gr.Row():
                stage = gr.Dropdown(list(methods), value="sft", label="Stage", elem_id="stage")
                method = gr.Dropdown(methods["sft"], value="lora", label="Method", elem_id="method")
                template = gr.Textbox("auto", label="Chat template", elem_id="template")
            with gr.Row():
                lr = gr.Number(2e-4, label="Learning rate", elem_id="lr")
                max_steps = gr.Number(100, precision=0, label="Max steps", elem_id="max_steps")
                batch_size = gr.Number(4, precision=0, label="Batch size", elem_id="batch_size")
                lora_r = gr.Number(8, precision=0, label="LoRA rank", elem_id="lora_r")
                cutoff_len = gr.Number(512, precision=0, label="Cutoff length", elem_id="cutoff_len")
            inputs = [model, data, stage, method, template, lr, max_steps, batch_size, lora_r, cutoff_len, name]
            with gr.Row():
                preview_btn = gr.Button("Preview YAML", elem_id="preview")
                start_btn = gr.Button("Start", variant="primary", elem_id="start")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                resume_btn = gr.Button("Resume", elem_id="resume")
            status = gr.Markdown("idle", elem_id="train_status")
            yaml_box = gr.Code(language="yaml", label="Config (written to the work dir)", elem_id="yaml")
            progress = gr.Textbox(label="Progress", interactive=False, elem_id="progress")
            run_dir = gr.Textbox(label="Run dir", interactive=False, elem_id="run_dir")
            plot = gr.LinePlot(x="step", y="loss", title="training loss", elem_id="loss_plot")
            log = gr.Textbox(label="Log (tail)", lines=12, max_lines=12, interactive=False, elem_id="log")
            stage.change(lambda s: gr.update(choices=methods[s], value=methods[s][0]), stage, method)
            preview_btn.click(preview, inputs, yaml_box)
            start_btn.click(lambda *v: start(False, *v), inputs, [yaml_box, status])
            resume_btn.click(lambda *v: start(True, *v), inputs, [yaml_box, status])
            stop_btn.click(job.stop, None, status)
            gr.Timer(1.0).tick(poll, None, [plot, log, progress, run_dir])
        with gr.Tab("Evaluate"):
            eval_target = gr.Textbox(label="Run dir or model", elem_id="eval_target")
            eval_args = gr.Textbox("--limit 20", label="More eval options (e.g. --task NAME --limit N)")
            eval_btn = gr.Button("Run eval", elem_id="eval")
            eval_out = gr.Textbox(label="Output", lines=16, interactive=False, elem_id="eval_out")
            eval_btn.click(lambda t, a: (yield from _run_command(["eval", t.strip(), *a.split()], workdir)),
                           [eval_target, eval_args], eval_out)
        with gr.Tab("Chat"):
            with gr.Row():
                chat_spec = gr.Textbox(label="Run dir or model", elem_id="chat_model")
                load_btn = gr.Button("Load", elem_id="chat_load")
            chat_status = gr.Markdown("no model yet", elem_id="chat_status")
            chatbot = gr.Chatbot(label="Chat", elem_id="chatbot")
            msg = gr.Textbox(label="Message", placeholder="Type and press Enter", elem_id="chat_input")
            reset = gr.Button("Reset", elem_id="chat_reset")
            load_btn.click(load_chat, chat_spec, [chat_status, chatbot])
            msg.submit(respond, [msg, chatbot], [chatbot, msg])
            reset.click(lambda: [], None, chatbot)
            run_dir.change(lambda r: gr.update(value=r) if r else gr.update(), run_dir, chat_spec)
            run_dir.change(lambda r: gr.update(value=r) if r else gr.update(), run_dir, eval_target)
        with gr.Tab("Export"):
            export_target = gr.Textbox(label="Run dir", elem_id="export_target")
            export_args = gr.Textbox("", label="Export options (see `tuneforge export --help`)")
            export_btn = gr.Button("Export", elem_id="export")
            export_out = gr.Textbox(label="Output", lines=12, interactive=False, elem_id="export_out")
            export_btn.click(lambda t, a: (yield from _run_command(["export", t.strip(), *a.split()], workdir)),
                             [export_target, export_args], export_out)
            run_dir.change(lambda r: gr.update(value=r) if r else gr.update(), run_dir, export_target)
    return ui


def webui_cli(host: str, port: int, workdir: str) -> None:
    """Build the UI and serve it until interrupted."""
    ui = build_ui(workdir)
    print(f"tuneforge web UI on http://{host}:{port} (work dir {Path(workdir).resolve()})", flush=True)
    ui.queue().launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True)
