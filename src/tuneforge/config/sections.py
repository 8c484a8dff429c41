"""Re-exports of the sections owned by feature packages, so schema.py stays a readable tree."""

from tuneforge.config.evaluation import EvalConfig
from tuneforge.config.task import TaskConfig

__all__ = ["EvalConfig", "TaskConfig"]
