"""`task:` section: settings for the encoder / seq2seq task stages (cls, qa, seq2seq)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
