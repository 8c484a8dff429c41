"""`eval:` section: what `tuneforge eval` (and eval after training) runs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
