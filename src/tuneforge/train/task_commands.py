"""CLI hooks of the task stages. Training needs no command of its own: `tuneforge train cfg.yaml` with
`stage: cls | qa | seq2seq` dispatches to train/cls.py, train/qa.py, train/seq2seq.py (and `method: features`
to train/features.py); `tuneforge data check cfg.yaml` shows class balance / QA windows via
`data.task_data.check_task_data`."""

from __future__ import annotations


def register(app, data_app) -> None:  # noqa: ARG001 - the shared signature of feature CLIs
    """Nothing to add: the task stages are reached through `tuneforge train` and `tuneforge data check`."""
